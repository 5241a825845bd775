// Step3p5 self-attention: Q/K per-head RMSNorm, partial RoPE, GQA over the paged cache, head-wise gate.
#pragma once

#include <ATen/core/Tensor.h>

#include "model/loading/config.h"
#include "model/layers/kv_pools.h"
#include "model/layers/parallel_context.h"
#include "model/layers/rotary_embedding.h"
#include "model/layers/step_inputs.h"
#include "model/loading/weights.h"

namespace stepserve {

class Attention {
 public:
  // `weights` hold this rank's heads (model/loading/weight_sharding.h); `parallel` outlives the layer.
  Attention(const ModelConfig& config, int layer_index, const ModelWeights& weights, at::Device device,
            const ParallelContext& parallel);

  // x [N, hidden] -> [N, hidden], summed over the ranks. `pools` may be null when no chunk is cached.
  at::Tensor Forward(const at::Tensor& x, const StepInputs& step, KvPools* pools) const;

  const RotaryEmbedding& rotary() const { return rotary_; }

 private:
  int layer_index_;
  LayerConfig layer_;  // num_heads / num_kv_heads: this rank's
  const ParallelContext* parallel_;
  int head_dim_;
  double eps_;
  at::Tensor qkv_proj_;  // [(heads + 2 * kv_heads) * head_dim, hidden], packed at load
  at::Tensor o_proj_, q_norm_, k_norm_;
  at::Tensor g_proj_;  // undefined without the head-wise gate
  RotaryEmbedding rotary_;
};

}  // namespace stepserve
