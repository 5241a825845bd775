// Clamped SwiGLU over a packed [gate | up] buffer: silu(gate).clamp(max = limit) * up.clamp(-limit, limit)
// (limit <= 0: no clamp). CPU twin: ATen; CUDA twin: model/ops/cuda/swiglu.cu.
#pragma once

#include <ATen/core/Tensor.h>

namespace stepserve {

at::Tensor ClampedSwiGlu(const at::Tensor& gate_up, double limit);
at::Tensor ClampedSwiGluAten(const at::Tensor& gate_up, double limit);
at::Tensor ClampedSwiGluCuda(const at::Tensor& gate_up, double limit);

}  // namespace stepserve
