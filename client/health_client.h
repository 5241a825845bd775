// A client for the standard grpc.health.v1.Health/Check (proto/grpc/health/v1/health.proto).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <grpcpp/channel.h>
#include <grpcpp/support/status.h>

namespace stepserve::client {

enum class ServingStatus { kUnknown = 0, kServing = 1, kNotServing = 2, kServiceUnknown = 3 };

const char* ServingStatusName(ServingStatus status);

// Calls Health/Check for `service` ("" is the whole server) with the given deadline; does not wait for
// a connection beyond a first failed attempt (wait_for_ready false) nor past the deadline.
grpc::Status CheckHealth(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                         std::chrono::system_clock::time_point deadline, ServingStatus* status);

}  // namespace stepserve::client
