// Device dispatch of the fused Q/K norm + RoPE.
#include "model/ops/qk_norm_rope.h"

namespace stepserve {

void QkNormRope(at::Tensor& q, at::Tensor& k, const at::Tensor& q_weight, const at::Tensor& k_weight,
                const at::Tensor& positions, const at::Tensor& inv_freq, int rotary_dim, double eps) {
#ifdef STEPSERVE_CUDA
  if (q.is_cuda()) return QkNormRopeCuda(q, k, q_weight, k_weight, positions, inv_freq, rotary_dim, eps);
#endif
  QkNormRopeAten(q, k, q_weight, k_weight, positions, inv_freq, rotary_dim, eps);
}

}  // namespace stepserve
