// A stepserve server for the client tests: the real binary as a subprocess on free loopback ports,
// serving the embedded `tiny` model. Every wait is bounded.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "client/channel.h"

namespace stepserve::testing {

// True when the stepserve program is part of this build (STEPSERVE_BUILD_SERVER); the live tests skip
// otherwise. When it is part of the build, a missing or broken binary fails them.
bool ServerInBuild();

class LiveServer {
 public:
  // Starts the server and waits until grpc.health.v1 says SERVING (up to startup_timeout_s, three tries
  // on fresh ports when the process dies early, e.g. a port taken meanwhile). nullptr with a message.
  // `probe` holds the TLS settings the health probe needs (its target is filled in).
  static std::unique_ptr<LiveServer> Start(const std::vector<std::string>& extra_args, std::string* error,
                                           client::ChannelConfig probe = {}, double startup_timeout_s = 120);
  ~LiveServer();

  std::string target() const;       // 127.0.0.1:port
  std::string metrics_url() const;  // http://127.0.0.1:metrics_port/metrics
  int port() const { return port_; }
  std::string log() const;          // the server's output so far

 private:
  LiveServer() = default;
  pid_t pid_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
  std::string log_path_;
};

// A fixture whose test suite shares one live server, started before the suite and stopped after it.
// Its tests skip when the server is not part of the build and fail when it does not start.
class LiveServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  void SetUp() override;

  static LiveServer* server_;
  static std::string* start_error_;
};

}  // namespace stepserve::testing
