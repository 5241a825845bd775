// Helpers for the server tests: a real StepServeServer on loopback (free ports) with the tiny checkpoint,
// a real gRPC channel, bounded waits, /metrics over HTTP.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/channel.h>

#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "engine/executor.h"
#include "server/server.h"
#include "stepserve/v1/stepserve.grpc.pb.h"
#include "tests/server/prometheus_text.h"
#include "tests/test_util.h"

namespace stepserve::testing {

// tests/data/tiny/greedy.json (GreedyCases() of tests/test_util.h), read once.
const std::vector<GreedyCase>& Greedy();

struct TestServerOptions {
  ExecutorOptions executor;
  bool attach_executor = true;  // load the tiny model and attach it right away
  server::TlsOptions tls;
  // The text front of the tiny preset: the builtin tokenizer (its vocabulary, 300) and the builtin Step chat
  // template, served as model "tiny".
  bool text = false;
  bool http = false;  // the OpenAI HTTP front on a free port
  server::openai::HttpOptions http_options;  // threads, body limit, heartbeat (host and port are the test's)
  server::StreamFlowOptions stream_flow;  // backpressure, both fronts
  bool enable_reflection = false;
  const server::ApiKeys* api_keys = nullptr;  // not owned; null: no authentication
  TestServerOptions() { executor.kv_cache_bytes = 64ll << 20; }
};

class TestServer {
 public:
  // Starts on 127.0.0.1 with free ports; throws std::runtime_error on failure.
  explicit TestServer(const TestServerOptions& options = TestServerOptions());
  ~TestServer();

  void AttachExecutor();  // loads tests/data/tiny (fp32) and attaches an executor with options.executor
  server::StepServeServer& server() { return *server_; }
  Executor& executor() { return *server_->executor(); }
  std::string target() const;  // "127.0.0.1:PORT"
  int http_port() { return server_->http_port(); }
  std::shared_ptr<grpc::Channel> channel();
  std::unique_ptr<v1::StepServe::Stub> stub();
  std::unique_ptr<grpc::health::v1::Health::Stub> health_stub();

  std::string ScrapeMetricsHttp();  // GET /metrics over loopback; throws on a transport/HTTP error
  PrometheusText Metrics();          // scraped and parsed; throws when it does not parse

 private:
  TestServerOptions options_;
  std::unique_ptr<server::StepServeServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

struct GenerateResult {
  grpc::Status status;
  std::vector<int32_t> tokens;
  std::vector<v1::GenerateResponse> messages;
};

v1::GenerateRequest GreedyRequest(const std::vector<int32_t>& prompt, int max_new_tokens);
// A request that runs for a long time: ignore_eos and the largest max_new_tokens the context allows.
v1::GenerateRequest LongRequest(const std::vector<int32_t>& prompt, int64_t max_context);

// Runs one Generate to the end, with a deadline `timeout` from now.
GenerateResult RunGenerate(v1::StepServe::Stub* stub, const v1::GenerateRequest& request,
                           absl::Duration timeout = absl::Seconds(120));

// Polls `condition` every few milliseconds until it holds or `timeout` passes; returns its last value.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout = absl::Seconds(30));

// GET http://127.0.0.1:port/path; the body, or throws.
std::string HttpGet(int port, const std::string& path);

std::chrono::system_clock::time_point DeadlineIn(absl::Duration d);

}  // namespace stepserve::testing
