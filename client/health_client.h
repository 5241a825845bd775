// A client for the standard grpc.health.v1.Health/Check.
//
// Debian's gRPC packages ship no health.proto, and the server may register its own copy of the
// descriptors, so the two tiny messages are encoded by hand and sent through a generic stub.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <grpcpp/channel.h>
#include <grpcpp/support/status.h>

namespace stepserve::client {

enum class ServingStatus { kUnknown = 0, kServing = 1, kNotServing = 2, kServiceUnknown = 3 };

const char* ServingStatusName(ServingStatus status);

// Calls Health/Check for `service` ("" is the whole server) with the given deadline; never waits for
// the channel to become ready beyond that deadline.
grpc::Status CheckHealth(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                         std::chrono::system_clock::time_point deadline, ServingStatus* status);

// Wire encoding of HealthCheckRequest{service} and decoding of HealthCheckResponse; exposed for tests.
std::string EncodeHealthCheckRequest(const std::string& service);
bool DecodeHealthCheckResponse(const std::string& bytes, ServingStatus* status);

}  // namespace stepserve::client
