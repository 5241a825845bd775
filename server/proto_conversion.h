// Between the API (stepserve.v1) and the engine: a proto GenerateRequest -> the executor's
// GenerationRequest, and the engine's finish reason -> the API's (and its one name).
//
// The request: a pure conversion, unit-tested without a
// server: it checks nothing, because every field the proto can carry has a GenerationRequest counterpart
// of the same type (no oneof, no required message, no narrowing), so there is no error only the proto can
// have. The one validator is the model core's (engine/request_validation.h), which Executor::Submit runs:
// the server relies on Submit's status (INVALID_ARGUMENT naming the proto field).
#pragma once

#include <cstdint>
#include <string>

#include "engine/generation.h"
#include "stepserve/v1/stepserve.pb.h"

namespace stepserve::server {

// What the conversion needs to fill in an unset stopping.max_new_tokens.
struct RequestDefaults {
  int default_max_new_tokens = 256;  // used when stopping.max_new_tokens is unset ...
  int max_new_tokens_cap = 4096;     // ... capped to this ...
  int64_t max_context = 0;           // ... and to the room the prompt leaves in this context (but at least 1)
};

// Unset optional fields take the defaults of engine/generation.h; an unset max_new_tokens becomes
// max(1, min(default_max_new_tokens, max_new_tokens_cap, max_context - prompt length)). Out-of-range values
// are copied as they are, for Executor::Submit to refuse. `request_id` is copied as is: the caller assigns
// one when it is empty (server/generate_service.cc).
GenerationRequest ToGenerationRequest(const v1::GenerateRequest& proto, const RequestDefaults& defaults);

// The engine's finish reason in the API; kNone is FINISH_REASON_UNSPECIFIED.
v1::FinishReason ToProto(FinishReason reason);

// The one name of a finish reason: the API's enum value name without "FINISH_REASON_", in lower case
// ("stop_token", "eos", "length", "cancelled", "aborted", "deadline_exceeded", "error", ...). The label
// value of stepserve_request_success_total{finish_reason}; stepctl prints the same name (upper case, as the
// API spells it).
std::string FinishReasonName(v1::FinishReason reason);

}  // namespace stepserve::server
