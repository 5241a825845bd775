// stepserve.v1.StepServe on the gRPC callback API: Generate streams the executor's outputs through a
// ServerWriteReactor (no thread per stream), GetModelInfo describes the loaded model.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/executor.h"
#include "server/metrics.h"
#include "server/proto_conversion.h"
#include "stepserve/v1/stepserve.grpc.pb.h"

namespace stepserve::server {

// absl::Status -> grpc::Status (the code numbers are the same).
grpc::Status ToGrpcStatus(const absl::Status& status);

class GenerateService final : public v1::StepServe::CallbackService {
 public:
  explicit GenerateService(ServerMetrics* metrics);
  ~GenerateService() override;

  // Starts serving with `executor` (not owned; it must outlive every stream, i.e. the gRPC server).
  // Until then Generate and GetModelInfo answer UNAVAILABLE.
  void Attach(Executor* executor, const v1::ModelInfo& info, const RequestDefaults& defaults);
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

 private:
  class GenerateReactor;
  friend class GenerateReactor;

  void StreamStarted();
  void StreamEnded();

  ServerMetrics* const metrics_;
  std::atomic<bool> draining_{false};
  // Ids of requests that come without one: "stepserve-N", the only request-id scheme (the executor assigns
  // none; its validator refuses an empty id).
  std::atomic<uint64_t> next_request_number_{1};

  mutable std::mutex mu_;
  std::condition_variable idle_cv_;
  Executor* executor_ = nullptr;
  v1::ModelInfo model_info_;
  RequestDefaults defaults_;
  int active_streams_ = 0;
};

}  // namespace stepserve::server
