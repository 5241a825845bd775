#include "model/attention.h"

#include <cmath>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "model/kernels/paged_attention.h"
#include "model/rms_norm.h"

#ifdef STEPSERVE_CUDA
#include "model/kernels/cuda/cuda_ops.h"
#endif

namespace stepserve {

Attention::Attention(const ModelConfig& config, int layer_index, const ModelWeights& weights, at::Device device)
    : layer_index_(layer_index),
      layer_(config.layers[layer_index]),
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

at::Tensor Attention::Forward(const at::Tensor& x, const StepAttentionMetadata& meta, PagedKvCache* cache) const {
  const int64_t n = x.size(0), nh = layer_.num_heads, nkv = layer_.num_kv_heads, d = head_dim_;
  at::Tensor qkv = at::matmul(x, qkv_proj_.t());
  at::Tensor q = qkv.narrow(1, 0, nh * d).view({n, nh, d});
  at::Tensor k = qkv.narrow(1, nh * d, nkv * d).view({n, nkv, d});
  at::Tensor v = qkv.narrow(1, (nh + nkv) * d, nkv * d).view({n, nkv, d});
  bool normed_and_rotated = false;
#ifdef STEPSERVE_CUDA
  if (x.is_cuda()) {
    // One launch, in place on the views into qkv (this step's own buffer).
    QkNormRopeCuda(q, k, q_norm_, k_norm_, meta.positions, rotary_.inv_freq(), rotary_.rotary_dim(), eps_);
    normed_and_rotated = true;
  }
#endif
  if (!normed_and_rotated) {
    q = RmsNorm(q, q_norm_, eps_);
    k = RmsNorm(k, k_norm_, eps_);
    if (rotary_.rotary_dim() > 0) {
      auto [cos, sin] = rotary_.CosSin(meta.positions);
      q = rotary_.Apply(q, cos, sin);
      k = rotary_.Apply(k, cos, sin);
    }
  }
  const auto& seqs = meta.seqs[static_cast<int>(layer_.attention_kind)];
  AttentionShape shape{static_cast<int>(nh), static_cast<int>(nkv), layer_.sliding_window,
                       1.0 / std::sqrt(static_cast<double>(d))};
  at::Tensor k_pool, v_pool;
  if (cache != nullptr) {
    k_pool = cache->KeyPool(layer_index_);
    v_pool = cache->ValuePool(layer_index_);
  }
  at::Tensor gate_logits = g_proj_.defined() ? at::matmul(x, g_proj_.t()) : at::Tensor();  // [N, heads]
  at::Tensor out;
#ifdef STEPSERVE_CUDA
  if (PagedDecodeCudaSupports(q, k_pool, seqs, shape)) {
    // Decode steps: the head-wise gate is applied in the attention kernel's epilogue.
    out = PagedDecodeAttentionCuda(q, k, v, k_pool, v_pool, seqs, shape, gate_logits);
    gate_logits = at::Tensor();
  }
#endif
  if (!out.defined()) out = PagedAttention(q, k, v, k_pool, v_pool, seqs, shape);
  if (cache != nullptr) WriteKvCache(k, v, cache->KeyPool(layer_index_), cache->ValuePool(layer_index_), seqs);
  if (gate_logits.defined()) {
    at::Tensor gate = at::sigmoid(gate_logits.to(at::kFloat));
    out = (out.to(at::kFloat) * gate.unsqueeze(-1)).to(x.scalar_type());
  }
  return at::matmul(out.reshape({n, nh * d}), o_proj_.t());
}

}  // namespace stepserve
