// Device dispatch of the clamped SwiGLU.
#include "model/ops/swiglu.h"

namespace stepserve {

at::Tensor ClampedSwiGlu(const at::Tensor& gate_up, double limit) {
#ifdef STEPSERVE_CUDA
  if (gate_up.is_cuda()) return ClampedSwiGluCuda(gate_up, limit);
#endif
  return ClampedSwiGluAten(gate_up, limit);
}

}  // namespace stepserve
