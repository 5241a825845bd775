// Hardening of config parsing (issue #18): every size is range-checked before anything is sized by it, no
// value wraps around, the weights' total is bounded, and special token ids lie inside the vocabulary.
// Each refusal is INVALID_ARGUMENT naming the key.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "absl/time/clock.h"
#include "model/loading/config.h"
#include "model/model_loader.h"
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

// The parse fails fast (no allocation sized by the value) with INVALID_ARGUMENT naming `key`.
void ExpectRefused(const json& j, const std::string& key, const std::string& also = "") {
  const absl::Time start = absl::Now();
  absl::StatusOr<ModelConfig> c = ParseModelConfig(j.dump());
  EXPECT_LT(absl::Now() - start, absl::Seconds(2)) << key;
  ASSERT_FALSE(c.ok()) << "expected a refusal naming " << key;
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  EXPECT_NE(c.status().message().find(key), std::string::npos) << c.status().message();
  if (!also.empty()) EXPECT_NE(c.status().message().find(also), std::string::npos) << c.status().message();
}

TEST(ConfigLimitsTest, HugeLayerCountsAreRefusedNamingTheKey) {
  for (const json& v : {json(2147483647), json(1e8), json(100000000), json(1ll << 40), json(4294967296.0 + 5),
                        json(-1), json(0), json(1e300)}) {
    json j = TinyJson();
    j["num_hidden_layers"] = v;
    ExpectRefused(j, "num_hidden_layers");
  }
}

TEST(ConfigLimitsTest, ValuesThatWouldWrapAreRefused) {
  json j = TinyJson();
  j["vocab_size"] = (1ll << 32) + 300;  // used to become 300
  ExpectRefused(j, "vocab_size", "4294967596");
  j = TinyJson();
  j["vocab_size"] = 18446744073709551615ull;  // past int64
  ExpectRefused(j, "vocab_size");
  j = TinyJson();
  j["eos_token_id"] = 1ll << 40;  // used to become 0
  ExpectRefused(j, "eos_token_id", "1099511627776");
  j = TinyJson();
  j["num_key_value_heads"] = (1ll << 32) + 2;
  j.erase("num_attention_groups");
  ExpectRefused(j, "num_key_value_heads");
  j = TinyJson();
  j["moe_layers_enum"] = (1ll << 32) + 2;
  ExpectRefused(j, "moe_layers_enum");
  j = TinyJson();
  j["use_rope_layers"] = {1, 1, (1ll << 32), 1, 1};
  ExpectRefused(j, "use_rope_layers");
}

TEST(ConfigLimitsTest, SpecialTokenIdsMustBeInTheVocabulary) {
  for (const json& eos : {json(5000), json(-7), json(300), json::array({2, 5000}), json::array({-1})}) {
    json j = TinyJson();
    j["eos_token_id"] = eos;
    ExpectRefused(j, "eos_token_id", "outside the vocabulary [0, 300)");
  }
  json j = TinyJson();
  j["eos_token_id"] = json::array({2, 299});
  absl::StatusOr<ModelConfig> ok = ParseModelConfig(j.dump());
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->eos_token_ids, (std::vector<int>{2, 299}));
  for (const json& bos : {json(300), json(-3), json(1ll << 40)}) {
    j = TinyJson();
    j["bos_token_id"] = bos;
    ExpectRefused(j, "bos_token_id");
  }
  j = TinyJson();
  j["bos_token_id"] = nullptr;  // none
  ok = ParseModelConfig(j.dump());
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->bos_token_id, -1);
  // A config built in code is held to the same rule.
  ModelConfig c = *ParseModelConfig(TinyJson().dump());
  c.eos_token_ids = {5000};
  EXPECT_EQ(ValidateModelConfig(c).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ConfigLimitsTest, EverySizeHasAnUpperBound) {
  const std::vector<std::pair<std::string, json>> cases = {
      {"hidden_size", 1 << 20},          {"intermediate_size", 1 << 30},  {"num_attention_heads", 1 << 20},
      {"num_attention_groups", 1 << 20}, {"head_dim", 1 << 20},           {"vocab_size", 1 << 30},
      {"moe_num_experts", 1 << 20},      {"moe_top_k", 1 << 20},          {"moe_intermediate_size", 1 << 30},
      {"share_expert_dim", 1 << 30},     {"sliding_window", 1 << 30},     {"max_position_embeddings", 1 << 30},
      {"head_dim", 0},                   {"sliding_window", -8},          {"max_position_embeddings", 0},
      {"rms_norm_eps", 0},
  };
  for (const auto& [key, value] : cases) {
    json j = TinyJson();
    j[key] = value;
    ExpectRefused(j, key);
  }
  json j = TinyJson();
  j["attention_other_setting"]["num_attention_heads"] = 1 << 20;
  ExpectRefused(j, "attention_other_setting.num_attention_heads");
  j = TinyJson();
  j["partial_rotary_factors"] = {0.5, 1.0, 1e300, 1.0, 0.5};
  ExpectRefused(j, "partial_rotary_factors");
}

// Each dimension in range, their product not: the weights' total is bounded too.
TEST(ConfigLimitsTest, ProductsOfInRangeValuesAreBounded) {
  json j = TinyJson();
  j["hidden_size"] = 65536;
  j["head_dim"] = 128;
  j["num_attention_heads"] = 512;
  j["num_attention_groups"] = 8;
  j["attention_other_setting"]["num_attention_heads"] = 512;
  j["attention_other_setting"]["num_attention_groups"] = 8;
  j["moe_num_experts"] = 4096;
  j["moe_intermediate_size"] = 1 << 20;
  ExpectRefused(j, "weights would hold");
  // Flash-sized values pass.
  EXPECT_TRUE(LoadModelSpecConfig("flash").ok());
}

// The probe's config.json files: clear errors naming the file and the key, from the loader too.
TEST(ConfigLimitsTest, TheLoaderRefusesTheProbesConfigs) {
  for (const json& layers : {json(2147483647), json(1e8)}) {
    const std::string dir = testing::MakeTempDir("cfg");
    json j = TinyJson();
    j["num_hidden_layers"] = layers;
    std::ofstream(dir + "/config.json") << j.dump();
    std::system(("cp " + testing::TinyCheckpointDir() + "/model.safetensors " + dir + "/").c_str());
    absl::StatusOr<std::unique_ptr<CausalLM>> model = LoadModel(dir, ModelLoadOptions());
    ASSERT_FALSE(model.ok());
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(model.status().message().find("num_hidden_layers"), std::string::npos) << model.status();
    EXPECT_NE(model.status().message().find(dir + "/config.json"), std::string::npos) << model.status();
  }
}

}  // namespace
}  // namespace stepserve
