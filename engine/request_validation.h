// The one request validator: Executor::Submit checks every GenerationRequest with it, whoever built the
// request (the gRPC server converts its proto without checking anything and relies on Submit's status).
// Every error is INVALID_ARGUMENT with a message that starts with the proto field name and a colon
// ("prompt_token_ids[3]: ...", "stopping.max_new_tokens: ...", "sampling.temperature: ..."), so a client
// of the server sees which field of its GenerateRequest to fix.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "model/loading/config.h"
#include "engine/generation.h"

namespace stepserve {

struct RequestLimits {
  int max_new_tokens_cap = 4096;     // largest stopping.max_new_tokens accepted (ExecutorOptions::max_new_tokens_cap)
  int max_logprobs = 20;             // largest logprobs accepted (ExecutorOptions::max_logprobs)
  int64_t max_context = 0;           // prompt + max_new_tokens may not exceed this (Executor::max_context())
  int max_request_id_length = 256;   // bytes
  int max_cache_salt_length = 256;   // bytes
  int max_stop_token_ids = 1024;     // entries of stopping.stop_token_ids
};

// OK, or INVALID_ARGUMENT naming the first bad field. Checks: a non-empty request_id of at most
// max_request_id_length bytes of printable ASCII (0x20-0x7e: no control characters, no escapes that could
// forge a log line; ids are assigned by the server when its client gives none, never here); at most
// max_stop_token_ids stop token ids;
// a non-empty prompt of token ids in [0, vocab_size) that leaves room in the context; max_new_tokens in
// [1, max_new_tokens_cap] with prompt + max_new_tokens <= max_context; stop token ids in the vocabulary;
// the sampling parameters' ranges (finite, temperature >= 0, top_p in (0, 1], top_k >= 0, min_p in
// [0, 1], repetition_penalty > 0); logprobs in [0, max_logprobs].
absl::Status ValidateGenerationRequest(const GenerationRequest& request, const ModelConfig& config,
                                       const RequestLimits& limits);

}  // namespace stepserve
