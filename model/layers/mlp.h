// Clamped SwiGLU MLP: down(silu(gate(x)).clamp(max=L) * up(x).clamp(-L, L)); L = 0 means no clamp.
#pragma once

#include <string>

#include <ATen/core/Tensor.h>

#include "model/ops/swiglu.h"
#include "model/loading/weights.h"

namespace stepserve {

class SwiGluMlp {
 public:
  // prefix: e.g. "model.layers.0.mlp." or "model.layers.3.share_expert."
  SwiGluMlp(const ModelWeights& weights, const std::string& prefix, double limit);
  at::Tensor Forward(const at::Tensor& x) const;

 private:
  at::Tensor gate_up_proj_;  // [2 * I, hidden], packed at load
  at::Tensor down_proj_;     // [hidden, I]
  double limit_;
};

}  // namespace stepserve
