#include "client/metrics_scrape.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include "subprocess.h"

namespace stepserve::client {
namespace {

constexpr char kExposition[] = R"(# HELP stepserve_request_success_total Finished requests.
# TYPE stepserve_request_success_total counter
stepserve_request_success_total{finish_reason="length"} 7
stepserve_request_success_total{finish_reason="eos"} 2
stepserve_request_failure_total{code="RESOURCE_EXHAUSTED"} 3
stepserve_request_failure_total{code="INVALID_ARGUMENT",note="a \"quoted\", value"} 1
stepserve_prompt_tokens_total 120
stepserve_generation_tokens_total 64 1700000000000
stepserve_time_to_first_token_seconds_bucket{le="+Inf"} 9
stepserve_kv_cache_usage_ratio 0.25

)";

TEST(MetricsScrapeTest, ParsesTheExpositionFormat) {
  std::vector<Sample> samples;
  std::string err;
  ASSERT_TRUE(ParsePrometheusText(kExposition, &samples, &err)) << err;
  ASSERT_EQ(samples.size(), 8u);
  EXPECT_EQ(samples[3].labels.at("note"), "a \"quoted\", value");
  EXPECT_EQ(samples[3].labels.at("code"), "INVALID_ARGUMENT");
  EXPECT_DOUBLE_EQ(SumMetric(samples, "stepserve_request_success_total"), 9);
  EXPECT_DOUBLE_EQ(SumMetric(samples, "stepserve_kv_cache_usage_ratio"), 0.25);
  EXPECT_DOUBLE_EQ(SumMetric(samples, "absent"), 0);
  const ServerCounters c = CountersFromSamples(samples);
  EXPECT_DOUBLE_EQ(c.request_success, 9);
  EXPECT_DOUBLE_EQ(c.request_failure, 4);
  EXPECT_DOUBLE_EQ(c.prompt_tokens, 120);
  EXPECT_DOUBLE_EQ(c.generation_tokens, 64);  // the timestamp is not the value
  EXPECT_DOUBLE_EQ(c.failures_by_code.at("RESOURCE_EXHAUSTED"), 3);

  ServerCounters before = c;
  before.request_success = 4;
  before.failures_by_code["RESOURCE_EXHAUSTED"] = 1;
  const ServerCounters d = Delta(c, before);
  EXPECT_DOUBLE_EQ(d.request_success, 5);
  EXPECT_DOUBLE_EQ(d.generation_tokens, 0);
  EXPECT_DOUBLE_EQ(d.failures_by_code.at("RESOURCE_EXHAUSTED"), 2);
  EXPECT_EQ(d.failures_by_code.count("INVALID_ARGUMENT"), 0u);
}

TEST(MetricsScrapeTest, PrefixCacheCountersWhenPresent) {
  std::vector<Sample> samples;
  std::string err;
  // Absent (a server from before prefix caching): nullopt, not 0.
  ASSERT_TRUE(ParsePrometheusText(kExposition, &samples, &err)) << err;
  ServerCounters old = CountersFromSamples(samples);
  EXPECT_FALSE(old.prefix_cache_queries.has_value());
  EXPECT_FALSE(old.prefix_cache_hits.has_value());
  EXPECT_FALSE(HasMetric(samples, "stepserve_prefix_cache_hits_total"));
  EXPECT_TRUE(HasMetric(samples, "stepserve_prompt_tokens_total"));

  ASSERT_TRUE(ParsePrometheusText(std::string(kExposition) +
                                      "# TYPE stepserve_prefix_cache_queries_total counter\n"
                                      "stepserve_prefix_cache_queries_total 400\n"
                                      "stepserve_prefix_cache_hits_total 0\n",
                                  &samples, &err))
      << err;
  const ServerCounters before = CountersFromSamples(samples);
  ASSERT_TRUE(before.prefix_cache_queries.has_value());
  ASSERT_TRUE(before.prefix_cache_hits.has_value());
  EXPECT_DOUBLE_EQ(*before.prefix_cache_queries, 400);
  EXPECT_DOUBLE_EQ(*before.prefix_cache_hits, 0) << "present at 0 is not absent";
  ServerCounters after = before;
  after.prefix_cache_queries = 1000;
  after.prefix_cache_hits = 240;
  const ServerCounters d = Delta(after, before);
  ASSERT_TRUE(d.prefix_cache_queries.has_value());
  EXPECT_DOUBLE_EQ(*d.prefix_cache_queries, 600);
  EXPECT_DOUBLE_EQ(*d.prefix_cache_hits, 240);
  EXPECT_DOUBLE_EQ(*PrefixCacheHitRate(d), 0.4);
  // Missing from either scrape (a server restarted into an older build, say): missing from the delta.
  EXPECT_FALSE(Delta(after, old).prefix_cache_queries.has_value());
  EXPECT_FALSE(Delta(old, before).prefix_cache_hits.has_value());
  EXPECT_FALSE(PrefixCacheHitRate(Delta(after, old)).has_value());
}

TEST(MetricsScrapeTest, RejectsMalformedLines) {
  std::vector<Sample> samples;
  std::string err;
  for (const char* bad : {"metric{a=\"1\" 3\n", "metric{a=1} 3\n", "metric notanumber\n", "metric{a=\"x} 1\n"}) {
    EXPECT_FALSE(ParsePrometheusText(bad, &samples, &err)) << bad;
    EXPECT_NE(err.find("line 1"), std::string::npos) << err;
  }
}

// A one-connection HTTP server on loopback that answers with `response` (or never, when empty).
class FakeHttpServer {
 public:
  explicit FakeHttpServer(std::string response) : response_(std::move(response)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(fd_, 1), 0);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      const int conn = ::accept(fd_, nullptr, nullptr);
      if (conn < 0) return;
      char buf[4096];
      std::string request;
      while (request.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = ::recv(conn, buf, sizeof(buf), 0);
        if (n <= 0) break;
        request.append(buf, static_cast<size_t>(n));
      }
      request_ = request;
      if (!response_.empty()) {
        ::send(conn, response_.data(), response_.size(), MSG_NOSIGNAL);
      } else {
        while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      ::close(conn);
    });
  }
  ~FakeHttpServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/metrics"; }
  const std::string& request() const { return request_; }

 private:
  std::string response_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::string request_;
  std::thread thread_;
};

