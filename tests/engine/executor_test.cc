// The batched executor: golden continuations, batch invariance, chunked prefill, preemption,
// cancellation and deadlines, admission errors, drain.
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include <ATen/ATen.h>

#include "engine/executor.h"
#include "engine/forward_batch.h"
#include "tests/engine/executor_test_util.h"
#include "tests/test_util.h"

namespace stepserve {
namespace {

using testing::GreedyRequest;
using testing::OutputCollector;

// Every test runs once per device of testing::TestDevices() (cpu; cuda on a GPU machine).
at::Device g_device = at::kCPU;

class ExecutorTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { g_device = at::Device(GetParam()); }
};

std::unique_ptr<Executor> MakeExecutor(ExecutorOptions options = {}) {
  auto ex = Executor::Create(testing::LoadTinyModel(at::kFloat, g_device), options);
  EXPECT_TRUE(ex.ok()) << ex.status();
  return std::move(ex).value();
}

// Greedy tokens of each request when run alone, one after another.
std::vector<std::vector<int32_t>> RunAlone(const std::vector<GenerationRequest>& requests) {
  auto ex = MakeExecutor();
  std::vector<std::vector<int32_t>> out;
  for (const GenerationRequest& r : requests) {
    OutputCollector c;
    EXPECT_TRUE(ex->Submit(r, c.Callback()).ok());
    EXPECT_TRUE(c.WaitFinished(1));
    out.push_back(c.Get(r.id).tokens);
  }
  return out;
}

// Runs all requests at once on `ex` and returns their tokens in request order.
std::vector<std::vector<int32_t>> RunTogether(Executor& ex, const std::vector<GenerationRequest>& requests) {
  OutputCollector c;
  for (const GenerationRequest& r : requests) EXPECT_TRUE(ex.Submit(r, c.Callback()).ok());
  EXPECT_TRUE(c.WaitFinished(static_cast<int>(requests.size())));
  std::vector<std::vector<int32_t>> out;
  for (const GenerationRequest& r : requests) {
    EXPECT_EQ(c.Get(r.id).num_finished, 1) << r.id;
    out.push_back(c.Get(r.id).tokens);
  }
  return out;
}

std::vector<GenerationRequest> MixedRequests(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<GenerationRequest> out;
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> prompt(1 + rng() % 40);
    for (int32_t& t : prompt) t = static_cast<int32_t>(rng() % 300);
    out.push_back(GreedyRequest("mixed-" + std::to_string(i), prompt, 5 + static_cast<int>(rng() % 26)));
  }
  return out;
}

TEST_P(ExecutorTest, TeacherForcedDecodeThroughPagedCache) {
  auto model = testing::LoadTinyModel(at::kFloat, g_device);
  KvCacheOptions o;
  o.device = g_device;
  o.num_blocks_full = 8;
  o.num_blocks_sliding = 8;
  PagedKvCache cache(model->config(), o);
  KvSequence seq;
  at::Tensor tokens = testing::GoldenTensor("seq0.tokens");
  at::Tensor golden = testing::GoldenTensor("seq0.logits");
  ForwardBatch prefill;
  prefill.token_ids = tokens.narrow(0, 0, 10);
  prefill.seqs.push_back({10, 0, &seq});
  prefill.all_logits = true;
  auto first = Forward(*model, prefill, &cache);
  ASSERT_TRUE(first.ok());
  EXPECT_LE(testing::MaxAbsDiff(*first, golden.narrow(0, 0, 10)), 1e-4);
  for (int64_t t = 10; t < tokens.numel(); ++t) {
    ForwardBatch step;
    step.token_ids = tokens.narrow(0, t, 1);
    step.seqs.push_back({1, t, &seq});
    auto logits = Forward(*model, step, &cache);
    ASSERT_TRUE(logits.ok());
    EXPECT_LE(testing::MaxAbsDiff(*logits, golden.narrow(0, t, 1)), 1e-4) << "position " << t;
  }
}

