// The model core's one request validator (engine/request_validation.h): every bad field is INVALID_ARGUMENT
// with a message starting with the proto field name, and Executor::Submit answers exactly what it says.
#include "engine/request_validation.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "engine/executor.h"
#include "engine/stop_checker.h"
#include "tests/engine/executor_test_util.h"
#include "tests/test_util.h"

namespace stepserve {
namespace {

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
  limits.max_request_id_length = 16;
  return limits;
}

GenerationRequest Valid() {
  GenerationRequest r;
  r.id = "r1";
  r.prompt = {1, 2, 3};
  r.stopping.max_new_tokens = 4;
  return r;
}

TEST(RequestValidationTest, AValidRequestAndBoundaryValuesAreAccepted) {
  EXPECT_TRUE(ValidateGenerationRequest(Valid(), Config(), Limits()).ok());

  GenerationRequest r;
  r.id = std::string(16, 'x');  // == max_request_id_length
  r.prompt.assign(14, 299);
  r.prompt[0] = 0;
  r.stopping.max_new_tokens = 50;  // == cap, and 14 + 50 == max_context
  r.stopping.stop_token_ids = {0, 299};
  r.sampling.temperature = 0.0f;
  r.sampling.top_p = 1.0f;
  r.sampling.top_k = 0;
  r.sampling.min_p = 1.0f;
  r.sampling.presence_penalty = -2.0f;
  r.sampling.frequency_penalty = 2.0f;
  r.sampling.repetition_penalty = 1e-3f;
  r.logprobs = 5;
  EXPECT_TRUE(ValidateGenerationRequest(r, Config(), Limits()).ok()) << ValidateGenerationRequest(r, Config(), Limits());
  r.sampling.min_p = 0.0f;
  r.logprobs = 0;
  r.stopping.max_new_tokens = 1;
  EXPECT_TRUE(ValidateGenerationRequest(r, Config(), Limits()).ok());
}

struct BadCase {
  std::string name;
  std::function<void(GenerationRequest*)> mutate;
  std::string field;  // the message must start with this and a colon
};

std::vector<BadCase> BadCases() {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  return {
      {"empty request id", [](auto* r) { r->id.clear(); }, "request_id"},
      {"request id too long", [](auto* r) { r->id = std::string(17, 'x'); }, "request_id"},
      {"empty prompt", [](auto* r) { r->prompt.clear(); }, "prompt_token_ids"},
      {"negative token", [](auto* r) { r->prompt[1] = -1; }, "prompt_token_ids[1]"},
      {"token == vocab", [](auto* r) { r->prompt.push_back(300); }, "prompt_token_ids[3]"},
      {"prompt fills the context", [](auto* r) { r->prompt.assign(64, 7); }, "prompt_token_ids"},
      {"prompt + max_new_tokens > context",
       [](auto* r) {
         r->prompt.assign(20, 7);  // 20 + 45 > 64
         r->stopping.max_new_tokens = 45;
       },
       "stopping.max_new_tokens"},
      {"max_new_tokens 0", [](auto* r) { r->stopping.max_new_tokens = 0; }, "stopping.max_new_tokens"},
      {"max_new_tokens < 0", [](auto* r) { r->stopping.max_new_tokens = -5; }, "stopping.max_new_tokens"},
      {"max_new_tokens over the cap", [](auto* r) { r->stopping.max_new_tokens = 51; }, "stopping.max_new_tokens"},
      {"stop token == vocab", [](auto* r) { r->stopping.stop_token_ids = {5, 300}; }, "stopping.stop_token_ids[1]"},
      {"stop token < 0", [](auto* r) { r->stopping.stop_token_ids = {-1}; }, "stopping.stop_token_ids[0]"},
      {"temperature < 0", [](auto* r) { r->sampling.temperature = -0.1f; }, "sampling.temperature"},
      {"temperature nan", [nan](auto* r) { r->sampling.temperature = nan; }, "sampling.temperature"},
      {"temperature inf", [inf](auto* r) { r->sampling.temperature = inf; }, "sampling.temperature"},
      {"top_p 0", [](auto* r) { r->sampling.top_p = 0.0f; }, "sampling.top_p"},
      {"top_p > 1", [](auto* r) { r->sampling.top_p = 1.01f; }, "sampling.top_p"},
      {"top_p nan", [nan](auto* r) { r->sampling.top_p = nan; }, "sampling.top_p"},
      {"top_k < 0", [](auto* r) { r->sampling.top_k = -1; }, "sampling.top_k"},
      {"min_p < 0", [](auto* r) { r->sampling.min_p = -0.01f; }, "sampling.min_p"},
      {"min_p > 1", [](auto* r) { r->sampling.min_p = 1.5f; }, "sampling.min_p"},
      {"min_p nan", [nan](auto* r) { r->sampling.min_p = nan; }, "sampling.min_p"},
      {"presence_penalty inf", [inf](auto* r) { r->sampling.presence_penalty = inf; }, "sampling.presence_penalty"},
      {"frequency_penalty nan", [nan](auto* r) { r->sampling.frequency_penalty = nan; },
       "sampling.frequency_penalty"},
      {"repetition_penalty 0", [](auto* r) { r->sampling.repetition_penalty = 0.0f; },
       "sampling.repetition_penalty"},
      {"repetition_penalty inf", [inf](auto* r) { r->sampling.repetition_penalty = inf; },
       "sampling.repetition_penalty"},
      {"logprobs over the cap", [](auto* r) { r->logprobs = 6; }, "logprobs"},
      {"logprobs < 0", [](auto* r) { r->logprobs = -1; }, "logprobs"},
  };
}

TEST(RequestValidationTest, EveryBadFieldIsInvalidArgumentStartingWithTheFieldName) {
  for (const BadCase& c : BadCases()) {
    GenerationRequest r = Valid();
    c.mutate(&r);
    const absl::Status s = ValidateGenerationRequest(r, Config(), Limits());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.name << ": " << s;
    EXPECT_EQ(std::string(s.message()).rfind(c.field + ":", 0), 0u) << c.name << ": " << s.message();
  }
}

TEST(RequestValidationTest, APromptThatFillsTheContextAlsoMentionsMaxNewTokens) {
  GenerationRequest r = Valid();
  r.prompt.assign(64, 7);
  const absl::Status s = ValidateGenerationRequest(r, Config(), Limits());
  EXPECT_NE(s.message().find("max_new_tokens"), std::string::npos) << s;
  EXPECT_NE(s.message().find("64"), std::string::npos) << s;
}

// The executor admits with this validator and nothing else: for every bad request, Submit's status is the
// validator's, code and message. (Needs Executor::Impl::Submit to call ValidateGenerationRequest.)
TEST(RequestValidationTest, ExecutorSubmitReturnsTheValidatorsStatus) {
  ExecutorOptions options;
  options.max_new_tokens_cap = 50;
  options.max_logprobs = 5;
  auto executor = Executor::Create(testing::LoadTinyModel(), options);
  ASSERT_TRUE(executor.ok()) << executor.status();
  Executor& ex = **executor;
  ASSERT_EQ(ex.config().vocab_size, 300);
  RequestLimits limits;
  limits.max_new_tokens_cap = ex.options().max_new_tokens_cap;
  limits.max_logprobs = ex.options().max_logprobs;
  limits.max_context = ex.max_context();
  ASSERT_GT(limits.max_context, 64);

  testing::OutputCollector collector;
  std::vector<BadCase> cases = BadCases();
  cases.push_back({"request id of 300 bytes", [](auto* r) { r->id = std::string(300, 'x'); }, "request_id"});
  cases.push_back({"prompt fills the executor's context",
                   [&](auto* r) { r->prompt.assign(static_cast<size_t>(limits.max_context), 7); }, "prompt_token_ids"});
  cases.push_back({"prompt + max_new_tokens > the executor's context",
                   [&](auto* r) {
                     r->prompt.assign(static_cast<size_t>(limits.max_context) - 10, 7);
                     r->stopping.max_new_tokens = 11;
                   },
                   "stopping.max_new_tokens"});
  for (const BadCase& c : cases) {
    // Bad only under Limits()' small id length and context; the executor-sized versions are added above.
    if (c.name == "request id too long" || c.name == "prompt fills the context" ||
        c.name == "prompt + max_new_tokens > context") {
      continue;
    }
    GenerationRequest r = Valid();
    c.mutate(&r);
    const absl::Status expected = ValidateGenerationRequest(r, ex.config(), limits);
    ASSERT_EQ(expected.code(), absl::StatusCode::kInvalidArgument) << c.name << ": " << expected;
    ASSERT_EQ(std::string(expected.message()).rfind(c.field + ":", 0), 0u) << c.name << ": " << expected;
    EXPECT_EQ(ex.Submit(r, collector.Callback()), expected) << c.name;
  }
  EXPECT_EQ(collector.finished(), 0);
  // A valid request is admitted and completes.
  GenerationRequest ok = Valid();
  ok.stopping.ignore_eos = true;
  ASSERT_TRUE(ex.Submit(ok, collector.Callback()).ok());
  ASSERT_TRUE(collector.WaitFinished(1));
  EXPECT_EQ(collector.Get("r1").tokens.size(), 4u);
}

}  // namespace
}  // namespace stepserve

