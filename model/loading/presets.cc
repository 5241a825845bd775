#include "model/loading/presets.h"

#include <cmath>
#include <functional>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace stepserve {
namespace {

using nlohmann::json;

// Same as tests/data/tiny/config.json (the golden reference config).
json TinyConfig() {
  return json{
      {"architectures", {"Step3p5ForCausalLM"}},
      {"model_type", "step3p5"},
      {"hidden_size", 64},
      {"intermediate_size", 96},
      {"num_hidden_layers", 5},
      {"vocab_size", 300},
      {"num_attention_heads", 4},
      {"num_attention_groups", 2},
      {"head_dim", 32},
      {"attention_other_setting",
       {{"attention_type", "sliding_attention"}, {"num_attention_heads", 6}, {"num_attention_groups", 2}}},
      {"layer_types",
       {"full_attention", "sliding_attention", "sliding_attention", "sliding_attention", "full_attention"}},
      {"sliding_window", 8},
      {"partial_rotary_factors", {0.5, 1.0, 1.0, 1.0, 0.5}},
      {"rope_theta", {5000000.0, 10000.0, 10000.0, 10000.0, 5000000.0}},
      {"rope_scaling",
       {{"rope_type", "llama3"},
        {"factor", 4.0},
        {"low_freq_factor", 1.0},
        {"high_freq_factor", 4.0},
        {"original_max_position_embeddings", 64}}},
      {"yarn_only_types", {"full_attention"}},
      {"use_head_wise_attn_gate", true},
      {"use_rope_layers", json::array()},
      {"attention_bias", false},
      {"rms_norm_eps", 1e-05},
      {"max_position_embeddings", 4096},
      {"tie_word_embeddings", false},
      {"moe_layers_enum", "2,3,4"},
      {"moe_num_experts", 8},
      {"moe_top_k", 3},
      {"moe_intermediate_size", 32},
      {"share_expert_dim", 48},
      {"moe_router_activation", "sigmoid"},
      {"use_moe_router_bias", true},
      {"moe_router_scaling_factor", 2.5},
      {"norm_expert_weight", true},
      {"need_fp32_gate", true},
      {"swiglu_limits", {0.0, 0.0, 0.0, 1.5, 0.8}},
      {"swiglu_limits_shared", {1.2, 0.0, 0.0, 0.0, 2.0}},
      {"bos_token_id", 1},
      {"eos_token_id", 2}};
}

// A config with `n` layers typed by `is_full(i)`, dense below `first_moe`.
json HybridConfig(int n, const std::function<bool(int)>& is_full, int first_moe) {
  json types = json::array(), partial = json::array(), theta = json::array();
  std::vector<std::string> moe;
  for (int i = 0; i < n; ++i) {
    const bool full = is_full(i);
    types.push_back(full ? "full_attention" : "sliding_attention");
    partial.push_back(full ? 0.5 : 1.0);
    theta.push_back(full ? 5000000.0 : 10000.0);
    if (i >= first_moe) moe.push_back(std::to_string(i));
  }
  json c = json{{"architectures", {"Step3p5ForCausalLM"}}, {"model_type", "step3p5"},
                {"num_hidden_layers", n},                   {"layer_types", types},
                {"partial_rotary_factors", partial},        {"rope_theta", theta},
                {"use_head_wise_attn_gate", true},          {"use_rope_layers", json::array()},
                {"rms_norm_eps", 1e-05},                    {"tie_word_embeddings", false},
                {"moe_layers_enum", absl::StrJoin(moe, ",")}, {"moe_router_activation", "sigmoid"},
                {"use_moe_router_bias", true},              {"moe_router_scaling_factor", 3.0},
                {"norm_expert_weight", true},               {"bos_token_id", 1},
                {"eos_token_id", 2}};
  return c;
}

json SmallConfig(int n) {
  json c = HybridConfig(n, [](int i) { return i % 4 == 0; }, 2);
  c.update(json{{"hidden_size", 1024},
                {"intermediate_size", 2816},
                {"vocab_size", 32000},
                {"num_attention_heads", 16},
                {"num_attention_groups", 4},
                {"head_dim", 64},
                {"attention_other_setting",
                 {{"attention_type", "sliding_attention"}, {"num_attention_heads", 24}, {"num_attention_groups", 4}}},
                {"sliding_window", 128},
                {"max_position_embeddings", 8192},
                {"moe_num_experts", 32},
                {"moe_top_k", 4},
                {"moe_intermediate_size", 256},
                {"share_expert_dim", 256}});
  return c;
}

json FlashConfig(int n) {
  json c = HybridConfig(n, [](int i) { return i % 4 == 0; }, 3);
  c.update(json{{"hidden_size", 4096},
                {"intermediate_size", 11264},
                {"vocab_size", 128896},
                {"num_attention_heads", 64},
                {"num_attention_groups", 8},
                {"head_dim", 128},
                {"attention_other_setting",
                 {{"attention_type", "sliding_attention"}, {"num_attention_heads", 96}, {"num_attention_groups", 8}}},
                {"sliding_window", 512},
                {"max_position_embeddings", 262144},
                {"rope_scaling",
                 {{"rope_type", "llama3"},
                  {"factor", 2.0},
                  {"low_freq_factor", 1.0},
                  {"high_freq_factor", 32.0},
                  {"original_max_position_embeddings", 131072}}},
                {"yarn_only_types", {"full_attention"}},
                {"moe_num_experts", 288},
                {"moe_top_k", 8},
                {"moe_intermediate_size", 1280},
                {"share_expert_dim", 1280}});
  return c;
}

}  // namespace

