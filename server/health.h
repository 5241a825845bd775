// The standard grpc.health.v1.Health service (Check and Watch) on the callback API, with statuses set by
// the server: NOT_SERVING until the model is loaded and warmed up, SERVING after, NOT_SERVING while
// draining. Services never registered get NOT_FOUND from Check and SERVICE_UNKNOWN from Watch.
#pragma once

#include <map>
#include <mutex>
#include <set>
#include <string>

#include "grpc/health/v1/health.grpc.pb.h"

namespace stepserve::server {

class HealthService final : public grpc::health::v1::Health::CallbackService {
 public:
  using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

  HealthService() = default;
  ~HealthService() override;

  // Registers (or updates) a service name; "" is the whole server.
  void SetStatus(const std::string& service, ServingStatus status);
  // Sets every registered service.
  void SetAll(ServingStatus status);
  // Ends every open Watch stream (after the status already queued is written) and refuses new ones;
  // call before shutting the gRPC server down.
  void Shutdown();

  // NOT_FOUND-free lookup for tests; SERVICE_UNKNOWN when not registered.
  ServingStatus GetStatus(const std::string& service) const;

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context,
                                  const grpc::health::v1::HealthCheckRequest* request,
                                  grpc::health::v1::HealthCheckResponse* response) override;
  grpc::ServerWriteReactor<grpc::health::v1::HealthCheckResponse>* Watch(
      grpc::CallbackServerContext* context, const grpc::health::v1::HealthCheckRequest* request) override;

 private:
  class WatchReactor;
  friend class WatchReactor;

  ServingStatus StatusLocked(const std::string& service) const;
  void Unregister(WatchReactor* watcher);

  mutable std::mutex mu_;
  std::map<std::string, ServingStatus> statuses_;
  std::set<WatchReactor*> watchers_;
  bool shutdown_ = false;
};

}  // namespace stepserve::server