namespace stepserve {
namespace {

// Issue #18: request ids are printable ASCII only (a newline or an ANSI escape could forge a log line), and
// the stop token list is capped; each refusal names the field.
TEST(RequestLimitsTest, RequestIdCharactersAndStopTokenCount) {
  for (const std::string& id : {std::string("a\nb"), std::string("x\x1b[31mred"), std::string("tab\there"),
                                std::string("del\x7f"), std::string("utf8-\xc3\xa9"), std::string(1, '\0')}) {
    GenerationRequest r = Valid();
    r.id = id;
    const absl::Status s = ValidateGenerationRequest(r, Config(), Limits());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_EQ(std::string(s.message()).rfind("request_id:", 0), 0u) << s.message();
    EXPECT_NE(s.message().find("printable ASCII"), std::string::npos) << s.message();
  }
  GenerationRequest r = Valid();
  r.id = "ok id-1_~!";
  EXPECT_TRUE(ValidateGenerationRequest(r, Config(), Limits()).ok());

  RequestLimits limits = Limits();
  limits.max_stop_token_ids = 4;
  r = Valid();
  r.stopping.stop_token_ids = {1, 2, 3, 4};
  EXPECT_TRUE(ValidateGenerationRequest(r, Config(), limits).ok());
  r.stopping.stop_token_ids.push_back(5);
  const absl::Status s = ValidateGenerationRequest(r, Config(), limits);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(s.message()).rfind("stopping.stop_token_ids:", 0), 0u) << s.message();
  EXPECT_EQ(RequestLimits().max_stop_token_ids, 1024);
}

// The limits come from ExecutorOptions (the server sets them by flags): a 2M-id stop list is refused at
// Submit, before anything is queued; an id over the configured length too.
TEST(RequestLimitsTest, ExecutorOptionsSetTheLimits) {
  ExecutorOptions options;
  options.run_warmup = false;
  options.max_stop_token_ids = 8;
  options.max_request_id_length = 10;
  options.max_cache_salt_length = 4;
  auto executor = Executor::Create(testing::LoadTinyModel(), options);
  ASSERT_TRUE(executor.ok()) << executor.status();
  testing::OutputCollector collector;
  GenerationRequest r = Valid();
  r.stopping.stop_token_ids.assign(2000000, 7);
  absl::Status s = (*executor)->Submit(r, collector.Callback());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(s.message()).rfind("stopping.stop_token_ids:", 0), 0u) << s;
  r = Valid();
  r.id = "eleven-char";
  s = (*executor)->Submit(r, collector.Callback());
  EXPECT_EQ(std::string(s.message()).rfind("request_id:", 0), 0u) << s;
  r = Valid();
  r.cache_salt = "salty";
  s = (*executor)->Submit(r, collector.Callback());
  EXPECT_EQ(std::string(s.message()).rfind("cache_salt:", 0), 0u) << s;
  EXPECT_EQ(collector.finished(), 0);
  options.max_stop_token_ids = -1;
  EXPECT_EQ(Executor::Create(testing::LoadTinyModel(), options).status().code(), absl::StatusCode::kInvalidArgument);
}

