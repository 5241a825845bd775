#include "model/loading/weights.h"

#include "absl/strings/str_cat.h"

namespace stepserve {

std::vector<TensorSpec> ExpectedTensors(const ModelConfig& c) {
  const int64_t H = c.hidden_size, D = c.head_dim, V = c.vocab_size;
  std::vector<TensorSpec> specs;
  specs.push_back({"model.embed_tokens.weight", {V, H}});
  specs.push_back({"model.norm.weight", {H}});
  if (!c.tie_word_embeddings) specs.push_back({"lm_head.weight", {V, H}});
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const LayerConfig& l = c.layers[i];
    const std::string p = absl::StrCat("model.layers.", i, ".");
    const int64_t nh = l.num_heads, nkv = l.num_kv_heads;
    specs.push_back({p + "input_layernorm.weight", {H}});
    specs.push_back({p + "post_attention_layernorm.weight", {H}});
    specs.push_back({p + "self_attn.q_proj.weight", {nh * D, H}});
    specs.push_back({p + "self_attn.k_proj.weight", {nkv * D, H}});
    specs.push_back({p + "self_attn.v_proj.weight", {nkv * D, H}});
    specs.push_back({p + "self_attn.o_proj.weight", {H, nh * D}});
    specs.push_back({p + "self_attn.q_norm.weight", {D}});
    specs.push_back({p + "self_attn.k_norm.weight", {D}});
    if (c.use_head_wise_attn_gate) specs.push_back({p + "self_attn.g_proj.weight", {nh, H}});
    if (!l.is_moe) {
      const int64_t I = c.intermediate_size;
      specs.push_back({p + "mlp.gate_proj.weight", {I, H}});
      specs.push_back({p + "mlp.up_proj.weight", {I, H}});
      specs.push_back({p + "mlp.down_proj.weight", {H, I}});
      continue;
    }
    const int64_t E = c.moe_num_experts, I = c.moe_intermediate_size;
    specs.push_back({p + "moe.gate.weight", {E, H}});
    if (c.use_moe_router_bias) specs.push_back({p + "moe.router_bias", {E}});
    specs.push_back({p + "moe.gate_proj.weight", {E, I, H}});
    specs.push_back({p + "moe.up_proj.weight", {E, I, H}});
    specs.push_back({p + "moe.down_proj.weight", {E, H, I}});
    if (c.share_expert_dim > 0) {
      const int64_t S = c.share_expert_dim;
      specs.push_back({p + "share_expert.gate_proj.weight", {S, H}});
      specs.push_back({p + "share_expert.up_proj.weight", {S, H}});
      specs.push_back({p + "share_expert.down_proj.weight", {H, S}});
    }
  }
  return specs;
}

const at::Tensor& ModelWeights::Get(const std::string& name) const {
  static const at::Tensor kUndefined;
  auto it = tensors_.find(name);
  return it == tensors_.end() ? kUndefined : it->second;
}

int64_t ModelWeights::TotalBytes() const {
  int64_t total = 0;
  for (const auto& [name, t] : tensors_) total += t.numel() * t.element_size();
  return total;
}

}  // namespace stepserve
