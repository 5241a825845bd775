#include "subprocess.h"

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <sstream>

#include "common/subprocess.h"

namespace stepserve::testing {
namespace {

using Clock = std::chrono::steady_clock;

absl::Duration DurationFromSeconds(double s) { return absl::Microseconds(static_cast<int64_t>(s * 1e6)); }

}  // namespace

CommandResult RunCommand(const std::vector<std::string>& argv, double timeout_s) {
  CommandResult result;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6));
  SpawnOptions options;
  options.stdout_to = ChildOutput::kPipe;
  options.stderr_to = ChildOutput::kPipe;
  auto child = SpawnProcess(argv, options);
  if (!child.ok()) return result;
  const pid_t pid = child->pid;
  pollfd fds[2] = {{child->stdout_pipe, POLLIN, 0}, {child->stderr_pipe, POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open = 2;
  bool killed = false;
  while (open > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0 && !killed) {
      ::kill(pid, SIGKILL);
      killed = true;
      result.timed_out = true;
    }
    const int r = ::poll(fds, 2, killed ? 1000 : static_cast<int>(std::min<int64_t>(left, 1000)));
    if (r < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[8192];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open;
      }
    }
    if (killed && r == 0) break;  // a grandchild keeps the pipe open; stop reading
  }
  for (auto& f : fds) {
    if (f.fd >= 0) ::close(f.fd);
  }
  int status = 0;
  if (!WaitProcess(pid, absl::Seconds(5), &status)) {
    status = KillProcess(pid);
    result.timed_out = true;
  }
  result.exit_code = result.timed_out ? -1 : ExitCode(status);
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

pid_t StartProcess(const std::vector<std::string>& argv, const std::string& log_path) {
  SpawnOptions options;
  options.stdout_to = ChildOutput::kFile;
  options.stderr_to = ChildOutput::kAsStdout;
  options.output_file = log_path;
  auto child = SpawnProcess(argv, options);
  return child.ok() ? child->pid : -1;
}

bool ProcessAlive(pid_t pid) { return ProcessRunning(pid); }

int StopProcess(pid_t pid, double timeout_s) {
  int status = 0;
  ::kill(pid, SIGTERM);
  if (!WaitProcess(pid, DurationFromSeconds(timeout_s), &status)) {
    KillProcess(pid);
    return -1;
  }
  return ExitCode(status);
}

int PickFreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

}  // namespace stepserve::testing
