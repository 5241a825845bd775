// Automatic prefix caching: the block manager's hash chains, hits across both pools, LRU eviction of freed
// blocks only, cache salts; and through the executor, identical continuations with caching on and off.
#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "model/block_manager.h"
#include "model/executor.h"
#include "model/presets.h"
#include "tests/executor_test_util.h"
#include "tests/test_util.h"

namespace stepserve {
namespace {

constexpr AttentionKind kFull = AttentionKind::kFull;
constexpr AttentionKind kSliding = AttentionKind::kSliding;

class PrefixBlockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = *PresetConfig("tiny");  // sliding window 8
    window_ = config_.MaxSlidingWindow();
  }
  // Computes `tokens` for `seq` in chunks of `chunk` tokens, committing each with its tokens.
  void Compute(BlockManager& blocks, KvSequence& seq, const std::vector<int32_t>& tokens, int64_t chunk) {
    while (seq.num_tokens < static_cast<int64_t>(tokens.size())) {
      const int64_t n = std::min<int64_t>(chunk, static_cast<int64_t>(tokens.size()) - seq.num_tokens);
      ASSERT_TRUE(blocks.AllocateSlots(seq, n));
      blocks.CommitStep(seq, n, tokens.data());
    }
  }
  static std::vector<int32_t> Tokens(int n, int seed) {
    std::vector<int32_t> t(n);
    std::mt19937 rng(seed);
    for (int32_t& x : t) x = static_cast<int32_t>(rng() % 300);
    return t;
  }
  ModelConfig config_;
  int window_ = 0;
};

// A second sequence sharing a prefix takes the cached blocks (the same ids, shared) and computes from the
// last block boundary of the shared part; at least one token is always left to compute.
TEST_F(PrefixBlockTest, SharedPrefixHitsAtTheLastCommonBlockBoundary) {
  const int B = 4;
  BlockManager blocks(config_, B, 64, 64, /*enable_prefix_caching=*/true);
  const std::vector<int32_t> a = Tokens(30, 1);
  KvSequence sa;
  Compute(blocks, sa, a, 7);  // chunk ends off the block boundaries
  std::vector<int32_t> b(a.begin(), a.begin() + 22);  // shares 22 tokens: 5 full blocks
  for (int i = 0; i < 6; ++i) b.push_back(299 - i);
  KvSequence sb;
  EXPECT_EQ(blocks.MatchPrefix(sb, b.data(), b.size(), b.size() - 1), 20);
  EXPECT_EQ(sb.num_tokens, 20);
  for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(sb.block_table[0][i], sa.block_table[0][i]) << i;
  // Sliding: only the blocks of the last window before 20 are taken (positions 13..19: blocks 3, 4).
  EXPECT_EQ(sb.block_table[1][2], -1);
  EXPECT_GE(sb.block_table[1][3], 0);
  EXPECT_EQ(blocks.RefCount(kFull, sb.block_table[0][0]), 2);
  // The whole of `a` again: everything but the last token's block boundary (29 tokens -> 28).
  KvSequence sc;
  EXPECT_EQ(blocks.MatchPrefix(sc, a.data(), a.size(), a.size() - 1), 28);
  // A prompt that fits in one block has nothing to reuse.
  KvSequence sd;
  EXPECT_EQ(blocks.MatchPrefix(sd, a.data(), 4, 3), 0);
  EXPECT_EQ(sd.num_tokens, 0);
  blocks.Release(sa);
  blocks.Release(sb);
  blocks.Release(sc);
  EXPECT_EQ(blocks.NumUsedBlocks(kFull), 0);
  EXPECT_EQ(blocks.NumUsedBlocks(kSliding), 0);
}

// Freed blocks stay cached and count as free; KV usage returns to "only evictable blocks held" when idle,
// and a later identical prompt still hits.
TEST_F(PrefixBlockTest, FreedBlocksStayCachedAndCountAsFree) {
  const int B = 4;
  BlockManager blocks(config_, B, 32, 32, true);
  const std::vector<int32_t> a = Tokens(24, 2);
  KvSequence sa;
  Compute(blocks, sa, a, 24);
  blocks.Release(sa);
  EXPECT_EQ(blocks.NumUsedBlocks(kFull), 0);
  EXPECT_EQ(blocks.NumFreeBlocks(kFull), 32);
  EXPECT_EQ(blocks.NumCachedBlocks(kFull), 6);
  EXPECT_GT(blocks.NumCachedBlocks(kSliding), 0);
  EXPECT_EQ(blocks.UsageRatio(), 0.0);
  KvSequence again;
  SetCacheSalt(again, "");
  EXPECT_EQ(blocks.MatchPrefix(again, a.data(), a.size(), a.size() - 1), 20);
}

