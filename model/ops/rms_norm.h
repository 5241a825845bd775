// Step3p5 RMSNorm: x * rsqrt(mean(x^2) + eps) * (weight + 1), fp32 math, the input's dtype out; and the
// residual add fused with it. CPU twin: ATen (any device); CUDA twin: model/ops/cuda/rms_norm.cu.
#pragma once

#include <ATen/core/Tensor.h>

namespace stepserve {

// Normalises over the last dimension.
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);
// residual += x (in place, in residual's dtype); returns RmsNorm(residual, weight, eps).
at::Tensor AddRmsNorm(const at::Tensor& x, at::Tensor& residual, const at::Tensor& weight, double eps);

at::Tensor RmsNormAten(const at::Tensor& x, const at::Tensor& weight, double eps);
at::Tensor AddRmsNormAten(const at::Tensor& x, at::Tensor& residual, const at::Tensor& weight, double eps);
at::Tensor RmsNormCuda(const at::Tensor& x, const at::Tensor& weight, double eps);
at::Tensor AddRmsNormCuda(const at::Tensor& x, at::Tensor& residual, const at::Tensor& weight, double eps);

}  // namespace stepserve
