// Config parsing: every Step3p5 key form, the Step3p7 wrapper, and errors that name the key.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "model/loading/config.h"
#include "model/loading/presets.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace stepserve {
namespace {

using nlohmann::json;

json TinyJson() {
  std::ifstream in(testing::TinyCheckpointDir() + "/config.json");
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

absl::StatusOr<ModelConfig> Parse(const json& j) { return ParseModelConfig(j.dump()); }

void ExpectErrorNaming(const json& j, const std::string& key) {
  auto c = Parse(j);
  ASSERT_FALSE(c.ok()) << "expected an error naming " << key;
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find(key), std::string::npos) << c.status().message();
}

TEST(ConfigTest, ParsesTinyGoldenConfig) {
  auto c = Parse(TinyJson());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->num_hidden_layers, 5);
  ASSERT_EQ(c->layers.size(), 5u);
  EXPECT_EQ(c->layers[0].attention_kind, AttentionKind::kFull);
  EXPECT_EQ(c->layers[0].num_heads, 4);
  EXPECT_EQ(c->layers[0].num_kv_heads, 2);
  EXPECT_EQ(c->layers[0].rotary_dim, 16);
  EXPECT_TRUE(c->layers[0].rope_scaled);
  EXPECT_FALSE(c->layers[0].is_moe);
  EXPECT_DOUBLE_EQ(c->layers[0].swiglu_limit_shared, 1.2);
  EXPECT_EQ(c->layers[1].attention_kind, AttentionKind::kSliding);
  EXPECT_EQ(c->layers[1].num_heads, 6);
  EXPECT_EQ(c->layers[1].sliding_window, 8);
  EXPECT_EQ(c->layers[1].rotary_dim, 32);
  EXPECT_FALSE(c->layers[1].rope_scaled);
  EXPECT_DOUBLE_EQ(c->layers[1].rope_theta, 10000.0);
  EXPECT_TRUE(c->layers[2].is_moe);
  EXPECT_TRUE(c->layers[4].is_moe);
  EXPECT_DOUBLE_EQ(c->layers[3].swiglu_limit, 1.5);
  EXPECT_TRUE(c->rope_scaling.enabled);
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 4.0);
  EXPECT_TRUE(c->use_moe_router_bias);
  EXPECT_DOUBLE_EQ(c->moe_router_scaling_factor, 2.5);
  EXPECT_EQ(c->eos_token_ids, std::vector<int>{2});
  EXPECT_TRUE(c->layers[3].use_rope);  // empty use_rope_layers: every layer
}

TEST(ConfigTest, Step3p7WrapperUnderTextConfig) {
  json wrapped = {{"model_type", "step3p7"}, {"text_config", TinyJson()}, {"eos_token_id", {2, 7}}};
  wrapped["text_config"].erase("eos_token_id");
  auto c = Parse(wrapped);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int>{2, 7}));
}

TEST(ConfigTest, MoeLayersEnumForms) {
  json j = TinyJson();
  j["moe_layers_enum"] = 3;
  auto c = Parse(j);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->layers[2].is_moe);
  EXPECT_TRUE(c->layers[3].is_moe);
  j["moe_layers_enum"] = {1, 4};
  c = Parse(j);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->layers[1].is_moe);
  EXPECT_FALSE(c->layers[3].is_moe);
  j.erase("moe_layers_enum");
  c = Parse(j);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->layers[0].is_moe);
  for (int i = 1; i < 5; ++i) EXPECT_TRUE(c->layers[i].is_moe);
  j["moe_layers_enum"] = "2,x";
  ExpectErrorNaming(j, "moe_layers_enum");
  j["moe_layers_enum"] = "9";
  ExpectErrorNaming(j, "moe_layers_enum");
}

TEST(ConfigTest, ScalarAndNullPerLayerValues) {
  json j = TinyJson();
  j["rope_theta"] = 500000.0;
  j["partial_rotary_factors"] = 0.25;
  j["swiglu_limits"] = nullptr;
  j["swiglu_limits_shared"] = {nullptr, 0, 0, 0, 3.0};
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  for (const LayerConfig& l : c->layers) {
    EXPECT_DOUBLE_EQ(l.rope_theta, 500000.0);
    EXPECT_EQ(l.rotary_dim, 8);
    EXPECT_EQ(l.swiglu_limit, 0.0);
  }
  EXPECT_EQ(c->layers[0].swiglu_limit_shared, 0.0);
  EXPECT_EQ(c->layers[4].swiglu_limit_shared, 3.0);
}

TEST(ConfigTest, UseRopeLayersAndRopeParameters) {
  json j = TinyJson();
  j["use_rope_layers"] = {true, false, true, true, false};
  j["rope_parameters"] = j["rope_scaling"];
  j.erase("rope_scaling");
  j.erase("yarn_only_types");
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->layers[1].use_rope);
  EXPECT_TRUE(c->layers[2].use_rope);
  for (const LayerConfig& l : c->layers) EXPECT_TRUE(l.rope_scaled);  // no yarn_only_types: every layer
  j["rope_parameters"] = {{"rope_type", "default"}};
  c = Parse(j);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->rope_scaling.enabled);
}

TEST(ConfigTest, TieWordEmbeddings) {
  json j = TinyJson();
  j["tie_word_embeddings"] = true;
  auto c = Parse(j);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->tie_word_embeddings);
}