// Stop tokens are looked up in a set built at admission: a request with 1000 stop ids (the last one the
// model's first greedy token) stops on it, after exactly one token.
TEST(RequestLimitsTest, StopTokenSetEndsTheRequest) {
  StoppingCriteria stop;
  stop.max_new_tokens = 10;
  for (int32_t t = 0; t < 1000; ++t) stop.stop_token_ids.push_back(t % 250);
  const StopTokenSet set = MakeStopTokenSet(stop);
  EXPECT_EQ(set.size(), 250u);
  const StopContext context{nullptr, 100};
  EXPECT_EQ(CheckStop(stop, set, 249, 1, 5, context), FinishReason::kStopToken);
  EXPECT_EQ(CheckStop(stop, set, 250, 1, 5, context), FinishReason::kNone);
  EXPECT_EQ(CheckStop(stop, set, 250, 10, 5, context), FinishReason::kLength);

  ExecutorOptions options;
  options.run_warmup = false;
  auto executor = Executor::Create(testing::LoadTinyModel(), options);
  ASSERT_TRUE(executor.ok()) << executor.status();
  const testing::GreedyCase golden = testing::GreedyCases()[0];
  testing::OutputCollector collector;
  GenerationRequest r = testing::GreedyRequest("stop", golden.prompt, 10);
  for (int32_t t = 0; t < 300 && r.stopping.stop_token_ids.size() < 999; ++t) {
    if (t != golden.greedy[0]) r.stopping.stop_token_ids.push_back(t);
  }
  r.stopping.stop_token_ids.push_back(golden.greedy[0]);
  ASSERT_TRUE((*executor)->Submit(r, collector.Callback()).ok());
  ASSERT_TRUE(collector.WaitFinished(1));
  EXPECT_EQ(collector.Get("stop").reason, FinishReason::kStopToken);
  EXPECT_EQ(collector.Get("stop").tokens, std::vector<int32_t>{golden.greedy[0]});
}

}  // namespace
}  // namespace stepserve
