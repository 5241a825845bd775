// Test helper: the stepserve program (or any program) as a child process, its log collected.
#pragma once

#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <mutex>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "common/subprocess.h"

namespace stepserve::testing {

// A child process whose stderr (and, with capture_stdout, stdout) is collected by a reader thread.
class Child {
 public:
  explicit Child(const std::vector<std::string>& args, bool capture_stdout = false) {
    SpawnOptions options;
    if (capture_stdout) {
      options.stdout_to = ChildOutput::kPipe;
      options.stderr_to = ChildOutput::kAsStdout;
    } else {
      options.stdout_to = ChildOutput::kNull;
      options.stderr_to = ChildOutput::kPipe;
    }
    auto child = SpawnProcess(args, options);
    if (!child.ok()) throw std::runtime_error(std::string(child.status().message()));
    pid_ = child->pid;
    reader_ = std::thread([this, fd = capture_stdout ? child->stdout_pipe : child->stderr_pipe] {
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
    exit_status_ = KillProcess(pid_);
    exited_ = true;
  }
  std::string output() {
    std::lock_guard<std::mutex> lock(mu_);
    return output_;
  }
  void Signal(int sig) { kill(pid_, sig); }
  // The exit code, or -1 when it did not exit in time (or died of a signal).
  int WaitExit(absl::Duration timeout) {
    if (!exited_ && WaitProcess(pid_, timeout, &exit_status_)) exited_ = true;
    if (!exited_) return -1;
    return ExitCode(exit_status_);
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
