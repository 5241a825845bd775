// Step3p5 self-attention: Q/K per-head RMSNorm, partial RoPE, GQA over the paged cache, head-wise gate.
#pragma once

#include <ATen/core/Tensor.h>

#include "model/config.h"
#include "model/kv_cache.h"
#include "model/rotary_embedding.h"
#include "model/step_inputs.h"
#include "model/weights.h"

namespace stepserve {

class Attention {
 public:
  Attention(const ModelConfig& config, int layer_index, const ModelWeights& weights, at::Device device);

  // x [N, hidden] -> [N, hidden]. `pools` may be null when no chunk of the step is cached.
  at::Tensor Forward(const at::Tensor& x, const StepInputs& step, KvPools* pools) const;

  const RotaryEmbedding& rotary() const { return rotary_; }

 private:
  int layer_index_;
  LayerConfig layer_;
  int head_dim_;
  double eps_;
  at::Tensor qkv_proj_;  // [(heads + 2 * kv_heads) * head_dim, hidden], packed at load
  at::Tensor o_proj_, q_norm_, k_norm_;
  at::Tensor g_proj_;  // undefined without the head-wise gate
  RotaryEmbedding rotary_;
};

}  // namespace stepserve
