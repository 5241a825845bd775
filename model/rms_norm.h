// Step3p5 RMSNorm: x * rsqrt(mean(x^2) + eps) * (weight + 1), computed in fp32.
#pragma once

#include <ATen/core/Tensor.h>

namespace stepserve {

// Normalises over the last dimension; returns the input dtype.
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);

}  // namespace stepserve
