#include "model/layers/attention.h"

#include <cmath>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "model/ops/paged_attention.h"
#include "model/ops/qk_norm_rope.h"

namespace stepserve {

Attention::Attention(const ModelConfig& config, int layer_index, const ModelWeights& weights, at::Device device,
                     const ParallelContext& parallel)
    : layer_index_(layer_index),
      layer_(RankLocalLayer(config.layers[layer_index], parallel.config)),
      parallel_(&parallel),
      head_dim_(config.head_dim),
      eps_(config.rms_norm_eps),
      rotary_(config.layers[layer_index], config.rope_scaling, device) {
  const std::string p = absl::StrCat("model.layers.", layer_index, ".self_attn.");
  qkv_proj_ = at::cat({weights.Get(p + "q_proj.weight"), weights.Get(p + "k_proj.weight"),
                       weights.Get(p + "v_proj.weight")}, 0).contiguous();
  o_proj_ = weights.Get(p + "o_proj.weight");
  q_norm_ = weights.Get(p + "q_norm.weight");
  k_norm_ = weights.Get(p + "k_norm.weight");
  if (config.use_head_wise_attn_gate) g_proj_ = weights.Get(p + "g_proj.weight");
}

at::Tensor Attention::Forward(const at::Tensor& x, const StepInputs& step, KvPools* pools) const {
  const int64_t n = x.size(0), nh = layer_.num_heads, nkv = layer_.num_kv_heads, d = head_dim_;
  at::Tensor qkv = at::matmul(x, qkv_proj_.t());
  // q and k are views into qkv (this step's own buffer): normalised and rotated in place.
  at::Tensor q = qkv.narrow(1, 0, nh * d).view({n, nh, d});
  at::Tensor k = qkv.narrow(1, nh * d, nkv * d).view({n, nkv, d});
  at::Tensor v = qkv.narrow(1, (nh + nkv) * d, nkv * d).view({n, nkv, d});
  QkNormRope(q, k, q_norm_, k_norm_, step.positions, rotary_.inv_freq(), rotary_.rotary_dim(), eps_);

  const AttentionMetadata& meta = step.attention[static_cast<int>(layer_.attention_kind)];
  const AttentionShape shape{static_cast<int>(nh), static_cast<int>(nkv), layer_.sliding_window,
                             1.0 / std::sqrt(static_cast<double>(d))};
  at::Tensor k_pool, v_pool;
  if (pools != nullptr) {
    k_pool = pools->KeyPool(layer_index_);
    v_pool = pools->ValuePool(layer_index_);
  }
  const at::Tensor gate_logits = g_proj_.defined() ? at::matmul(x, g_proj_.t()) : at::Tensor();  // [N, heads]
  at::Tensor out = PagedAttention(q, k, v, k_pool, v_pool, meta, shape, gate_logits);
  if (pools != nullptr) WriteKvCache(k, v, k_pool, v_pool, meta);
  // o_proj's input columns are this rank's heads: a partial sum of the output (Megatron's row parallel).
  at::Tensor partial = at::matmul(out.reshape({n, nh * d}), o_proj_.t());
  parallel_->AllReduce(partial);
  return partial;
}

}  // namespace stepserve
