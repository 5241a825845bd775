// Token sampling for one sequence: penalties, greedy / temperature / top-k / top-p / min-p, log-probs.
//
// Randomness is counter-based: the draw for a sequence's n-th generated token depends only on
// (seed, n), so a seeded request samples the same tokens whatever else is in the batch and after a
// preemption.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "engine/generation.h"

namespace stepserve {

// Counts of tokens a sequence has seen, for the penalties.
struct TokenHistory {
  std::unordered_map<int32_t, int> prompt_counts;     // repetition penalty looks at prompt + output
  std::unordered_map<int32_t, int> generated_counts;  // presence / frequency penalties look at output only
};

struct SampleResult {
  int32_t token = 0;
  TokenLogprob logprob;  // filled when num_logprobs > 0
};

// `logits` is one fp32 row of `vocab` entries. `draw_index` is the generated-token index (0 for the first).
SampleResult SampleToken(const float* logits, int vocab, const SamplingParams& params, const TokenHistory& history,
                         uint64_t seed, int64_t draw_index, int num_logprobs);

// A uniform double in [0, 1) from (seed, index): SplitMix64 of the pair.
double CounterUniform(uint64_t seed, uint64_t index);

}  // namespace stepserve
