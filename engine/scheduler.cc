#include "engine/scheduler.h"

#include <algorithm>

namespace stepserve {

void Scheduler::Remove(Sequence* seq) {
  if (auto it = std::find(running_.begin(), running_.end(), seq); it != running_.end()) running_.erase(it);
  if (auto it = std::find(waiting_.begin(), waiting_.end(), seq); it != waiting_.end()) waiting_.erase(it);
  blocks_->Release(seq->kv);
}

void Scheduler::Admit(Sequence* seq) {
  seq->state = SequenceState::kRunning;
  seq->admission_order = next_admission_++;
  running_.push_back(seq);
}

void Scheduler::Preempt(Sequence* seq, SchedulerOutput& out) {
  running_.erase(std::find(running_.begin(), running_.end(), seq));
  blocks_->Release(seq->kv);  // recompute from scratch when it resumes
  seq->state = SequenceState::kWaiting;
  ++seq->num_preemptions;
  ++num_preemptions_;
  waiting_.push_front(seq);
  out.preempted.push_back(seq);
}

int Scheduler::num_paused_running() const {
  return static_cast<int>(std::count_if(running_.begin(), running_.end(), [](const Sequence* s) { return s->paused; }));
}

int Scheduler::num_paused_waiting() const {
  return static_cast<int>(std::count_if(waiting_.begin(), waiting_.end(), [](const Sequence* s) { return s->paused; }));
}

Sequence* Scheduler::PausedVictim() const {
  for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
    if ((*it)->paused) return *it;
  }
  return nullptr;
}

SchedulerOutput Scheduler::Schedule() {
  SchedulerOutput out;
  int64_t tokens_left = options_.max_num_batched_tokens;
  auto add = [&](Sequence* s, int64_t n) {
    const bool decode = s->num_generated() > 0 && s->num_uncomputed() == 1;
    (decode ? out.num_decode_tokens : out.num_prefill_tokens) += static_cast<int>(n);
    out.chunks.push_back({s, n});
    tokens_left -= n;
  };
  auto not_paused = [](const Sequence* s) { return !s->paused; };

  // Static batching forms its whole batch at once, up to max_num_seqs, when the previous one has
  // finished; the members' prompts are then prefilled over as many steps as the token budget needs.
  if (options_.mode == BatchingMode::kStatic && running_.empty()) {
    for (auto it = waiting_.begin();
         it != waiting_.end() && static_cast<int>(running_.size()) < options_.max_num_seqs;) {
      if ((*it)->paused) {
        ++it;
        continue;
      }
      Admit(*it);
      it = waiting_.erase(it);
    }
  }

  // 1. Running sequences, oldest admission first; paused ones are skipped, and are the first to give up
  // their blocks when a running sequence needs some.
  bool preempted_active = false;  // a sequence that is not paused lost its blocks this step
  for (size_t i = 0; i < running_.size();) {
    if (tokens_left == 0 || static_cast<int>(out.chunks.size()) >= options_.max_num_seqs) break;
    Sequence* seq = running_[i];
    if (seq->paused) {
      ++i;
      continue;
    }
    const int64_t n = std::min({seq->num_uncomputed(), tokens_left, blocks_->MaxChunkTokens()});
    bool self_preempted = false;
    while (!blocks_->AllocateSlots(seq->kv, n)) {
      Sequence* victim = PausedVictim();
      if (victim == nullptr) {
        victim = running_.back();  // most recently admitted (none is paused)
        preempted_active = true;
      }
      const size_t at = static_cast<size_t>(std::find(running_.begin(), running_.end(), victim) - running_.begin());
      Preempt(victim, out);
      if (victim == seq) {
        self_preempted = true;
        break;
      }
      if (at < i) --i;  // a paused sequence already passed over: seq moved down one place
    }
    if (self_preempted) break;
    add(seq, n);
    ++i;
  }

  // 2. Waiting sequences, FCFS (continuous batching only); none are admitted in a step that had to preempt a
  // sequence that was not paused. Paused ones are passed over; paused running ones give up their blocks
  // for the head of the queue.
  const bool may_admit = !preempted_active && options_.mode == BatchingMode::kContinuous;
  int active = static_cast<int>(running_.size()) - num_paused_running();
  while (may_admit && tokens_left > 0 && active < options_.max_num_seqs &&
         static_cast<int>(out.chunks.size()) < options_.max_num_seqs) {
    auto head = std::find_if(waiting_.begin(), waiting_.end(), not_paused);
    if (head == waiting_.end()) break;
    Sequence* seq = *head;
    // Prefix caching: start from the longest cached prefix (at least one token is left to compute, for
    // the logits). A preempted sequence may hit its own blocks, generated tokens included.
    int64_t hit = 0;
    const int64_t known = static_cast<int64_t>(seq->tokens.size());
    if (blocks_->prefix_caching() && seq->kv.num_tokens == 0) {
      hit = blocks_->MatchPrefix(seq->kv, seq->tokens.data(), known, known - 1);
    }
    const int64_t n = std::min({seq->num_uncomputed(), tokens_left, blocks_->MaxChunkTokens()});
    bool allocated = blocks_->AllocateSlots(seq->kv, n);
    while (!allocated) {
      Sequence* victim = PausedVictim();
      if (victim == nullptr) break;
      Preempt(victim, out);  // to the front of waiting_: `head` is stale from here
      allocated = blocks_->AllocateSlots(seq->kv, n);
    }
    if (!allocated) {
      if (hit > 0) blocks_->Release(seq->kv);  // the cached blocks stay cached
      break;  // FCFS: nobody overtakes the head of the queue
    }
    if (blocks_->prefix_caching()) {
      prefix_cache_queries_ += known;
      prefix_cache_hits_ += hit;
      if (seq->cached_prompt_tokens < 0) seq->cached_prompt_tokens = std::min<int64_t>(hit, seq->num_prompt);
    }
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), seq));
    Admit(seq);
    ++active;
    add(seq, n);
  }
  return out;
}

void Scheduler::Commit(const SchedulerOutput& step) {
  for (const ScheduledChunk& c : step.chunks) blocks_->CommitStep(c.seq->kv, c.num_tokens, c.seq->tokens.data());
}

}  // namespace stepserve
