#include "server/request_validation.h"

#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include <gtest/gtest.h>

namespace stepserve::server {
namespace {

ValidationLimits Limits() {
  ValidationLimits limits;
  limits.vocab_size = 300;
  limits.max_context = 64;
  limits.max_new_tokens_cap = 50;
  limits.max_logprobs = 5;
  limits.default_max_new_tokens = 16;
  return limits;
}

v1::GenerateRequest Valid() {
  v1::GenerateRequest r;
  r.set_request_id("r1");
  for (int t : {1, 2, 3}) r.add_prompt_token_ids(t);
  return r;
}

TEST(RequestValidation, DefaultsWhenUnset) {
  auto request = ToGenerationRequest(Valid(), Limits());
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->id, "r1");
  EXPECT_EQ(request->prompt, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(request->sampling.temperature, 0.0f);
  EXPECT_EQ(request->sampling.top_p, 1.0f);
  EXPECT_EQ(request->sampling.top_k, 0);
  EXPECT_EQ(request->sampling.min_p, 0.0f);
  EXPECT_EQ(request->sampling.presence_penalty, 0.0f);
  EXPECT_EQ(request->sampling.frequency_penalty, 0.0f);
  EXPECT_EQ(request->sampling.repetition_penalty, 1.0f);
  EXPECT_FALSE(request->sampling.seed.has_value());
  EXPECT_EQ(request->stopping.max_new_tokens, 16);
  EXPECT_FALSE(request->stopping.ignore_eos);
  EXPECT_TRUE(request->stopping.stop_token_ids.empty());
  EXPECT_EQ(request->logprobs, 0);
}

TEST(RequestValidation, CopiesEveryField) {
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
  auto request = ToGenerationRequest(r, Limits());
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_FLOAT_EQ(request->sampling.temperature, 0.7f);
  EXPECT_FLOAT_EQ(request->sampling.top_p, 0.9f);
  EXPECT_EQ(request->sampling.top_k, 40);
  EXPECT_FLOAT_EQ(request->sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(request->sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(request->sampling.frequency_penalty, -0.5f);
  EXPECT_FLOAT_EQ(request->sampling.repetition_penalty, 1.2f);
  EXPECT_EQ(request->sampling.seed, std::optional<uint64_t>(42));
  EXPECT_EQ(request->stopping.max_new_tokens, 7);
  EXPECT_EQ(request->stopping.stop_token_ids, (std::vector<int32_t>{299}));
  EXPECT_TRUE(request->stopping.ignore_eos);
  EXPECT_EQ(request->logprobs, 5);
}

TEST(RequestValidation, DefaultMaxNewTokensIsCappedToTheContext) {
  v1::GenerateRequest r;
  for (int i = 0; i < 60; ++i) r.add_prompt_token_ids(i);
  auto request = ToGenerationRequest(r, Limits());
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->stopping.max_new_tokens, 4);  // 64 - 60
}

TEST(RequestValidation, BoundaryValuesAreAccepted) {
  v1::GenerateRequest r;
  for (int i = 0; i < 14; ++i) r.add_prompt_token_ids(i == 0 ? 0 : 299);
  r.mutable_sampling()->set_temperature(0.0f);
  r.mutable_sampling()->set_top_p(1.0f);
  r.mutable_sampling()->set_top_k(0);
  r.mutable_sampling()->set_min_p(1.0f);
  r.mutable_stopping()->set_max_new_tokens(50);  // 14 + 50 == 64 and 50 == cap
  r.set_logprobs(0);
  auto request = ToGenerationRequest(r, Limits());
  EXPECT_TRUE(request.ok()) << request.status();
  r.mutable_sampling()->set_min_p(0.0f);
  EXPECT_TRUE(ToGenerationRequest(r, Limits()).ok());
}

struct BadCase {
  std::string name;
  std::function<void(v1::GenerateRequest*)> mutate;
  std::string field;  // the error message must start with this
};

TEST(RequestValidation, EveryBadFieldIsInvalidArgumentNamingTheField) {
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
  };
  for (const BadCase& c : cases) {
    v1::GenerateRequest r = Valid();
    c.mutate(&r);
    auto request = ToGenerationRequest(r, Limits());
    ASSERT_FALSE(request.ok()) << c.name;
    EXPECT_EQ(request.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_EQ(std::string(request.status().message()).rfind(c.field + ":", 0), 0u)
        << c.name << ": " << request.status().message();
  }
}

}  // namespace
}  // namespace stepserve::server
