// The paged KV cache: continuing a sequence from cache equals recomputing it; sliding-window block bound.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "engine/forward_batch.h"
#include "engine/kv_cache.h"
#include "model/loading/presets.h"
#include "tests/test_util.h"

namespace stepserve {
namespace {

using testing::GoldenTensor;
using testing::MaxAbsDiff;

KvCacheOptions SmallPools(int block_size = 4) {
  KvCacheOptions o;
  o.block_size = block_size;
  o.num_blocks_full = 64;
  o.num_blocks_sliding = 64;
  return o;
}

TEST(KvCacheTest, SplitAcrossTwoForwardCallsEqualsOneCall) {
  auto model = testing::LoadTinyModel();
  at::Tensor tokens = GoldenTensor("seq0.tokens");  // 37 tokens
  PagedKvCache cache(model->config(), SmallPools());
  KvSequence seq;
  ForwardBatch first;
  first.token_ids = tokens.narrow(0, 0, 20);
  first.seqs.push_back({20, 0, &seq});
  first.all_logits = true;
  auto a = Forward(*model, first, &cache);
  ASSERT_TRUE(a.ok()) << a.status();
  ForwardBatch second;
  second.token_ids = tokens.narrow(0, 20, 17);
  second.seqs.push_back({17, 20, &seq});
  second.all_logits = true;
  auto b = Forward(*model, second, &cache);
  ASSERT_TRUE(b.ok()) << b.status();
  at::Tensor logits = at::cat({*a, *b}, 0);
  EXPECT_LE(MaxAbsDiff(logits, GoldenTensor("seq0.logits")), 1e-4);
}

TEST(KvCacheTest, TokenByTokenDecodeMatchesGoldenAndRespectsSlidingBound) {
  auto model = testing::LoadTinyModel();
  at::Tensor tokens = GoldenTensor("seq0.tokens");
  at::Tensor golden = GoldenTensor("seq0.logits");
  const int B = 4;
  PagedKvCache cache(model->config(), SmallPools(B));
  KvSequence seq;
  const int window = model->config().MaxSlidingWindow();
  const int bound = (window + B - 1) / B + 1;
  for (int64_t t = 0; t < tokens.numel(); ++t) {
    ForwardBatch step;
    step.token_ids = tokens.narrow(0, t, 1);
    step.seqs.push_back({1, t, &seq});
    auto logits = Forward(*model, step, &cache);
    ASSERT_TRUE(logits.ok()) << logits.status();
    EXPECT_LE(MaxAbsDiff(*logits, golden.narrow(0, t, 1)), 1e-4) << "position " << t;
    EXPECT_LE(cache.blocks().NumUsedBlocks(AttentionKind::kSliding), bound) << "position " << t;
    EXPECT_EQ(cache.blocks().NumUsedBlocks(AttentionKind::kSliding), cache.blocks().BlocksHeldAtLength(t + 1, AttentionKind::kSliding));
  }
  EXPECT_EQ(cache.blocks().NumUsedBlocks(AttentionKind::kFull), (tokens.numel() + B - 1) / B);
  cache.blocks().Release(seq);
  EXPECT_EQ(cache.blocks().NumUsedBlocks(AttentionKind::kFull), 0);
  EXPECT_EQ(cache.blocks().NumUsedBlocks(AttentionKind::kSliding), 0);
}

TEST(KvCacheTest, BatchOfSequencesWithDifferentOffsets) {
  auto model = testing::LoadTinyModel();
  PagedKvCache cache(model->config(), SmallPools());
  at::Tensor s0 = GoldenTensor("seq0.tokens"), s1 = GoldenTensor("seq1.tokens");
  KvSequence k0, k1;
  // Prefill 30 of seq0 and 5 of seq1 together, then the rests together.
  ForwardBatch a;
  a.token_ids = at::cat({s0.narrow(0, 0, 30), s1.narrow(0, 0, 5)});
  a.seqs = {{30, 0, &k0}, {5, 0, &k1}};
  a.all_logits = true;
  auto la = Forward(*model, a, &cache);
  ASSERT_TRUE(la.ok()) << la.status();
  ForwardBatch b;
  b.token_ids = at::cat({s0.narrow(0, 30, 7), s1.narrow(0, 5, 15)});
  b.seqs = {{7, 30, &k0}, {15, 5, &k1}};
  b.all_logits = true;
  auto lb = Forward(*model, b, &cache);
  ASSERT_TRUE(lb.ok()) << lb.status();
  at::Tensor l0 = at::cat({la->narrow(0, 0, 30), lb->narrow(0, 0, 7)});
  at::Tensor l1 = at::cat({la->narrow(0, 30, 5), lb->narrow(0, 7, 15)});
  EXPECT_LE(MaxAbsDiff(l0, GoldenTensor("seq0.logits")), 1e-4);
  EXPECT_LE(MaxAbsDiff(l1, GoldenTensor("seq1.logits")), 1e-4);
}

TEST(KvCacheTest, RunningOutOfBlocksFailsWithoutSideEffects) {
  auto model = testing::LoadTinyModel();
  KvCacheOptions o = SmallPools(4);
  o.num_blocks_full = 3;  // 12 tokens
  PagedKvCache cache(model->config(), o);
  KvSequence seq;
  ForwardBatch batch;
  batch.token_ids = GoldenTensor("seq1.tokens");  // 20 tokens
  batch.seqs.push_back({20, 0, &seq});
  auto logits = Forward(*model, batch, &cache);
  EXPECT_EQ(logits.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(seq.num_tokens, 0);
  EXPECT_EQ(cache.blocks().NumUsedBlocks(AttentionKind::kFull), 0);
  EXPECT_EQ(cache.blocks().NumUsedBlocks(AttentionKind::kSliding), 0);
}

TEST(KvCacheTest, BudgetSplitsBetweenPools) {
  auto model = testing::LoadTinyModel();
  const ModelConfig& c = model->config();
  auto o = KvCacheOptionsFromBudget(c, 1 << 20, 16, 4, 32, at::kFloat, at::kCPU);
  ASSERT_TRUE(o.ok()) << o.status();
  // Sliding: 4 seqs x (ceil(8/16) + 1) blocks, plus one step's transient: ceil(32/16) + 4.
  EXPECT_EQ(o->num_blocks_sliding, 8 + 2 + 4);
  EXPECT_EQ(o->num_blocks_sliding, SlidingBlocksNeeded(c, 16, 4, 32));
  const int64_t used = o->num_blocks_sliding * KvBlockBytes(c, AttentionKind::kSliding, 16, at::kFloat) +
                       o->num_blocks_full * KvBlockBytes(c, AttentionKind::kFull, 16, at::kFloat);
  EXPECT_LE(used, 1 << 20);
  EXPECT_GT(o->num_blocks_full, 0);
  EXPECT_FALSE(KvCacheOptionsFromBudget(c, 100, 16, 4, 32, at::kFloat, at::kCPU).ok());
}

// The figure the README reports: tokens per GiB of KV cache for the flash preset's layer pattern (12 full,
// 33 sliding layers, bf16) at 8k context, hybrid cache against one that gives every layer every block.
TEST(KvCacheTest, FlashHybridCacheHoldsMoreTokensPerGiB) {
  auto config = PresetConfig("flash");
  ASSERT_TRUE(config.ok());
  KvCacheOptions o;  // zero blocks: only the accounting is used
  o.dtype = at::kBFloat16;
  PagedKvCache cache(*config, o);
  const int64_t context = 8192, B = o.block_size;
  const double gib = 1024.0 * 1024.0 * 1024.0;
  const int64_t hybrid_bytes =
      cache.blocks().BlocksHeldAtLength(context, AttentionKind::kFull) * KvBlockBytes(*config, AttentionKind::kFull, B, at::kBFloat16) +
      // The sliding bound (ceil(window / block) + 1 blocks), the most a sequence holds at any time.
      ((config->MaxSlidingWindow() + B - 1) / B + 1) * KvBlockBytes(*config, AttentionKind::kSliding, B, at::kBFloat16);
  const int64_t uniform_bytes = (context / B) * (KvBlockBytes(*config, AttentionKind::kFull, B, at::kBFloat16) +
                                                 KvBlockBytes(*config, AttentionKind::kSliding, B, at::kBFloat16));
  const double hybrid = context / (hybrid_bytes / gib), uniform = context / (uniform_bytes / gib);
  std::printf("flash KV at 8k context, bf16: hybrid %.0f tokens/GiB, every-layer-every-block %.0f tokens/GiB, %.2fx\n",
              hybrid, uniform, hybrid / uniform);
  EXPECT_GT(hybrid / uniform, 3.0);
}

// CapacityTokens is what the executor reports and bounds contexts by: the full pool's tokens, or for a
// sliding-only model any length once one window fits.
TEST(KvCacheTest, CapacityTokensForFullAndSlidingOnlyModels) {
  auto config = PresetConfig("tiny");
  ASSERT_TRUE(config.ok());
  KvCacheOptions o = SmallPools(4);
  o.num_blocks_full = 10;
  EXPECT_EQ(PagedKvCache(*config, o).CapacityTokens(), 40);
  ModelConfig sliding_only = *config;
  for (LayerConfig& l : sliding_only.layers) {
    l.attention_kind = AttentionKind::kSliding;
    l.sliding_window = 8;
  }
  ASSERT_FALSE(sliding_only.HasAttentionKind(AttentionKind::kFull));
  o.num_blocks_sliding = 3;  // ceil(8 / 4) + 1: one window
  EXPECT_EQ(PagedKvCache(sliding_only, o).CapacityTokens(), sliding_only.max_position_embeddings);
  o.num_blocks_sliding = 2;
  EXPECT_EQ(PagedKvCache(sliding_only, o).CapacityTokens(), 0);
}

}  // namespace
}  // namespace stepserve
