// Iteration-level scheduler: picks, each step, which sequences run and how many tokens each feeds.
//
// Policy (as in vLLM's scheduler): running sequences first, in admission order, each taking one decode
// token or the next chunk of its prompt (chunked prefill); then waiting sequences FCFS while the step's
// token and sequence budgets and the KV pool allow. The scheduler allocates: every chunk it schedules has
// its blocks (BlockManager::AllocateSlots) before the step runs, so the step plan is all the forward pass
// needs. When the pool cannot hold a running sequence's next tokens, the most recently admitted running
// sequence is preempted (its blocks freed, recomputed later) and goes to the front of the waiting queue
// (vLLM v1's allocate_slots-or-preempt). Not thread-safe: the executor serialises calls.
//
// Flow control: a paused sequence (Sequence::paused, set by Executor::Pause when the client stopped reading)
// is never scheduled and does not count against max_num_seqs. It keeps its KV blocks while the pool has
// room; when a running sequence's next tokens or the head of the waiting queue need blocks, paused running
// sequences are preempted first (most recently admitted first), before any that is not paused, and that
// preemption does not stop admissions. A paused waiting sequence is passed over (the next one is admitted)
// until it is resumed; it keeps its place in the queue.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "engine/block_manager.h"
#include "engine/sequence.h"

namespace stepserve {

enum class BatchingMode { kContinuous, kStatic };

struct SchedulerOptions {
  int max_num_seqs = 32;
  int max_num_batched_tokens = 512;
  // kStatic: request-level batching, the baseline that continuous batching is measured against. When
  // every member of the previous batch has finished, the next batch takes up to max_num_seqs waiting
  // requests at once; nobody joins it until its last member finishes. (Finished members leave the
  // forward pass at once, so this baseline wastes no compute on them, unlike padded static batching.)
  BatchingMode mode = BatchingMode::kContinuous;
};
// Prefix caching is the block manager's (BlockManager::prefix_caching()): at admission, a sequence with
// nothing cached takes the longest cached prefix of its tokens and computes from there.

struct ScheduledChunk {
  Sequence* seq = nullptr;
  int64_t num_tokens = 0;  // tokens fed this step, starting at seq->num_computed(); blocks allocated
};

struct SchedulerOutput {
  std::vector<ScheduledChunk> chunks;
  std::vector<Sequence*> preempted;
  int num_prefill_tokens = 0;
  int num_decode_tokens = 0;
};

class Scheduler {
 public:
  Scheduler(const SchedulerOptions& options, BlockManager* blocks) : options_(options), blocks_(blocks) {}

  void AddWaiting(Sequence* seq) { waiting_.push_back(seq); }
  // Removes a sequence from whichever queue holds it and frees its blocks.
  void Remove(Sequence* seq);

  SchedulerOutput Schedule();
  // After a successful step: each scheduled chunk's tokens are now cached (the sequence's cached length
  // advances, sliding blocks no later query can see go back, and with prefix caching the blocks the step
  // filled become cached prefixes). The scheduler allocated them; it commits them too.
  void Commit(const SchedulerOutput& step);

  const std::deque<Sequence*>& waiting() const { return waiting_; }
  const std::vector<Sequence*>& running() const { return running_; }
  // Of running() and waiting(): how many are paused.
  int num_paused_running() const;
  int num_paused_waiting() const;
  int64_t num_preemptions() const { return num_preemptions_; }
  // Prefix cache lookups at admission, in tokens: looked up (the sequence's tokens) and found cached.
  int64_t prefix_cache_queries() const { return prefix_cache_queries_; }
  int64_t prefix_cache_hits() const { return prefix_cache_hits_; }

 private:
  void Admit(Sequence* seq);  // waiting -> running, stamped with the next admission order
  void Preempt(Sequence* seq, SchedulerOutput& out);
  // The most recently admitted paused running sequence, or null.
  Sequence* PausedVictim() const;

  SchedulerOptions options_;
  BlockManager* blocks_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;  // admission order
  uint64_t next_admission_ = 0;
  int64_t num_preemptions_ = 0;
  int64_t prefix_cache_queries_ = 0, prefix_cache_hits_ = 0;
};

}  // namespace stepserve
