// Whether a sequence ends after the token it just sampled: a stop token, EOS, or its length limit.
#pragma once

#include <cstdint>
#include <unordered_set>
#include <vector>

#include "engine/generation.h"

namespace stepserve {

// A request's stop token ids as a set, built once when the request is queued (EngineCore::Add): every
// generated token is then checked in O(1), however long the list (RequestLimits caps its length too).
using StopTokenSet = std::unordered_set<int32_t>;
StopTokenSet MakeStopTokenSet(const StoppingCriteria& stop);

struct StopContext {
  const std::vector<int>* eos_token_ids = nullptr;  // the model's
  int64_t max_context = 0;                          // prompt + generated tokens one sequence may hold
};

// kNone, or why the sequence finishes after `token` (its `num_generated`-th, with `num_tokens` in all).
// `stop_ids` is MakeStopTokenSet(stop).
FinishReason CheckStop(const StoppingCriteria& stop, const StopTokenSet& stop_ids, int32_t token, int num_generated,
                       int64_t num_tokens, const StopContext& context);

}  // namespace stepserve
