#include "common/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

extern char** environ;

namespace stepserve {
namespace {

void CloseIfOpen(int fd) {
  if (fd >= 0) ::close(fd);
}

// The fds of the parent's side, closed on every exit path that does not hand them over.
struct Fds {
  int null_fd = -1, file_fd = -1;
  int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  ~Fds() {
    for (int fd : {null_fd, file_fd, out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) CloseIfOpen(fd);
  }
};

absl::Status Errno(const std::string& what) { return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno))); }

}  // namespace

absl::StatusOr<SpawnedProcess> SpawnProcess(const std::vector<std::string>& argv, const SpawnOptions& options) {
  if (argv.empty()) return absl::InvalidArgumentError("SpawnProcess: empty argv");
  if (options.stdout_to == ChildOutput::kAsStdout) {
    return absl::InvalidArgumentError("SpawnProcess: stdout cannot go where stdout goes");
  }
  // Everything the child needs is built before fork: after it, only async-signal-safe calls.
  std::vector<std::string> args = argv;
  std::vector<char*> child_argv;
  for (std::string& a : args) child_argv.push_back(a.data());
  child_argv.push_back(nullptr);
  const std::string program = options.program.empty() ? argv[0] : options.program;

  std::vector<std::string> env_strings;
  std::vector<char*> child_env;
  if (!options.env.empty()) {
    for (char** e = environ; *e != nullptr; ++e) {
      const char* eq = std::strchr(*e, '=');
      const std::string name = eq ? std::string(*e, static_cast<size_t>(eq - *e)) : std::string(*e);
      bool replaced = false;
      for (const auto& [key, value] : options.env) replaced = replaced || key == name;
      if (!replaced) env_strings.push_back(*e);
    }
    for (const auto& [key, value] : options.env) env_strings.push_back(absl::StrCat(key, "=", value));
    for (std::string& e : env_strings) child_env.push_back(e.data());
    child_env.push_back(nullptr);
  }

  Fds fds;
  const auto uses = [&](ChildOutput o) { return options.stdout_to == o || options.stderr_to == o; };
  if (uses(ChildOutput::kNull) && (fds.null_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0) {
    return Errno("open /dev/null");
  }
  if (uses(ChildOutput::kFile) &&
      (fds.file_fd = ::open(options.output_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0) {
    return Errno(absl::StrCat("open ", options.output_file));
  }
  if (options.stdout_to == ChildOutput::kPipe && ::pipe2(fds.out_pipe, O_CLOEXEC) != 0) return Errno("pipe");
  if (options.stderr_to == ChildOutput::kPipe && ::pipe2(fds.err_pipe, O_CLOEXEC) != 0) return Errno("pipe");
  const auto target = [&](ChildOutput o, const int pipe_fds[2]) {
    switch (o) {
      case ChildOutput::kNull: return fds.null_fd;
      case ChildOutput::kFile: return fds.file_fd;
      case ChildOutput::kPipe: return pipe_fds[1];
      case ChildOutput::kInherit:
      case ChildOutput::kAsStdout: break;
    }
    return -1;
  };
  const int stdout_fd = target(options.stdout_to, fds.out_pipe);
  const int stderr_fd = options.stderr_to == ChildOutput::kAsStdout ? -2 : target(options.stderr_to, fds.err_pipe);
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) return Errno("fork");
  if (pid == 0) {
    if (options.die_with_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) _exit(1);  // the parent died before prctl
    }
    if (options.new_process_group) ::setpgid(0, 0);
    for (int sig : options.ignore_signals) ::signal(sig, SIG_IGN);
    if (options.clear_signal_mask) {
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
    }
    // The copies dup2 makes are not close-on-exec; the originals (all close-on-exec) close at exec.
    const auto redirect = [](int from, int to) {
      if (from == to) {
        ::fcntl(to, F_SETFD, 0);  // dup2 of an fd onto itself would leave it close-on-exec
      } else {
        ::dup2(from, to);
      }
    };
    if (stdout_fd >= 0) redirect(stdout_fd, STDOUT_FILENO);
    if (stderr_fd == -2) {
      redirect(STDOUT_FILENO, STDERR_FILENO);
    } else if (stderr_fd >= 0) {
      redirect(stderr_fd, STDERR_FILENO);
    }
    if (child_env.empty()) {
      ::execv(program.c_str(), child_argv.data());
    } else {
      ::execve(program.c_str(), child_argv.data(), child_env.data());
    }
    _exit(127);
  }
  SpawnedProcess child;
  child.pid = pid;
  child.stdout_pipe = std::exchange(fds.out_pipe[0], -1);
  child.stderr_pipe = std::exchange(fds.err_pipe[0], -1);
  return child;  // ~Fds closes the child's ends in this process
}

bool WaitProcess(pid_t pid, absl::Duration timeout, int* status) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    const pid_t r = ::waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (r < 0 && errno != EINTR) return true;  // not (or no longer) our child
    if (absl::Now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

bool ProcessRunning(pid_t pid) {
  int status = 0;
  return ::waitpid(pid, &status, WNOHANG) == 0;
}

int KillProcess(pid_t pid) {
  int status = 0;
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

int ExitCode(int wait_status) { return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1; }

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return absl::StrCat("was killed by signal ", WTERMSIG(status), " (", strsignal(WTERMSIG(status)), ")");
  }
  return absl::StrCat("ended with wait status ", status);
}

}  // namespace stepserve