TEST_P(ExecutorTest, GoldenGreedyContinuationsAlone) {
  auto cases = testing::GreedyCases();
  ASSERT_EQ(cases.size(), 4u);
  std::vector<GenerationRequest> requests;
  for (size_t i = 0; i < cases.size(); ++i) {
    requests.push_back(GreedyRequest("g" + std::to_string(i), cases[i].prompt, 20));
  }
  auto outputs = RunAlone(requests);
  for (size_t i = 0; i < cases.size(); ++i) EXPECT_EQ(outputs[i], cases[i].greedy) << "case " << i;
}

TEST_P(ExecutorTest, GoldenGreedyContinuationsSixteenAtOnce) {
  auto cases = testing::GreedyCases();
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 16; ++i) requests.push_back(GreedyRequest("g" + std::to_string(i), cases[i % 4].prompt, 20));
  auto ex = MakeExecutor();
  auto outputs = RunTogether(*ex, requests);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(outputs[i], cases[i % 4].greedy) << "request " << i;
  EXPECT_GT(ex->Stats().num_steps_total, 0);
}

TEST_P(ExecutorTest, BatchInvarianceOfGreedyAndSeededSampling) {
  auto requests = MixedRequests(16, 7);
  GenerationRequest sampled = GreedyRequest("sampled", {5, 6, 7, 8, 9}, 24);
  sampled.sampling.temperature = 0.9f;
  sampled.sampling.top_p = 0.95f;
  sampled.sampling.top_k = 50;
  sampled.sampling.seed = 1234;
  requests.push_back(sampled);
  auto alone = RunAlone(requests);
  auto ex = MakeExecutor();
  auto together = RunTogether(*ex, requests);
  for (size_t i = 0; i < requests.size(); ++i) EXPECT_EQ(together[i], alone[i]) << requests[i].id;
  // A different seed gives a different sample (the seed is really used).
  sampled.sampling.seed = 99;
  sampled.id = "sampled-99";
  EXPECT_NE(RunAlone({sampled})[0], alone.back());
}

TEST_P(ExecutorTest, ChunkedPrefillEqualsUnchunked) {
  auto requests = MixedRequests(8, 11);
  ExecutorOptions chunked;
  chunked.max_num_batched_tokens = 7;
  auto a = MakeExecutor(chunked);
  auto b = MakeExecutor();
  EXPECT_EQ(RunTogether(*a, requests), RunTogether(*b, requests));
}

TEST_P(ExecutorTest, SlidingLayersStayWithinTheirBlockBound) {
  ExecutorOptions options;
  options.block_size = 4;
  auto ex = MakeExecutor(options);
  const int bound = (ex->config().MaxSlidingWindow() + 3) / 4 + 1;
  std::atomic<bool> violated{false};
  Executor* raw = ex.get();
  ex->SetStepObserver([&](const StepInfo&) {
    ExecutorStats s = raw->Stats();
    if (s.kv_sliding_blocks_used > (s.num_running + s.num_waiting) * bound) violated = true;
  });
  RunTogether(*ex, MixedRequests(8, 3));
  EXPECT_FALSE(violated);
  EXPECT_EQ(ex->Stats().kv_blocks_used, 0);
}

TEST_P(ExecutorTest, PreemptionKeepsOutputsExact) {
  auto requests = MixedRequests(12, 5);
  auto expected = RunTogether(*MakeExecutor(), requests);
  ExecutorOptions tight;
  tight.block_size = 4;
  // Room for about 80 tokens in the full-attention pool: far less than 12 sequences need at once.
  auto probe = KvBlockBytes(testing::LoadTinyModel()->config(), AttentionKind::kFull, 4, at::kFloat);
  tight.kv_cache_bytes = 2 * 20 * probe;
  tight.max_num_seqs = 12;
  auto ex = MakeExecutor(tight);
  EXPECT_EQ(RunTogether(*ex, requests), expected);
  ExecutorStats s = ex->Stats();
  EXPECT_GT(s.num_preemptions_total, 0);
  EXPECT_EQ(s.kv_blocks_used, 0);
}

