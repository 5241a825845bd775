// Whether a sequence ends after the token it just sampled: a stop token, EOS, or its length limit.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/generation.h"

namespace stepserve {

struct StopContext {
  const std::vector<int>* eos_token_ids = nullptr;  // the model's
  int64_t max_context = 0;                          // prompt + generated tokens one sequence may hold
};

// kNone, or why the sequence finishes after `token` (its `num_generated`-th, with `num_tokens` in all).
FinishReason CheckStop(const StoppingCriteria& stop, int32_t token, int num_generated, int64_t num_tokens,
                       const StopContext& context);

}  // namespace stepserve
