#include "server/process_signals.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "absl/time/clock.h"
#include "common/logging.h"

namespace stepserve::server {
namespace {

constexpr int kSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2};

std::atomic<bool> g_thread_ready{false};
pthread_t g_signal_thread;

// Runs on a thread that does not block the signal (one a library started before main): hand it to the signal
// thread, which blocks it and waits for it. pthread_kill is async-signal-safe.
void Forward(int signal_number) {
  if (g_thread_ready.load()) pthread_kill(g_signal_thread, signal_number);
}

enum class Phase { kStarting, kServing, kStopping };

struct State {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<int> stops;
  Phase phase = Phase::kStarting;
  std::function<void()> reload_hook;
  std::function<void()> exit_hook;
};

State& GetState() {
  static State* state = new State();  // never destroyed: the signal thread may use it until _exit
  return *state;
}

const char* Name(int signal_number) {
  switch (signal_number) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGHUP: return "SIGHUP";
    case SIGUSR1: return "SIGUSR1";
    case SIGUSR2: return "SIGUSR2";
  }
  return "a signal";
}

sigset_t SignalSet() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : kSignals) sigaddset(&set, s);
  return set;
}

}  // namespace

ProcessSignals& ProcessSignals::Start() {
  static ProcessSignals* signals = [] {
    auto* p = new ProcessSignals();
    const sigset_t set = SignalSet();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::thread thread([p] { p->Loop(); });
    g_signal_thread = thread.native_handle();
    thread.detach();
    g_thread_ready.store(true);
    struct sigaction action;
    std::memset(&action, 0, sizeof(action));
    action.sa_handler = Forward;
    sigfillset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    for (int s : kSignals) {
      // A signal ignored from before exec stays ignored (the worker ranks ignore SIGTERM and SIGINT: their
      // starter stops them); an ignored signal is discarded, never pending, so sigwait does not see it either.
      struct sigaction old;
      if (sigaction(s, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
      sigaction(s, &action, nullptr);
    }
    return p;
  }();
  return *signals;
}

void ProcessSignals::SetReloadHook(std::function<void()> hook) {
  State& st = GetState();
  std::lock_guard<std::mutex> lock(st.mu);
  st.reload_hook = std::move(hook);
}

void ProcessSignals::SetExitHook(std::function<void()> hook) {
  State& st = GetState();
  std::lock_guard<std::mutex> lock(st.mu);
  st.exit_hook = std::move(hook);
}

void ProcessSignals::SetServing() {
  State& st = GetState();
  std::lock_guard<std::mutex> lock(st.mu);
  if (st.phase == Phase::kStarting) st.phase = Phase::kServing;
}

int ProcessSignals::WaitForStop() { return WaitForStop(absl::InfiniteDuration()); }

int ProcessSignals::WaitForStop(absl::Duration timeout) {
  State& st = GetState();
  std::unique_lock<std::mutex> lock(st.mu);
  auto ready = [&] { return !st.stops.empty(); };
  if (timeout == absl::InfiniteDuration()) {
    st.cv.wait(lock, ready);
  } else if (!st.cv.wait_until(lock, absl::ToChronoTime(absl::Now() + timeout), ready)) {
    return 0;
  }
  const int s = st.stops.front();
  st.stops.pop_front();
  return s;
}

void ProcessSignals::Loop() {
  const sigset_t set = SignalSet();
  State& st = GetState();
  while (true) {
    int signal_number = 0;
    if (sigwait(&set, &signal_number) != 0) continue;
    if (signal_number == SIGHUP) {
      std::function<void()> hook;
      {
        std::lock_guard<std::mutex> lock(st.mu);
        hook = st.reload_hook;
      }
      LogInfo("received SIGHUP: ", hook ? "reloading the API keys" : "nothing to reload");
      if (hook) hook();
      continue;
    }
    std::unique_lock<std::mutex> lock(st.mu);
    if (signal_number == SIGTERM || signal_number == SIGINT) {
      if (st.phase != Phase::kServing) {
        const int code = ExitCodeFor(signal_number);
        if (st.phase == Phase::kStarting) {
          LogInfo("received ", Name(signal_number), " during start-up (before serving): exiting with code ", code);
        } else {
          LogWarning("received a second ", Name(signal_number),
                     " during the drain: ending it now; requests still in flight are cut off (exit code ", code, ")");
        }
        std::function<void()> hook = st.exit_hook;
        lock.unlock();
        if (hook) hook();
        std::fflush(stderr);
        _exit(code);
      }
      st.phase = Phase::kStopping;  // the next one exits
    }
    st.stops.push_back(signal_number);
    st.cv.notify_all();
  }
}

}  // namespace stepserve::server
