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

// The largest values a config may hold: ParseModelConfig and ValidateModelConfig refuse more with
// INVALID_ARGUMENT naming the key, before anything is sized by them. Generous next to real models
// (Step-3.5-Flash: 45 layers, hidden 4096, 288 experts, vocabulary 128,896, 262,144 positions).
inline constexpr int kMaxHiddenLayers = 1024;
inline constexpr int kMaxHiddenSize = 1 << 17;          // 131,072
inline constexpr int kMaxIntermediateSize = 1 << 20;    // dense, MoE and shared expert
inline constexpr int kMaxAttentionHeads = 1024;         // query and KV heads, either kind
inline constexpr int kMaxHeadDim = 2048;
inline constexpr int kMaxVocabSize = 1 << 24;           // 16,777,216
inline constexpr int kMaxExperts = 4096;
inline constexpr int kMaxPositionEmbeddings = 1 << 24;  // also the largest sliding_window
inline constexpr int64_t kMaxWeightElements = int64_t{1} << 42;  // all weights together (8 TiB in bf16)
inline constexpr uint64_t kMaxConfigFileBytes = 64ull << 20;     // config.json, the shard index

// Parses config.json text. Accepts the Step3p7 wrapper (keys under "text_config").
// Errors name the offending key.
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text);
absl::StatusOr<ModelConfig> LoadModelConfigFile(const std::string& path);

// Checks the ranges above and cross-field invariants (head divisibility, windows, rotary dims, special
// token ids inside the vocabulary, the weights' total size).
absl::Status ValidateModelConfig(const ModelConfig& config);

}  // namespace stepserve
