#include "live_server.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "client/health_client.h"
#include "subprocess.h"

namespace stepserve::testing {

bool ServerInBuild() {
#ifdef STEPSERVE_BIN
  return true;
#else
  return false;
#endif
}

std::unique_ptr<LiveServer> LiveServer::Start(const std::vector<std::string>& extra_args, std::string* error,
                                              client::ChannelConfig probe, double startup_timeout_s) {
#ifndef STEPSERVE_BIN
  *error = "the stepserve target is not part of this build";
  return nullptr;
#else
  if (::access(STEPSERVE_BIN, X_OK) != 0) {
    *error = std::string("no executable ") + STEPSERVE_BIN;
    return nullptr;
  }
  const char* tmp = std::getenv("TMPDIR");
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::unique_ptr<LiveServer> server(new LiveServer());
    server->port_ = PickFreePort();
    server->metrics_port_ = PickFreePort();
    server->log_path_ = std::string(tmp ? tmp : "/tmp") + "/stepserve_client_test_" + std::to_string(::getpid()) +
                        "_" + std::to_string(server->port_) + ".log";
    std::vector<std::string> argv = {STEPSERVE_BIN, "--host=127.0.0.1", "--port=" + std::to_string(server->port_),
                                     "--metrics_port=" + std::to_string(server->metrics_port_), "--device=cpu",
                                     "--http_port=0"};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    server->pid_ = StartProcess(argv, server->log_path_);
    if (server->pid_ < 0) {
      *error = "cannot start " + std::string(STEPSERVE_BIN);
      return nullptr;
    }
    probe.target = server->target();
    const auto until = std::chrono::steady_clock::now() +
                       std::chrono::microseconds(static_cast<int64_t>(startup_timeout_s * 1e6));
    bool died = false;
    while (std::chrono::steady_clock::now() < until) {
      if (!ProcessAlive(server->pid_)) {
        died = true;
        break;
      }
      // A fresh channel each time: a channel that failed to connect waits out its reconnect backoff.
      std::shared_ptr<grpc::Channel> channel;
      if (grpc::Status s = client::MakeChannel(probe, &channel); !s.ok()) {
        *error = "health probe channel: " + s.error_message();
        return nullptr;
      }
      client::ServingStatus status;
      grpc::Status s = client::CheckHealth(channel, "", std::chrono::system_clock::now() + std::chrono::seconds(1),
                                           &status);
      if (s.ok() && status == client::ServingStatus::kServing) return server;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    *error = (died ? "stepserve exited during start-up" : "stepserve was not SERVING in time") +
             std::string("; its log:\n") + server->log();
    if (died) {
      server->pid_ = -1;
      continue;  // maybe a port collision: try fresh ports
    }
    return nullptr;  // the destructor stops it
  }
  return nullptr;
#endif
}

LiveServer::~LiveServer() {
  if (pid_ > 0) StopProcess(pid_, 30);
  if (!log_path_.empty()) ::unlink(log_path_.c_str());
}

std::string LiveServer::target() const { return "127.0.0.1:" + std::to_string(port_); }
std::string LiveServer::metrics_url() const {
  return "http://127.0.0.1:" + std::to_string(metrics_port_) + "/metrics";
}
std::string LiveServer::log() const { return ReadFile(log_path_); }

LiveServer* LiveServerTest::server_ = nullptr;
std::string* LiveServerTest::start_error_ = nullptr;

void LiveServerTest::SetUpTestSuite() {
  if (!ServerInBuild()) return;
  std::string error;
  server_ = LiveServer::Start({}, &error).release();
  if (server_ == nullptr) start_error_ = new std::string(error);
}

void LiveServerTest::TearDownTestSuite() {
  delete server_;
  server_ = nullptr;
}

void LiveServerTest::SetUp() {
  if (!ServerInBuild()) GTEST_SKIP() << "stepserve is not built in this configuration";
  ASSERT_NE(server_, nullptr) << (start_error_ ? *start_error_ : "");
}

}  // namespace stepserve::testing
