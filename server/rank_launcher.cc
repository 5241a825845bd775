#include "server/rank_launcher.h"

#include <signal.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/subprocess.h"

namespace stepserve::server {

absl::StatusOr<std::unique_ptr<RankLauncher>> RankLauncher::Spawn(const std::vector<std::string>& args,
                                                                   const std::vector<int>& ranks,
                                                                   FailureCallback on_failure) {
  std::unique_ptr<RankLauncher> launcher(new RankLauncher());
  launcher->on_failure_ = std::move(on_failure);
  SpawnOptions options;
  options.program = "/proc/self/exe";
  options.die_with_parent = true;
  options.new_process_group = true;
  // A worker is stopped by its starter (a stop message, or PR_SET_PDEATHSIG), never by a signal meant for
  // the starter: SIGTERM and SIGINT are ignored from before exec. The starter's blocked mask (for its
  // sigwait) is cleared.
  options.ignore_signals = {SIGTERM, SIGINT};
  options.clear_signal_mask = true;
  for (int rank : ranks) {
    std::vector<std::string> child_args = {"stepserve"};
    child_args.insert(child_args.end(), args.begin(), args.end());
    child_args.push_back(absl::StrCat("--worker_rank=", rank));
    auto child = SpawnProcess(child_args, options);
    if (!child.ok()) {
      launcher->Kill();
      return absl::InternalError(absl::StrCat("cannot start rank ", rank, ": ", child.status().message()));
    }
    std::lock_guard<std::mutex> lock(launcher->mu_);
    launcher->children_.push_back({child->pid, rank});
  }
  LogInfo("started ", ranks.size(), " worker ranks");
  launcher->watcher_ = std::thread([l = launcher.get()] { l->Watch(); });
  return launcher;
}

void RankLauncher::Watch() {
  while (true) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      return;  // ECHILD: every child has been reaped
    }
    FailureCallback notify;
    absl::Status failure;
    std::lock_guard<std::mutex> callback_lock(callback_mu_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (Child& c : children_) {
        if (c.pid != pid) continue;
        c.exited = true;
        c.status = status;
        if (stopping_ && !c.killed && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
          // The group failed through a collective first; still say which rank ended and how.
          LogError("rank ", c.rank, " (pid ", pid, ") ", DescribeExit(status));
        }
        const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;  // told to stop by rank 0
        if (!stopping_ && !clean) {
          failure = absl::UnavailableError(absl::StrCat("rank ", c.rank, " (pid ", pid, ") ", DescribeExit(status)));
          notify = std::move(on_failure_);
          on_failure_ = nullptr;
        }
      }
    }
    if (!failure.ok()) LogError(failure.message());
    if (notify) notify(failure);
  }
}

void RankLauncher::ExpectExits() {
  std::lock_guard<std::mutex> callback_lock(callback_mu_);
  std::lock_guard<std::mutex> lock(mu_);
  stopping_ = true;
}

absl::Status RankLauncher::Wait(absl::Duration timeout) {
  ExpectExits();
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      bool all = true;
      for (const Child& c : children_) all = all && c.exited;
      if (all) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  absl::Status result;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Child& c : children_) {
      if (!c.exited) {
        result = absl::DeadlineExceededError(absl::StrCat("rank ", c.rank, " did not stop within ",
                                                          absl::FormatDuration(timeout), "; killing it"));
      } else if (!WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0) {
        result = absl::InternalError(absl::StrCat("rank ", c.rank, " ", DescribeExit(c.status)));
      }
    }
  }
  Kill();
  return result;
}

void RankLauncher::Kill() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    for (Child& c : children_) {
      if (!c.exited) {
        c.killed = true;
        kill(c.pid, SIGKILL);
      }
    }
  }
  if (watcher_.joinable()) watcher_.join();  // returns once every child is reaped
}

RankLauncher::~RankLauncher() { Kill(); }

}  // namespace stepserve::server
