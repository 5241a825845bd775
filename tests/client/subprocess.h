// Child processes for the client tests, with bounded waits: a finished command's exit code and output,
// or a long-running process (the server) stopped on teardown.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace stepserve::testing {

struct CommandResult {
  int exit_code = -1;   // -1 when killed by a signal or timed out
  bool timed_out = false;
  std::string out;      // stdout
  std::string err;      // stderr
  double seconds = 0;   // wall time (for messages only; tests do not assert timings)
};

// Runs argv[0] with the arguments; kills it (SIGKILL) when it runs past timeout_s.
CommandResult RunCommand(const std::vector<std::string>& argv, double timeout_s);

// Starts a process with stdout and stderr appended to log_path; -1 on failure.
pid_t StartProcess(const std::vector<std::string>& argv, const std::string& log_path);
// True while the process has not exited (reaps it when it has).
bool ProcessAlive(pid_t pid);
// SIGTERM, then SIGKILL after timeout_s; returns the exit code (-1 after a signal).
int StopProcess(pid_t pid, double timeout_s);

// A TCP port on 127.0.0.1 that was free a moment ago.
int PickFreePort();

std::string ReadFile(const std::string& path);

}  // namespace stepserve::testing