TEST(MetricsScrapeTest, HttpGetReadsTheBody) {
  std::string body, err;
  {
    FakeHttpServer server("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello 1\n");
    ASSERT_TRUE(HttpGet(server.url(), 5, &body, &err)) << err;
    EXPECT_EQ(body, "hello 1\n");
  }
  {
    FakeHttpServer server("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab 1\r\n3\r\n\nc \r\n2\r\n2\n\r\n0\r\n\r\n");
    ASSERT_TRUE(HttpGet(server.url(), 5, &body, &err)) << err;
    EXPECT_EQ(body, "ab 1\nc 2\n");
    EXPECT_EQ(server.request().rfind("GET /metrics HTTP/1.0\r\n", 0), 0u) << server.request();
  }
  {
    FakeHttpServer server("HTTP/1.1 404 Not Found\r\n\r\nno");
    EXPECT_FALSE(HttpGet(server.url(), 5, &body, &err));
    EXPECT_NE(err.find("404"), std::string::npos) << err;
  }
}

TEST(MetricsScrapeTest, HttpGetGivesUpOnSilenceAndRefusal) {
  std::string body, err;
  {
    FakeHttpServer server("");  // accepts and never answers
    EXPECT_FALSE(HttpGet(server.url(), 0.5, &body, &err));
    EXPECT_NE(err.find("within"), std::string::npos) << err;
  }
  const int port = testing::PickFreePort();  // nothing listens there
  EXPECT_FALSE(HttpGet("http://127.0.0.1:" + std::to_string(port) + "/metrics", 5, &body, &err));
  EXPECT_NE(err.find("cannot connect"), std::string::npos) << err;
  EXPECT_FALSE(HttpGet("https://127.0.0.1:1/metrics", 5, &body, &err));
}

}  // namespace
}  // namespace stepserve::client
