// GenerateService::InstallCheckedHandlers: every StepServe method registered with a handler that takes the
// request as bytes (grpc::ByteBuffer, which cannot fail to deserialise), so that before the typed handler
// runs
//   1. the call is authenticated against the API keys: UNAUTHENTICATED otherwise (no method is left out: the
//      methods are taken from the service's descriptor, and a method without a case below aborts at start);
//   2. the body is parsed: one that does not parse gets INVALID_ARGUMENT with a message, counted in
//      stepserve_malformed_requests_total{method} and logged (rate-limited). gRPC 1.51's typed callback
//      handlers answer UNIMPLEMENTED with an empty message and count nothing.
// The handler classes are the ones the generated code uses (CallbackUnaryHandler,
// CallbackServerStreamingHandler), with grpc::ByteBuffer as the request type.
#include <cstdlib>
#include <string>

#include <google/protobuf/descriptor.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "server/generate_service.h"

namespace stepserve::server {
namespace {

// A stream that ends at once with `status` (refused before the typed handler).
class FinishedWriteReactor final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  explicit FinishedWriteReactor(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

LogRateLimiter& MalformedLog() {
  static LogRateLimiter limiter(10);
  return limiter;
}

LogRateLimiter& UnauthenticatedLog() {
  static LogRateLimiter limiter(10);
  return limiter;
}

// Parses `raw` into `message`; INVALID_ARGUMENT naming the method otherwise.
grpc::Status Parse(const grpc::ByteBuffer& raw, google::protobuf::Message* message, const std::string& method,
                   grpc::CallbackServerContext* context, ServerMetrics* metrics) {
  grpc::ByteBuffer copy(raw);  // the reader takes a non-const buffer
  bool parsed = false;
  {
    grpc::ProtoBufferReader reader(&copy);
    parsed = message->ParseFromZeroCopyStream(&reader);
  }
  if (parsed) return grpc::Status::OK;
  metrics->RecordMalformedRequest(method);
  int64_t suppressed = 0;
  if (MalformedLog().Allow(&suppressed)) {
    LogWarning("refused ", method, " call from ", LogSafe(context->peer()), ": INVALID_ARGUMENT: the ", raw.Length(),
               "-byte body is not a valid ", message->GetTypeName(), SuppressedNote(suppressed));
  }
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat("the request body (", raw.Length(), " bytes) is not a valid ",
                                   message->GetTypeName(), " message"));
}

template <typename Request, typename Response, typename Typed>
grpc::internal::MethodHandler* UnaryHandler(GenerateService* service, const std::string& method, ServerMetrics* metrics,
                                            Typed typed,
                                            std::function<grpc::Status(grpc::CallbackServerContext*, std::string*)> auth) {
  return new grpc::internal::CallbackUnaryHandler<grpc::ByteBuffer, Response>(
      [service, method, metrics, typed, auth](grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw,
                                              Response* response) -> grpc::ServerUnaryReactor* {
        std::string caller;
        grpc::Status status = auth(context, &caller);
        Request request;
        if (status.ok()) status = Parse(*raw, &request, method, context, metrics);
        if (!status.ok()) {
          grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
          reactor->Finish(status);
          return reactor;
        }
        // The typed unary handlers finish before they return: `request` outlives its use.
        return (service->*typed)(context, &request, response);
      });
}

}  // namespace

grpc::Status GenerateService::Authenticate(grpc::CallbackServerContext* context, const char* method,
                                           std::string* caller) {
  const ApiKeys* keys = api_keys_.load();
  if (keys == nullptr || !keys->enabled()) {
    *caller = context->peer();
    return grpc::Status::OK;
  }
  std::string_view header;
  const auto& metadata = context->client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    header = std::string_view(it->second.data(), it->second.size());
  }
  if (keys->Check(header, caller)) return grpc::Status::OK;
  metrics_->RecordUnauthenticated(method);
  int64_t suppressed = 0;
  if (UnauthenticatedLog().Allow(&suppressed)) {
    // Never the header: it may hold a key that is almost right.
    LogWarning("refused ", method, " call from ", LogSafe(context->peer()), ": UNAUTHENTICATED (",
               header.empty() ? "no authorization metadata" : "no valid API key", ")", SuppressedNote(suppressed));
  }
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      "a valid API key is required: metadata \"authorization: Bearer <key>\"");
}

void GenerateService::InstallCheckedHandlers() {
  const google::protobuf::ServiceDescriptor* descriptor =
      v1::GenerateRequest::descriptor()->file()->FindServiceByName("StepServe");
  if (descriptor == nullptr) {
    LogError("stepserve.v1.StepServe: no service descriptor");
    std::abort();
  }
  auto auth = [this](const char* method) {
    return [this, method](grpc::CallbackServerContext* context, std::string* caller) {
      return Authenticate(context, method, caller);
    };
  };
  for (int i = 0; i < descriptor->method_count(); ++i) {
    const google::protobuf::MethodDescriptor* m = descriptor->method(i);
    const std::string& name = m->name();
    if (name == "Generate") {
      MarkMethodCallback(i, new grpc::internal::CallbackServerStreamingHandler<grpc::ByteBuffer, v1::GenerateResponse>(
                                [this](grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* raw) -> grpc::ServerWriteReactor<v1::GenerateResponse>* {
                                  std::string caller;
                                  grpc::Status status = Authenticate(context, "Generate", &caller);
                                  v1::GenerateRequest request;
                                  if (status.ok()) status = Parse(*raw, &request, "Generate", context, metrics_);
                                  if (!status.ok()) {
                                    // Counted as a failed request, as every other refusal of Generate.
                                    metrics_->RecordFailure(static_cast<absl::StatusCode>(status.error_code()));
                                    return new FinishedWriteReactor(status);
                                  }
                                  // The reactor copies what it needs from `request` before this returns.
                                  return GenerateFor(context, &request, caller);
                                }));
    } else if (name == "GetModelInfo") {
      MarkMethodCallback(i, UnaryHandler<v1::GetModelInfoRequest, v1::ModelInfo>(
                                this, name, metrics_, &GenerateService::GetModelInfo, auth("GetModelInfo")));
    } else if (name == "Tokenize") {
      MarkMethodCallback(i, UnaryHandler<v1::TokenizeRequest, v1::TokenizeResponse>(
                                this, name, metrics_, &GenerateService::Tokenize, auth("Tokenize")));
    } else if (name == "Detokenize") {
      MarkMethodCallback(i, UnaryHandler<v1::DetokenizeRequest, v1::DetokenizeResponse>(
                                this, name, metrics_, &GenerateService::Detokenize, auth("Detokenize")));
    } else {
      // A new RPC must be added here, or it would run without the API-key check.
      LogError("stepserve.v1.StepServe.", name, " has no checked handler (server/checked_handlers.cc)");
      std::abort();
    }
  }
}

}  // namespace stepserve::server
