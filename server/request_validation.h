// Admission checks: a proto GenerateRequest -> the executor's GenerationRequest. A pure function, so it is
// unit-tested without a server. Every error is INVALID_ARGUMENT and names the proto field.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "model/generation.h"
#include "stepserve/v1/stepserve.pb.h"

namespace stepserve::server {

struct ValidationLimits {
  int vocab_size = 0;
  int64_t max_context = 0;            // prompt + max_new_tokens may not exceed this
  int max_new_tokens_cap = 4096;      // largest stopping.max_new_tokens accepted
  int max_logprobs = 20;              // largest logprobs accepted
  int default_max_new_tokens = 256;   // used when stopping.max_new_tokens is unset (capped to the context)
  int max_request_id_length = 256;
};

// Converts and checks `proto`. Unset optional fields take the defaults of model/generation.h; an unset
// max_new_tokens becomes min(default_max_new_tokens, max_new_tokens_cap, max_context - prompt length).
// `request.id` is copied as is (the caller assigns one when empty).
absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateRequest& proto,
                                                      const ValidationLimits& limits);

}  // namespace stepserve::server
