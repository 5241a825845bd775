// Device dispatch of the routed experts.
#include "model/ops/moe_experts.h"

namespace stepserve {

at::Tensor MoeExperts(const at::Tensor& y, const MoePermutation& perm, const at::Tensor& gate_up,
                      const at::Tensor& down, double limit) {
#ifdef STEPSERVE_CUDA
  if (y.is_cuda()) return MoeExpertsCuda(y, perm, gate_up, down, limit);
#endif
  return MoeExpertsAten(y, perm, gate_up, down, limit);
}

}  // namespace stepserve
