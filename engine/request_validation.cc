#include "engine/request_validation.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"

namespace stepserve {
namespace {

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

absl::Status CheckTokenId(const std::string& field, int32_t token, int vocab_size) {
  if (token < 0 || token >= vocab_size) {
    return Invalid(field, absl::StrCat("token id ", token, " is outside the vocabulary [0, ", vocab_size, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckFinite(const char* field, float value) {
  if (!std::isfinite(value)) return Invalid(field, absl::StrCat("must be finite, got ", value));
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateGenerationRequest(const GenerationRequest& request, const ModelConfig& config,
                                       const RequestLimits& limits) {
  // Request id.
  if (request.id.empty()) {
    return Invalid("request_id", "must not be empty (the server assigns one when its client gives none)");
  }
  if (static_cast<int64_t>(request.id.size()) > limits.max_request_id_length) {
    return Invalid("request_id", absl::StrCat("is ", request.id.size(), " bytes, longer than ",
                                              limits.max_request_id_length));
  }
  for (size_t i = 0; i < request.id.size(); ++i) {
    const unsigned char ch = static_cast<unsigned char>(request.id[i]);
    if (ch < 0x20 || ch > 0x7e) {
      return Invalid("request_id", absl::StrCat("byte ", i, " is 0x", absl::Hex(ch, absl::kZeroPad2),
                                                "; only printable ASCII (0x20-0x7e) is allowed"));
    }
  }
  if (static_cast<int64_t>(request.cache_salt.size()) > limits.max_cache_salt_length) {
    return Invalid("cache_salt", absl::StrCat("is ", request.cache_salt.size(), " bytes, longer than ",
                                              limits.max_cache_salt_length));
  }

  // Prompt.
  if (request.prompt.empty()) return Invalid("prompt_token_ids", "must not be empty");
  for (size_t i = 0; i < request.prompt.size(); ++i) {
    if (absl::Status s = CheckTokenId(absl::StrCat("prompt_token_ids[", i, "]"), request.prompt[i], config.vocab_size);
        !s.ok()) {
      return s;
    }
  }
  const int64_t prompt_len = static_cast<int64_t>(request.prompt.size());
  if (prompt_len >= limits.max_context) {
    return Invalid("prompt_token_ids",
                   absl::StrCat("the prompt has ", prompt_len, " tokens, which leaves no room for "
                                "stopping.max_new_tokens in the maximum context of ", limits.max_context, " tokens"));
  }

  // Stopping.
  const StoppingCriteria& stop = request.stopping;
  if (stop.max_new_tokens < 1 || stop.max_new_tokens > limits.max_new_tokens_cap) {
    return Invalid("stopping.max_new_tokens",
                   absl::StrCat("must be in [1, ", limits.max_new_tokens_cap, "], got ", stop.max_new_tokens));
  }
  if (prompt_len + stop.max_new_tokens > limits.max_context) {
    return Invalid("stopping.max_new_tokens",
                   absl::StrCat("prompt_token_ids (", prompt_len, ") + stopping.max_new_tokens (", stop.max_new_tokens,
                                ") exceed the maximum context of ", limits.max_context, " tokens"));
  }
  if (static_cast<int64_t>(stop.stop_token_ids.size()) > limits.max_stop_token_ids) {
    return Invalid("stopping.stop_token_ids", absl::StrCat("has ", stop.stop_token_ids.size(),
                                                           " entries, more than ", limits.max_stop_token_ids));
  }
  for (size_t i = 0; i < stop.stop_token_ids.size(); ++i) {
    if (absl::Status s = CheckTokenId(absl::StrCat("stopping.stop_token_ids[", i, "]"), stop.stop_token_ids[i],
                                      config.vocab_size);
        !s.ok()) {
      return s;
    }
  }

  // Sampling.
  const SamplingParams& s = request.sampling;
  if (!std::isfinite(s.temperature) || s.temperature < 0) {
    return Invalid("sampling.temperature", absl::StrCat("must be finite and >= 0, got ", s.temperature));
  }
  if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) {  // NaN fails too
    return Invalid("sampling.top_p", absl::StrCat("must be in (0, 1], got ", s.top_p));
  }
  if (s.top_k < 0) return Invalid("sampling.top_k", absl::StrCat("must be >= 0, got ", s.top_k));
  if (!(s.min_p >= 0.0f && s.min_p <= 1.0f)) {  // NaN fails too
    return Invalid("sampling.min_p", absl::StrCat("must be in [0, 1], got ", s.min_p));
  }
  if (absl::Status st = CheckFinite("sampling.presence_penalty", s.presence_penalty); !st.ok()) return st;
  if (absl::Status st = CheckFinite("sampling.frequency_penalty", s.frequency_penalty); !st.ok()) return st;
  if (!std::isfinite(s.repetition_penalty) || s.repetition_penalty <= 0) {
    return Invalid("sampling.repetition_penalty",
                   absl::StrCat("must be finite and > 0, got ", s.repetition_penalty));
  }

  // Log-probabilities.
  if (request.logprobs < 0 || request.logprobs > limits.max_logprobs) {
    return Invalid("logprobs", absl::StrCat("must be in [0, ", limits.max_logprobs, "], got ", request.logprobs));
  }
  return absl::OkStatus();
}

}  // namespace stepserve
