// Rotary position embedding: per-layer theta, partial rotary dimension, optional llama3 rescaling.
#pragma once

#include <utility>

#include <ATen/core/Tensor.h>

#include "model/config.h"

namespace stepserve {

class RotaryEmbedding {
 public:
  RotaryEmbedding(const LayerConfig& layer, const RopeScaling& scaling, at::Device device);

  int rotary_dim() const { return rotary_dim_; }
  const at::Tensor& inv_freq() const { return inv_freq_; }  // fp32 [rotary_dim / 2]

  // cos and sin tables, fp32 [positions, rotary_dim / 2].
  std::pair<at::Tensor, at::Tensor> CosSin(const at::Tensor& positions) const;

  // Rotates (rotate-half style) the first rotary_dim channels of x [tokens, heads, head_dim] in place
  // of a copy; the remaining channels pass through. Returns x's dtype.
  at::Tensor Apply(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) const;

 private:
  int rotary_dim_;
  at::Tensor inv_freq_;
};

}  // namespace stepserve
