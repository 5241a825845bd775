// Tensor and expert parallelism on real c10d Gloo groups (one thread per rank, loopback): the sharded
// model gives the single-rank logits, the executor on rank 0 the single-rank greedy continuations, the
// checkpoint loader reads exactly a rank's slices, and bad splits are refused naming the flag.
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "model/loading/checkpoint.h"
#include "model/loading/config.h"
#include "engine/executor.h"
#include "engine/forward_batch.h"
#include "engine/kv_cache.h"
#include "parallel/capacity_plan.h"
#include "model/loading/tensor_split.h"
#include "engine/step_broadcast.h"
#include "model/loading/weight_sharding.h"
#include "engine/step_runner.h"
#include "model/loading/presets.h"
#include "tests/engine/executor_test_util.h"
#include "tests/parallel/parallel_test_util.h"
#include "tests/test_util.h"

namespace stepserve::testing {
namespace {

// One step of the scenario: each chunk is (sequence, number of tokens).
using ScenarioStep = std::vector<std::pair<int, int>>;

// Three sequences: prefills of 5, 13 and 20 tokens (the last split over two steps; 13 and 20 exceed tiny's
// sliding window of 8), then decodes; block size 4 so that every sequence spans several blocks.
std::vector<ScenarioStep> Scenario() {
  std::vector<ScenarioStep> steps = {{{0, 5}, {1, 13}, {2, 12}}, {{0, 1}, {1, 1}, {2, 8}}};
  for (int i = 0; i < 5; ++i) steps.push_back({{0, 1}, {1, 1}, {2, 1}});
  return steps;
}

KvCacheOptions ScenarioCache() {
  KvCacheOptions kv;
  kv.block_size = 4;
  kv.num_blocks_full = 64;
  kv.num_blocks_sliding = 64;
  return kv;
}

// Runs the scenario through `model` (rank 0 of its group, or a single rank): every token's logits per step.
std::vector<at::Tensor> RunScenario(const CausalLM& model, uint64_t seed) {
  PagedKvCache cache(model.kv_config(), ScenarioCache());
  std::vector<KvSequence> seqs(3);
  at::Generator gen = at::detail::createCPUGenerator(seed);
  std::vector<at::Tensor> logits;
  for (const ScenarioStep& step : Scenario()) {
    ForwardBatch batch;
    std::vector<at::Tensor> ids;
    for (auto [s, n] : step) {
      ids.push_back(at::randint(model.config().vocab_size, {n}, gen, at::TensorOptions().dtype(at::kLong)));
      batch.seqs.push_back({n, seqs[s].num_tokens, &seqs[s]});
    }
    batch.token_ids = at::cat(ids);
    batch.all_logits = true;
    absl::StatusOr<at::Tensor> out = Forward(model, batch, &cache);
    EXPECT_TRUE(out.ok()) << out.status();
    if (!out.ok()) break;
    logits.push_back(*out);
  }
  return logits;
}

struct TpCase {
  std::string name;
  int world;
  bool expert_parallel;
};

class TensorParallelLogitsTest : public ::testing::TestWithParam<std::tuple<std::string, TpCase>> {};

ModelConfig ConfigNamed(const std::string& name) {
  if (name == "tiny") return *PresetConfig("tiny");
  if (name == "head_pattern") return HeadPatternConfig();
  if (name == "tiny_tied") {  // lm_head is the embedding: each rank cuts its vocabulary rows from it
    ModelConfig c = *PresetConfig("tiny");
    c.tie_word_embeddings = true;
    return c;
  }
  // Vocabularies the rank count does not divide: lm_head's shards are padded (the last rank's is short).
  if (name == "tiny_odd_vocab") {
    ModelConfig c = *PresetConfig("tiny");
    c.vocab_size = 301;
    return c;
  }
  if (name == "tiny_tied_odd_vocab") {
    ModelConfig c = *PresetConfig("tiny");
    c.vocab_size = 611;
    c.tie_word_embeddings = true;
    return c;
  }
  if (name == "head_pattern_odd_vocab") {  // 4 ranks of ceil(302 / 4) = 76 rows: the last holds 74
    ModelConfig c = HeadPatternConfig();
    c.vocab_size = 302;
    return c;
  }
  return FewKvHeadsConfig();
}

// The sharded group's fp32 logits equal one rank's within 1e-5 of the logit scale, on every token of
// prefills (chunked too) and decodes through the paged cache.
TEST_P(TensorParallelLogitsTest, MatchesOneRank) {
  const auto& [config_name, tp] = GetParam();
  const ModelConfig config = ConfigNamed(config_name);
  ASSERT_TRUE(ValidateModelConfig(config).ok());
  const ModelWeights full = RandomWeights(config, 7, at::kFloat, at::kCPU);
  const CausalLM reference(config, full, at::kCPU);
  const std::vector<at::Tensor> expected = RunScenario(reference, 11);

  std::vector<at::Tensor> got;
  RunGroup(tp.world, [&](int rank, std::shared_ptr<Communicator> comm) {
    const ParallelConfig p{tp.world, rank, tp.expert_parallel};
    ASSERT_TRUE(ValidateParallelConfig(config, p).ok()) << ValidateParallelConfig(config, p);
    std::unique_ptr<CausalLM> model = RankModel(config, full, p, comm);
    if (rank == 0) {
      got = RunScenario(*model, 11);
      SendStop(*comm);
    } else {
      PagedKvCache cache(model->kv_config(), ScenarioCache());
      EXPECT_TRUE(ServeWorkerSteps(*model, &cache.pools()).ok());
    }
  });
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const double scale = expected[i].abs().max().item<double>();
    EXPECT_LE(MaxAbsDiff(got[i], expected[i]), 1e-5 * scale) << "step " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Tp, TensorParallelLogitsTest,
    ::testing::Values(std::make_tuple("tiny", TpCase{"tp2", 2, false}), std::make_tuple("tiny", TpCase{"tp2_ep", 2, true}),
                      std::make_tuple("tiny_tied", TpCase{"tp2", 2, false}),
                      std::make_tuple("tiny_odd_vocab", TpCase{"tp2", 2, false}),
                      std::make_tuple("tiny_tied_odd_vocab", TpCase{"tp2", 2, false}),
                      std::make_tuple("head_pattern_odd_vocab", TpCase{"tp4", 4, false}),
                      std::make_tuple("head_pattern", TpCase{"tp2", 2, false}),
                      std::make_tuple("head_pattern", TpCase{"tp2_ep", 2, true}),
                      std::make_tuple("head_pattern", TpCase{"tp4", 4, false}),
                      std::make_tuple("head_pattern", TpCase{"tp4_ep", 4, true}),
                      std::make_tuple("few_kv_heads", TpCase{"tp4_replicated_kv", 4, false})),
    [](const auto& info) { return std::get<0>(info.param) + "_" + std::get<1>(info.param).name; });

// Each rank holds total / N of the split weights (lm_head too: split by vocabulary) plus the replicated
// ones (embedding, norms, routers). Measured on the cut tensors.
TEST(TensorParallelTest, RankWeightBytesAreTotalOverNPlusReplicated) {
  for (const std::string& name : {"tiny", "head_pattern"}) {
    const ModelConfig config = ConfigNamed(name);
    const ModelWeights full = RandomWeights(config, 3, at::kFloat, at::kCPU);
    int64_t replicated = 0;
    for (const TensorShard& s : RankTensorShards(config, {2, 0, false})) {
      if (s.dim < 0) replicated += s.numel() * 4;
    }
    EXPECT_GT(replicated, 0);
    for (int world : {2, 4}) {
      for (bool ep : {false, true}) {
        for (int rank = 0; rank < world; ++rank) {
          const ParallelConfig p{world, rank, ep};
          if (!ValidateParallelConfig(config, p).ok()) continue;  // tiny's 6 heads on 4 ranks
          const int64_t measured = ShardWeights(full, config, p).TotalBytes();
          const int64_t split = full.TotalBytes() - replicated;
          EXPECT_EQ(measured, split / world + replicated)
              << name << " world " << world << " ep " << ep << " rank " << rank;
          EXPECT_EQ(measured, RankWeightBytes(config, p, 4));
        }
      }
    }
  }
}

// The loader reads only a rank's slices from the memory-mapped checkpoint: the same tensors as cutting
// the whole model, and nothing else.
TEST(TensorParallelTest, CheckpointLoaderReadsExactlyTheRankSlices) {
  const ModelConfig config = *LoadModelConfigFile(TinyCheckpointDir() + "/config.json");
  const absl::StatusOr<ModelWeights> whole = LoadCheckpointWeights(TinyCheckpointDir(), config, at::kFloat);
  ASSERT_TRUE(whole.ok()) << whole.status();
  for (bool ep : {false, true}) {
    for (int rank = 0; rank < 2; ++rank) {
      const ParallelConfig p{2, rank, ep};
      absl::StatusOr<ModelWeights> loaded = LoadCheckpointWeights(TinyCheckpointDir(), config, at::kFloat, p);
      ASSERT_TRUE(loaded.ok()) << loaded.status();
      const ModelWeights cut = ShardWeights(*whole, config, p);
      EXPECT_EQ(loaded->size(), cut.size());
      EXPECT_EQ(loaded->Get("lm_head.weight").size(0), config.vocab_size / 2);
      for (const TensorShard& s : RankTensorShards(config, p)) {
        ASSERT_TRUE(loaded->Contains(s.name)) << s.name;
        EXPECT_TRUE(at::equal(loaded->Get(s.name), cut.Get(s.name))) << s.name;
        EXPECT_EQ(loaded->Get(s.name).sizes().vec(), s.shape()) << s.name;
      }
      EXPECT_LT(loaded->TotalBytes(), whole->TotalBytes());
    }
  }
}

// Bad splits fail with the flag and the dimension in the message.
TEST(TensorParallelTest, BadSplitsNameTheFlag) {
  const ModelConfig tiny = *PresetConfig("tiny");
  auto message = [&](int world, bool ep) { return std::string(ValidateParallelConfig(tiny, {world, 0, ep}).message()); };
  EXPECT_EQ(message(4, false), "--tensor_parallel_size=4 does not divide the 6 query heads of layer 1");
  EXPECT_NE(message(3, false).find("--tensor_parallel_size=3 does not divide the 4 query heads"), std::string::npos);
  EXPECT_TRUE(ValidateParallelConfig(tiny, {2, 1, true}).ok());
  EXPECT_EQ(ValidateParallelConfig(tiny, {0, 0, false}).code(), absl::StatusCode::kInvalidArgument);
  ModelConfig odd_experts = HeadPatternConfig();
  odd_experts.moe_num_experts = 6;
  EXPECT_EQ(std::string(ValidateParallelConfig(odd_experts, {4, 0, true}).message()),
            "--expert_parallel: --tensor_parallel_size=4 does not divide the 6 experts");
  ModelConfig odd_inter = HeadPatternConfig();
  odd_inter.moe_intermediate_size = 30;
  EXPECT_NE(std::string(ValidateParallelConfig(odd_inter, {4, 0, false}).message()).find("--expert_parallel"),
            std::string::npos);
  EXPECT_TRUE(ValidateParallelConfig(odd_inter, {2, 0, true}).ok());  // whole experts need no slicing
  ModelConfig kv6 = HeadPatternConfig();
  for (LayerConfig& l : kv6.layers) {
    l.num_heads = 96;
    l.num_kv_heads = 6;
  }
  EXPECT_EQ(std::string(ValidateParallelConfig(kv6, {4, 0, false}).message()),
            "--tensor_parallel_size=4 and the 6 KV heads of layer 0: one must divide the other to split or "
            "replicate them");
  ModelConfig odd_vocab = HeadPatternConfig();
  odd_vocab.vocab_size = 301;  // padded, not refused (tests/parallel/vocab_padding_test.cc)
  EXPECT_TRUE(ValidateParallelConfig(odd_vocab, {2, 0, false}).ok());
  ModelConfig dense = tiny;
  for (LayerConfig& l : dense.layers) l.is_moe = false;
  EXPECT_EQ(std::string(ValidateParallelConfig(dense, {2, 0, true}).message()),
            "--expert_parallel needs a model with MoE layers");
}

// KV heads: split while the ranks do not outnumber them, else each rank takes its query heads' KV head.
TEST(TensorParallelTest, KvHeadsSplitOrReplicate) {
  LayerConfig l;
  l.num_heads = 8;
  l.num_kv_heads = 2;
  EXPECT_EQ(KvHeadRange(l, {2, 1, false}).begin, 1);
  EXPECT_EQ(KvHeadRange(l, {2, 1, false}).size, 1);
  for (int rank = 0; rank < 8; ++rank) {
    const IndexRange kv = KvHeadRange(l, {8, rank, false});
    const IndexRange q = QueryHeadRange(l, {8, rank, false});
    EXPECT_EQ(kv.size, 1);
    EXPECT_EQ(kv.begin, q.begin / (l.num_heads / l.num_kv_heads)) << rank;  // GQA: head h reads KV h / group
  }
}

// The step plan survives its int64 encoding; malformed encodings are refused.
TEST(TensorParallelTest, StepPlanEncodingRoundTrips) {
  StepPlan plan;
  plan.token_ids = {5, 6, 7};
  plan.positions = {0, 1, 9};
  plan.chunks = {{2, 0, true}, {1, 9, true}};
  plan.block_size = 4;
  plan.all_logits = true;
  plan.kinds[0] = {3, {0, 1, -1, 4, 5, 6}, {0, 1, 37}};
  plan.kinds[1] = {1, {2, 3}, {8, 9, -1}};
  const std::vector<int64_t> words = EncodeStepPlan(plan);
  StepPlan back;
  ASSERT_TRUE(DecodeStepPlan(words, &back));
  EXPECT_EQ(back.token_ids, plan.token_ids);
  EXPECT_EQ(back.positions, plan.positions);
  ASSERT_EQ(back.chunks.size(), 2u);
  EXPECT_EQ(back.chunks[1].start_pos, 9);
  EXPECT_TRUE(back.chunks[1].cached);
  EXPECT_EQ(back.block_size, 4);
  EXPECT_TRUE(back.all_logits);
  for (int k = 0; k < kNumAttentionKinds; ++k) {
    EXPECT_EQ(back.kinds[k].max_blocks, plan.kinds[k].max_blocks);
    EXPECT_EQ(back.kinds[k].block_tables, plan.kinds[k].block_tables);
    EXPECT_EQ(back.kinds[k].slot_mapping, plan.kinds[k].slot_mapping);
  }
  std::vector<int64_t> truncated(words.begin(), words.end() - 1);
  EXPECT_FALSE(DecodeStepPlan(truncated, &back));
  std::vector<int64_t> negative = words;
  negative[0] = -1;
  EXPECT_FALSE(DecodeStepPlan(negative, &back));
  EXPECT_FALSE(DecodeStepPlan({}, &back));
}

// The executor on rank 0 of a group loaded from the checkpoint (each rank reads its slices) gives the
// golden greedy continuations, for 16 concurrent requests; destroying it stops the worker cleanly.
TEST(TensorParallelTest, ExecutorOnTwoRanksGivesTheGoldenGreedyContinuations) {
  const ModelConfig config = *LoadModelConfigFile(TinyCheckpointDir() + "/config.json");
  const std::vector<GreedyCase> cases = GreedyCases();
  ASSERT_FALSE(cases.empty());
  for (bool ep : {false, true}) {
    OutputCollector collector;
    RunGroup(2, [&](int rank, std::shared_ptr<Communicator> comm) {
      const ParallelConfig p{2, rank, ep};
      absl::StatusOr<ModelWeights> weights = LoadCheckpointWeights(TinyCheckpointDir(), config, at::kFloat, p);
      ASSERT_TRUE(weights.ok()) << weights.status();
      auto model = std::make_unique<CausalLM>(config, std::move(*weights), at::kCPU, ParallelContext{p, comm});
      ExecutorOptions options;
      options.kv_cache_bytes = 8 << 20;
      options.max_num_seqs = 8;  // 16 requests: some wait, prefills are chunked
      options.max_num_batched_tokens = 32;
      options.heartbeat_interval = absl::Milliseconds(20);  // heartbeats interleave with steps
      if (rank != 0) {
        // The mirror of Executor::Create on rank 0: the same KV agreement, then the steps it sends (the
        // warm-up step first).
        absl::StatusOr<KvCacheOptions> kv = PlanKvCache(*model, options);
        ASSERT_TRUE(kv.ok()) << kv.status();
        KvPools pools(model->kv_config(), *kv);
        const absl::Status served = ServeWorkerSteps(*model, &pools);
        EXPECT_TRUE(served.ok()) << served;
        return;
      }
      absl::StatusOr<std::unique_ptr<Executor>> executor = Executor::Create(std::move(model), options);
      ASSERT_TRUE(executor.ok()) << executor.status();
      std::vector<std::thread> clients;
      for (int i = 0; i < 16; ++i) {
        clients.emplace_back([&, i] {
          const GreedyCase& c = cases[i % cases.size()];
          EXPECT_TRUE((*executor)->Submit(GreedyRequest(absl::StrCat("r", i), c.prompt,
                                                        static_cast<int>(c.greedy.size())),
                                          collector.Callback())
                          .ok());
        });
      }
      for (std::thread& t : clients) t.join();
      ASSERT_TRUE(collector.WaitFinished(16));
      executor->reset();  // drains, then tells the worker to stop
    });
    for (int i = 0; i < 16; ++i) {
      const Collected c = collector.Get(absl::StrCat("r", i));
      EXPECT_EQ(c.num_finished, 1);
      EXPECT_EQ(c.tokens, cases[i % cases.size()].greedy) << "request " << i << (ep ? " (expert parallel)" : "");
    }
  }
}

// --dry_run's arithmetic: per-rank weights as the shards count them, the KV cache a fraction of what they
// leave, the longest context capped by max_position_embeddings, and "does not fit" when nothing is left.
TEST(TensorParallelTest, CapacityPlanPerRank) {
  const ModelConfig config = HeadPatternConfig();
  CapacityPlanOptions o;
  o.tensor_parallel_size = 4;
  o.dtype = at::kBFloat16;
  o.device_memory_bytes = 64ll << 20;
  o.memory_fraction = 0.5;
  absl::StatusOr<CapacityPlan> plan = PlanCapacity(config, o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->ranks.size(), 4u);
  EXPECT_TRUE(plan->fits);
  for (const RankCapacity& r : plan->ranks) {
    EXPECT_EQ(r.weight_bytes, RankWeightBytes(config, {4, r.rank, false}, 2));
    EXPECT_EQ(r.kv_bytes, (o.device_memory_bytes - r.weight_bytes) / 2);
    EXPECT_GT(r.kv_capacity_tokens, 0);
    EXPECT_EQ(r.longest_context, std::min<int64_t>(r.kv_capacity_tokens, config.max_position_embeddings));
  }
  o.device_memory_bytes = plan->ranks[0].weight_bytes / 2;  // the weights alone do not fit
  plan = PlanCapacity(config, o);
  ASSERT_TRUE(plan.ok());
  EXPECT_FALSE(plan->fits);
  EXPECT_NE(FormatCapacityPlan(config, o, *plan).find("does NOT fit"), std::string::npos);
  o.tensor_parallel_size = 3;  // 64 query heads
  EXPECT_EQ(PlanCapacity(config, o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace stepserve::testing
