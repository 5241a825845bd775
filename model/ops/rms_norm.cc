// Device dispatch of RMSNorm: the CUDA twin for CUDA tensors when built with CUDA, else the ATen twin.
#include "model/ops/rms_norm.h"

namespace stepserve {

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
#ifdef STEPSERVE_CUDA
  if (x.is_cuda()) return RmsNormCuda(x, weight, eps);
#endif
  return RmsNormAten(x, weight, eps);
}

at::Tensor AddRmsNorm(const at::Tensor& x, at::Tensor& residual, const at::Tensor& weight, double eps) {
#ifdef STEPSERVE_CUDA
  if (residual.is_cuda()) return AddRmsNormCuda(x, residual, weight, eps);
#endif
  return AddRmsNormAten(x, residual, weight, eps);
}

}  // namespace stepserve
