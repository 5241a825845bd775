// Scheduler policy: budgets, chunked prefill, FCFS admission, preemption of the newest, static batching.
#include <gtest/gtest.h>

#include "model/loading/presets.h"
#include "engine/scheduler.h"

namespace stepserve {
namespace {

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override { config_ = *PresetConfig("tiny"); }

  std::unique_ptr<PagedKvCache> Cache(int full_blocks, int sliding_blocks = 64) {
    KvCacheOptions o;
    o.block_size = 4;
    o.num_blocks_full = full_blocks;
    o.num_blocks_sliding = sliding_blocks;
    return std::make_unique<PagedKvCache>(config_, o);
  }
  Sequence* NewSeq(int prompt_len) {
    seqs_.push_back(std::make_unique<Sequence>());
    Sequence* s = seqs_.back().get();
    s->tokens.assign(prompt_len, 1);
    s->num_prompt = prompt_len;
    return s;
  }
  // Simulates the executor after a step: commits the chunks (their blocks were allocated by Schedule) and,
  // at the end of a prompt or on a decode, appends one new token.
  void Complete(PagedKvCache& cache, const SchedulerOutput& out) {
    for (const ScheduledChunk& c : out.chunks) {
      cache.blocks().CommitStep(c.seq->kv, c.num_tokens);  // the scheduler allocated
      if (c.seq->num_uncomputed() == 0) c.seq->tokens.push_back(5);
    }
  }

  ModelConfig config_;
  std::vector<std::unique_ptr<Sequence>> seqs_;
};

TEST_F(SchedulerTest, TokenBudgetChunksLongPromptsAndMixesDecodes) {
  auto cache = Cache(64);
  Scheduler s({8, 10, BatchingMode::kContinuous}, &cache->blocks());
  Sequence* a = NewSeq(3);
  s.AddWaiting(a);
  SchedulerOutput o1 = s.Schedule();
  ASSERT_EQ(o1.chunks.size(), 1u);
  EXPECT_EQ(o1.chunks[0].num_tokens, 3);
  Complete(*cache, o1);
  Sequence* b = NewSeq(25);
  s.AddWaiting(b);
  SchedulerOutput o2 = s.Schedule();
  ASSERT_EQ(o2.chunks.size(), 2u);
  EXPECT_EQ(o2.chunks[0].seq, a);  // the decode first
  EXPECT_EQ(o2.chunks[0].num_tokens, 1);
  EXPECT_EQ(o2.chunks[1].num_tokens, 9);  // the rest of the 10-token budget
  EXPECT_EQ(o2.num_decode_tokens, 1);
  EXPECT_EQ(o2.num_prefill_tokens, 9);
}

TEST_F(SchedulerTest, SequenceBudgetAndFcfs) {
  auto cache = Cache(64);
  Scheduler s({2, 100, BatchingMode::kContinuous}, &cache->blocks());
  Sequence* a = NewSeq(2);
  Sequence* b = NewSeq(2);
  Sequence* c = NewSeq(2);
  s.AddWaiting(a);
  s.AddWaiting(b);
  s.AddWaiting(c);
  SchedulerOutput o = s.Schedule();
  ASSERT_EQ(o.chunks.size(), 2u);
  EXPECT_EQ(o.chunks[0].seq, a);
  EXPECT_EQ(o.chunks[1].seq, b);
  EXPECT_EQ(s.waiting().front(), c);
}

TEST_F(SchedulerTest, PreemptsTheMostRecentlyAdmittedWhenBlocksRunOut) {
  auto cache = Cache(4);  // 16 tokens in the full pool
  Scheduler s({8, 100, BatchingMode::kContinuous}, &cache->blocks());
  Sequence* a = NewSeq(8);
  Sequence* b = NewSeq(8);
  s.AddWaiting(a);
  s.AddWaiting(b);
  SchedulerOutput o1 = s.Schedule();
  ASSERT_EQ(o1.chunks.size(), 2u);
  Complete(*cache, o1);  // both hold 2 blocks: pool full
  SchedulerOutput o2 = s.Schedule();
  ASSERT_EQ(o2.preempted.size(), 1u);
  EXPECT_EQ(o2.preempted[0], b);
  ASSERT_EQ(o2.chunks.size(), 1u);
  EXPECT_EQ(o2.chunks[0].seq, a);
  EXPECT_EQ(s.waiting().front(), b);
  EXPECT_EQ(b->kv.num_tokens, 0);  // recomputed from scratch later
  EXPECT_EQ(s.num_preemptions(), 1);
}

TEST_F(SchedulerTest, HeadOfQueueThatDoesNotFitBlocksOthers) {
  auto cache = Cache(2);  // 8 tokens
  Scheduler s({8, 100, BatchingMode::kContinuous}, &cache->blocks());
  Sequence* big = NewSeq(12);
  Sequence* small = NewSeq(2);
  s.AddWaiting(big);
  s.AddWaiting(small);
  SchedulerOutput o = s.Schedule();
  EXPECT_TRUE(o.chunks.empty());  // FCFS: the small one does not overtake
}

TEST_F(SchedulerTest, StaticModeWaitsForTheWholeBatch) {
  auto cache = Cache(64);
  Scheduler s({2, 100, BatchingMode::kStatic}, &cache->blocks());
  Sequence* a = NewSeq(2);
  Sequence* b = NewSeq(2);
  s.AddWaiting(a);
  Complete(*cache, s.Schedule());  // a starts decoding
  s.AddWaiting(b);
  SchedulerOutput o = s.Schedule();
  ASSERT_EQ(o.chunks.size(), 1u);  // b waits although there is room
  EXPECT_EQ(o.chunks[0].seq, a);
  s.Remove(a);
  SchedulerOutput o2 = s.Schedule();
  ASSERT_EQ(o2.chunks.size(), 1u);
  EXPECT_EQ(o2.chunks[0].seq, b);
}

TEST_F(SchedulerTest, StaticModeFormsAFullBatchEvenWhenOnePromptFillsTheTokenBudget) {
  auto cache = Cache(64);
  Scheduler s({3, 4, BatchingMode::kStatic}, &cache->blocks());
  Sequence* a = NewSeq(4);
  Sequence* b = NewSeq(4);
  Sequence* c = NewSeq(4);
  Sequence* d = NewSeq(4);
  for (Sequence* q : {a, b, c, d}) s.AddWaiting(q);
  SchedulerOutput o1 = s.Schedule();
  EXPECT_EQ(s.running().size(), 3u);  // a, b and c form the batch at once
  ASSERT_EQ(o1.chunks.size(), 1u);    // but only a's prompt fits this step's 4 tokens
  EXPECT_EQ(o1.chunks[0].seq, a);
  // Prefill the rest of the batch over the next steps, with a decoding meanwhile; d never joins.
  for (int step = 0; step < 4; ++step) {
    Complete(*cache, o1);
    o1 = s.Schedule();
    for (const ScheduledChunk& ch : o1.chunks) EXPECT_NE(ch.seq, d);
  }
  EXPECT_GT(b->num_generated(), 0);
  EXPECT_GT(c->num_generated(), 0);
  s.Remove(a);
  s.Remove(b);
  EXPECT_EQ(s.Schedule().chunks.size(), 1u);  // c alone finishes the batch
  s.Remove(c);
  SchedulerOutput next = s.Schedule();
  ASSERT_EQ(next.chunks.size(), 1u);
  EXPECT_EQ(next.chunks[0].seq, d);
}

}  // namespace
}  // namespace stepserve
