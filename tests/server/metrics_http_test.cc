// The /metrics endpoint under idle, slow and flooding connections (issue #18: prometheus-cpp's civetweb
// server had 2 worker threads; two idle TCP connections blocked every scrape for 30 s and a slowloris of
// 2-50 connections made every scrape time out), and the HTTP limits of server/metrics_http.h.
#include "server/metrics_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/metrics.h"

namespace stepserve::testing {
namespace {

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads until the peer closes or `timeout` passes; *closed says which.
std::string ReadAll(int fd, absl::Duration timeout, bool* closed = nullptr) {
  std::string out;
  const absl::Time deadline = absl::Now() + timeout;
  if (closed != nullptr) *closed = false;
  while (absl::Now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now())) + 1) <= 0) continue;
    char buffer[65536];
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) {
      if (closed != nullptr) *closed = true;
      break;
    }
    out.append(buffer, static_cast<size_t>(n));
  }
  return out;
}

// One scrape on a new connection (Connection: close); the whole response, "" when none came within `timeout`.
std::string Scrape(int port, absl::Duration timeout, const std::string& request = "") {
  const int fd = Connect(port);
  if (fd < 0) return "";
  const std::string r =
      request.empty() ? std::string("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") : request;
  send(fd, r.data(), r.size(), MSG_NOSIGNAL);
  std::string out = ReadAll(fd, timeout);
  close(fd);
  return out;
}

// Reads one response of a keep-alive connection (headers and Content-Length bytes of body).
std::string ReadOneResponse(int fd, absl::Duration timeout) {
  std::string out;
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    const size_t end = out.find("\r\n\r\n");
    if (end != std::string::npos) {
      const size_t cl = out.find("Content-Length: ");
      const size_t length = cl == std::string::npos ? 0 : std::stoul(out.substr(cl + 16));
      const bool head = absl::StrContains(out.substr(0, end), "X-Head");
      if (head || out.size() >= end + 4 + length) return out;
    }
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    char buffer[65536];
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  return out;
}

// The probe: 10 idle connections and 50 that send a request line one byte at a time, while scrapes go on.
TEST(MetricsHttpTest, IdleAndSlowlorisConnectionsDoNotStarveScrapes) {
  server::ServerMetrics metrics;
  ASSERT_TRUE(metrics.StartHttp("127.0.0.1:0").ok());
  const int port = metrics.http_port();
  ASSERT_GT(port, 0);

  std::vector<int> idle;
  for (int i = 0; i < 10; ++i) idle.push_back(Connect(port));
  std::vector<int> slow;
  for (int i = 0; i < 50; ++i) slow.push_back(Connect(port));
  std::atomic<bool> stop{false};
  std::thread slowloris([&] {
    const std::string line = "GET /metrics HTTP/1.1\r\nHost: slow\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for (size_t i = 0; !stop && i < line.size(); ++i) {
      for (int fd : slow) send(fd, &line[i], 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });

  const absl::Time end = absl::Now() + absl::Seconds(4);
  int scrapes = 0;
  while (absl::Now() < end) {
    const absl::Time start = absl::Now();
    const std::string response = Scrape(port, absl::Seconds(3));
    const absl::Duration took = absl::Now() - start;
    ASSERT_TRUE(absl::StartsWith(response, "HTTP/1.1 200")) << "scrape " << scrapes << " got \"" << response.substr(0, 80)
                                                            << "\" after " << took;
    EXPECT_TRUE(absl::StrContains(response, "stepserve_num_requests_running"));
    EXPECT_LT(took, absl::Seconds(2)) << "scrape " << scrapes;
    ++scrapes;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_GE(scrapes, 5);
  stop = true;
  slowloris.join();
  for (int fd : idle) close(fd);
  for (int fd : slow) close(fd);
}

TEST(MetricsHttpTest, SlowRequestsTimeOutAndIdleConnectionsClose) {
  server::MetricsHttpOptions options;
  options.request_timeout = absl::Milliseconds(300);
  options.idle_timeout = absl::Milliseconds(600);
  options.max_connections = 8;
  auto http = server::MetricsHttpServer::Start("127.0.0.1:0", [] { return std::string("m 1\n"); }, options);
  ASSERT_TRUE(http.ok()) << http.status();
  const int port = (*http)->port();

  // A request that never completes: 408 and closed, soon after the request timeout.
  const int partial = Connect(port);
  send(partial, "GET /met", 8, MSG_NOSIGNAL);
  bool closed = false;
  absl::Time start = absl::Now();
  std::string response = ReadAll(partial, absl::Seconds(5), &closed);
  EXPECT_TRUE(closed);
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 408")) << response;
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  close(partial);

  // An idle connection is closed after the idle timeout.
  const int idle = Connect(port);
  start = absl::Now();
  response = ReadAll(idle, absl::Seconds(5), &closed);
  EXPECT_TRUE(closed);
  EXPECT_EQ(response, "");
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(400));
  close(idle);

}

TEST(MetricsHttpTest, AFloodOfSlowConnectionsIsCappedAndScrapesAnswer) {
  server::MetricsHttpOptions options;
  options.max_connections = 8;  // request timeout 10 s: only the cap closes connections here
  auto http = server::MetricsHttpServer::Start("127.0.0.1:0", [] { return std::string("m 1\n"); }, options);
  ASSERT_TRUE(http.ok()) << http.status();
  const int port = (*http)->port();
  // 30 slow connections against a cap of 8: the oldest are closed to make room, scrapes answer.
  std::vector<int> flood;
  for (int i = 0; i < 30; ++i) {
    flood.push_back(Connect(port));
    send(flood.back(), "G", 1, MSG_NOSIGNAL);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const std::string response = Scrape(port, absl::Seconds(2));
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 200")) << response;
  EXPECT_TRUE(absl::StrContains(response, "\r\n\r\nm 1\n")) << response;
  int closed_by_server = 0;
  for (int fd : flood) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 200) > 0) {
      char c;
      const ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno == ECONNRESET)) ++closed_by_server;
    }
    close(fd);
  }
  EXPECT_GE(closed_by_server, 22);
}

