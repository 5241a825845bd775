// Attention of a packed batch whose earlier keys live in the paged KV cache, with the head-wise sigmoid
// gate, and the KV write that follows it. CPU twin: ATen over the cached keys gathered by slot (prefill and
// decode, any device); CUDA twin: the paged decode kernel (model/ops/cuda/paged_decode_attention.cu) for
// decode steps, the ATen twin for prefill chunks.
#pragma once

#include <ATen/core/Tensor.h>

#include "model/ops/attention_metadata.h"

namespace stepserve {

struct AttentionShape {
  int num_heads = 0;
  int num_kv_heads = 0;
  int window = 0;  // 0: full causal attention; else key j visible to query i when i - window < j <= i
  double scale = 1.0;
};

// q [N, heads, d], k/v [N, kv_heads, d] (this step's tokens); pools [slots, kv_heads, d] (undefined when no
// chunk is cached). gate: [N, heads] logits or undefined; when defined, each head's output (rounded to q's
// dtype) is multiplied by sigmoid(gate). Returns [N, heads, d] in q's dtype. Reads the cache only.
at::Tensor PagedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& k_pool,
                          const at::Tensor& v_pool, const AttentionMetadata& meta, const AttentionShape& shape,
                          const at::Tensor& gate);
// Stores the rows of k/v that a later query can see (meta.write_rows) at meta.write_slots. Call after
// PagedAttention: every layer reads before it writes.
void WriteKvCache(const at::Tensor& k, const at::Tensor& v, at::Tensor& k_pool, at::Tensor& v_pool,
                  const AttentionMetadata& meta);

at::Tensor PagedAttentionAten(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& k_pool,
                             const at::Tensor& v_pool, const AttentionMetadata& meta, const AttentionShape& shape,
                             const at::Tensor& gate);
void WriteKvCacheAten(const at::Tensor& k, const at::Tensor& v, at::Tensor& k_pool, at::Tensor& v_pool,
                     const AttentionMetadata& meta);
at::Tensor PagedAttentionCuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& k_pool,
                              const at::Tensor& v_pool, const AttentionMetadata& meta, const AttentionShape& shape,
                              const at::Tensor& gate);
void WriteKvCacheCuda(const at::Tensor& k, const at::Tensor& v, at::Tensor& k_pool, at::Tensor& v_pool,
                      const AttentionMetadata& meta);

}  // namespace stepserve
