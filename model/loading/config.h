// Step3p5 model configuration, parsed from a Hugging Face config.json.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace stepserve {

enum class AttentionKind { kFull = 0, kSliding = 1 };
inline constexpr int kNumAttentionKinds = 2;

// llama3-style RoPE frequency rescaling (Llama 3.1), applied to selected layer types.
struct RopeScaling {
  bool enabled = false;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  double original_max_position_embeddings = 8192;
};

// Everything that may differ between decoder layers, resolved per layer.
struct LayerConfig {
  AttentionKind attention_kind = AttentionKind::kFull;
  int num_heads = 0;
  int num_kv_heads = 0;
  int sliding_window = 0;  // only for kSliding
  double rope_theta = 10000.0;
  int rotary_dim = 0;      // channels of each head that get RoPE (even)
  bool use_rope = true;
  bool rope_scaled = false;  // llama3 scaling applies to this layer
  bool is_moe = false;
  double swiglu_limit = 0.0;         // routed experts; 0 = no clamp
  double swiglu_limit_shared = 0.0;  // dense MLP and shared expert; 0 = no clamp
};

struct ModelConfig {
  std::string model_type = "step3p5";
  int hidden_size = 0;
  int intermediate_size = 0;  // dense MLP
  int num_hidden_layers = 0;
  int vocab_size = 0;
  int head_dim = 0;
  double rms_norm_eps = 1e-5;
  int max_position_embeddings = 4096;
  bool tie_word_embeddings = false;
  bool use_head_wise_attn_gate = false;  // config.json without the key: false too (ParseModelConfig)
  int bos_token_id = -1;
  std::vector<int> eos_token_ids;
  RopeScaling rope_scaling;

  // MoE
  int moe_num_experts = 0;
  int moe_top_k = 0;
  int moe_intermediate_size = 0;
  int share_expert_dim = 0;
  bool router_sigmoid = true;  // false: softmax
  bool use_moe_router_bias = false;
  double moe_router_scaling_factor = 1.0;
  bool norm_expert_weight = true;

  std::vector<LayerConfig> layers;

  // Convenience queries.
  bool HasAttentionKind(AttentionKind kind) const;
  int MaxSlidingWindow() const;
};

// Parses config.json text. Accepts the Step3p7 wrapper (keys under "text_config").
// Errors name the offending key.
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text);
absl::StatusOr<ModelConfig> LoadModelConfigFile(const std::string& path);

// Checks cross-field invariants (head divisibility, windows, rotary dims).
absl::Status ValidateModelConfig(const ModelConfig& config);

}  // namespace stepserve
