#include "server/rank_launcher.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace stepserve::server {
namespace {

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("was killed by signal ", WTERMSIG(status), " (", strsignal(WTERMSIG(status)), ")");
  return absl::StrCat("ended with wait status ", status);
}

}  // namespace

absl::StatusOr<std::unique_ptr<RankLauncher>> RankLauncher::Spawn(const std::vector<std::string>& args,
                                                                   const std::vector<int>& ranks,
                                                                   FailureCallback on_failure) {
  std::unique_ptr<RankLauncher> launcher(new RankLauncher());
  launcher->on_failure_ = std::move(on_failure);
  const pid_t parent = getpid();
  for (int rank : ranks) {
    // Everything the child needs is built before fork: after it, only async-signal-safe calls.
    std::vector<std::string> child_args = {"stepserve"};
    child_args.insert(child_args.end(), args.begin(), args.end());
    child_args.push_back(absl::StrCat("--worker_rank=", rank));
    std::vector<char*> argv;
    for (std::string& a : child_args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = fork();
    if (pid < 0) {
      launcher->Kill();
      return absl::InternalError(absl::StrCat("cannot start rank ", rank, ": fork: ", std::strerror(errno)));
    }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);  // the parent died before prctl
      setpgid(0, 0);
      // A worker is stopped by its starter (a stop message, or PR_SET_PDEATHSIG), never by a signal meant
      // for the starter: SIGTERM and SIGINT are ignored from before exec (an ignored disposition survives
      // exec). The starter's blocked mask (for its sigwait) is cleared.
      signal(SIGTERM, SIG_IGN);
      signal(SIGINT, SIG_IGN);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      execv("/proc/self/exe", argv.data());
      _exit(127);
    }
    std::lock_guard<std::mutex> lock(launcher->mu_);
    launcher->children_.push_back({pid, rank});
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
