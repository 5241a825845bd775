// Rotary position embedding frequencies: per-layer theta, partial rotary dimension, optional llama3
// rescaling. The rotation itself is the fused op model/ops/qk_norm_rope.h.
#pragma once

#include <utility>

#include <ATen/core/Tensor.h>

#include "model/loading/config.h"

namespace stepserve {

class RotaryEmbedding {
 public:
  RotaryEmbedding(const LayerConfig& layer, const RopeScaling& scaling, at::Device device);

  int rotary_dim() const { return rotary_dim_; }
  const at::Tensor& inv_freq() const { return inv_freq_; }  // fp32 [rotary_dim / 2]

 private:
  int rotary_dim_;
  at::Tensor inv_freq_;
};

}  // namespace stepserve
