// Models with one attention kind only through the engine (issue #18): Executor::Create's warm-up step (it
// used to fail for tiny-full: "Trying to create tensor with negative dimension -1") and the golden greedy
// continuations of tests/data/tiny-full and tiny-sliding (which came out wrong for tiny-sliding: its steps
// failed once a sequence passed one block), with prefix caching on (each prompt twice: the second round
// continues as a second turn from the cache) and off, chunked prefills and batches.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "engine/executor.h"
#include "tests/engine/executor_test_util.h"
#include "tests/test_util.h"

namespace stepserve {
namespace {

using testing::Collected;
using testing::GreedyRequest;
using testing::OutputCollector;

class OneAttentionKindExecutorTest : public ::testing::TestWithParam<std::tuple<std::string, bool, int>> {};

TEST_P(OneAttentionKindExecutorTest, GreedyContinuationsAreTheGolden) {
  const auto& [name, caching, block_size] = GetParam();
  const std::string dir = testing::CheckpointDir(name);
  const std::vector<testing::GreedyCase> cases = testing::GreedyCasesIn(dir);
  ASSERT_FALSE(cases.empty());
  ExecutorOptions options;
  options.enable_prefix_caching = caching;
  options.block_size = block_size;
  options.max_num_seqs = 3;             // some requests wait
  options.max_num_batched_tokens = 10;  // prefills are chunked
  options.kv_cache_bytes = 4 << 20;
  absl::StatusOr<std::unique_ptr<Executor>> ex = Executor::Create(testing::LoadCheckpointModel(dir), options);
  ASSERT_TRUE(ex.ok()) << ex.status();  // the warm-up step ran
  OutputCollector collector;
  int submitted = 0;
  // Round 0: the prompts. Round 1: a second turn, each prompt followed by its first 10 golden tokens (the
  // first round's blocks, generated tokens included, are cached: a hit of at least one block of 16).
  constexpr size_t kTurn = 10;
  for (int round = 0; round < 2; ++round) {
    for (size_t i = 0; i < cases.size(); ++i) {
      std::vector<int32_t> prompt = cases[i].prompt;
      if (round == 1) prompt.insert(prompt.end(), cases[i].greedy.begin(), cases[i].greedy.begin() + kTurn);
      ASSERT_TRUE((*ex)->Submit(GreedyRequest(absl::StrCat("r", round, "-", i), prompt,
                                              static_cast<int>(cases[i].greedy.size() - (round == 1 ? kTurn : 0))),
                                collector.Callback())
                      .ok());
      ++submitted;
    }
    ASSERT_TRUE(collector.WaitFinished(submitted));
    for (size_t i = 0; i < cases.size(); ++i) {
      const Collected c = collector.Get(absl::StrCat("r", round, "-", i));
      const std::vector<int32_t> expected(cases[i].greedy.begin() + (round == 1 ? kTurn : 0), cases[i].greedy.end());
      EXPECT_EQ(c.num_finished, 1);
      EXPECT_EQ(c.reason, FinishReason::kLength) << c.final_output.error;
      EXPECT_EQ(c.tokens, expected) << name << " round " << round << " prompt " << i;
      if (caching && round == 1) EXPECT_GT(c.final_output.cached_prompt_tokens, 0) << "prompt " << i;
    }
  }
  const ExecutorStats s = (*ex)->Stats();
  EXPECT_EQ(s.step_failures_total, 0);
  if (caching) EXPECT_GT(s.prefix_cache_hits_total, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Golden, OneAttentionKindExecutorTest,
    ::testing::Combine(::testing::Values("tiny-full", "tiny-sliding"), ::testing::Bool(), ::testing::Values(4, 16)),
    [](const auto& info) {
      return absl::StrCat(std::get<0>(info.param) == "tiny-full" ? "FullOnly" : "SlidingOnly",
                          std::get<1>(info.param) ? "_Caching" : "_NoCaching", "_Block", std::get<2>(info.param));
    });

}  // namespace
}  // namespace stepserve
