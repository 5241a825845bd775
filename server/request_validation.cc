#include "server/request_validation.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace stepserve::server {
namespace {

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

absl::Status CheckFinite(const char* field, float value) {
  if (!std::isfinite(value)) return Invalid(field, absl::StrCat("must be finite, got ", value));
  return absl::OkStatus();
}

absl::Status CheckTokenId(const std::string& field, int32_t token, int vocab_size) {
  if (token < 0 || token >= vocab_size) {
    return Invalid(field, absl::StrCat("token id ", token, " is outside [0, ", vocab_size, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateRequest& proto,
                                                      const ValidationLimits& limits) {
  GenerationRequest request;

  if (static_cast<int>(proto.request_id().size()) > limits.max_request_id_length) {
    return Invalid("request_id", absl::StrCat("longer than ", limits.max_request_id_length, " bytes"));
  }
  request.id = proto.request_id();

  // Prompt.
  if (proto.prompt_token_ids().empty()) return Invalid("prompt_token_ids", "must not be empty");
  request.prompt.reserve(proto.prompt_token_ids_size());
  for (int i = 0; i < proto.prompt_token_ids_size(); ++i) {
    const int32_t token = proto.prompt_token_ids(i);
    if (absl::Status s = CheckTokenId(absl::StrCat("prompt_token_ids[", i, "]"), token, limits.vocab_size);
        !s.ok()) {
      return s;
    }
    request.prompt.push_back(token);
  }
  const int64_t prompt_len = static_cast<int64_t>(request.prompt.size());
  if (prompt_len >= limits.max_context) {
    return Invalid("prompt_token_ids", absl::StrCat("the prompt has ", prompt_len,
                                                    " tokens, which leaves no room in the maximum context of ",
                                                    limits.max_context, " tokens"));
  }

  // Sampling.
  const v1::SamplingParams& s = proto.sampling();
  SamplingParams& sampling = request.sampling;
  if (s.has_temperature()) {
    if (!std::isfinite(s.temperature()) || s.temperature() < 0) {
      return Invalid("sampling.temperature", absl::StrCat("must be finite and >= 0, got ", s.temperature()));
    }
    sampling.temperature = s.temperature();
  }
  if (s.has_top_p()) {
    if (!(s.top_p() > 0.0f && s.top_p() <= 1.0f)) {
      return Invalid("sampling.top_p", absl::StrCat("must be in (0, 1], got ", s.top_p()));
    }
    sampling.top_p = s.top_p();
  }
  if (s.has_top_k()) {
    if (s.top_k() < 0) return Invalid("sampling.top_k", absl::StrCat("must be >= 0, got ", s.top_k()));
    sampling.top_k = s.top_k();
  }
  if (s.has_min_p()) {
    if (!(s.min_p() >= 0.0f && s.min_p() <= 1.0f)) {
      return Invalid("sampling.min_p", absl::StrCat("must be in [0, 1], got ", s.min_p()));
    }
    sampling.min_p = s.min_p();
  }
  if (s.has_presence_penalty()) {
    if (absl::Status st = CheckFinite("sampling.presence_penalty", s.presence_penalty()); !st.ok()) return st;
    sampling.presence_penalty = s.presence_penalty();
  }
  if (s.has_frequency_penalty()) {
    if (absl::Status st = CheckFinite("sampling.frequency_penalty", s.frequency_penalty()); !st.ok()) return st;
    sampling.frequency_penalty = s.frequency_penalty();
  }
  if (s.has_repetition_penalty()) {
    if (!std::isfinite(s.repetition_penalty()) || s.repetition_penalty() <= 0) {
      return Invalid("sampling.repetition_penalty",
                     absl::StrCat("must be finite and > 0, got ", s.repetition_penalty()));
    }
    sampling.repetition_penalty = s.repetition_penalty();
  }
  if (s.has_seed()) sampling.seed = s.seed();

  // Stopping.
  const v1::StoppingCriteria& stop = proto.stopping();
  const int64_t room = limits.max_context - prompt_len;
  if (stop.has_max_new_tokens()) {
    const int64_t n = stop.max_new_tokens();
    if (n < 1 || n > limits.max_new_tokens_cap) {
      return Invalid("stopping.max_new_tokens",
                     absl::StrCat("must be in [1, ", limits.max_new_tokens_cap, "], got ", n));
    }
    if (prompt_len + n > limits.max_context) {
      return Invalid("stopping.max_new_tokens",
                     absl::StrCat("prompt_token_ids (", prompt_len, ") + stopping.max_new_tokens (", n,
                                  ") exceed the maximum context of ", limits.max_context, " tokens"));
    }
    request.stopping.max_new_tokens = static_cast<int>(n);
  } else {
    const int64_t n = std::min<int64_t>({static_cast<int64_t>(limits.default_max_new_tokens),
                                         static_cast<int64_t>(limits.max_new_tokens_cap), room});
    request.stopping.max_new_tokens = static_cast<int>(std::max<int64_t>(n, 1));
  }
  for (int i = 0; i < stop.stop_token_ids_size(); ++i) {
    if (absl::Status st = CheckTokenId(absl::StrCat("stopping.stop_token_ids[", i, "]"), stop.stop_token_ids(i),
                                       limits.vocab_size);
        !st.ok()) {
      return st;
    }
    request.stopping.stop_token_ids.push_back(stop.stop_token_ids(i));
  }
  request.stopping.ignore_eos = stop.ignore_eos();

  // Log-probabilities.
  if (proto.logprobs() < 0 || proto.logprobs() > limits.max_logprobs) {
    return Invalid("logprobs", absl::StrCat("must be in [0, ", limits.max_logprobs, "], got ", proto.logprobs()));
  }
  request.logprobs = proto.logprobs();
  return request;
}

}  // namespace stepserve::server
