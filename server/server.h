// The stepserve gRPC server: StepServe, grpc.health.v1.Health, reflection, and Prometheus /metrics; and
// the OpenAI-compatible HTTP front (server/openai/) on its own port, on the same executor and text front.
// Used by main.cc and by the tests (port 0 picks a free port; port() reports it).
//
// Lifecycle: Start() binds and serves with health NOT_SERVING; AttachExecutor() (after the model is
// loaded and warmed up) switches to SERVING; Drain() goes NOT_SERVING, refuses new requests, lets the
// in-flight ones finish up to the timeout (the rest are aborted) and stops the gRPC server.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include <grpcpp/server.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/executor.h"
#include "server/api_keys.h"
#include "server/generate_service.h"
#include "server/health.h"
#include "server/metrics.h"
#include "server/openai/http_server.h"
#include "server/text_pipeline.h"

namespace stepserve::server {

inline constexpr char kStepServeServiceName[] = "stepserve.v1.StepServe";

struct TlsOptions {
  std::string cert_file;       // PEM certificate chain; TLS when set (with key_file)
  std::string key_file;        // PEM private key
  std::string client_ca_file;  // PEM roots; when set, clients must present a certificate they sign (mTLS)
};

struct ServerOptions {
  std::string host = "0.0.0.0";
  int port = 50051;          // 0: any free port
  int metrics_port = 9400;   // 0: any free port; < 0: no /metrics HTTP server
  std::string metrics_host;  // empty: same as host (stepserve's --metrics_host defaults to 127.0.0.1)
  bool enable_reflection = false;  // grpc.reflection.v1alpha (--enable_reflection)
  // API keys for every StepServe RPC and the HTTP front's routes (not owned; must outlive the server;
  // null: no authentication). Health and /metrics are exempt.
  const ApiKeys* api_keys = nullptr;
  TlsOptions tls;
  // The OpenAI HTTP front: < 0 off (the default here; stepserve's --http_port=8000 turns it on), 0 any free
  // port. Empty http_host: the same as host.
  int http_port = -1;
  std::string http_host;
  size_t http_max_body_bytes = 8u << 20;
  int http_threads = 64;
  int default_max_new_tokens = 256;  // for requests that leave stopping.max_new_tokens unset
  absl::Duration stream_grace = absl::Seconds(5);  // after the executor drained: time for the last writes
  // Backpressure on streams, both fronts (--max_stream_buffered_outputs, --stream_stall_timeout_s).
  StreamFlowOptions stream_flow;
};

class StepServeServer {
 public:
  static absl::StatusOr<std::unique_ptr<StepServeServer>> Start(const ServerOptions& options);
  ~StepServeServer();  // drains with a zero timeout when Drain() was not called

  // Takes the executor (its model loaded, warm-up done) and starts serving. `text`: the tokenizer and chat
  // template (null: none, token ids only); its model_name() names the model in the APIs (ModelInfo.model,
  // OpenAI `model`) and the info metric's label, `model_name` when `text` is null.
  absl::Status AttachExecutor(std::unique_ptr<Executor> executor, const std::string& model_name,
                              std::shared_ptr<TextPipeline> text = nullptr);

  // Health NOT_SERVING and new Generate calls refused with UNAVAILABLE; nothing else stops yet.
  void BeginDrain();
  // BeginDrain, then lets in-flight requests finish for up to `timeout` (the rest are aborted), waits for
  // their streams to end, and stops the gRPC server. Idempotent; returns when the server is stopped.
  void Drain(absl::Duration timeout);

  int port() const { return port_; }
  int metrics_port() const { return metrics_.http_port(); }
  int http_port() const { return http_ != nullptr ? http_->port() : 0; }  // 0 when the HTTP front is off
  openai::OpenAiHttpServer* http() { return http_.get(); }
  ServerMetrics& metrics() { return metrics_; }
  HealthService& health() { return health_; }
  GenerateService& generate_service() { return generate_; }
  Executor* executor() { return executor_.get(); }
  const ServerOptions& options() const { return options_; }

 private:
  explicit StepServeServer(const ServerOptions& options);

  ServerOptions options_;
  ServerMetrics metrics_;
  HealthService health_;
  GenerateService generate_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<openai::OpenAiHttpServer> http_;
  int port_ = 0;

  std::mutex drain_mu_;
  bool drained_ = false;
};

// "host:port", bracketing IPv6 literals.
std::string JoinHostPort(const std::string& host, int port);

}  // namespace stepserve::server
