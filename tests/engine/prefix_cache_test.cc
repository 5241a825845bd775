// Automatic prefix caching: the block manager's hash chains, hits across both pools, LRU eviction of freed
// blocks only, cache salts; and through the executor, identical continuations with caching on and off.
#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/block_manager.h"
#include "engine/executor.h"
#include "model/loading/presets.h"
#include "tests/engine/executor_test_util.h"
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

// Runs `requests` through a fresh executor on the tiny checkpoint, one after another when `sequential`
// (so that every later request can hit the earlier ones), else all at once; returns each one's tokens.
std::map<std::string, std::vector<int32_t>> RunRequests(bool caching, const std::vector<GenerationRequest>& requests,
                                                        bool sequential, ExecutorOptions options,
                                                        ExecutorStats* stats = nullptr) {
  options.enable_prefix_caching = caching;
  auto ex = Executor::Create(testing::LoadTinyModel(), options);
  EXPECT_TRUE(ex.ok()) << ex.status();
  testing::OutputCollector collector;
  int submitted = 0;
  for (const GenerationRequest& r : requests) {
    EXPECT_TRUE((*ex)->Submit(r, collector.Callback()).ok());
    ++submitted;
    if (sequential) EXPECT_TRUE(collector.WaitFinished(submitted));
  }
  EXPECT_TRUE(collector.WaitFinished(submitted));
  std::map<std::string, std::vector<int32_t>> out;
  for (const GenerationRequest& r : requests) {
    const testing::Collected c = collector.Get(r.id);
    EXPECT_EQ(c.num_finished, 1) << r.id;
    out[r.id] = c.tokens;
  }
  if (stats != nullptr) *stats = (*ex)->Stats();
  return out;
}

// Prompts sharing a prefix that ends inside a block, on a block boundary, shorter and longer than the
// sliding window (tiny: 8; blocks of 4): greedy and seeded sampling give the same tokens with caching on
// and off, and the later prompts really hit.
TEST(PrefixCacheExecutorTest, ContinuationsIdenticalWithCachingOnAndOff) {
  std::vector<GenerationRequest> requests;
  std::mt19937 rng(11);
  for (int prefix_len : {6, 8, 13, 24, 37}) {
    std::vector<int32_t> prefix(prefix_len);
    for (int32_t& t : prefix) t = static_cast<int32_t>(rng() % 300);
    for (int variant = 0; variant < 3; ++variant) {
      std::vector<int32_t> prompt = prefix;
      for (int i = 0; i < variant * 2; ++i) prompt.push_back(static_cast<int32_t>(rng() % 300));  // variant 0: the prefix alone
      GenerationRequest r = testing::GreedyRequest("p" + std::to_string(prefix_len) + "-" + std::to_string(variant),
                                                   prompt, 10);
      if (variant == 2) {  // seeded sampling
        r.sampling.temperature = 0.9f;
        r.sampling.top_p = 0.95f;
        r.sampling.seed = 1234 + prefix_len;
      }
      requests.push_back(r);
    }
  }
  // The golden greedy cases, twice each: the second time their whole prompt but the last token is cached.
  const std::vector<testing::GreedyCase> golden = testing::GreedyCases();
  for (int round = 0; round < 2; ++round) {
    for (size_t c = 0; c < golden.size(); ++c) {
      requests.push_back(testing::GreedyRequest("golden" + std::to_string(c) + "-" + std::to_string(round),
                                                golden[c].prompt, static_cast<int>(golden[c].greedy.size())));
    }
  }
  ExecutorOptions options;
  options.block_size = 4;
  options.max_num_batched_tokens = 16;  // chunked prefills: hits at chunk ends and inside chunks
  ExecutorStats on_stats;
  const auto off = RunRequests(false, requests, true, options);
  const auto on = RunRequests(true, requests, true, options, &on_stats);
  for (const GenerationRequest& r : requests) EXPECT_EQ(on.at(r.id), off.at(r.id)) << r.id;
  for (size_t c = 0; c < golden.size(); ++c) {
    EXPECT_EQ(on.at("golden" + std::to_string(c) + "-1"), golden[c].greedy) << "golden case " << c;
  }
  EXPECT_GT(on_stats.prefix_cache_hits_total, 0);
  // All at once too (hits then depend on which prompt's blocks committed first).
  const auto concurrent = RunRequests(true, requests, false, options);
  for (const GenerationRequest& r : requests) EXPECT_EQ(concurrent.at(r.id), off.at(r.id)) << r.id;
}

