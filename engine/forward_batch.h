// The one-call forward path of tests, tools, benchmarks and the warm-up: a packed batch of sequence chunks,
// its blocks allocated in a cache, planned, executed and committed (the executor plans steps with the
// scheduler and runs them through its step runner instead).
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "engine/block_manager.h"
#include "engine/kv_cache.h"
#include "model/layers/causal_lm.h"

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

// Allocates the chunks' blocks in `cache` (which may be null when no chunk has a handle), plans, executes
// and advances each handle. Fails without side effects on bad input or when the cache lacks blocks.
absl::StatusOr<at::Tensor> Forward(const CausalLM& model, const ForwardBatch& batch, PagedKvCache* cache,
                                   const CausalLM::LayerObserver& observer = nullptr);

}  // namespace stepserve
