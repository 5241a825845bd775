#include "model/rms_norm.h"

#include <ATen/ATen.h>

#ifdef STEPSERVE_CUDA
#include "model/kernels/cuda/cuda_ops.h"
#endif

namespace stepserve {

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
#ifdef STEPSERVE_CUDA
  if (x.is_cuda()) return RmsNormCuda(x, weight, eps);
#endif
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor inv = at::rsqrt(xf.pow(2).mean({-1}, /*keepdim=*/true) + eps);
  return (xf * inv * (weight.to(at::kFloat) + 1.0)).to(x.scalar_type());
}

}  // namespace stepserve