// A pool too small for all the requests at once: sequences sharing cached blocks are preempted and resume
// (hitting their own and each other's blocks); every continuation equals the caching-off run.
TEST(PrefixCacheExecutorTest, PreemptionWithSharedBlocks) {
  std::vector<GenerationRequest> requests;
  std::vector<int32_t> system(20);
  std::iota(system.begin(), system.end(), 40);
  for (int i = 0; i < 12; ++i) {
    std::vector<int32_t> prompt = system;
    for (int j = 0; j <= i % 5; ++j) prompt.push_back(100 + 7 * i + j);
    requests.push_back(testing::GreedyRequest("r" + std::to_string(i), prompt, 24));
  }
  ExecutorOptions options;
  options.block_size = 4;
  options.max_num_seqs = 8;
  options.max_num_batched_tokens = 32;
  options.kv_cache_bytes = 160 << 10;
  ExecutorStats on_stats, off_stats;
  const auto off = RunRequests(false, requests, false, options, &off_stats);
  const auto on = RunRequests(true, requests, false, options, &on_stats);
  EXPECT_GT(on_stats.num_preemptions_total, 0);
  EXPECT_GT(on_stats.prefix_cache_hits_total, 0);
  for (const GenerationRequest& r : requests) EXPECT_EQ(on.at(r.id), off.at(r.id)) << r.id;
  EXPECT_EQ(on_stats.kv_blocks_used, 0);
}

// Requests with different salts compute their own prefix; with the same salt they share it.
TEST(PrefixCacheExecutorTest, CacheSaltIsolatesTenants) {
  std::vector<int32_t> prompt(30);
  std::iota(prompt.begin(), prompt.end(), 3);
  std::vector<GenerationRequest> requests;
  for (const char* salt : {"a", "b", "a"}) {
    GenerationRequest r = testing::GreedyRequest(std::string("salt-") + salt + std::to_string(requests.size()), prompt, 3);
    r.cache_salt = salt;
    requests.push_back(r);
  }
  ExecutorOptions options;
  options.block_size = 4;
  ExecutorStats stats;
  RunRequests(true, requests, true, options, &stats);
  EXPECT_EQ(stats.prefix_cache_hits_total, 28);  // the third request only: 29 tokens -> 7 blocks
}

// With caching a chunk stores every key in the sliding pool too; a small budget caps that pool below one
// long chunk's blocks, and the scheduler must cut the chunk instead of retrying it forever.
TEST(PrefixCacheExecutorTest, LongPrefillFitsASmallSlidingPool) {
  ExecutorOptions options;
  options.block_size = 4;
  options.max_num_seqs = 2;
  options.max_num_batched_tokens = 512;
  options.kv_cache_bytes = 640 << 10;  // full pool: 80 blocks (320 tokens); sliding pool: 53 blocks
  auto ex = Executor::Create(testing::LoadTinyModel(), options);
  ASSERT_TRUE(ex.ok()) << ex.status();
  std::vector<int32_t> prompt(300);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 31) % 300);
  testing::OutputCollector collector;
  ASSERT_TRUE((*ex)->Submit(testing::GreedyRequest("long", prompt, 4), collector.Callback()).ok());
  ASSERT_TRUE(collector.WaitFinished(1, absl::Seconds(60)));
  EXPECT_EQ(collector.Get("long").reason, FinishReason::kLength);
  EXPECT_EQ(collector.Get("long").tokens.size(), 4u);
}

}  // namespace
}  // namespace stepserve