TEST_P(ExecutorTest, CancellationQueuedMidPrefillAndMidDecodeFreesTheCache) {
  ExecutorOptions options;
  options.max_num_seqs = 1;
  options.max_num_batched_tokens = 8;
  auto ex = MakeExecutor(options);
  OutputCollector c;
  Executor* raw = ex.get();
  // Mid-decode: cancel from the callback after the 3rd token.
  GenerationRequest decode = GreedyRequest("decode", {1, 2, 3}, 100);
  int seen = 0;
  OutputCallback inner = c.Callback();
  ASSERT_TRUE(ex->Submit(decode, [&, inner](const GenerationOutput& o) {
                  inner(o);
                  if (!o.finished && ++seen == 3) raw->Cancel("decode");
                }).ok());
  // Queued behind it (max_num_seqs = 1): cancelled before it ever runs.
  ASSERT_TRUE(ex->Submit(GreedyRequest("queued", {4, 5, 6}, 10), c.Callback()).ok());
  EXPECT_TRUE(ex->Cancel("queued"));
  ASSERT_TRUE(c.WaitFinished(2));
  EXPECT_EQ(c.Get("decode").reason, FinishReason::kCancelled);
  EXPECT_EQ(c.Get("decode").tokens.size(), 3u);
  EXPECT_EQ(c.Get("queued").reason, FinishReason::kCancelled);
  EXPECT_TRUE(c.Get("queued").tokens.empty());

  // Mid-prefill: a 200-token prompt takes 25 steps of 8 tokens; cancel after 3 steps.
  std::atomic<int> steps{0};
  ex->SetStepObserver([&](const StepInfo&) {
    if (++steps == 3) raw->Cancel("prefill");
  });
  std::vector<int32_t> long_prompt(200, 17);
  ASSERT_TRUE(ex->Submit(GreedyRequest("prefill", long_prompt, 5), c.Callback()).ok());
  ASSERT_TRUE(c.WaitFinished(3));
  EXPECT_EQ(c.Get("prefill").reason, FinishReason::kCancelled);
  EXPECT_TRUE(c.Get("prefill").tokens.empty());
  ExecutorStats s = ex->Stats();
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_EQ(s.num_running + s.num_waiting, 0);
  EXPECT_FALSE(ex->Cancel("prefill"));  // already gone
}

TEST_P(ExecutorTest, DeadlineStopsTheRequest) {
  auto ex = MakeExecutor();
  OutputCollector c;
  GenerationRequest r = GreedyRequest("late", {1, 2, 3}, 4000);
  r.deadline = absl::Now() + absl::Milliseconds(50);
  ASSERT_TRUE(ex->Submit(r, c.Callback()).ok());
  ASSERT_TRUE(c.WaitFinished(1));
  EXPECT_EQ(c.Get("late").reason, FinishReason::kDeadlineExceeded);
  EXPECT_EQ(ex->Stats().kv_blocks_used, 0);
}

TEST_P(ExecutorTest, StopTokenEosAndLength) {
  auto ex = MakeExecutor();
  auto cases = testing::GreedyCases();
  OutputCollector c;
  GenerationRequest stop = GreedyRequest("stop", cases[0].prompt, 20);
  stop.stopping.stop_token_ids = {cases[0].greedy[3]};
  ASSERT_TRUE(ex->Submit(stop, c.Callback()).ok());
  GenerationRequest len = GreedyRequest("len", cases[1].prompt, 5);
  ASSERT_TRUE(ex->Submit(len, c.Callback()).ok());
  ASSERT_TRUE(c.WaitFinished(2));
  EXPECT_EQ(c.Get("stop").reason, FinishReason::kStopToken);
  EXPECT_EQ(c.Get("stop").tokens, std::vector<int32_t>(cases[0].greedy.begin(), cases[0].greedy.begin() + 4));
  EXPECT_EQ(c.Get("len").reason, FinishReason::kLength);
  EXPECT_EQ(c.Get("len").tokens.size(), 5u);
  EXPECT_EQ(c.Get("len").final_output.completion_tokens, 5);
  EXPECT_EQ(c.Get("len").final_output.prompt_tokens, static_cast<int>(cases[1].prompt.size()));
}

