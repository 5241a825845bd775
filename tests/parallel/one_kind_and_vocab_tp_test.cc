// Tensor parallelism at 2 ranks (in-process Gloo groups) for two findings of issue #18:
// - models with one attention kind only (tests/data/tiny-full, tiny-sliding): the golden logits through a
//   paged cache, and the golden greedy continuations through the executor on rank 0 with prefix caching on;
// - a vocabulary the rank count does not divide: each rank holds ceil(V/N) lm_head rows (the last rank's
//   shard is short and padded), the padding is dropped after the all-gather, so the logits have exactly V
//   columns and equal one rank's, and no padded row is ever sampled.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "engine/executor.h"
#include "engine/forward_batch.h"
#include "engine/kv_cache.h"
#include "engine/step_broadcast.h"
#include "engine/step_runner.h"
#include "model/loading/checkpoint.h"
#include "model/loading/config.h"
#include "model/loading/presets.h"
#include "model/loading/tensor_split.h"
#include "model/loading/weight_sharding.h"
#include "tests/engine/executor_test_util.h"
#include "tests/parallel/parallel_test_util.h"
#include "tests/test_util.h"

namespace stepserve::testing {
namespace {

KvCacheOptions SmallBlocks() {
  KvCacheOptions kv;
  kv.block_size = 4;
  kv.num_blocks_full = 32;
  kv.num_blocks_sliding = 32;
  return kv;
}

class OneKindTpTest : public ::testing::TestWithParam<std::string> {};

// Rank 0 feeds seq0 as a 6-token prefill and then token by token through the paged cache; every row of
// the gathered logits matches the golden.
TEST_P(OneKindTpTest, GoldenLogitsOnTwoRanks) {
  const std::string dir = CheckpointDir(GetParam());
  const ModelConfig config = *LoadModelConfigFile(dir + "/config.json");
  const at::Tensor tokens = GoldenTensorIn(dir, "seq0.tokens"), expected = GoldenTensorIn(dir, "seq0.logits");
  RunGroup(2, [&](int rank, std::shared_ptr<Communicator> comm) {
    const ParallelConfig p{2, rank, false};
    absl::StatusOr<ModelWeights> weights = LoadCheckpointWeights(dir, config, at::kFloat, p);
    ASSERT_TRUE(weights.ok()) << weights.status();
    CausalLM model(config, std::move(*weights), at::kCPU, ParallelContext{p, comm});
    PagedKvCache cache(model.kv_config(), SmallBlocks());
    if (rank != 0) {
      EXPECT_TRUE(ServeWorkerSteps(model, &cache.pools()).ok());
      return;
    }
    KvSequence seq;
    int64_t t = 0;
    while (t < tokens.size(0)) {
      const int64_t n = t == 0 ? 6 : 1;
      ForwardBatch batch;
      batch.token_ids = tokens.narrow(0, t, n);
      batch.seqs.push_back({n, t, &seq});
      batch.all_logits = true;
      absl::StatusOr<at::Tensor> logits = Forward(model, batch, &cache);
      EXPECT_TRUE(logits.ok()) << "position " << t << ": " << logits.status();
      if (!logits.ok()) break;
      EXPECT_LE(MaxAbsDiff(*logits, expected.narrow(0, t, n)), 1e-4) << "position " << t;
      t += n;
    }
    SendStop(*comm);
  });
}

// Rank 0's executor (prefix caching on, chunked prefills) gives the golden greedy continuations: the
// prompts, then a second turn of each (prompt and its first 10 golden tokens) that starts from the cache.
TEST_P(OneKindTpTest, GoldenGreedyThroughTheExecutorOnTwoRanks) {
  const std::string dir = CheckpointDir(GetParam());
  const ModelConfig config = *LoadModelConfigFile(dir + "/config.json");
  const std::vector<GreedyCase> cases = GreedyCasesIn(dir);
  const int n = static_cast<int>(cases.size()) * 2;
  constexpr size_t kTurn = 10;
  OutputCollector collector;
  int64_t hits = -1;
  RunGroup(2, [&](int rank, std::shared_ptr<Communicator> comm) {
    const ParallelConfig p{2, rank, false};
    absl::StatusOr<ModelWeights> weights = LoadCheckpointWeights(dir, config, at::kFloat, p);
    ASSERT_TRUE(weights.ok()) << weights.status();
    auto model = std::make_unique<CausalLM>(config, std::move(*weights), at::kCPU, ParallelContext{p, comm});
    ExecutorOptions options;
    options.kv_cache_bytes = 4 << 20;
    options.block_size = 4;
    options.max_num_seqs = 3;
    options.max_num_batched_tokens = 10;
    options.enable_prefix_caching = true;
    options.heartbeat_interval = absl::Milliseconds(20);
    if (rank != 0) {
      absl::StatusOr<KvCacheOptions> kv = PlanKvCache(*model, options);
      ASSERT_TRUE(kv.ok()) << kv.status();
      KvPools pools(model->kv_config(), *kv);
      EXPECT_TRUE(ServeWorkerSteps(*model, &pools).ok());
      return;
    }
    absl::StatusOr<std::unique_ptr<Executor>> ex = Executor::Create(std::move(model), options);
    ASSERT_TRUE(ex.ok()) << ex.status();
    for (int round = 0; round < 2; ++round) {
      for (size_t i = 0; i < cases.size(); ++i) {
        std::vector<int32_t> prompt = cases[i].prompt;
        if (round == 1) prompt.insert(prompt.end(), cases[i].greedy.begin(), cases[i].greedy.begin() + kTurn);
        EXPECT_TRUE((*ex)->Submit(GreedyRequest(absl::StrCat("r", round, "-", i), prompt,
                                                static_cast<int>(cases[i].greedy.size() - (round == 1 ? kTurn : 0))),
                                  collector.Callback())
                        .ok());
      }
      EXPECT_TRUE(collector.WaitFinished((round + 1) * static_cast<int>(cases.size())));
    }
    hits = (*ex)->Stats().prefix_cache_hits_total;
    ex->reset();  // drains, then tells the worker to stop
  });
  ASSERT_EQ(collector.finished(), n);
  for (int round = 0; round < 2; ++round) {
    for (size_t i = 0; i < cases.size(); ++i) {
      const Collected c = collector.Get(absl::StrCat("r", round, "-", i));
      const std::vector<int32_t> expected(cases[i].greedy.begin() + (round == 1 ? kTurn : 0), cases[i].greedy.end());
      EXPECT_EQ(c.reason, FinishReason::kLength) << c.final_output.error;
      EXPECT_EQ(c.tokens, expected) << GetParam() << " round " << round << " prompt " << i;
    }
  }
  EXPECT_GT(hits, 0);
}

INSTANTIATE_TEST_SUITE_P(Golden, OneKindTpTest, ::testing::Values("tiny-full", "tiny-sliding"),
                         [](const auto& info) { return info.param == "tiny-full" ? "FullOnly" : "SlidingOnly"; });

// Each rank owns ceil(V/N) vocabulary slots; the ranges tile [0, V) and a rank past the end holds none.
TEST(VocabPaddingTest, RangesTileTheVocabulary) {
  for (int64_t vocab : {1, 5, 300, 301, 611, 128896}) {
    for (int n : {1, 2, 3, 4, 8}) {
      int64_t next = 0;
      for (int r = 0; r < n; ++r) {
        const IndexRange range = VocabRange(vocab, {n, r, false});
        EXPECT_EQ(range.begin, next) << vocab << " / " << n << " rank " << r;
        EXPECT_GE(range.size, 0);
        EXPECT_LE(range.size, VocabShardRows(vocab, {n, r, false}));
        next = range.begin + range.size;
      }
      EXPECT_EQ(next, vocab) << vocab << " / " << n;
      EXPECT_EQ(VocabShardRows(vocab, {n, 0, false}), (vocab + n - 1) / n);
    }
  }
  EXPECT_EQ(VocabRange(5, {4, 3, false}).size, 0);  // ranks of 2 slots: 2, 2, 1, 0
  EXPECT_EQ(VocabRange(5, {4, 2, false}).size, 1);
  // The shards: the last rank's lm_head is short, the others ceil(V/N) rows.
  ModelConfig c = *PresetConfig("tiny");
  c.vocab_size = 611;
  for (const TensorShard& s : RankTensorShards(c, {2, 1, false})) {
    if (s.name == "lm_head.weight") EXPECT_EQ(s.shape()[0], 305);
  }
  for (const TensorShard& s : RankTensorShards(c, {2, 0, false})) {
    if (s.name == "lm_head.weight") EXPECT_EQ(s.shape()[0], 306);
  }
}

// An odd vocabulary at TP 2: the executor on rank 0 samples exactly what one rank's executor samples, and
// never a padded id (the padding's logits are gone before the sampler sees them). Random weights, greedy
// and seeded sampling with top-k 0 (every id a candidate).
TEST(VocabPaddingTest, ExecutorOnTwoRanksSamplesLikeOneRank) {
  ModelConfig config = *PresetConfig("tiny");
  config.vocab_size = 611;
  ASSERT_TRUE(ValidateModelConfig(config).ok());
  const ModelWeights full = RandomWeights(config, 5, at::kFloat, at::kCPU);
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 6; ++i) {
    GenerationRequest r = GreedyRequest(absl::StrCat("v", i), {static_cast<int32_t>(600 + i), 3, 77, 610, 9}, 12);
    if (i % 2 == 1) {
      r.sampling.temperature = 1.5f;
      r.sampling.seed = 1000 + i;
    }
    requests.push_back(r);
  }
  ExecutorOptions options;
  options.kv_cache_bytes = 4 << 20;
  options.heartbeat_interval = absl::Milliseconds(20);
  auto run = [&](std::unique_ptr<CausalLM> model, OutputCollector& out) {
    absl::StatusOr<std::unique_ptr<Executor>> ex = Executor::Create(std::move(model), options);
    ASSERT_TRUE(ex.ok()) << ex.status();
    for (const GenerationRequest& r : requests) EXPECT_TRUE((*ex)->Submit(r, out.Callback()).ok());
    EXPECT_TRUE(out.WaitFinished(static_cast<int>(requests.size())));
    ex->reset();
  };
  OutputCollector one, two;
  run(std::make_unique<CausalLM>(config, full, at::kCPU), one);
  RunGroup(2, [&](int rank, std::shared_ptr<Communicator> comm) {
    const ParallelConfig p{2, rank, false};
    std::unique_ptr<CausalLM> model = RankModel(config, full, p, comm);
    if (rank != 0) {
      absl::StatusOr<KvCacheOptions> kv = PlanKvCache(*model, options);
      ASSERT_TRUE(kv.ok()) << kv.status();
      KvPools pools(model->kv_config(), *kv);
      EXPECT_TRUE(ServeWorkerSteps(*model, &pools).ok());
      return;
    }
    run(std::move(model), two);
  });
  for (const GenerationRequest& r : requests) {
    const Collected a = one.Get(r.id), b = two.Get(r.id);
    ASSERT_EQ(b.tokens.size(), 12u) << r.id;
    EXPECT_EQ(a.tokens, b.tokens) << r.id;
    for (int32_t t : b.tokens) EXPECT_LT(t, config.vocab_size) << r.id;
  }
}

}  // namespace
}  // namespace stepserve::testing
