// The /metrics HTTP endpoint: one thread multiplexing every connection with poll(2), so no number of idle,
// slow or stalled connections can keep a scrape from being answered (prometheus-cpp's civetweb Exposer gave
// each connection one of 2 worker threads for up to 30 s: two idle sockets blocked every scrape).
//
// Limits (MetricsHttpOptions): a connection must send a whole request header within request_timeout of its
// first byte (408 and close otherwise) and the first byte within idle_timeout of being accepted or of its
// previous response (closed otherwise); a response must be taken by the client within request_timeout;
// headers beyond max_request_bytes get 431; a connection serves at most max_requests_per_connection
// requests (keep-alive) before it is closed; beyond max_connections open connections the one that has been
// waiting longest for a complete request is closed to make room, so a flood of slow connections costs a
// scrape nothing but the time to accept it.
//
// GET or HEAD /metrics (any query string) answers 200 with `render()`'s text; other paths 404, other methods
// 405.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace stepserve::server {

struct MetricsHttpOptions {
  absl::Duration request_timeout = absl::Seconds(10);
  absl::Duration idle_timeout = absl::Seconds(60);
  size_t max_request_bytes = 16 << 10;
  int max_connections = 512;
  int max_requests_per_connection = 1000;
};

class MetricsHttpServer {
 public:
  using Render = std::function<std::string()>;

  // Binds "host:port" ("[v6]:port"; port 0: any free one) and starts the thread.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& address, Render render,
                                                                   const MetricsHttpOptions& options = {});
  ~MetricsHttpServer();  // stops the thread, closes every connection and the port

  int port() const { return port_; }

 private:
  struct Connection;
  MetricsHttpServer(Render render, const MetricsHttpOptions& options);
  void Loop();

  const Render render_;
  const MetricsHttpOptions options_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  int port_ = 0;
  std::thread thread_;
};

}  // namespace stepserve::server
