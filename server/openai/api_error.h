// An OpenAI-style API error: HTTP status plus the body {"error": {"message", "type", "param", "code"}}.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace stepserve::server::openai {

struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the request field at fault; empty: null
  std::string code;   // a short machine-readable reason; empty: null

  nlohmann::json ToJson() const;
};

ApiError BadRequest(const std::string& param, const std::string& message, const std::string& code = "invalid_value");

// A Status from the text front or the executor: INVALID_ARGUMENT / FAILED_PRECONDITION 400,
// NOT_FOUND 404, RESOURCE_EXHAUSTED 429, UNAVAILABLE 503, DEADLINE_EXCEEDED 504, others 500. The field the
// message names (FieldOfError) is translated by `rename` (proto names to the request's) into `param`.
ApiError FromStatus(const absl::Status& status, std::string (*rename)(const std::string& field, bool chat) = nullptr,
                    bool chat = false);

// The engine's field names in the OpenAI request's terms ("sampling.temperature" -> "temperature",
// "stopping.max_new_tokens" -> "max_tokens", "prompt_token_ids[3]" -> "prompt" or "messages", ...).
std::string OpenAiParamOf(const std::string& field, bool chat);

}  // namespace stepserve::server::openai
