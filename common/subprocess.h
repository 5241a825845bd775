// Child processes: the one fork/exec of the project (the rank launcher, the benchmarks and the tests start
// their processes with it), and bounded waits for them. Everything the child needs is built before fork;
// after it the child makes only async-signal-safe calls, so it may be called from a process with threads.
// No LibTorch: library stepserve_subprocess, which the client tests link too.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace stepserve {

// Where a child's stdout or stderr goes.
enum class ChildOutput {
  kInherit,   // the parent's
  kNull,      // /dev/null
  kPipe,      // a new pipe; the parent reads it (SpawnedProcess::stdout_pipe / stderr_pipe)
  kFile,      // appended to SpawnOptions::output_file (created 0644 when missing)
  kAsStdout,  // stderr only: wherever stdout goes (the same pipe, file, ...)
};

struct SpawnOptions {
  // The file to execute; empty: argv[0] (e.g. "/proc/self/exe" with argv[0] "stepserve").
  std::string program;
  // Set in the child's environment (replacing a variable of the same name); the rest is the parent's.
  std::vector<std::pair<std::string, std::string>> env;
  ChildOutput stdout_to = ChildOutput::kInherit;
  ChildOutput stderr_to = ChildOutput::kInherit;
  std::string output_file;  // for kFile
  // PR_SET_PDEATHSIG SIGKILL: the child dies with the parent (and exits 1 at once when the parent died
  // before the child could ask for that).
  bool die_with_parent = false;
  bool new_process_group = false;  // setpgid(0, 0): a terminal's Ctrl-C reaches the parent only
  // Signals the child ignores from before exec (an ignored disposition survives exec).
  std::vector<int> ignore_signals;
  bool clear_signal_mask = false;  // unblock what the parent blocked (a blocked mask survives exec too)
};

struct SpawnedProcess {
  pid_t pid = -1;
  // The read ends of kPipe outputs (close-on-exec), owned by the caller; -1 otherwise.
  int stdout_pipe = -1;
  int stderr_pipe = -1;
};

// Forks and execs argv (argv[0] included). A failed exec exits the child with 127.
absl::StatusOr<SpawnedProcess> SpawnProcess(const std::vector<std::string>& argv, const SpawnOptions& options = {});

// Waits up to `timeout` for `pid` to exit and reaps it: true with its wait status in *status, or true with
// *status left alone when it is not (or no longer) a child of this process; false when it is still running.
bool WaitProcess(pid_t pid, absl::Duration timeout, int* status);
// True while `pid` runs (reaps it, without its status, when it has exited).
bool ProcessRunning(pid_t pid);
// SIGKILL, then reaps it; its wait status.
int KillProcess(pid_t pid);

// The exit code of a wait status; -1 when the process was killed by a signal.
int ExitCode(int wait_status);
// "exited with status N", "was killed by signal N (name)", ...
std::string DescribeExit(int wait_status);

}  // namespace stepserve
