// A packed batch of sequence chunks for CausalLM::Forward, the one-call path of tests, tools and benchmarks
// (the executor plans steps with the scheduler and calls CausalLM::Execute instead).
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "model/block_manager.h"

namespace stepserve {

struct SequenceChunk {
  int64_t num_tokens = 0;   // tokens of this sequence in the flat token tensor (consecutive)
  int64_t start_pos = 0;    // position of its first token
  KvSequence* kv = nullptr; // cache handle; nullptr: no earlier tokens are visible and nothing is kept.
                            // With a handle, start_pos must equal kv->num_tokens.
};

struct ForwardBatch {
  at::Tensor token_ids;  // int64 [total tokens], sequences back to back
  std::vector<SequenceChunk> seqs;
  // Which token rows get logits: false = the last token of each sequence, true = every token.
  bool all_logits = false;
};

}  // namespace stepserve
