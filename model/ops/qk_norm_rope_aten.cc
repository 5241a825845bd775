// The ATen twin of the fused Q/K norm + RoPE.
#include <vector>

#include <ATen/ATen.h>

#include "model/ops/qk_norm_rope.h"
#include "model/ops/rms_norm.h"

namespace stepserve {

at::Tensor ApplyRotaryAten(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& inv_freq,
                          int rotary_dim) {
  if (rotary_dim == 0) return x;
  const int half = rotary_dim / 2;
  at::Tensor angles = positions.to(at::kFloat).unsqueeze(1) * inv_freq.to(at::kFloat).narrow(0, 0, half).unsqueeze(0);
  at::Tensor c = angles.cos().unsqueeze(1), s = angles.sin().unsqueeze(1);  // broadcast over heads
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor x1 = xf.narrow(-1, 0, half);
  at::Tensor x2 = xf.narrow(-1, half, half);
  std::vector<at::Tensor> parts = {x1 * c - x2 * s, x2 * c + x1 * s};
  if (rotary_dim < x.size(-1)) parts.push_back(xf.narrow(-1, rotary_dim, x.size(-1) - rotary_dim));
  return at::cat(parts, -1).to(x.scalar_type());
}

void QkNormRopeAten(at::Tensor& q, at::Tensor& k, const at::Tensor& q_weight, const at::Tensor& k_weight,
                   const at::Tensor& positions, const at::Tensor& inv_freq, int rotary_dim, double eps) {
  q.copy_(ApplyRotaryAten(RmsNormAten(q, q_weight, eps), positions, inv_freq, rotary_dim));
  k.copy_(ApplyRotaryAten(RmsNormAten(k, k_weight, eps), positions, inv_freq, rotary_dim));
}

}  // namespace stepserve
