// ATen-level entry points of the CUDA kernels (built only with STEPSERVE_CUDA). Each checks device, dtype
// and layout, then launches on the current CUDA stream of the tensors' device. Semantics are those of the
// CPU ops they stand in for (model/rms_norm.h, model/mlp.h, model/moe.h, model/rotary_embedding.h,
// model/kernels/paged_attention.h); storage is fp32 or bf16, math fp32.
#pragma once

#include <vector>

#include <ATen/core/Tensor.h>

#include "model/forward_batch.h"
#include "model/kernels/paged_attention.h"

namespace stepserve {

// RmsNorm(x, weight, eps) on the GPU (model/rms_norm.h); x [..., hidden].
at::Tensor RmsNormCuda(const at::Tensor& x, const at::Tensor& weight, double eps);

// Fused residual add + RMSNorm(+1): residual += x (in place, rounded to residual's dtype), returns
// RmsNorm(residual). Used by DecoderLayer::AddResidualAndNorm for `h = x + h; y = RmsNorm(h, w, eps)`.
// residual must be contiguous; x is made contiguous.
at::Tensor AddRmsNormCuda(const at::Tensor& x, at::Tensor& residual, const at::Tensor& weight, double eps);

// In place: per-head RMSNorm(+1) of q [N, q_heads, d] and k [N, kv_heads, d] with q_weight / k_weight [d],
// then rotate-half RoPE on the first rotary_dim channels at `positions` (int64 [N]) with inv_freq (fp32
// [rotary_dim / 2], RotaryEmbedding::inv_freq()). q and k may be views into the packed QKV output (head
// stride d, channel stride 1). Stands in for RmsNorm + RotaryEmbedding::CosSin/Apply in Attention::Forward.
void QkNormRopeCuda(at::Tensor& q, at::Tensor& k, const at::Tensor& q_weight, const at::Tensor& k_weight,
                    const at::Tensor& positions, const at::Tensor& inv_freq, int rotary_dim, double eps);

// ClampedSwiGlu(gate_up, limit) on the GPU (model/mlp.h).
at::Tensor ClampedSwiGluCuda(const at::Tensor& gate_up, double limit);

// MoeBlock::Route after the router GEMM: logits fp32 [N, experts], bias fp32 [experts] or undefined.
// Returns {indices int64 [N, top_k], weights fp32 [N, top_k]}, in descending order of score + bias.
std::pair<at::Tensor, at::Tensor> MoeRouteCuda(const at::Tensor& logits, const at::Tensor& bias, int top_k,
                                               bool sigmoid, bool normalize, double scaling);

// The (token, slot) pairs grouped by expert for grouped expert GEMMs, computed on the device.
struct MoePermutation {
  at::Tensor counts;         // int32 [experts]
  at::Tensor offsets;        // int32 [experts + 1]
  at::Tensor sorted_token;   // int32 [N * top_k]: token row of each permuted pair
  at::Tensor sorted_slot;    // int32 [N * top_k]: flat index token * top_k + k
  at::Tensor sorted_weight;  // fp32 [N * top_k]
};
MoePermutation MoePermuteCuda(const at::Tensor& indices, const at::Tensor& weights, int num_experts);

// True when every sequence of the step has exactly one token (a pure decode step).
bool IsDecodeStep(const std::vector<SeqAttention>& seqs);

// Whether PagedDecodeAttentionCuda handles this call: a CUDA decode step, fp32 or bf16, pools (when defined)
// in q's dtype, head_dim <= 256, heads a multiple of kv heads. Otherwise callers take the ATen path.
bool PagedDecodeCudaSupports(const at::Tensor& q, const at::Tensor& k_pool, const std::vector<SeqAttention>& seqs,
                             const AttentionShape& shape);

// PagedAttention for a pure decode step on the GPU. With `gate` ([N, heads] logits, fp32 or bf16) defined,
// the head-wise sigmoid gate is applied in the epilogue (what Attention::Forward does after PagedAttention);
// undefined: plain PagedAttention. num_splits 0 picks the split-K automatically.
at::Tensor PagedDecodeAttentionCuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& k_pool, const at::Tensor& v_pool,
                                    const std::vector<SeqAttention>& seqs, const AttentionShape& shape,
                                    const at::Tensor& gate = at::Tensor(), int num_splits = 0);

// WriteKvCache on the GPU: one launch for the whole step.
void WriteKvCacheCuda(const at::Tensor& k, const at::Tensor& v, at::Tensor& k_pool, at::Tensor& v_pool,
                      const std::vector<SeqAttention>& seqs);

}  // namespace stepserve