TEST_P(ExecutorTest, EosStopsUnlessIgnored) {
  auto ex = MakeExecutor();
  OutputCollector c;
  // Sampling at high temperature over 300 tokens hits token 2 within a few hundred draws.
  GenerationRequest r = GreedyRequest("eos", {7, 8}, 2000);
  r.stopping.ignore_eos = false;
  r.sampling.temperature = 50.0f;
  r.sampling.seed = 3;
  ASSERT_TRUE(ex->Submit(r, c.Callback()).ok());
  ASSERT_TRUE(c.WaitFinished(1));
  auto got = c.Get("eos");
  ASSERT_EQ(got.reason, FinishReason::kEos);
  EXPECT_EQ(got.tokens.back(), 2);
  // The same draws with ignore_eos run on past the EOS token.
  r.id = "eos-ignored";
  r.stopping.ignore_eos = true;
  r.stopping.max_new_tokens = static_cast<int>(got.tokens.size()) + 3;
  ASSERT_TRUE(ex->Submit(r, c.Callback()).ok());
  ASSERT_TRUE(c.WaitFinished(2));
  EXPECT_EQ(c.Get("eos-ignored").reason, FinishReason::kLength);
}

TEST_P(ExecutorTest, LogprobsAreNormalisedAndSorted) {
  auto ex = MakeExecutor();
  OutputCollector c;
  GenerationRequest r = GreedyRequest("lp", {10, 11, 12}, 6);
  r.logprobs = 5;
  ASSERT_TRUE(ex->Submit(r, c.Callback()).ok());
  ASSERT_TRUE(c.WaitFinished(1));
  auto got = c.Get("lp");
  ASSERT_EQ(got.logprobs.size(), 6u);
  for (size_t i = 0; i < got.logprobs.size(); ++i) {
    const TokenLogprob& lp = got.logprobs[i];
    EXPECT_EQ(lp.token, got.tokens[i]);
    ASSERT_EQ(lp.top.size(), 5u);
    EXPECT_EQ(lp.top[0].first, lp.token);  // greedy picks the most likely token
    EXPECT_FLOAT_EQ(lp.top[0].second, lp.logprob);
    for (size_t k = 1; k < 5; ++k) EXPECT_LE(lp.top[k].second, lp.top[k - 1].second);
    EXPECT_LE(lp.logprob, 0.0f);
  }
}

