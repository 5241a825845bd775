#include "model/loading/config.h"

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "model/loading/regular_file.h"
#include "nlohmann/json.hpp"

namespace stepserve {
namespace {

using nlohmann::json;

absl::Status KeyError(const std::string& key, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("config key '", key, "': ", what));
}

bool Has(const json& j, const std::string& key) { return j.contains(key) && !j[key].is_null(); }

// An integer value of a JSON node, as int64; error (naming `key`) for anything else, for floats that are not
// whole numbers and for values outside int64 (so that 2^40 or 1e30 can never wrap or overflow a cast).
absl::StatusOr<int64_t> JsonInteger(const json& v, const std::string& key) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return KeyError(key, absl::StrCat(u, " is out of range"));
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    // 2^63 is exactly representable; anything at or past it (or NaN, inf) is no int64.
    if (!std::isfinite(d) || std::floor(d) != d || d >= 9223372036854775808.0 || d < -9223372036854775808.0) {
      return KeyError(key, absl::StrCat("expected an integer, got ", d));
    }
    return static_cast<int64_t>(d);
  }
  return KeyError(key, "expected an integer");
}

// An integer in [lo, hi], named `key` in the error.
absl::StatusOr<int> JsonIntInRange(const json& v, const std::string& key, int64_t lo, int64_t hi) {
  ASSIGN_OR_RETURN(int64_t x, JsonInteger(v, key));
  if (x < lo || x > hi) return KeyError(key, absl::StrCat(x, " is outside the supported range [", lo, ", ", hi, "]"));
  return static_cast<int>(x);
}

absl::Status CheckRange(const std::string& key, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi) {
    return KeyError(key, absl::StrCat(value, " is outside the supported range [", lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}

// A token id that must lie in [0, vocab_size).
absl::StatusOr<int> TokenIdInVocabulary(const json& v, const std::string& key, int vocab_size) {
  ASSIGN_OR_RETURN(int64_t id, JsonInteger(v, key));
  if (id < 0 || id >= vocab_size) {
    return KeyError(key, absl::StrCat("token id ", id, " is outside the vocabulary [0, ", vocab_size, ")"));
  }
  return static_cast<int>(id);
}

// An int-sized integer (range checks that depend on other fields come later, in CheckRange).
absl::StatusOr<int> GetInt(const json& j, const std::string& key, std::optional<int> fallback) {
  if (!Has(j, key)) {
    if (fallback) return *fallback;
    return KeyError(key, "missing");
  }
  return JsonIntInRange(j[key], key, INT32_MIN, INT32_MAX);
}

absl::StatusOr<double> GetDouble(const json& j, const std::string& key, double fallback) {
  if (!Has(j, key)) return fallback;
  if (!j[key].is_number()) return KeyError(key, "expected a number");
  return j[key].get<double>();
}

absl::StatusOr<bool> GetBool(const json& j, const std::string& key, bool fallback) {
  if (!Has(j, key)) return fallback;
  if (!j[key].is_boolean()) return KeyError(key, "expected true or false");
  return j[key].get<bool>();
}

// A per-layer value given as a scalar (broadcast) or a list of exactly num_layers entries.
// A null scalar or null list element means `null_value` (used for "no limit").
absl::StatusOr<std::vector<double>> GetPerLayer(const json& j, const std::string& key, int num_layers,
                                                double fallback, double null_value) {
  if (!j.contains(key)) return std::vector<double>(num_layers, fallback);
  const json& v = j[key];
  if (v.is_null()) return std::vector<double>(num_layers, null_value);
  if (v.is_number()) return std::vector<double>(num_layers, v.get<double>());
  if (!v.is_array()) return KeyError(key, "expected a number or a list of numbers");
  if (static_cast<int>(v.size()) < num_layers) {
    return KeyError(key, absl::StrCat("list has ", v.size(), " entries, fewer than num_hidden_layers (",
                                      num_layers, ")"));
  }
  std::vector<double> out;
  for (int i = 0; i < num_layers; ++i) {
    if (v[i].is_null()) {
      out.push_back(null_value);
    } else if (v[i].is_number()) {
      out.push_back(v[i].get<double>());
    } else {
      return KeyError(key, absl::StrCat("entry ", i, " is not a number"));
    }
  }
  return out;
}

absl::StatusOr<std::vector<bool>> ParseMoeLayers(const json& j, int num_layers) {
  const std::string key = "moe_layers_enum";
  std::vector<bool> is_moe(num_layers, false);
  std::vector<int> indices;
  if (!Has(j, key)) {
    for (int i = 1; i < num_layers; ++i) indices.push_back(i);
  } else if (j[key].is_number_integer()) {
    ASSIGN_OR_RETURN(int idx, JsonIntInRange(j[key], key, INT32_MIN, INT32_MAX));
    indices.push_back(idx);
  } else if (j[key].is_string()) {
    for (absl::string_view part : absl::StrSplit(j[key].get<std::string>(), ',', absl::SkipWhitespace())) {
      int idx;
      if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &idx)) {
        return KeyError(key, absl::StrCat("'", part, "' is not a layer index"));
      }
      indices.push_back(idx);
    }
  } else if (j[key].is_array()) {
    for (const json& e : j[key]) {
      if (!e.is_number_integer()) return KeyError(key, "list entries must be integers");
      ASSIGN_OR_RETURN(int idx, JsonIntInRange(e, key, INT32_MIN, INT32_MAX));
      indices.push_back(idx);
    }
  } else {
    return KeyError(key, "expected a comma-separated string, an integer or a list");
  }
  for (int idx : indices) {
    if (idx < 0 || idx >= num_layers) {
      return KeyError(key, absl::StrCat("layer index ", idx, " is outside 0..", num_layers - 1));
    }
    is_moe[idx] = true;
  }
  return is_moe;
}

