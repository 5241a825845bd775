// Per-head Q/K RMSNorm(+1) fused with partial rotary embedding (rotate-half on the first rotary_dim
// channels, fp32 angles position * inv_freq). CPU twin: ATen; CUDA twin: model/ops/cuda/qk_norm_rope.cu.
#pragma once

#include <ATen/core/Tensor.h>

namespace stepserve {

// In place on q [N, heads, d] and k [N, kv_heads, d] (views into the packed QKV output are fine):
// normalise each head with q_weight / k_weight [d], round to the storage dtype, then rotate at `positions`
// (int64 [N]) with inv_freq (fp32 [rotary_dim / 2]). rotary_dim 0: no rotation (positions may be undefined).
void QkNormRope(at::Tensor& q, at::Tensor& k, const at::Tensor& q_weight, const at::Tensor& k_weight,
                const at::Tensor& positions, const at::Tensor& inv_freq, int rotary_dim, double eps);

void QkNormRopeAten(at::Tensor& q, at::Tensor& k, const at::Tensor& q_weight, const at::Tensor& k_weight,
                   const at::Tensor& positions, const at::Tensor& inv_freq, int rotary_dim, double eps);
void QkNormRopeCuda(at::Tensor& q, at::Tensor& k, const at::Tensor& q_weight, const at::Tensor& k_weight,
                    const at::Tensor& positions, const at::Tensor& inv_freq, int rotary_dim, double eps);

// The ATen rotation alone: x [N, heads, d] rotated at positions (returns x's dtype).
at::Tensor ApplyRotaryAten(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& inv_freq,
                          int rotary_dim);

}  // namespace stepserve
