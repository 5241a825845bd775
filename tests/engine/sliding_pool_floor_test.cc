// A sliding-window pool too small for one sequence's window (issue #18): an accepted request used to
// preempt itself every step (or wait forever for blocks) until its deadline. Executor::Create now refuses
// such a budget, naming the smallest that works; that budget serves a long request without a preemption.
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "absl/strings/numbers.h"
#include "engine/executor.h"
#include "engine/kv_cache.h"
#include "tests/engine/executor_test_util.h"
#include "tests/test_util.h"

namespace stepserve {
namespace {

using testing::GreedyRequest;
using testing::OutputCollector;

// The budget the refusal names, or -1.
int64_t NamedBudget(const absl::Status& s) {
  std::smatch m;
  const std::string text(s.message());
  if (!std::regex_search(text, m, std::regex("smallest KV cache budget that works is ([0-9]+) bytes"))) return -1;
  int64_t bytes = -1;
  return absl::SimpleAtoi(m[1].str(), &bytes) ? bytes : -1;
}

TEST(SlidingPoolFloorTest, BlocksOneSequenceNeeds) {
  const ModelConfig tiny = testing::LoadTinyModel()->config();  // window 8
  EXPECT_EQ(SlidingBlocksForOneSequence(tiny, 16, 512, /*prefix_caching=*/true), 3);
  EXPECT_EQ(SlidingBlocksForOneSequence(tiny, 16, 512, /*prefix_caching=*/false), 4);
  EXPECT_EQ(SlidingBlocksForOneSequence(tiny, 16, 1, /*prefix_caching=*/false), 2);  // decodes only
  EXPECT_EQ(SlidingBlocksForOneSequence(tiny, 4, 512, /*prefix_caching=*/true), 4);
  const ModelConfig full = testing::LoadCheckpointModel(testing::CheckpointDir("tiny-full"))->config();
  EXPECT_EQ(SlidingBlocksForOneSequence(full, 16, 512, true), 0);  // no sliding layer
}

class SlidingPoolFloorExecutorTest : public ::testing::TestWithParam<bool> {};

TEST_P(SlidingPoolFloorExecutorTest, TooSmallIsRefusedAndTheNamedBudgetServes) {
  const bool caching = GetParam();
  ExecutorOptions options;
  options.enable_prefix_caching = caching;
  options.max_num_batched_tokens = 32;
  // tiny: a sliding block (16 tokens, 3 sliding layers) is 24 KiB, a full one 16 KiB. 80 KiB gives the
  // sliding pool 1 block (half the budget, at most) and the full pool 3: a sequence past 16 tokens needs
  // 2 sliding blocks for its window and never gets them.
  options.kv_cache_bytes = 80 << 10;
  absl::StatusOr<KvCacheOptions> planned = PlanKvCache(*testing::LoadTinyModel(), options);
  ASSERT_FALSE(planned.ok());
  absl::StatusOr<std::unique_ptr<Executor>> ex = Executor::Create(testing::LoadTinyModel(), options);
  ASSERT_FALSE(ex.ok()) << "a budget whose sliding pool holds 1 block was accepted";
  EXPECT_EQ(ex.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ex.status().message().find("sliding-window pool gets 1 blocks"), std::string::npos) << ex.status();
  const int64_t named = NamedBudget(ex.status());
  ASSERT_GT(named, options.kv_cache_bytes) << ex.status();
  EXPECT_EQ(named, MinKvCacheBytes(testing::LoadTinyModel()->config(), options.block_size, options.max_num_seqs,
                                   options.max_num_batched_tokens, caching, at::kFloat));

  // One byte less is refused too; the named budget works.
  options.kv_cache_bytes = named - 1;
  EXPECT_FALSE(Executor::Create(testing::LoadTinyModel(), options).ok());
  options.kv_cache_bytes = named;
  ex = Executor::Create(testing::LoadTinyModel(), options);
  ASSERT_TRUE(ex.ok()) << ex.status();
  // The golden prompts, one at a time: each ends with its golden continuation, no preemption, no deadline.
  OutputCollector c;
  const std::vector<testing::GreedyCase> cases = testing::GreedyCases();
  int done = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    if (static_cast<int64_t>(cases[i].prompt.size() + cases[i].greedy.size()) > (*ex)->max_context()) continue;
    GenerationRequest r = GreedyRequest("g" + std::to_string(i), cases[i].prompt,
                                        static_cast<int>(cases[i].greedy.size()));
    r.deadline = absl::Now() + absl::Seconds(60);
    ASSERT_TRUE((*ex)->Submit(r, c.Callback()).ok());
    ASSERT_TRUE(c.WaitFinished(++done));
    EXPECT_EQ(c.Get(r.id).reason, FinishReason::kLength) << c.Get(r.id).final_output.error;
    EXPECT_EQ(c.Get(r.id).tokens, cases[i].greedy) << r.id;
  }
  EXPECT_GT(done, 0) << "max_context " << (*ex)->max_context();
  EXPECT_EQ((*ex)->Stats().num_preemptions_total, 0);
}

INSTANTIATE_TEST_SUITE_P(PrefixCaching, SlidingPoolFloorExecutorTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "On" : "Off"; });

}  // namespace
}  // namespace stepserve
