// Attention over a packed batch whose earlier keys live in a paged KV cache.
//
// One interface, a CPU implementation (ATen ops over gathered blocks) and, when built with CUDA, a GPU
// kernel; PagedAttention() dispatches on the device of `q`.
#pragma once

#include <vector>

#include <ATen/core/Tensor.h>

#include "model/forward_batch.h"

namespace stepserve {

struct AttentionShape {
  int num_heads = 0;
  int num_kv_heads = 0;
  int window = 0;  // 0: full causal attention; else key j visible to query i when i - window < j <= i
  double scale = 1.0;
};

// q [N, heads, d], k/v [N, kv_heads, d] for this step's tokens; pools [slots, kv_heads, d].
// Returns [N, heads, d] in q's dtype. Reads cached keys only (this step's keys come from k/v).
at::Tensor PagedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& k_pool,
                          const at::Tensor& v_pool, const std::vector<SeqAttention>& seqs,
                          const AttentionShape& shape);

// Stores this step's k/v rows that the plan keeps into the pools (call after PagedAttention).
void WriteKvCache(const at::Tensor& k, const at::Tensor& v, at::Tensor& k_pool, at::Tensor& v_pool,
                  const std::vector<SeqAttention>& seqs);

}  // namespace stepserve
