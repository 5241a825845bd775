// The ATen twin of RMSNorm (the reference the CUDA kernel is tested against).
#include <ATen/ATen.h>

#include "model/ops/rms_norm.h"

namespace stepserve {

at::Tensor RmsNormAten(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor inv = at::rsqrt(xf.pow(2).mean({-1}, /*keepdim=*/true) + eps);
  return (xf * inv * (weight.to(at::kFloat) + 1.0)).to(x.scalar_type());
}

at::Tensor AddRmsNormAten(const at::Tensor& x, at::Tensor& residual, const at::Tensor& weight, double eps) {
  residual.add_(x);
  return RmsNormAten(residual, weight, eps);
}

}  // namespace stepserve