// A default-constructed ModelConfig and a config.json that leaves an optional key out agree.
TEST(ConfigTest, MissingOptionalKeysTakeTheStructDefaults) {
  const ModelConfig defaults;
  EXPECT_FALSE(defaults.use_head_wise_attn_gate);
  json j = TinyJson();
  ASSERT_TRUE(j.contains("use_head_wise_attn_gate"));
  for (const char* key : {"use_head_wise_attn_gate", "tie_word_embeddings", "rms_norm_eps", "max_position_embeddings",
                          "bos_token_id", "use_moe_router_bias", "moe_router_scaling_factor", "norm_expert_weight",
                          "moe_router_activation"}) {
    j.erase(key);
  }
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->use_head_wise_attn_gate, defaults.use_head_wise_attn_gate);
  EXPECT_EQ(c->tie_word_embeddings, defaults.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, defaults.rms_norm_eps);
  EXPECT_EQ(c->max_position_embeddings, defaults.max_position_embeddings);
  EXPECT_EQ(c->bos_token_id, defaults.bos_token_id);
  EXPECT_EQ(c->use_moe_router_bias, defaults.use_moe_router_bias);
  EXPECT_DOUBLE_EQ(c->moe_router_scaling_factor, defaults.moe_router_scaling_factor);
  EXPECT_EQ(c->norm_expert_weight, defaults.norm_expert_weight);
  EXPECT_EQ(c->router_sigmoid, defaults.router_sigmoid);
}

TEST(ConfigTest, ErrorsNameTheKey) {
  json j = TinyJson();
  j["rope_scaling"]["rope_type"] = "yarn";
  ExpectErrorNaming(j, "rope_type");
  ExpectErrorNaming(j, "yarn");

  j = TinyJson();
  j["num_attention_groups"] = 3;
  ExpectErrorNaming(j, "num_attention_groups");

  j = TinyJson();
  j["attention_other_setting"]["num_attention_groups"] = 4;
  ExpectErrorNaming(j, "attention_other_setting.num_attention_groups");

  j = TinyJson();
  j["rope_theta"] = {1.0, 2.0};
  ExpectErrorNaming(j, "rope_theta");

  j = TinyJson();
  j["swiglu_limits"] = {1.0, 2.0, 3.0};
  ExpectErrorNaming(j, "swiglu_limits");

  j = TinyJson();
  j["layer_types"] = {"full_attention", "sliding_attention"};
  ExpectErrorNaming(j, "layer_types");

  j = TinyJson();
  j["sliding_window"] = 0;
  ExpectErrorNaming(j, "sliding_window");

  j = TinyJson();
  j.erase("sliding_window");
  ExpectErrorNaming(j, "sliding_window");

  j = TinyJson();
  j["layer_types"][2] = "linear_attention";
  ExpectErrorNaming(j, "layer_types");
  ExpectErrorNaming(j, "linear_attention");

  j = TinyJson();
  j["partial_rotary_factors"] = {0.5, 1.0, 0.3, 1.0, 0.5};  // 32 * 0.3 = 9.6 -> 9, odd
  ExpectErrorNaming(j, "partial_rotary_factors");

  j = TinyJson();
  j.erase("hidden_size");
  ExpectErrorNaming(j, "hidden_size");

  j = TinyJson();
  j["moe_router_activation"] = "relu";
  ExpectErrorNaming(j, "moe_router_activation");

  j = TinyJson();
  j["moe_top_k"] = 9;
  ExpectErrorNaming(j, "moe_top_k");

  EXPECT_FALSE(ParseModelConfig("{not json").ok());
  EXPECT_FALSE(ParseModelConfig("[1,2]").ok());
}

TEST(ConfigTest, PresetsParse) {
  auto tiny = PresetConfig("tiny");
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  auto golden = Parse(TinyJson());
  ASSERT_TRUE(golden.ok());
  EXPECT_EQ(tiny->hidden_size, golden->hidden_size);
  EXPECT_EQ(tiny->layers.size(), golden->layers.size());

  auto small = PresetConfig("small");
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->num_hidden_layers, 8);
  EXPECT_EQ(small->layers[0].attention_kind, AttentionKind::kFull);
  EXPECT_EQ(small->layers[3].attention_kind, AttentionKind::kSliding);
  EXPECT_EQ(small->layers[4].attention_kind, AttentionKind::kFull);
  EXPECT_EQ(small->layers[1].num_heads, 24);
  EXPECT_EQ(small->layers[0].rotary_dim, 32);
  EXPECT_FALSE(small->layers[1].is_moe);
  EXPECT_TRUE(small->layers[2].is_moe);
  EXPECT_EQ(small->moe_num_experts, 32);

  auto flash = PresetConfig("flash");
  ASSERT_TRUE(flash.ok()) << flash.status();
  EXPECT_EQ(flash->num_hidden_layers, 45);
  EXPECT_EQ(flash->layers[8].attention_kind, AttentionKind::kFull);
  EXPECT_EQ(flash->layers[9].num_heads, 96);
  EXPECT_TRUE(flash->layers[0].rope_scaled);
  EXPECT_FALSE(flash->layers[1].rope_scaled);
  EXPECT_FALSE(flash->layers[2].is_moe);
  EXPECT_TRUE(flash->layers[3].is_moe);
  auto flash4 = PresetConfig("flash", 4);
  ASSERT_TRUE(flash4.ok());
  EXPECT_EQ(flash4->num_hidden_layers, 4);

  EXPECT_EQ(PresetConfig("huge").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace stepserve
