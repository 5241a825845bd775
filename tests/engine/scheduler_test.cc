// Scheduler policy: budgets, chunked prefill, FCFS admission, preemption of the newest, static batching,
// paused sequences (flow control).
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

// Flow control (Executor::Pause): a paused running sequence is skipped, keeps its blocks, does not count
// against max_num_seqs, and runs again once resumed.
TEST_F(SchedulerTest, PausedRunningSequenceIsSkippedKeepsItsBlocksAndFreesItsSeat) {
  auto cache = Cache(64);
  Scheduler s({2, 100, BatchingMode::kContinuous}, &cache->blocks());
  Sequence* a = NewSeq(5);
  Sequence* b = NewSeq(5);
  Sequence* c = NewSeq(5);
  s.AddWaiting(a);
  s.AddWaiting(b);
  s.AddWaiting(c);
  SchedulerOutput o1 = s.Schedule();
  ASSERT_EQ(o1.chunks.size(), 2u);  // a and b: max_num_seqs 2
  Complete(*cache, o1);
  const int32_t used_before = cache->blocks().NumUsedBlocks(AttentionKind::kFull);
  a->paused = true;
  EXPECT_EQ(s.num_paused_running(), 1);
  SchedulerOutput o2 = s.Schedule();
  // b decodes, c takes a's seat; a is not scheduled and keeps its blocks.
  ASSERT_EQ(o2.chunks.size(), 2u);
  EXPECT_EQ(o2.chunks[0].seq, b);
  EXPECT_EQ(o2.chunks[1].seq, c);
  EXPECT_TRUE(o2.preempted.empty());
  EXPECT_EQ(a->state, SequenceState::kRunning);
  EXPECT_EQ(a->kv.num_tokens, 5);
  EXPECT_GE(cache->blocks().NumUsedBlocks(AttentionKind::kFull), used_before);
  Complete(*cache, o2);
  for (int i = 0; i < 3; ++i) {
    SchedulerOutput o = s.Schedule();
    for (const ScheduledChunk& ch : o.chunks) EXPECT_NE(ch.seq, a);
    Complete(*cache, o);
  }
  EXPECT_EQ(a->num_generated(), 1);  // nothing since the pause
  a->paused = false;
  SchedulerOutput o3 = s.Schedule();
  bool a_runs = false;
  for (const ScheduledChunk& ch : o3.chunks) a_runs |= ch.seq == a;
  EXPECT_TRUE(a_runs);
  EXPECT_EQ(o3.chunks.front().seq, a);  // oldest admission first again
}

TEST_F(SchedulerTest, PausedRunningSequenceIsPreemptedBeforeTheMostRecentlyAdmitted) {
  auto cache = Cache(4);  // 16 tokens in the full pool
  Scheduler s({8, 100, BatchingMode::kContinuous}, &cache->blocks());
  Sequence* a = NewSeq(8);
  Sequence* b = NewSeq(8);
  s.AddWaiting(a);
  s.AddWaiting(b);
  SchedulerOutput o1 = s.Schedule();
  ASSERT_EQ(o1.chunks.size(), 2u);
  Complete(*cache, o1);  // both hold 2 blocks: pool full
  a->paused = true;      // the older one stopped reading
  SchedulerOutput o2 = s.Schedule();
  // Without the pause b (the newest) would go; the paused a gives up its blocks instead and b decodes.
  ASSERT_EQ(o2.preempted.size(), 1u);
  EXPECT_EQ(o2.preempted[0], a);
  ASSERT_EQ(o2.chunks.size(), 1u);
  EXPECT_EQ(o2.chunks[0].seq, b);
  EXPECT_EQ(a->state, SequenceState::kWaiting);
  EXPECT_EQ(a->kv.num_tokens, 0);
  EXPECT_EQ(s.num_paused_waiting(), 1);
  Complete(*cache, o2);
  // Still paused in the queue: never admitted, even with room.
  s.Remove(b);
  EXPECT_TRUE(s.Schedule().chunks.empty());
  EXPECT_EQ(s.waiting().front(), a);
  a->paused = false;
  SchedulerOutput o3 = s.Schedule();
  ASSERT_EQ(o3.chunks.size(), 1u);
  EXPECT_EQ(o3.chunks[0].seq, a);
  EXPECT_EQ(o3.chunks[0].num_tokens, 9);  // recomputed: its prompt and the token it had produced
}

TEST_F(SchedulerTest, PausedWaitingSequenceIsPassedOverAndKeepsItsPlace) {
  auto cache = Cache(64);
  Scheduler s({8, 100, BatchingMode::kContinuous}, &cache->blocks());
  Sequence* a = NewSeq(3);
  Sequence* b = NewSeq(3);
  s.AddWaiting(a);
  s.AddWaiting(b);
  a->paused = true;
  SchedulerOutput o = s.Schedule();
  ASSERT_EQ(o.chunks.size(), 1u);
  EXPECT_EQ(o.chunks[0].seq, b);
  ASSERT_EQ(s.waiting().size(), 1u);
  EXPECT_EQ(s.waiting().front(), a);
  EXPECT_EQ(s.num_paused_waiting(), 1);
}

TEST_F(SchedulerTest, HeadOfQueueTakesThePausedSequencesBlocksAndAdmissionGoesOn) {
  auto cache = Cache(4);  // 16 tokens
  Scheduler s({8, 100, BatchingMode::kContinuous}, &cache->blocks());
  Sequence* a = NewSeq(15);
  s.AddWaiting(a);
  Complete(*cache, s.Schedule());  // a holds the whole pool
  a->paused = true;
  Sequence* b = NewSeq(6);
  s.AddWaiting(b);
  SchedulerOutput o = s.Schedule();
  ASSERT_EQ(o.preempted.size(), 1u);
  EXPECT_EQ(o.preempted[0], a);
  ASSERT_EQ(o.chunks.size(), 1u);  // admitted in the same step: a paused victim does not stop admissions
  EXPECT_EQ(o.chunks[0].seq, b);
  EXPECT_EQ(s.waiting().front(), a);
}

TEST_F(SchedulerTest, WithoutPausedSequencesTheHeadOfQueueStillWaits) {
  auto cache = Cache(4);
  Scheduler s({8, 100, BatchingMode::kContinuous}, &cache->blocks());
  Sequence* a = NewSeq(15);
  s.AddWaiting(a);
  Complete(*cache, s.Schedule());
  Sequence* b = NewSeq(6);
  s.AddWaiting(b);
  SchedulerOutput o = s.Schedule();  // a decodes (its last free slot); b waits, a running sequence is never
  EXPECT_TRUE(o.preempted.empty());  // preempted for a waiting one
  ASSERT_EQ(o.chunks.size(), 1u);
  EXPECT_EQ(o.chunks[0].seq, a);
}

}  // namespace
}  // namespace stepserve