std::vector<std::string> PresetNames() { return {"tiny", "small", "flash"}; }

bool IsPresetName(const std::string& name) {
  for (const std::string& p : PresetNames()) {
    if (p == name) return true;
  }
  return false;
}

absl::StatusOr<std::string> PresetConfigJson(const std::string& name, int num_layers) {
  if (num_layers < 0) return absl::InvalidArgumentError("num_layers must not be negative");
  json c;
  if (name == "tiny") {
    if (num_layers != 0 && num_layers != 5) {
      return absl::InvalidArgumentError("the tiny preset has exactly 5 layers");
    }
    c = TinyConfig();
  } else if (name == "small") {
    c = SmallConfig(num_layers > 0 ? num_layers : 8);
  } else if (name == "flash") {
    c = FlashConfig(num_layers > 0 ? num_layers : 45);
  } else {
    return absl::NotFoundError(absl::StrCat("unknown preset '", name, "' (known: ", absl::StrJoin(PresetNames(), ", "), ")"));
  }
  return c.dump(2);
}

absl::StatusOr<ModelConfig> PresetConfig(const std::string& name, int num_layers) {
  ASSIGN_OR_RETURN(std::string text, PresetConfigJson(name, num_layers));
  return ParseModelConfig(text);
}

ModelWeights RandomWeights(const ModelConfig& config, uint64_t seed, at::ScalarType dtype, at::Device device) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  ModelWeights weights;
  for (const TensorSpec& spec : ExpectedTensors(config)) {
    at::Tensor t;
    const std::string& n = spec.name;
    const bool is_norm = n.find("norm.weight") != std::string::npos;
    if (is_norm) {
      // Norm weights are offsets from 1 (the model scales by weight + 1).
      t = at::normal(0.0, 0.1, spec.shape, gen);
    } else if (n.find("router_bias") != std::string::npos) {
      t = at::normal(0.0, 0.05, spec.shape, gen);
    } else {
      // Fan-in scaling keeps activations O(1) through the layers.
      const double fan_in = static_cast<double>(spec.shape.back());
      const double std = n.find("embed_tokens") != std::string::npos ? 1.0 : 1.0 / std::sqrt(fan_in);
      t = at::normal(0.0, std, spec.shape, gen);
    }
    weights.Set(spec.name, t.to(device, dtype).contiguous());
  }
  return weights;
}

}  // namespace stepserve
