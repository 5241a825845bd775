// Generation requests and their streamed outputs: the executor's public data types.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace stepserve {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy
  float top_p = 1.0f;        // (0, 1]
  int top_k = 0;             // 0: no limit
  float min_p = 0.0f;        // [0, 1]
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  float repetition_penalty = 1.0f;  // > 0; 1: none
  std::optional<uint64_t> seed;     // per-request RNG; unset: derived from the request's arrival order
};

struct StoppingCriteria {
  int max_new_tokens = 16;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
};

struct GenerationRequest {
  std::string id;  // must be unique among requests in flight
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  StoppingCriteria stopping;
  int logprobs = 0;  // > 0: return the sampled token's log-probability and this many alternatives
  absl::Time deadline = absl::InfiniteFuture();
  std::string cache_salt;  // prefix caching: blocks are shared only between requests with equal salts
};

// kError: the engine step that carried the request failed (GenerationOutput::error says why); the server
// answers INTERNAL and keeps serving, or UNAVAILABLE when a rank of its tensor-parallel group failed (the
// server then stops, so that the group restarts).
enum class FinishReason { kNone, kStopToken, kEos, kLength, kCancelled, kAborted, kDeadlineExceeded, kError };

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;  // the top-n alternatives, best first
};

// One delivery for a request: the tokens one engine step produced, and on the last one the finish data.
struct GenerationOutput {
  std::string request_id;
  std::vector<int32_t> token_ids;
  std::vector<TokenLogprob> logprobs;  // parallel to token_ids when requested
  absl::Time time;                     // when the step that produced these tokens finished
  bool finished = false;
  FinishReason finish_reason = FinishReason::kNone;
  absl::Status error;                  // with kError: what failed (UNAVAILABLE: a tensor-parallel rank failed)
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_prompt_tokens = 0;        // prompt tokens the prefix cache served at the first scheduling
  absl::Duration queue_time;           // arrival to first scheduled
  absl::Duration time_to_first_token;  // arrival to first token
  absl::Duration e2e_latency;          // arrival to finish
};

// Called on the engine thread; it must return quickly and must not call back into the executor's
// blocking methods (Shutdown). Cancel(), Pause() and Resume() from the callback are allowed.
using OutputCallback = std::function<void(const GenerationOutput&)>;

}  // namespace stepserve
