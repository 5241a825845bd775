#include "server/openai/api_error.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/text_pipeline.h"

namespace stepserve::server::openai {

nlohmann::json ApiError::ToJson() const {
  nlohmann::json error = {{"message", message},
                          {"type", type},
                          {"param", param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param)},
                          {"code", code.empty() ? nlohmann::json(nullptr) : nlohmann::json(code)}};
  return {{"error", std::move(error)}};
}

ApiError BadRequest(const std::string& param, const std::string& message, const std::string& code) {
  ApiError e;
  e.http_status = 400;
  e.param = param;
  e.message = param.empty() ? message : absl::StrCat(param, ": ", message);
  e.code = code;
  return e;
}

std::string OpenAiParamOf(const std::string& field, bool chat) {
  if (absl::StartsWith(field, "sampling.")) return field.substr(9);
  if (field == "stopping.max_new_tokens") return chat ? "max_completion_tokens" : "max_tokens";
  if (absl::StartsWith(field, "stopping.")) return field.substr(9);
  if (absl::StartsWith(field, "prompt_token_ids")) return chat ? "messages" : "prompt";
  if (field == "logprobs") return chat ? "top_logprobs" : "logprobs";
  if (field == "request_id") return "";
  return field;
}

ApiError FromStatus(const absl::Status& status, std::string (*rename)(const std::string& field, bool chat), bool chat) {
  ApiError e;
  e.message = std::string(status.message());
  std::string field = FieldOfError(status);
  if (!field.empty() && rename != nullptr) {
    const std::string param = rename(field, chat);
    if (param != field && !param.empty()) e.message = absl::StrCat(param, e.message.substr(field.size()));
    field = param;
  }
  e.param = field;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kAlreadyExists:
      e.http_status = 400;
      e.code = "invalid_value";
      break;
    case absl::StatusCode::kFailedPrecondition:
      e.http_status = 400;
      e.code = "unsupported";
      break;
    case absl::StatusCode::kNotFound:
      e.http_status = 404;
      e.code = "not_found";
      break;
    case absl::StatusCode::kResourceExhausted:
      e.http_status = 429;
      e.type = "rate_limit_error";
      e.code = "queue_full";
      break;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kAborted:
      e.http_status = 503;
      e.type = "service_unavailable_error";
      e.code = "unavailable";
      break;
    case absl::StatusCode::kDeadlineExceeded:
      e.http_status = 504;
      e.type = "timeout_error";
      e.code = "deadline_exceeded";
      break;
    case absl::StatusCode::kCancelled:
      e.http_status = 499;
      e.type = "cancelled";
      e.code = "cancelled";
      break;
    default:
      e.http_status = 500;
      e.type = "server_error";
      e.code = "internal_error";
      break;
  }
  return e;
}

}  // namespace stepserve::server::openai
