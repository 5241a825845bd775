// stepserve.v1.StepServe on the gRPC callback API: Generate streams the executor's outputs through a
// ServerWriteReactor (no thread per stream), GetModelInfo describes the loaded model.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "engine/executor.h"
#include "server/api_keys.h"
#include "server/metrics.h"
#include "server/proto_conversion.h"
#include "server/text_output.h"
#include "server/text_pipeline.h"
#include "stepserve/v1/stepserve.grpc.pb.h"

namespace stepserve::server {

// absl::Status -> grpc::Status (the code numbers are the same).
grpc::Status ToGrpcStatus(const absl::Status& status);

// Backpressure on Generate streams (docs/server.md, --max_stream_buffered_outputs and --stream_stall_timeout_s).
// gRPC's write completion means a response reached the transport; a client that does not read stops opening
// its HTTP/2 flow-control window, the transport stops taking writes, and the stream's responses pile up in
// its queue. At max_buffered_outputs the stream's request is paused in the executor (Executor::Pause: no
// more tokens) and resumed once the client has taken half of them. A write that has not completed for
// stall_timeout ends the stream with RESOURCE_EXHAUSTED (the request cancelled, its KV blocks freed, the
// queued responses dropped; the call is cancelled with that status, so that the client gets it at once,
// ahead of the responses it did not read); should gRPC still not be done with the stream reset_grace later,
// it is reset.
struct StreamFlowOptions {
  int max_buffered_outputs = 256;                   // >= 1
  absl::Duration stall_timeout = absl::Seconds(60);  // InfiniteDuration: never
  absl::Duration reset_grace = absl::Seconds(5);
};

class GenerateService final : public v1::StepServe::CallbackService {
 public:
  explicit GenerateService(ServerMetrics* metrics);
  ~GenerateService() override;

  // Set before serving (streams started later use it).
  void SetStreamFlowOptions(const StreamFlowOptions& options);
  StreamFlowOptions stream_flow_options() const;

  // Starts serving with `executor` (not owned; it must outlive every stream, i.e. the gRPC server) and the
  // text front `text` (never null; it may hold no tokenizer). Until then every RPC answers UNAVAILABLE.
  void Attach(Executor* executor, const v1::ModelInfo& info, const RequestDefaults& defaults,
              std::shared_ptr<const TextPipeline> text);
  // Who may call: every StepServe RPC answers UNAUTHENTICATED unless `keys` accepts the call's
  // "authorization" metadata (not owned; it must outlive the service; null or disabled: no check). Set before
  // serving.
  void SetApiKeys(const ApiKeys* keys) { api_keys_.store(keys); }
  // From now on Generate answers UNAVAILABLE; streams already admitted go on.
  void BeginDrain();
  bool draining() const { return draining_.load(); }

  // Waits until no Generate stream is left (all finished and done), up to `deadline`. True when idle.
  bool WaitForIdle(absl::Time deadline);
  int active_streams() const;

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(grpc::CallbackServerContext* context,
                                                           const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context, const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context, const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override;

 private:
  class GenerateReactor;
  friend class GenerateReactor;

  void StreamStarted();
  void StreamEnded();
  // The stall watchdog: every stream is registered while it lives; a thread checks them a few times per
  // stall timeout (GenerateReactor::CheckStall).
  void RegisterStream(GenerateReactor* reactor);
  void UnregisterStream(GenerateReactor* reactor);
  void WatchStalls();
  // server/checked_handlers.cc: every StepServe method takes its request as bytes, so that the call is
  // authenticated (UNAUTHENTICATED) and a body that does not parse gets INVALID_ARGUMENT with a message
  // (gRPC's typed callback handlers answer UNIMPLEMENTED with none), counted and logged; then the typed
  // handler above runs. Called by the constructor.
  void InstallCheckedHandlers();
  // OK, or UNAUTHENTICATED; *caller: who called, for the request-id scope ("key:<hash>" with API keys, else
  // the peer address).
  grpc::Status Authenticate(grpc::CallbackServerContext* context, const char* method, std::string* caller);
  grpc::ServerWriteReactor<v1::GenerateResponse>* GenerateFor(grpc::CallbackServerContext* context,
                                                              const v1::GenerateRequest* request,
                                                              const std::string& caller);
  // Client-chosen request ids are unique among one caller's requests in flight (not across callers: the
  // executor's ids are the server's own, "stepserve-N", for every request).
  bool ClaimClientRequestId(const std::string& caller, const std::string& id);
  void ReleaseClientRequestId(const std::string& caller, const std::string& id);
  // Refusals a client can provoke at will are logged at most this often.
  LogRateLimiter& refusal_log() { return refusal_log_; }
  // The attached text front and executor, or UNAVAILABLE before Attach.
  absl::Status Attached(std::shared_ptr<const TextPipeline>* text, Executor** executor = nullptr) const;

  ServerMetrics* const metrics_;
  std::atomic<bool> draining_{false};
  // The executor's id of every gRPC request: "stepserve-N", a space no client reaches (a client-chosen
  // request_id is only echoed back; the executor assigns no ids, its validator refuses an empty one).
  std::atomic<uint64_t> next_request_number_{1};
  std::atomic<const ApiKeys*> api_keys_{nullptr};
  std::mutex ids_mu_;
  std::set<std::pair<std::string, std::string>> client_ids_;  // (caller, client request_id) in flight
  LogRateLimiter refusal_log_{10};

  mutable std::mutex mu_;
  std::condition_variable idle_cv_;
  Executor* executor_ = nullptr;
  v1::ModelInfo model_info_;
  RequestDefaults defaults_;
  std::shared_ptr<const TextPipeline> text_;
  int active_streams_ = 0;
  StreamFlowOptions flow_;  // under mu_

  std::mutex streams_mu_;  // never taken under a reactor's lock
  std::condition_variable watchdog_cv_;
  std::set<GenerateReactor*> streams_;
  bool stopping_ = false;  // under streams_mu_
  LogRateLimiter stall_log_{10};
  std::thread watchdog_;
};

}  // namespace stepserve::server
