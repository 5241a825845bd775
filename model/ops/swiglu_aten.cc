// The ATen twin of the clamped SwiGLU.
#include <ATen/ATen.h>

#include "model/ops/swiglu.h"

namespace stepserve {

at::Tensor ClampedSwiGluAten(const at::Tensor& gate_up, double limit) {
  const int64_t inter = gate_up.size(-1) / 2;
  at::Tensor gate = at::silu(gate_up.narrow(-1, 0, inter));
  at::Tensor up = gate_up.narrow(-1, inter, inter);
  if (limit > 0) {
    gate = gate.clamp_max(limit);
    up = up.clamp(-limit, limit);
  }
  return gate * up;
}

}  // namespace stepserve
