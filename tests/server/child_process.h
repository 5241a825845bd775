// Test helper: the stepserve program (or any program) as a child process, its log collected.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mutex>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "tests/server/server_test_util.h"

namespace stepserve::testing {

// A child process whose stderr (and, with capture_stdout, stdout) is collected by a reader thread.
class Child {
 public:
  explicit Child(const std::vector<std::string>& args, bool capture_stdout = false) {
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      dup2(fds[1], STDERR_FILENO);
      if (capture_stdout) {
        dup2(fds[1], STDOUT_FILENO);
      } else {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
      }
      close(fds[0]);
      close(fds[1]);
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    reader_ = std::thread([this, fd = fds[0]] {
      char buffer[4096];
      ssize_t n;
      while ((n = read(fd, buffer, sizeof(buffer))) > 0) {
        std::lock_guard<std::mutex> lock(mu_);
        output_.append(buffer, static_cast<size_t>(n));
      }
      close(fd);
    });
  }
  ~Child() {
    KillAndReap();
    // The workers write to the same pipe: the reader ends once they are gone too (PR_SET_PDEATHSIG).
    if (reader_.joinable()) reader_.join();
  }

  // SIGKILL unless it has exited (and been reaped) already.
  void KillAndReap() {
    if (exited_) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, &exit_status_, 0);
    exited_ = true;
  }
  std::string output() {
    std::lock_guard<std::mutex> lock(mu_);
    return output_;
  }
  void Signal(int sig) { kill(pid_, sig); }
  // The exit code, or -1 when it did not exit in time (or died of a signal).
  int WaitExit(absl::Duration timeout) {
    int status = 0;
    const bool done = WaitFor(
        [&] {
          if (exited_) return true;
          if (waitpid(pid_, &status, WNOHANG) == pid_) {
            exited_ = true;
            exit_status_ = status;
          }
          return exited_;
        },
        timeout);
    if (!done) return -1;
    return WIFEXITED(exit_status_) ? WEXITSTATUS(exit_status_) : -1;
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int exit_status_ = 0;
  std::mutex mu_;
  std::string output_;
  std::thread reader_;
};

// The gRPC port from stepserve's start-up log line, or 0 before it is logged.
inline int ParsePort(const std::string& log) {
  std::smatch match;
  static const std::regex kListening("gRPC listening on 127\\.0\\.0\\.1:([0-9]+)");
  if (std::regex_search(log, match, kListening)) return std::stoi(match[1]);
  return 0;
}

}  // namespace stepserve::testing