absl::Status ParseRopeScaling(const json& root, ModelConfig& config, std::vector<bool>& scaled_per_layer,
                              const std::vector<std::string>& layer_type_names) {
  std::string key = Has(root, "rope_scaling") ? "rope_scaling" : "rope_parameters";
  const int n = config.num_hidden_layers;
  scaled_per_layer.assign(n, false);
  if (!Has(root, key)) return absl::OkStatus();
  const json& rs = root[key];
  if (!rs.is_object()) return KeyError(key, "expected an object");
  std::string type;
  if (Has(rs, "rope_type")) {
    type = rs["rope_type"].get<std::string>();
  } else if (Has(rs, "type")) {
    type = rs["type"].get<std::string>();
  } else {
    type = "default";
  }
  if (type == "default") return absl::OkStatus();
  if (type != "llama3") {
    return KeyError(key + ".rope_type", absl::StrCat("unsupported rope_type '", type,
                                                     "' (supported: llama3, default)"));
  }
  RopeScaling& s = config.rope_scaling;
  s.enabled = true;
  ASSIGN_OR_RETURN(s.factor, GetDouble(rs, "factor", 1.0));
  ASSIGN_OR_RETURN(s.low_freq_factor, GetDouble(rs, "low_freq_factor", 1.0));
  ASSIGN_OR_RETURN(s.high_freq_factor, GetDouble(rs, "high_freq_factor", 4.0));
  ASSIGN_OR_RETURN(s.original_max_position_embeddings, GetDouble(rs, "original_max_position_embeddings", 8192));
  for (double v : {s.factor, s.low_freq_factor, s.high_freq_factor, s.original_max_position_embeddings}) {
    if (!std::isfinite(v)) return KeyError(key, "every factor must be finite");
  }
  if (s.factor <= 0) return KeyError(key + ".factor", "must be positive");
  if (s.high_freq_factor <= s.low_freq_factor) {
    return KeyError(key + ".high_freq_factor", "must be greater than low_freq_factor");
  }
  if (s.original_max_position_embeddings <= 0) {
    return KeyError(key + ".original_max_position_embeddings", "must be positive");
  }
  if (!Has(root, "yarn_only_types")) {
    scaled_per_layer.assign(n, true);
    return absl::OkStatus();
  }
  const json& types = root["yarn_only_types"];
  if (!types.is_array()) return KeyError("yarn_only_types", "expected a list of layer types");
  for (int i = 0; i < n; ++i) {
    for (const json& t : types) {
      if (t.is_string() && t.get<std::string>() == layer_type_names[i]) scaled_per_layer[i] = true;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ParseRoot(const json& root) {
  ModelConfig c;
  if (Has(root, "model_type") && root["model_type"].is_string()) c.model_type = root["model_type"].get<std::string>();
  // Every size is range-checked as soon as it is read, before anything is sized by it: a config cannot make
  // the parser (or the loader after it) allocate gigabytes, and no value can wrap around.
  ASSIGN_OR_RETURN(c.hidden_size, GetInt(root, "hidden_size", std::nullopt));
  RETURN_IF_ERROR(CheckRange("hidden_size", c.hidden_size, 1, kMaxHiddenSize));
  ASSIGN_OR_RETURN(c.num_hidden_layers, GetInt(root, "num_hidden_layers", std::nullopt));
  RETURN_IF_ERROR(CheckRange("num_hidden_layers", c.num_hidden_layers, 1, kMaxHiddenLayers));
  ASSIGN_OR_RETURN(c.vocab_size, GetInt(root, "vocab_size", std::nullopt));
  RETURN_IF_ERROR(CheckRange("vocab_size", c.vocab_size, 1, kMaxVocabSize));
  ASSIGN_OR_RETURN(c.intermediate_size, GetInt(root, "intermediate_size", std::nullopt));
  RETURN_IF_ERROR(CheckRange("intermediate_size", c.intermediate_size, 0, kMaxIntermediateSize));
  ASSIGN_OR_RETURN(int num_heads, GetInt(root, "num_attention_heads", std::nullopt));
  RETURN_IF_ERROR(CheckRange("num_attention_heads", num_heads, 1, kMaxAttentionHeads));
  int num_kv = num_heads;
  if (Has(root, "num_attention_groups")) {
    ASSIGN_OR_RETURN(num_kv, GetInt(root, "num_attention_groups", std::nullopt));
    RETURN_IF_ERROR(CheckRange("num_attention_groups", num_kv, 1, kMaxAttentionHeads));
  } else if (Has(root, "num_key_value_heads")) {
    ASSIGN_OR_RETURN(num_kv, GetInt(root, "num_key_value_heads", std::nullopt));
    RETURN_IF_ERROR(CheckRange("num_key_value_heads", num_kv, 1, kMaxAttentionHeads));
  }
  ASSIGN_OR_RETURN(c.head_dim, GetInt(root, "head_dim", c.hidden_size / num_heads));
  RETURN_IF_ERROR(CheckRange("head_dim", c.head_dim, 1, kMaxHeadDim));
  ASSIGN_OR_RETURN(c.rms_norm_eps, GetDouble(root, "rms_norm_eps", 1e-5));
  if (!std::isfinite(c.rms_norm_eps) || c.rms_norm_eps <= 0) {
    return KeyError("rms_norm_eps", absl::StrCat("must be finite and positive, got ", c.rms_norm_eps));
  }
  ASSIGN_OR_RETURN(c.max_position_embeddings, GetInt(root, "max_position_embeddings", 4096));
  RETURN_IF_ERROR(CheckRange("max_position_embeddings", c.max_position_embeddings, 1, kMaxPositionEmbeddings));
  ASSIGN_OR_RETURN(c.tie_word_embeddings, GetBool(root, "tie_word_embeddings", false));
  ASSIGN_OR_RETURN(c.use_head_wise_attn_gate, GetBool(root, "use_head_wise_attn_gate", false));
  ASSIGN_OR_RETURN(bool attention_bias, GetBool(root, "attention_bias", false));
  if (attention_bias) return KeyError("attention_bias", "true is not supported by Step3p5");
  // Special token ids must be tokens of the vocabulary (null or absent: none).
  if (Has(root, "bos_token_id")) {
    ASSIGN_OR_RETURN(c.bos_token_id, TokenIdInVocabulary(root["bos_token_id"], "bos_token_id", c.vocab_size));
  }
  if (Has(root, "eos_token_id")) {
    const json& e = root["eos_token_id"];
    if (e.is_number()) {
      ASSIGN_OR_RETURN(int id, TokenIdInVocabulary(e, "eos_token_id", c.vocab_size));
      c.eos_token_ids.push_back(id);
    } else if (e.is_array()) {
      if (e.size() > static_cast<size_t>(c.vocab_size)) {
        return KeyError("eos_token_id", absl::StrCat("lists ", e.size(), " ids, more than the vocabulary holds"));
      }
      for (size_t i = 0; i < e.size(); ++i) {
        if (!e[i].is_number()) return KeyError("eos_token_id", "list entries must be integers");
        ASSIGN_OR_RETURN(int id, TokenIdInVocabulary(e[i], absl::StrCat("eos_token_id[", i, "]"), c.vocab_size));
        c.eos_token_ids.push_back(id);
      }
    } else {
      return KeyError("eos_token_id", "expected an integer or a list of integers");
    }
  }
  const int n = c.num_hidden_layers;

  // Layer types.
  std::vector<std::string> type_names(n, "full_attention");
  if (Has(root, "layer_types")) {
    const json& lt = root["layer_types"];
    if (!lt.is_array()) return KeyError("layer_types", "expected a list");
    if (static_cast<int>(lt.size()) < n) {
      return KeyError("layer_types", absl::StrCat("list has ", lt.size(), " entries, fewer than num_hidden_layers (",
                                                  n, ")"));
    }
    for (int i = 0; i < n; ++i) {
      if (!lt[i].is_string()) return KeyError("layer_types", absl::StrCat("entry ", i, " is not a string"));
      type_names[i] = lt[i].get<std::string>();
      if (type_names[i] != "full_attention" && type_names[i] != "sliding_attention") {
        return KeyError("layer_types", absl::StrCat("unknown layer type '", type_names[i], "' at layer ", i,
                                                    " (expected full_attention or sliding_attention)"));
      }
    }
  }
  int sliding_heads = num_heads, sliding_kv = num_kv;
  if (Has(root, "attention_other_setting")) {
    const json& other = root["attention_other_setting"];
    if (!other.is_object()) return KeyError("attention_other_setting", "expected an object");
    ASSIGN_OR_RETURN(sliding_heads, GetInt(other, "num_attention_heads", num_heads));
    RETURN_IF_ERROR(CheckRange("attention_other_setting.num_attention_heads", sliding_heads, 1, kMaxAttentionHeads));
    ASSIGN_OR_RETURN(sliding_kv, GetInt(other, "num_attention_groups", num_kv));
    RETURN_IF_ERROR(CheckRange("attention_other_setting.num_attention_groups", sliding_kv, 1, kMaxAttentionHeads));
  }
  ASSIGN_OR_RETURN(int window, GetInt(root, "sliding_window", 0));
  RETURN_IF_ERROR(CheckRange("sliding_window", window, 0, kMaxPositionEmbeddings));

  // Per-layer numeric lists.
  std::vector<double> partial;
  if (root.contains("partial_rotary_factors")) {
    ASSIGN_OR_RETURN(partial, GetPerLayer(root, "partial_rotary_factors", n, 1.0, 1.0));
  } else {
    ASSIGN_OR_RETURN(partial, GetPerLayer(root, "partial_rotary_factor", n, 1.0, 1.0));
  }
  ASSIGN_OR_RETURN(std::vector<double> theta, GetPerLayer(root, "rope_theta", n, 10000.0, 10000.0));
  ASSIGN_OR_RETURN(std::vector<double> limits, GetPerLayer(root, "swiglu_limits", n, 0.0, 0.0));
  ASSIGN_OR_RETURN(std::vector<double> limits_shared, GetPerLayer(root, "swiglu_limits_shared", n, 0.0, 0.0));

  std::vector<bool> use_rope(n, true);
  if (Has(root, "use_rope_layers")) {
    const json& ur = root["use_rope_layers"];
    if (!ur.is_array()) return KeyError("use_rope_layers", "expected a list");
    if (!ur.empty()) {
      if (static_cast<int>(ur.size()) < n) {
        return KeyError("use_rope_layers", absl::StrCat("list has ", ur.size(),
                                                        " entries, fewer than num_hidden_layers (", n, ")"));
      }
      for (int i = 0; i < n; ++i) {
        if (ur[i].is_boolean()) {
          use_rope[i] = ur[i].get<bool>();
        } else if (ur[i].is_number_integer()) {
          ASSIGN_OR_RETURN(int on, JsonIntInRange(ur[i], "use_rope_layers", 0, 1));
          use_rope[i] = on != 0;
        } else {
          return KeyError("use_rope_layers", absl::StrCat("entry ", i, " is not a boolean"));
        }
      }
    }
  }
  std::vector<bool> scaled;
  RETURN_IF_ERROR(ParseRopeScaling(root, c, scaled, type_names));
  ASSIGN_OR_RETURN(std::vector<bool> is_moe, ParseMoeLayers(root, n));

  // MoE.
  const bool any_moe = std::find(is_moe.begin(), is_moe.end(), true) != is_moe.end();
  ASSIGN_OR_RETURN(c.moe_num_experts, GetInt(root, "moe_num_experts", 0));
  RETURN_IF_ERROR(CheckRange("moe_num_experts", c.moe_num_experts, 0, kMaxExperts));
  ASSIGN_OR_RETURN(c.moe_top_k, GetInt(root, "moe_top_k", 0));
  RETURN_IF_ERROR(CheckRange("moe_top_k", c.moe_top_k, 0, kMaxExperts));
  ASSIGN_OR_RETURN(c.moe_intermediate_size, GetInt(root, "moe_intermediate_size", 0));
  RETURN_IF_ERROR(CheckRange("moe_intermediate_size", c.moe_intermediate_size, 0, kMaxIntermediateSize));
  ASSIGN_OR_RETURN(c.share_expert_dim, GetInt(root, "share_expert_dim", 0));
  RETURN_IF_ERROR(CheckRange("share_expert_dim", c.share_expert_dim, 0, kMaxIntermediateSize));
  std::string activation = "sigmoid";
  if (Has(root, "moe_router_activation")) activation = root["moe_router_activation"].get<std::string>();
  if (activation != "sigmoid" && activation != "softmax") {
    return KeyError("moe_router_activation", absl::StrCat("unsupported value '", activation,
                                                          "' (expected sigmoid or softmax)"));
  }
  c.router_sigmoid = activation == "sigmoid";
  ASSIGN_OR_RETURN(c.use_moe_router_bias, GetBool(root, "use_moe_router_bias", false));
  ASSIGN_OR_RETURN(c.moe_router_scaling_factor, GetDouble(root, "moe_router_scaling_factor", 1.0));
  if (!std::isfinite(c.moe_router_scaling_factor)) return KeyError("moe_router_scaling_factor", "must be finite");
  ASSIGN_OR_RETURN(c.norm_expert_weight, GetBool(root, "norm_expert_weight", true));
  if (any_moe) {
    if (c.moe_num_experts <= 0) return KeyError("moe_num_experts", "must be positive when MoE layers exist");
    if (c.moe_top_k <= 0 || c.moe_top_k > c.moe_num_experts) {
      return KeyError("moe_top_k", absl::StrCat("must be in 1..moe_num_experts (", c.moe_num_experts, ")"));
    }
    if (c.moe_intermediate_size <= 0) return KeyError("moe_intermediate_size", "must be positive");
    if (c.share_expert_dim < 0) return KeyError("share_expert_dim", "must not be negative");
  }

  for (int i = 0; i < n; ++i) {
    LayerConfig l;
    const bool sliding = type_names[i] == "sliding_attention";
    l.attention_kind = sliding ? AttentionKind::kSliding : AttentionKind::kFull;
    l.num_heads = sliding ? sliding_heads : num_heads;
    l.num_kv_heads = sliding ? sliding_kv : num_kv;
    l.sliding_window = sliding ? window : 0;
    l.rope_theta = theta[i];
    if (!std::isfinite(partial[i]) || partial[i] < 0 || partial[i] > 1) {
      return KeyError("partial_rotary_factors", absl::StrCat("layer ", i, " has ", partial[i], ", outside [0, 1]"));
    }
    const double rd = c.head_dim * partial[i];
    l.rotary_dim = static_cast<int>(rd);
    l.use_rope = use_rope[i];
    l.rope_scaled = scaled[i];
    l.is_moe = is_moe[i];
    l.swiglu_limit = limits[i];
    l.swiglu_limit_shared = limits_shared[i];
    c.layers.push_back(l);
  }
  RETURN_IF_ERROR(ValidateModelConfig(c));
  return c;
}

absl::Status CheckTokenId(const std::string& key, int64_t id, int vocab_size) {
  if (id < 0 || id >= vocab_size) {
    return KeyError(key, absl::StrCat("token id ", id, " is outside the vocabulary [0, ", vocab_size, ")"));
  }
  return absl::OkStatus();
}

// Elements of every weight tensor the config asks for (ExpectedTensors' shapes, counted in double).
double WeightElements(const ModelConfig& c) {
  const double H = c.hidden_size, D = c.head_dim, V = c.vocab_size;
  double n = V * H * (c.tie_word_embeddings ? 1 : 2) + H;  // embedding, lm_head, final norm
  for (const LayerConfig& l : c.layers) {
    n += 2 * H + 2 * D;                                           // layer norms, q/k norms
    n += (2.0 * l.num_heads + 2.0 * l.num_kv_heads) * D * H;      // q, k, v, o
    if (c.use_head_wise_attn_gate) n += static_cast<double>(l.num_heads) * H;
    if (l.is_moe) {
      n += 3.0 * c.moe_num_experts * c.moe_intermediate_size * H + (c.moe_num_experts + 1.0) * H;
      n += 3.0 * c.share_expert_dim * H;
    } else {
      n += 3.0 * c.intermediate_size * H;
    }
  }
  return n;
}

}  // namespace

bool ModelConfig::HasAttentionKind(AttentionKind kind) const {
  for (const LayerConfig& l : layers) {
    if (l.attention_kind == kind) return true;
  }
  return false;
}

int ModelConfig::MaxSlidingWindow() const {
  int w = 0;
  for (const LayerConfig& l : layers) w = std::max(w, l.sliding_window);
  return w;
}

absl::Status ValidateModelConfig(const ModelConfig& c) {
  // The same ranges the parser checks (a config built in code goes through here only).
  RETURN_IF_ERROR(CheckRange("hidden_size", c.hidden_size, 1, kMaxHiddenSize));
  RETURN_IF_ERROR(CheckRange("num_hidden_layers", c.num_hidden_layers, 1, kMaxHiddenLayers));
  RETURN_IF_ERROR(CheckRange("vocab_size", c.vocab_size, 1, kMaxVocabSize));
  RETURN_IF_ERROR(CheckRange("intermediate_size", c.intermediate_size, 0, kMaxIntermediateSize));
  if (c.head_dim <= 0) return KeyError("head_dim", "must be positive");
  RETURN_IF_ERROR(CheckRange("head_dim", c.head_dim, 1, kMaxHeadDim));
  RETURN_IF_ERROR(CheckRange("max_position_embeddings", c.max_position_embeddings, 1, kMaxPositionEmbeddings));
  RETURN_IF_ERROR(CheckRange("moe_num_experts", c.moe_num_experts, 0, kMaxExperts));
  RETURN_IF_ERROR(CheckRange("moe_top_k", c.moe_top_k, 0, kMaxExperts));
  RETURN_IF_ERROR(CheckRange("moe_intermediate_size", c.moe_intermediate_size, 0, kMaxIntermediateSize));
  RETURN_IF_ERROR(CheckRange("share_expert_dim", c.share_expert_dim, 0, kMaxIntermediateSize));
  if (!std::isfinite(c.rms_norm_eps) || c.rms_norm_eps <= 0) return KeyError("rms_norm_eps", "must be finite and positive");
  if (c.bos_token_id != -1) {
    RETURN_IF_ERROR(CheckTokenId("bos_token_id", c.bos_token_id, c.vocab_size));
  }
  for (size_t i = 0; i < c.eos_token_ids.size(); ++i) {
    RETURN_IF_ERROR(CheckTokenId(absl::StrCat("eos_token_id[", i, "]"), c.eos_token_ids[i], c.vocab_size));
  }
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const LayerConfig& l = c.layers[i];
    const bool sliding = l.attention_kind == AttentionKind::kSliding;
    const std::string heads_key = sliding ? "attention_other_setting.num_attention_heads" : "num_attention_heads";
    const std::string kv_key = sliding ? "attention_other_setting.num_attention_groups" : "num_attention_groups";
    RETURN_IF_ERROR(CheckRange(heads_key, l.num_heads, 1, kMaxAttentionHeads));
    RETURN_IF_ERROR(CheckRange(kv_key, l.num_kv_heads, 1, kMaxAttentionHeads));
    if (l.num_heads % l.num_kv_heads != 0) {
      return KeyError(kv_key, absl::StrCat(l.num_kv_heads, " does not divide the head count ", l.num_heads,
                                           " (layer ", i, ")"));
    }
    if (sliding && l.sliding_window <= 0) {
      return KeyError("sliding_window", absl::StrCat("layer ", i, " is sliding_attention but the window is not positive"));
    }
    RETURN_IF_ERROR(CheckRange("sliding_window", l.sliding_window, 0, kMaxPositionEmbeddings));
    if (l.rotary_dim < 0 || l.rotary_dim > c.head_dim) {
      return KeyError("partial_rotary_factors", absl::StrCat("layer ", i, " gives rotary dimension ", l.rotary_dim,
                                                              " outside 0..head_dim (", c.head_dim, ")"));
    }
    if (l.rotary_dim % 2 != 0) {
      return KeyError("partial_rotary_factors",
                      absl::StrCat("layer ", i, " gives an odd rotary dimension ", l.rotary_dim));
    }
    if (!std::isfinite(l.rope_theta) || l.rope_theta <= 0) {
      return KeyError("rope_theta", absl::StrCat("layer ", i, " has a theta that is not finite and positive"));
    }
    if (!std::isfinite(l.swiglu_limit) || l.swiglu_limit < 0) {
      return KeyError("swiglu_limits", absl::StrCat("layer ", i, " is negative or not finite"));
    }
    if (!std::isfinite(l.swiglu_limit_shared) || l.swiglu_limit_shared < 0) {
      return KeyError("swiglu_limits_shared", absl::StrCat("layer ", i, " is negative or not finite"));
    }
    if (!l.is_moe && c.intermediate_size <= 0) return KeyError("intermediate_size", "must be positive");
    if (l.is_moe && (c.moe_num_experts <= 0 || c.moe_intermediate_size <= 0 || c.moe_top_k <= 0 ||
                     c.moe_top_k > c.moe_num_experts)) {
      return KeyError("moe_top_k", absl::StrCat("layer ", i, " is a MoE layer: moe_num_experts and ",
                                                "moe_intermediate_size must be positive and moe_top_k in 1..",
                                                "moe_num_experts"));
    }
  }
  // The products: every dimension may be in range while the weights they make are not (the sum is taken
  // in double, which cannot overflow; the limit is far below where its rounding matters).
  const double elements = WeightElements(c);
  if (elements > static_cast<double>(kMaxWeightElements)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config: the weights would hold ", absl::StrFormat("%.4g", elements), " elements, more than the supported ",
        kMaxWeightElements, " (num_hidden_layers ", c.num_hidden_layers, ", hidden_size ", c.hidden_size,
        ", vocab_size ", c.vocab_size, ", intermediate_size ", c.intermediate_size, ", moe_num_experts ",
        c.moe_num_experts, ", moe_intermediate_size ", c.moe_intermediate_size, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text) {
  json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return absl::InvalidArgumentError("config.json is not valid JSON");
  if (!root.is_object()) return absl::InvalidArgumentError("config.json must hold a JSON object");
  if (root.contains("text_config") && root["text_config"].is_object()) {
    json text = root["text_config"];
    // Top-level ids (eos/bos) of the wrapper apply when the text config lacks them.
    for (const char* k : {"eos_token_id", "bos_token_id", "tie_word_embeddings"}) {
      if (!text.contains(k) && root.contains(k)) text[k] = root[k];
    }
    root = std::move(text);
  }
  try {
    return ParseRoot(root);
  } catch (const json::exception& e) {
    // Type mismatches inside nested objects (e.g. a number where a string belongs).
    return absl::InvalidArgumentError(absl::StrCat("config.json has a value of the wrong type: ", e.what()));
  }
}

absl::StatusOr<ModelConfig> LoadModelConfigFile(const std::string& path) {
  // A regular file only: a FIFO or a device named config.json would block the read forever.
  ASSIGN_OR_RETURN(std::string text, ReadRegularFile(path, kMaxConfigFileBytes));
  auto config = ParseModelConfig(text);
  if (!config.ok()) {
    return absl::Status(config.status().code(), absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

}  // namespace stepserve