TEST(MetricsHttpTest, KeepAliveHeadNotFoundMethodAndHeaderLimits) {
  auto http = server::MetricsHttpServer::Start("127.0.0.1:0", [] { return std::string("m 1\n"); });
  ASSERT_TRUE(http.ok()) << http.status();
  const int port = (*http)->port();

  const int fd = Connect(port);
  for (int i = 0; i < 3; ++i) {
    const std::string get = "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n";
    send(fd, get.data(), get.size(), MSG_NOSIGNAL);
    const std::string response = ReadOneResponse(fd, absl::Seconds(3));
    EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 200 OK")) << i << ": " << response;
    EXPECT_TRUE(absl::StrContains(response, "Content-Type: text/plain; version=0.0.4")) << response;
    EXPECT_TRUE(absl::StrContains(response, "Connection: keep-alive")) << response;
    EXPECT_TRUE(absl::EndsWith(response, "\r\n\r\nm 1\n")) << response;
  }
  close(fd);

  std::string response = Scrape(port, absl::Seconds(3), "HEAD /metrics HTTP/1.1\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 200")) << response;
  EXPECT_TRUE(absl::EndsWith(response, "\r\n\r\n")) << response;  // no body
  response = Scrape(port, absl::Seconds(3), "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 404")) << response;
  response = Scrape(port, absl::Seconds(3), "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 405")) << response;
  response = Scrape(port, absl::Seconds(3), "garbage\r\n\r\n");
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 400")) << response;
  response = Scrape(port, absl::Seconds(3), "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(40000, 'a'));
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 431")) << response;
  // HTTP/1.0 without keep-alive: closed after the response.
  response = Scrape(port, absl::Seconds(3), "GET /metrics HTTP/1.0\r\n\r\n");
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 200")) << response;
  EXPECT_TRUE(absl::StrContains(response, "Connection: close")) << response;
}

TEST(MetricsHttpTest, BadAddressesAreErrors) {
  auto render = [] { return std::string(); };
  EXPECT_FALSE(server::MetricsHttpServer::Start("127.0.0.1", render).ok());
  EXPECT_FALSE(server::MetricsHttpServer::Start("127.0.0.1:99999", render).ok());
  EXPECT_FALSE(server::MetricsHttpServer::Start("256.1.1.1:0", render).ok());
  auto v6 = server::MetricsHttpServer::Start("[::1]:0", render);
  if (v6.ok()) EXPECT_GT((*v6)->port(), 0);  // where the machine has IPv6 loopback
}

}  // namespace
}  // namespace stepserve::testing