TEST_P(ExecutorTest, AdmissionErrorsNameTheField) {
  ExecutorOptions options;
  options.max_new_tokens_cap = 100;
  auto ex = MakeExecutor(options);
  OutputCollector c;
  auto expect = [&](GenerationRequest r, absl::StatusCode code, const std::string& field) {
    absl::Status s = ex->Submit(r, c.Callback());
    EXPECT_EQ(s.code(), code) << field << ": " << s;
    EXPECT_NE(s.message().find(field), std::string::npos) << s;
  };
  const auto ok = GreedyRequest("x", {1, 2}, 4);
  auto r = ok;
  r.prompt.clear();
  expect(r, absl::StatusCode::kInvalidArgument, "prompt_token_ids");
  r = ok;
  r.prompt = {1, 300};
  expect(r, absl::StatusCode::kInvalidArgument, "prompt_token_ids");
  r = ok;
  r.prompt = {-1};
  expect(r, absl::StatusCode::kInvalidArgument, "prompt_token_ids");
  r = ok;
  r.stopping.max_new_tokens = 0;
  expect(r, absl::StatusCode::kInvalidArgument, "max_new_tokens");
  r = ok;
  r.stopping.max_new_tokens = 101;
  expect(r, absl::StatusCode::kInvalidArgument, "max_new_tokens");
  r = ok;
  r.prompt = std::vector<int32_t>(ex->max_context(), 1);
  expect(r, absl::StatusCode::kInvalidArgument, "max_new_tokens");
  r = ok;
  r.sampling.temperature = -1;
  expect(r, absl::StatusCode::kInvalidArgument, "temperature");
  r = ok;
  r.sampling.temperature = std::numeric_limits<float>::infinity();
  expect(r, absl::StatusCode::kInvalidArgument, "temperature");
  r = ok;
  r.sampling.top_p = 0;
  expect(r, absl::StatusCode::kInvalidArgument, "top_p");
  r = ok;
  r.sampling.top_p = 1.5f;
  expect(r, absl::StatusCode::kInvalidArgument, "top_p");
  r = ok;
  r.sampling.top_k = -1;
  expect(r, absl::StatusCode::kInvalidArgument, "top_k");
  r = ok;
  r.sampling.min_p = 2;
  expect(r, absl::StatusCode::kInvalidArgument, "min_p");
  r = ok;
  r.sampling.repetition_penalty = 0;
  expect(r, absl::StatusCode::kInvalidArgument, "repetition_penalty");
  r = ok;
  r.logprobs = 21;
  expect(r, absl::StatusCode::kInvalidArgument, "logprobs");
  // Duplicate id while in flight.
  auto slow = GreedyRequest("dup", {1}, 100);
  ASSERT_TRUE(ex->Submit(slow, c.Callback()).ok());
  expect(slow, absl::StatusCode::kAlreadyExists, "request_id");
  ex->Cancel("dup");
  ASSERT_TRUE(c.WaitFinished(1));
}

TEST_P(ExecutorTest, QueueFullIsResourceExhaustedWhileAdmittedComplete) {
  ExecutorOptions options;
  options.max_num_seqs = 1;
  options.max_queue = 2;
  auto ex = MakeExecutor(options);
  OutputCollector c;
  int accepted = 0, refused = 0;
  for (int i = 0; i < 10; ++i) {
    absl::Status s = ex->Submit(GreedyRequest("q" + std::to_string(i), {1, 2, 3}, 30), c.Callback());
    if (s.ok()) {
      ++accepted;
    } else {
      EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
  ASSERT_TRUE(c.WaitFinished(accepted));
  for (int i = 0; i < accepted; ++i) EXPECT_EQ(c.Get("q" + std::to_string(i)).reason, FinishReason::kLength);
}

TEST_P(ExecutorTest, DrainFinishesInFlightThenRefuses) {
  auto ex = MakeExecutor();
  OutputCollector c;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(ex->Submit(GreedyRequest("d" + std::to_string(i), {3, 4}, 10), c.Callback()).ok());
  ex->Shutdown(absl::Seconds(60));
  EXPECT_EQ(c.finished(), 4);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(c.Get("d" + std::to_string(i)).reason, FinishReason::kLength);
  EXPECT_EQ(ex->Submit(GreedyRequest("late", {1}, 1), c.Callback()).code(), absl::StatusCode::kUnavailable);
}

TEST_P(ExecutorTest, DrainTimeoutAbortsTheRest) {
  auto ex = MakeExecutor();
  OutputCollector c;
  ASSERT_TRUE(ex->Submit(GreedyRequest("long", {3, 4}, 4000), c.Callback()).ok());
  ex->Shutdown(absl::Milliseconds(20));
  EXPECT_EQ(c.finished(), 1);
  EXPECT_EQ(c.Get("long").reason, FinishReason::kAborted);
}

TEST_P(ExecutorTest, StaticBatchingGivesTheSameTokens) {
  auto requests = MixedRequests(10, 9);
  ExecutorOptions stat;
  stat.batching_mode = BatchingMode::kStatic;
  stat.max_num_seqs = 4;
  EXPECT_EQ(RunTogether(*MakeExecutor(stat), requests), RunTogether(*MakeExecutor(), requests));
}

INSTANTIATE_TEST_SUITE_P(Devices, ExecutorTest, ::testing::ValuesIn(testing::TestDevices()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace stepserve
