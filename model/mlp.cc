#include "model/mlp.h"

#include <ATen/ATen.h>

#ifdef STEPSERVE_CUDA
#include "model/kernels/cuda/cuda_ops.h"
#endif

namespace stepserve {

at::Tensor ClampedSwiGlu(const at::Tensor& gate_up, double limit) {
#ifdef STEPSERVE_CUDA
  if (gate_up.is_cuda()) return ClampedSwiGluCuda(gate_up, limit);
#endif
  const int64_t inter = gate_up.size(-1) / 2;
  at::Tensor gate = at::silu(gate_up.narrow(-1, 0, inter));
  at::Tensor up = gate_up.narrow(-1, inter, inter);
  if (limit > 0) {
    gate = gate.clamp_max(limit);
    up = up.clamp(-limit, limit);
  }
  return gate * up;
}

SwiGluMlp::SwiGluMlp(const ModelWeights& weights, const std::string& prefix, double limit)
    : gate_up_proj_(at::cat({weights.Get(prefix + "gate_proj.weight"), weights.Get(prefix + "up_proj.weight")}, 0)
                        .contiguous()),
      down_proj_(weights.Get(prefix + "down_proj.weight")),
      limit_(limit) {}

at::Tensor SwiGluMlp::Forward(const at::Tensor& x) const {
  return at::matmul(ClampedSwiGlu(at::matmul(x, gate_up_proj_.t()), limit_), down_proj_.t());
}

}  // namespace stepserve
