// The local ranks of a tensor-parallel group as processes: the first process of a node starts the others
// (this same binary with --worker_rank), watches them, and stops them. No gRPC here.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace stepserve::server {

class RankLauncher {
 public:
  // Called once, from the watcher thread, when a rank exits with a non-zero status (or a signal) before
  // ExpectExits(); a rank that exits 0 was told to stop by rank 0 and is no failure.
  using FailureCallback = std::function<void(const absl::Status&)>;

  // Starts one process per rank in `ranks`: /proc/self/exe with `args` (argv without argv[0]) and
  // --worker_rank=R appended (later flags win). Each child dies with its parent (PR_SET_PDEATHSIG) and
  // runs in its own process group, so a terminal's Ctrl-C reaches only the first process, which drains.
  static absl::StatusOr<std::unique_ptr<RankLauncher>> Spawn(const std::vector<std::string>& args,
                                                             const std::vector<int>& ranks,
                                                             FailureCallback on_failure);
  ~RankLauncher();  // Kill()

  // From now on exits are expected (a drain or a failure is under way): the failure callback never runs
  // again, and is not running when this returns.
  void ExpectExits();
  // Waits up to `timeout` for every rank to exit on its own (after rank 0 sent stop), then kills the rest.
  // OK when every rank exited with status 0.
  absl::Status Wait(absl::Duration timeout);
  // SIGKILL to every rank still running, and reaps them.
  void Kill();

 private:
  RankLauncher() = default;
  void Watch();

  struct Child {
    pid_t pid = -1;
    int rank = 0;
    bool exited = false;
    bool killed = false;  // by Kill()
    int status = 0;
  };
  std::mutex mu_;
  std::mutex callback_mu_;  // held while the failure callback runs
  std::vector<Child> children_;
  bool stopping_ = false;  // exits are expected from now on
  FailureCallback on_failure_;
  std::thread watcher_;
};

}  // namespace stepserve::server
