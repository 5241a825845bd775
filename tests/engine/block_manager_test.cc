// The block manager (ids, reference counts, free lists) and the step plan built from its block tables.
#include <gtest/gtest.h>

#include "engine/block_manager.h"
#include "model/loading/presets.h"
#include "engine/step_plan_builder.h"

namespace stepserve {
namespace {

class BlockManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = *PresetConfig("tiny");
    window_ = config_.MaxSlidingWindow();
  }
  ModelConfig config_;
  int window_ = 0;
};

// Every key a query of the step can see sits in a block the plan's table names (never -1), at every
// decode step, including the steps where the oldest visible key is the last slot of its block.
TEST_F(BlockManagerTest, DecodePlansNameEveryVisibleBlock) {
  const int B = 4;
  BlockManager blocks(config_, B, 64, 64);
  KvSequence seq;
  const std::vector<int32_t> tokens(80, 1);
  for (int64_t t = 0; t < 80; ++t) {
    ASSERT_TRUE(blocks.AllocateSlots(seq, 1));
    StepPlanBuilder builder(&blocks);
    builder.Add(tokens.data() + t, 1, t, &seq);
    const StepPlan plan = builder.Build();
    const auto& kt = plan.kinds[static_cast<int>(AttentionKind::kSliding)];
    for (int64_t p = blocks.FirstVisiblePosition(t, AttentionKind::kSliding); p < t; ++p) {
      ASSERT_LT(p / B, kt.max_blocks);
      EXPECT_GE(kt.block_tables[p / B], 0) << "query " << t << " key " << p;
    }
    // The new key is stored: a later query sees it.
    EXPECT_GE(kt.slot_mapping[0], 0);
    blocks.CommitStep(seq, 1);
    EXPECT_EQ(blocks.NumUsedBlocks(AttentionKind::kSliding), blocks.BlocksHeldAtLength(t + 1, AttentionKind::kSliding))
        << "after step " << t;
    EXPECT_LE(blocks.NumUsedBlocks(AttentionKind::kSliding), (window_ + B - 1) / B + 1);
  }
  EXPECT_EQ(blocks.NumUsedBlocks(AttentionKind::kFull), 80 / B);
  blocks.Release(seq);
  EXPECT_EQ(blocks.NumUsedBlocks(AttentionKind::kFull), 0);
  EXPECT_EQ(blocks.NumUsedBlocks(AttentionKind::kSliding), 0);
}

// A prefill chunk longer than the window stores only the keys a later query can see, from the start of the
// block holding the first of them (that block is allocated anyway; a full block then holds every key).
TEST_F(BlockManagerTest, LongChunkStoresOnlyItsLastWindowInSlidingLayers) {
  const int B = 4;
  BlockManager blocks(config_, B, 64, 64);
  KvSequence seq;
  const int64_t n = 3 * window_ + 1;
  const std::vector<int64_t> tokens(n, 2);
  ASSERT_TRUE(blocks.AllocateSlots(seq, n));
  StepPlanBuilder builder(&blocks);
  builder.Add(tokens.data(), n, 0, &seq);
  const StepPlan plan = builder.Build();
  const auto& sliding = plan.kinds[static_cast<int>(AttentionKind::kSliding)].slot_mapping;
  const auto& full = plan.kinds[static_cast<int>(AttentionKind::kFull)].slot_mapping;
  for (int64_t p = 0; p < n; ++p) {
    EXPECT_GE(full[p], 0);
    EXPECT_EQ(sliding[p] >= 0, p >= (n - window_ + 1) / B * B) << "position " << p;
  }
  blocks.CommitStep(seq, n);
  EXPECT_EQ(seq.num_tokens, n);
  EXPECT_EQ(blocks.NumUsedBlocks(AttentionKind::kSliding), blocks.BlocksHeldAtLength(n, AttentionKind::kSliding));
}

TEST_F(BlockManagerTest, FailedAllocationChangesNothingAndRefCountsTrackOwners) {
  BlockManager blocks(config_, 4, 3, 64);  // 12 full-attention tokens
  KvSequence a, b;
  EXPECT_FALSE(blocks.AllocateSlots(a, 13));
  EXPECT_TRUE(a.block_table[0].empty());
  EXPECT_EQ(blocks.NumFreeBlocks(AttentionKind::kFull), 3);
  ASSERT_TRUE(blocks.AllocateSlots(a, 8));
  blocks.CommitStep(a, 8);
  EXPECT_EQ(blocks.RefCount(AttentionKind::kFull, a.block_table[0][0]), 1);
  EXPECT_FALSE(blocks.AllocateSlots(b, 5));  // needs 2 blocks, 1 left
  EXPECT_TRUE(blocks.AllocateSlots(b, 4));
  EXPECT_EQ(blocks.NumFreeBlocks(AttentionKind::kFull), 0);
  blocks.Release(a);
  EXPECT_EQ(blocks.NumFreeBlocks(AttentionKind::kFull), 2);
  EXPECT_EQ(blocks.RefCount(AttentionKind::kFull, b.block_table[0][0]), 1);
}

TEST_F(BlockManagerTest, PlanPacksChunksBackToBack) {
  BlockManager blocks(config_, 4, 64, 64);
  KvSequence a;
  const std::vector<int32_t> ta = {5, 6, 7}, tb = {8, 9};
  ASSERT_TRUE(blocks.AllocateSlots(a, 3));
  StepPlanBuilder builder(&blocks);
  builder.Add(ta.data(), 3, 0, &a);
  builder.Add(tb.data(), 2, 10, nullptr);  // uncached
  const StepPlan plan = builder.Build();
  EXPECT_EQ(plan.token_ids, (std::vector<int64_t>{5, 6, 7, 8, 9}));
  EXPECT_EQ(plan.positions, (std::vector<int64_t>{0, 1, 2, 10, 11}));
  ASSERT_EQ(plan.num_seqs(), 2);
  EXPECT_TRUE(plan.chunks[0].cached);
  EXPECT_FALSE(plan.chunks[1].cached);
  const auto& full = plan.kinds[0];
  EXPECT_EQ(full.slot_mapping[3], -1);
  EXPECT_EQ(full.slot_mapping[4], -1);
  EXPECT_EQ(full.block_tables[full.max_blocks], -1);  // the uncached chunk's row
}

}  // namespace
}  // namespace stepserve
