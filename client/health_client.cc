#include "client/health_client.h"

#include <grpcpp/client_context.h>

#include "grpc/health/v1/health.grpc.pb.h"

namespace stepserve::client {

const char* ServingStatusName(ServingStatus status) {
  switch (status) {
    case ServingStatus::kServing: return "SERVING";
    case ServingStatus::kNotServing: return "NOT_SERVING";
    case ServingStatus::kServiceUnknown: return "SERVICE_UNKNOWN";
    default: return "UNKNOWN";
  }
}

grpc::Status CheckHealth(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                         std::chrono::system_clock::time_point deadline, ServingStatus* status) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline);
  ctx.set_wait_for_ready(false);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status result = stub->Check(&ctx, request, &response);
  if (!result.ok()) return result;
  const int value = static_cast<int>(response.status());
  *status = value >= 0 && value <= 3 ? static_cast<ServingStatus>(value) : ServingStatus::kUnknown;
  return grpc::Status::OK;
}

}  // namespace stepserve::client