// Under memory pressure the least recently used cached block is evicted first, and a block in use never:
// filling the pool with a live sequence evicts exactly the cached blocks nobody holds.
TEST_F(PrefixBlockTest, EvictionTakesOnlyUnusedCachedBlocksOldestFirst) {
  const int B = 4;
  BlockManager blocks(config_, B, 12, 40, true);
  const std::vector<int32_t> old_prompt = Tokens(16, 3), recent = Tokens(16, 4), live = Tokens(16, 5);
  KvSequence s_old, s_recent, s_live;
  Compute(blocks, s_old, old_prompt, 16);
  Compute(blocks, s_recent, recent, 16);
  Compute(blocks, s_live, live, 16);
  blocks.Release(s_old);     // cached first: evicted first
  blocks.Release(s_recent);  // cached later
  EXPECT_EQ(blocks.NumCachedBlocks(kFull), 8);
  const std::vector<int32_t> live_blocks = s_live.block_table[0];
  // A newcomer needing 4 full blocks evicts the 4 of the oldest cached prompt.
  KvSequence s_new;
  const std::vector<int32_t> fresh = Tokens(16, 6);
  Compute(blocks, s_new, fresh, 16);
  EXPECT_EQ(blocks.NumCachedBlocks(kFull), 4);
  KvSequence probe_old, probe_recent;
  EXPECT_EQ(blocks.MatchPrefix(probe_old, old_prompt.data(), 16, 15), 0);
  EXPECT_EQ(blocks.MatchPrefix(probe_recent, recent.data(), 16, 15), 12);
  blocks.Release(probe_recent);
  // The live sequence's blocks were never handed out again.
  EXPECT_EQ(s_live.block_table[0], live_blocks);
  for (int32_t b : live_blocks) EXPECT_EQ(blocks.RefCount(kFull, b), 1);
  // Nothing is left to evict: a request for more blocks than are free fails without touching anyone.
  KvSequence greedy;
  EXPECT_FALSE(blocks.AllocateSlots(greedy, 4 * B * 3));
  EXPECT_EQ(s_live.block_table[0], live_blocks);
}

// Different salts never share a block; equal salts do.
TEST_F(PrefixBlockTest, DifferentCacheSaltsNeverHit) {
  BlockManager blocks(config_, 4, 32, 32, true);
  const std::vector<int32_t> a = Tokens(20, 7);
  KvSequence tenant_a;
  SetCacheSalt(tenant_a, "tenant-a");
  Compute(blocks, tenant_a, a, 20);
  KvSequence tenant_b, tenant_a2, unsalted;
  SetCacheSalt(tenant_b, "tenant-b");
  SetCacheSalt(tenant_a2, "tenant-a");
  SetCacheSalt(unsalted, "");
  EXPECT_EQ(blocks.MatchPrefix(tenant_b, a.data(), a.size(), a.size() - 1), 0);
  EXPECT_EQ(blocks.MatchPrefix(unsalted, a.data(), a.size(), a.size() - 1), 0);
  EXPECT_EQ(blocks.MatchPrefix(tenant_a2, a.data(), a.size(), a.size() - 1), 16);
}

// Sliding layers: a prefix whose last window is no longer cached falls back to the longest prefix whose
// window is, even when the full-attention pool holds more; with no window left, no hit at all.
TEST_F(PrefixBlockTest, SlidingWindowMissFallsBackToTheLongestPrefixWithItsWindow) {
  const int B = 4;  // tiny's window is 8: a query at P sees positions P-7..P, the blocks of P-7..P-1
  BlockManager blocks(config_, B, 64, 10, true);
  const std::vector<int32_t> a = Tokens(40, 8);
  KvSequence sa;
  Compute(blocks, sa, a, 40);
  blocks.Release(sa);  // sliding blocks 0..9 cached, least recently used first: 0..7, then 8, 9
  ASSERT_EQ(blocks.NumCachedBlocks(kSliding), 10);
  KvSequence shorter;  // touches the window before 32 (blocks 6, 7): they become the most recently used
  ASSERT_EQ(blocks.MatchPrefix(shorter, a.data(), 33, 32), 32);
  blocks.Release(shorter);
  KvSequence filler;  // needs 8 sliding blocks: evicts 0..5, 8, 9
  const std::vector<int32_t> other = Tokens(32, 9);
  Compute(blocks, filler, other, 32);
  KvSequence probe;  // the full pool has 9 blocks of `a`, but the window before 36 (blocks 7, 8) lacks 8
  EXPECT_EQ(blocks.MatchPrefix(probe, a.data(), a.size(), a.size() - 1), 32);
  blocks.Release(probe);
  blocks.Release(filler);  // filler's own blocks become the most recent: 6, 7 are evicted next
  KvSequence evictor;
  Compute(blocks, evictor, Tokens(40, 10), 40);
  KvSequence none;
  EXPECT_EQ(blocks.MatchPrefix(none, a.data(), a.size(), a.size() - 1), 0);
  EXPECT_EQ(none.num_tokens, 0);
}

// The scheduler starts a sequence at its hit: with caching on, the second identical prompt computes only
// what the cache lacks, and the executor reports it.
TEST(PrefixCacheExecutorTest, SecondIdenticalPromptComputesOnlyTheRest) {
  ExecutorOptions options;
  options.block_size = 4;
  auto ex = Executor::Create(testing::LoadTinyModel(), options);
  ASSERT_TRUE(ex.ok()) << ex.status();
  std::vector<int32_t> prompt(37);
  std::iota(prompt.begin(), prompt.end(), 5);
  testing::OutputCollector collector;
  ASSERT_TRUE((*ex)->Submit(testing::GreedyRequest("first", prompt, 4), collector.Callback()).ok());
  ASSERT_TRUE(collector.WaitFinished(1));
  ASSERT_TRUE((*ex)->Submit(testing::GreedyRequest("second", prompt, 4), collector.Callback()).ok());
  ASSERT_TRUE(collector.WaitFinished(2));
  EXPECT_EQ(collector.Get("first").final_output.cached_prompt_tokens, 0);
  EXPECT_EQ(collector.Get("second").final_output.cached_prompt_tokens, 36);
  EXPECT_EQ(collector.Get("first").tokens, collector.Get("second").tokens);
  const ExecutorStats s = (*ex)->Stats();
  EXPECT_EQ(s.prefix_cache_queries_total, 2 * 37);
  EXPECT_EQ(s.prefix_cache_hits_total, 36);
  EXPECT_EQ(s.prompt_tokens_total, 2 * 37);
  EXPECT_EQ(s.kv_blocks_used, 0);  // idle: only evictable cached blocks are held
  EXPECT_GT(s.kv_cached_blocks, 0);
}

}  // namespace
}  // namespace stepserve
