// The input of one model forward pass: a packed batch of sequence chunks.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "model/config.h"
#include "model/kv_cache.h"

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

// Per-step attention inputs for one sequence and one attention kind, derived from the batch and cache.
struct SeqAttention {
  int64_t token_begin = 0;  // row of the first token in the flat batch
  int64_t num_tokens = 0;
  int64_t start_pos = 0;
  KvStepPlan kv;            // undefined tensors when the chunk has no cache handle
  bool cached = false;
};

struct StepAttentionMetadata {
  at::Tensor positions;  // int64 [total tokens]
  std::array<std::vector<SeqAttention>, kNumAttentionKinds> seqs;
};

}  // namespace stepserve
