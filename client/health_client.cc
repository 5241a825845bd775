#include "client/health_client.h"

#include <condition_variable>
#include <mutex>
#include <vector>

#include <grpcpp/client_context.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>

namespace stepserve::client {
namespace {

void PutVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

bool GetVarint(const std::string& s, size_t* pos, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && *pos < s.size(); shift += 7) {
    const uint8_t b = static_cast<uint8_t>(s[(*pos)++]);
    *v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

}  // namespace

const char* ServingStatusName(ServingStatus status) {
  switch (status) {
    case ServingStatus::kServing: return "SERVING";
    case ServingStatus::kNotServing: return "NOT_SERVING";
    case ServingStatus::kServiceUnknown: return "SERVICE_UNKNOWN";
    default: return "UNKNOWN";
  }
}

std::string EncodeHealthCheckRequest(const std::string& service) {
  std::string out;
  if (service.empty()) return out;  // proto3 omits default values
  out.push_back(0x0a);              // field 1, length-delimited
  PutVarint(service.size(), &out);
  out += service;
  return out;
}

bool DecodeHealthCheckResponse(const std::string& bytes, ServingStatus* status) {
  *status = ServingStatus::kUnknown;
  size_t pos = 0;
  while (pos < bytes.size()) {
    uint64_t tag = 0;
    if (!GetVarint(bytes, &pos, &tag)) return false;
    const uint64_t field = tag >> 3;
    const int wire = static_cast<int>(tag & 7);
    uint64_t v = 0;
    switch (wire) {
      case 0:
        if (!GetVarint(bytes, &pos, &v)) return false;
        if (field == 1) *status = v <= 3 ? static_cast<ServingStatus>(v) : ServingStatus::kUnknown;
        break;
      case 1:
        if (pos + 8 > bytes.size()) return false;
        pos += 8;
        break;
      case 2:
        if (!GetVarint(bytes, &pos, &v) || v > bytes.size() - pos) return false;
        pos += v;
        break;
      case 5:
        if (pos + 4 > bytes.size()) return false;
        pos += 4;
        break;
      default:
        return false;
    }
  }
  return true;
}

grpc::Status CheckHealth(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                         std::chrono::system_clock::time_point deadline, ServingStatus* status) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline);
  ctx.set_wait_for_ready(false);
  const std::string encoded = EncodeHealthCheckRequest(service);
  grpc::Slice slice(encoded);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;

  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status result;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) {
                   std::lock_guard<std::mutex> lock(mu);
                   result = std::move(s);
                   done = true;
                   cv.notify_all();
                 });
  {
    // The deadline on the context bounds the call; gRPC always runs the callback.
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
  }
  if (!result.ok()) return result;
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return {grpc::StatusCode::INTERNAL, "cannot read the health response"};
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (!DecodeHealthCheckResponse(bytes, status)) {
    return {grpc::StatusCode::INTERNAL, "malformed grpc.health.v1.HealthCheckResponse"};
  }
  return grpc::Status::OK;
}

}  // namespace stepserve::client
