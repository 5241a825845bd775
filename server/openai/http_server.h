// The OpenAI-compatible HTTP front (cpp-httplib): POST /v1/chat/completions and /v1/completions
// (JSON, or server-sent events with stream: true), GET /v1/models, POST /tokenize and /detokenize (vLLM's
// shapes), GET /health. It calls the same executor and text front as the gRPC service.
//
// Threads: cpp-httplib runs each connection on a worker of a fixed pool, and a request holds its worker
// until its response is written (a stream until its last event), as does an idle keep-alive connection
// between requests (up to 5 s). So the pool bounds the requests in progress over HTTP; connections beyond
// it wait in the pool's queue (accepted, not refused). HttpOptions::threads sizes it.
//
// Lifecycle as the gRPC server's: bound at Start (requests get 503 until Attach), Attach starts serving,
// BeginDrain refuses new requests (503) and /health turns 503, Stop closes the port after the streams
// ended (WaitForIdle).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/executor.h"
#include "server/api_keys.h"
#include "server/metrics.h"
#include "server/proto_conversion.h"
#include "server/text_pipeline.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace stepserve::server::openai {

struct HttpOptions {
  std::string host = "0.0.0.0";
  int port = 8000;                      // 0: any free port
  size_t max_body_bytes = 8u << 20;     // larger request bodies get 413
  int threads = 64;                     // the worker pool (see above)
  absl::Duration heartbeat = absl::Seconds(1);  // an idle stream writes an SSE comment this often
  // Backpressure (server/generate_service.h: StreamFlowOptions, the same flags): a sequence with this many
  // outputs its stream has not written yet is paused; a socket write that makes no progress for the stall
  // timeout (the client reads nothing) fails, which ends the stream and cancels its sequences.
  int max_stream_buffered_outputs = 256;
  absl::Duration stream_stall_timeout = absl::Seconds(60);  // InfiniteDuration: httplib's write timeout of 5 s
  // API keys (not owned; null or disabled: none): every route but /health needs "Authorization: Bearer KEY",
  // 401 with the OpenAI error JSON (code "invalid_api_key") otherwise.
  const ApiKeys* api_keys = nullptr;
};

class OpenAiHttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<OpenAiHttpServer>> Start(const HttpOptions& options, ServerMetrics* metrics);
  ~OpenAiHttpServer();

  void Attach(Executor* executor, std::shared_ptr<const TextPipeline> text, const RequestDefaults& defaults);
  void BeginDrain();
  // Waits until no completion request is in progress, up to `deadline`. True when idle.
  bool WaitForIdle(absl::Time deadline);
  void Stop();  // idempotent

  int port() const { return port_; }
  int active_requests() const;

 private:
  struct Serving {
    Executor* executor = nullptr;
    std::shared_ptr<const TextPipeline> text;
    RequestDefaults defaults;
  };

  OpenAiHttpServer(const HttpOptions& options, ServerMetrics* metrics);
  void Route();
  // What serves now; UNAVAILABLE while loading or draining.
  absl::StatusOr<Serving> Current() const;

  void HandleHealth(const httplib::Request& req, httplib::Response& res);
  void HandleModels(const httplib::Request& req, httplib::Response& res);
  void HandleTokenize(const httplib::Request& req, httplib::Response& res);
  void HandleDetokenize(const httplib::Request& req, httplib::Response& res);
  void HandleCompletion(const httplib::Request& req, httplib::Response& res, bool chat);

  void RequestStarted();
  void RequestEnded();

  HttpOptions options_;
  ServerMetrics* const metrics_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<uint64_t> next_id_{1};
  const std::string id_salt_;  // makes response ids unique across restarts

  mutable std::mutex mu_;
  std::condition_variable idle_cv_;
  Serving serving_;
  bool attached_ = false;
  bool draining_ = false;
  bool stopped_ = false;
  int active_ = 0;
};

}  // namespace stepserve::server::openai
