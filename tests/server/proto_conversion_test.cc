// The server's proto -> GenerationRequest conversion: defaults for unset fields, every field copied, and
// nothing checked -- out-of-range values reach the model core's validator (the one Executor::Submit runs)
// unchanged, which refuses them naming the proto field.
#include "server/proto_conversion.h"

#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include <gtest/gtest.h>

#include "model/loading/config.h"
#include "engine/request_validation.h"

namespace stepserve::server {
namespace {

RequestDefaults Defaults() {
  RequestDefaults defaults;
  defaults.max_context = 64;
  defaults.max_new_tokens_cap = 50;
  defaults.default_max_new_tokens = 16;
  return defaults;
}

// The model core's side of the same limits (what Executor::Submit validates with).
ModelConfig Config() {
  ModelConfig config;
  config.vocab_size = 300;
  return config;
}
RequestLimits Limits() {
  RequestLimits limits;
  limits.max_context = 64;
  limits.max_new_tokens_cap = 50;
  limits.max_logprobs = 5;
  return limits;
}

absl::Status ConvertAndValidate(const v1::GenerateRequest& proto) {
  return ValidateGenerationRequest(ToGenerationRequest(proto, Defaults()), Config(), Limits());
}

v1::GenerateRequest Valid() {
  v1::GenerateRequest r;
  r.set_request_id("r1");
  for (int t : {1, 2, 3}) r.add_prompt_token_ids(t);
  return r;
}

TEST(ProtoConversion, DefaultsWhenUnset) {
  GenerationRequest request = ToGenerationRequest(Valid(), Defaults());
  EXPECT_EQ(request.id, "r1");
  EXPECT_EQ(request.prompt, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(request.sampling.temperature, 0.0f);
  EXPECT_EQ(request.sampling.top_p, 1.0f);
  EXPECT_EQ(request.sampling.top_k, 0);
  EXPECT_EQ(request.sampling.min_p, 0.0f);
  EXPECT_EQ(request.sampling.presence_penalty, 0.0f);
  EXPECT_EQ(request.sampling.frequency_penalty, 0.0f);
  EXPECT_EQ(request.sampling.repetition_penalty, 1.0f);
  EXPECT_FALSE(request.sampling.seed.has_value());
  EXPECT_EQ(request.stopping.max_new_tokens, 16);
  EXPECT_FALSE(request.stopping.ignore_eos);
  EXPECT_TRUE(request.stopping.stop_token_ids.empty());
  EXPECT_EQ(request.logprobs, 0);
  EXPECT_TRUE(ConvertAndValidate(Valid()).ok());
}

TEST(ProtoConversion, AnEmptyRequestIdIsLeftForTheServerToAssign) {
  v1::GenerateRequest r = Valid();
  r.clear_request_id();
  EXPECT_EQ(ToGenerationRequest(r, Defaults()).id, "");
}

TEST(ProtoConversion, CopiesEveryField) {
  v1::GenerateRequest r = Valid();
  r.mutable_sampling()->set_temperature(0.7f);
  r.mutable_sampling()->set_top_p(0.9f);
  r.mutable_sampling()->set_top_k(40);
  r.mutable_sampling()->set_min_p(0.05f);
  r.mutable_sampling()->set_presence_penalty(0.5f);
  r.mutable_sampling()->set_frequency_penalty(-0.5f);
  r.mutable_sampling()->set_repetition_penalty(1.2f);
  r.mutable_sampling()->set_seed(42);
  r.mutable_stopping()->set_max_new_tokens(7);
  r.mutable_stopping()->add_stop_token_ids(299);
  r.mutable_stopping()->set_ignore_eos(true);
  r.set_logprobs(5);
  r.set_cache_salt("tenant-a");
  GenerationRequest request = ToGenerationRequest(r, Defaults());
  EXPECT_FLOAT_EQ(request.sampling.temperature, 0.7f);
  EXPECT_FLOAT_EQ(request.sampling.top_p, 0.9f);
  EXPECT_EQ(request.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(request.sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(request.sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(request.sampling.frequency_penalty, -0.5f);
  EXPECT_FLOAT_EQ(request.sampling.repetition_penalty, 1.2f);
  EXPECT_EQ(request.sampling.seed, std::optional<uint64_t>(42));
  EXPECT_EQ(request.stopping.max_new_tokens, 7);
  EXPECT_EQ(request.stopping.stop_token_ids, (std::vector<int32_t>{299}));
  EXPECT_TRUE(request.stopping.ignore_eos);
  EXPECT_EQ(request.logprobs, 5);
  EXPECT_EQ(request.cache_salt, "tenant-a");
  EXPECT_TRUE(ConvertAndValidate(r).ok()) << ConvertAndValidate(r);
}

TEST(ProtoConversion, DefaultMaxNewTokensIsCappedToTheContextAndTheCap) {
  v1::GenerateRequest r;
  r.set_request_id("long-prompt");
  for (int i = 0; i < 60; ++i) r.add_prompt_token_ids(i);
  EXPECT_EQ(ToGenerationRequest(r, Defaults()).stopping.max_new_tokens, 4);  // 64 - 60
  EXPECT_TRUE(ConvertAndValidate(r).ok()) << ConvertAndValidate(r);

  RequestDefaults big_default = Defaults();
  big_default.default_max_new_tokens = 1000;
  EXPECT_EQ(ToGenerationRequest(Valid(), big_default).stopping.max_new_tokens, 50);  // the cap

  // A prompt that fills the context still converts (max_new_tokens 1); the validator names the prompt.
  v1::GenerateRequest full;
  full.set_request_id("full");
  for (int i = 0; i < 64; ++i) full.add_prompt_token_ids(1);
  EXPECT_EQ(ToGenerationRequest(full, Defaults()).stopping.max_new_tokens, 1);
  absl::Status s = ConvertAndValidate(full);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(s.message()).rfind("prompt_token_ids:", 0), 0u) << s;
}

TEST(ProtoConversion, BoundaryValuesAreAccepted) {
  v1::GenerateRequest r;
  r.set_request_id("b");
  for (int i = 0; i < 14; ++i) r.add_prompt_token_ids(i == 0 ? 0 : 299);
  r.mutable_sampling()->set_temperature(0.0f);
  r.mutable_sampling()->set_top_p(1.0f);
  r.mutable_sampling()->set_top_k(0);
  r.mutable_sampling()->set_min_p(1.0f);
  r.mutable_stopping()->set_max_new_tokens(50);  // 14 + 50 == 64 and 50 == cap
  r.set_logprobs(0);
  r.set_cache_salt(std::string(256, 's'));  // the longest salt
  EXPECT_TRUE(ConvertAndValidate(r).ok()) << ConvertAndValidate(r);
  r.mutable_sampling()->set_min_p(0.0f);
  EXPECT_TRUE(ConvertAndValidate(r).ok());
}

struct BadCase {
  std::string name;
  std::function<void(v1::GenerateRequest*)> mutate;
  std::string field;  // the error message must start with this
};

// Conversion keeps every bad value bad: the validator Submit runs refuses each, naming the proto field.
TEST(ProtoConversion, EveryBadFieldSurvivesConversionAndIsRefusedNamingTheField) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<BadCase> cases = {
      {"empty prompt", [](auto* r) { r->clear_prompt_token_ids(); }, "prompt_token_ids"},
      {"negative token", [](auto* r) { r->set_prompt_token_ids(1, -1); }, "prompt_token_ids[1]"},
      {"token == vocab", [](auto* r) { r->add_prompt_token_ids(300); }, "prompt_token_ids[3]"},
      {"prompt fills context",
       [](auto* r) {
         for (int i = 0; i < 61; ++i) r->add_prompt_token_ids(1);
       },
       "prompt_token_ids"},
      {"prompt + max_new_tokens > context",
       [](auto* r) {
         for (int i = 0; i < 17; ++i) r->add_prompt_token_ids(1);  // 20 + 45 > 64
         r->mutable_stopping()->set_max_new_tokens(45);
       },
       "stopping.max_new_tokens"},
      {"max_new_tokens 0", [](auto* r) { r->mutable_stopping()->set_max_new_tokens(0); }, "stopping.max_new_tokens"},
      {"max_new_tokens < 0", [](auto* r) { r->mutable_stopping()->set_max_new_tokens(-5); },
       "stopping.max_new_tokens"},
      {"max_new_tokens over cap",
       [](auto* r) {
         r->mutable_stopping()->set_max_new_tokens(51);
       },
       "stopping.max_new_tokens"},
      {"temperature < 0", [](auto* r) { r->mutable_sampling()->set_temperature(-0.1f); }, "sampling.temperature"},
      {"temperature nan", [nan](auto* r) { r->mutable_sampling()->set_temperature(nan); }, "sampling.temperature"},
      {"temperature inf", [inf](auto* r) { r->mutable_sampling()->set_temperature(inf); }, "sampling.temperature"},
      {"top_p 0", [](auto* r) { r->mutable_sampling()->set_top_p(0.0f); }, "sampling.top_p"},
      {"top_p > 1", [](auto* r) { r->mutable_sampling()->set_top_p(1.01f); }, "sampling.top_p"},
      {"top_p nan", [nan](auto* r) { r->mutable_sampling()->set_top_p(nan); }, "sampling.top_p"},
      {"top_k < 0", [](auto* r) { r->mutable_sampling()->set_top_k(-1); }, "sampling.top_k"},
      {"min_p < 0", [](auto* r) { r->mutable_sampling()->set_min_p(-0.01f); }, "sampling.min_p"},
      {"min_p > 1", [](auto* r) { r->mutable_sampling()->set_min_p(1.5f); }, "sampling.min_p"},
      {"min_p nan", [nan](auto* r) { r->mutable_sampling()->set_min_p(nan); }, "sampling.min_p"},
      {"presence inf", [inf](auto* r) { r->mutable_sampling()->set_presence_penalty(inf); },
       "sampling.presence_penalty"},
      {"frequency nan", [nan](auto* r) { r->mutable_sampling()->set_frequency_penalty(nan); },
       "sampling.frequency_penalty"},
      {"repetition 0", [](auto* r) { r->mutable_sampling()->set_repetition_penalty(0.0f); },
       "sampling.repetition_penalty"},
      {"logprobs over cap", [](auto* r) { r->set_logprobs(6); }, "logprobs"},
      {"logprobs < 0", [](auto* r) { r->set_logprobs(-1); }, "logprobs"},
      {"stop token out of range", [](auto* r) { r->mutable_stopping()->add_stop_token_ids(300); },
       "stopping.stop_token_ids[0]"},
      {"request_id too long", [](auto* r) { r->set_request_id(std::string(300, 'x')); }, "request_id"},
      {"cache_salt too long", [](auto* r) { r->set_cache_salt(std::string(257, 's')); }, "cache_salt"},
  };
  for (const BadCase& c : cases) {
    v1::GenerateRequest r = Valid();
    c.mutate(&r);
    const absl::Status status = ConvertAndValidate(r);
    ASSERT_FALSE(status.ok()) << c.name;
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_EQ(std::string(status.message()).rfind(c.field + ":", 0), 0u) << c.name << ": " << status.message();
  }
}

}  // namespace
}  // namespace stepserve::server
