// stepserve's signals, taken by one thread.
//
// ProcessSignals::Start(), first thing in main before any thread of ours exists, blocks SIGTERM, SIGINT,
// SIGHUP, SIGUSR1 and SIGUSR2 in the main thread (every thread started afterwards inherits the mask: gRPC's,
// the HTTP front's, the executor's) and starts the one thread that takes them with sigwait. Threads that
// libraries started before main (OpenBLAS starts its pool from a shared-library constructor) do not block
// them; a handler installed for each signal forwards one delivered to such a thread to the signal thread, so
// no signal ever takes its default action (SIGTERM and SIGHUP used to kill the process with no log line).
//
// What each does (every one is logged):
//   SIGHUP            the reload hook (the API keys file); the server goes on.
//   SIGTERM, SIGINT   before SetServing() (loading, warm-up): the process exits at once with 128 + the
//                     signal (143, 130); nothing was served yet. While serving: WaitForStop() returns it
//                     (main drains). Once a stop is under way (a drain): exits at once with 128 + the signal,
//                     cutting the drain short.
//   SIGUSR1, SIGUSR2  internal (the tensor-parallel group failed, a worker rank exited): WaitForStop()
//                     returns them.
#pragma once

#include <csignal>
#include <functional>

#include "absl/time/time.h"

namespace stepserve::server {

class ProcessSignals {
 public:
  // Once per process; later calls return the same object.
  static ProcessSignals& Start();

  // Called on the signal thread for each SIGHUP.
  void SetReloadHook(std::function<void()> hook);
  // Called on the signal thread right before it exits the process (SIGTERM during start-up, a second one
  // during a drain): e.g. kill the worker ranks (they also die with this process).
  void SetExitHook(std::function<void()> hook);
  // Start-up is over: SIGTERM and SIGINT now start a drain instead of exiting.
  void SetServing();
  // Blocks until SIGTERM or SIGINT (while serving), SIGUSR1 or SIGUSR2 arrives; returns it. After a SIGTERM
  // or SIGINT, a second one exits the process (see above).
  int WaitForStop();
  // The same, for up to `timeout`; 0 when none came.
  int WaitForStop(absl::Duration timeout);

  // The exit code for a stop by `signal_number` that did not drain: 128 + the signal.
  static int ExitCodeFor(int signal_number) { return 128 + signal_number; }

 private:
  ProcessSignals() = default;
  void Loop();
};

}  // namespace stepserve::server
