#include "engine/engine_core.h"

#include <algorithm>
#include <random>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "common/exception_text.h"
#include "common/logging.h"
#include "engine/sampler.h"
#include "engine/step_plan_builder.h"
#include "engine/stop_checker.h"

namespace stepserve {

EngineCore::EngineCore(const CausalLM& model, std::unique_ptr<PagedKvCache> cache, const ExecutorOptions& options,
                       int64_t max_context)
    : model_(model),
      cache_(std::move(cache)),
      scheduler_(SchedulerOptions{options.max_num_seqs, options.max_num_batched_tokens, options.batching_mode},
                 &cache_->blocks()),
      runner_(model),
      max_queue_(options.max_queue),
      max_context_(max_context),
      fault_hook_(options.step_fault_hook),
      update_fault_hook_(options.update_fault_hook),
      seed_base_(std::random_device{}()) {}

absl::Status EngineCore::Add(GenerationRequest request, OutputCallback callback) {
  if (seqs_.count(request.id)) {
    return absl::AlreadyExistsError(absl::StrCat("request_id: '", request.id, "' is already in flight"));
  }
  if (static_cast<int>(scheduler_.waiting().size()) >= max_queue_) {
    return absl::ResourceExhaustedError(absl::StrCat("the waiting queue is full (", max_queue_, " requests)"));
  }
  auto seq = std::make_unique<Sequence>();
  seq->seed = request.sampling.seed.value_or(seed_base_ + request_counter_ * 0x9e3779b97f4a7c15ull);
  SetCacheSalt(seq->kv, request.cache_salt);
  ++request_counter_;
  seq->tokens = request.prompt;
  seq->num_prompt = static_cast<int>(request.prompt.size());
  for (int32_t t : request.prompt) ++seq->history.prompt_counts[t];
  seq->arrival = absl::Now();
  seq->callback = std::move(callback);
  seq->stop_token_ids = MakeStopTokenSet(request.stopping);
  seq->request = std::move(request);
  Sequence* raw = seq.get();
  seqs_.emplace(raw->request.id, std::move(seq));
  scheduler_.AddWaiting(raw);
  return absl::OkStatus();
}

bool EngineCore::Cancel(const std::string& id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return false;
  it->second->cancel_requested = true;
  return true;
}

bool EngineCore::Pause(const std::string& id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return false;
  if (!it->second->paused) {
    it->second->paused = true;
    ++num_paused_;
    ++stats_.pauses_total;
  }
  return true;
}

bool EngineCore::Resume(const std::string& id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return false;
  if (it->second->paused) {
    it->second->paused = false;
    --num_paused_;
  }
  return true;
}

ExecutorStats EngineCore::Stats() const {
  ExecutorStats s = stats_;
  const int paused_running = scheduler_.num_paused_running();
  const int paused_waiting = scheduler_.num_paused_waiting();
  s.num_running = static_cast<int>(scheduler_.running().size()) - paused_running;
  s.num_waiting = static_cast<int>(scheduler_.waiting().size()) - paused_waiting;
  s.num_paused = paused_running + paused_waiting;
  s.num_paused_holding_kv = paused_running;
  s.num_preemptions_total = scheduler_.num_preemptions();
  s.prefix_cache_queries_total = scheduler_.prefix_cache_queries();
  s.prefix_cache_hits_total = scheduler_.prefix_cache_hits();
  return s;
}

GenerationOutput EngineCore::MakeOutput(const Sequence& seq, absl::Time now) const {
  GenerationOutput out;
  out.request_id = seq.request.id;
  out.time = now;
  out.prompt_tokens = seq.num_prompt;
  out.completion_tokens = seq.num_generated();
  return out;
}

void EngineCore::Finish(Sequence* seq, FinishReason reason, absl::Time now, Deliveries& out,
                        const absl::Status& error) {
  scheduler_.Remove(seq);
  seq->state = SequenceState::kFinished;
  GenerationOutput o = MakeOutput(*seq, now);
  o.finished = true;
  o.finish_reason = reason;
  o.error = error;
  o.queue_time = seq->first_scheduled ? *seq->first_scheduled - seq->arrival : now - seq->arrival;
  o.time_to_first_token = seq->first_token ? *seq->first_token - seq->arrival : absl::ZeroDuration();
  o.e2e_latency = now - seq->arrival;
  o.cached_prompt_tokens = static_cast<int>(std::max<int64_t>(0, seq->cached_prompt_tokens));
  out.push_back({seq->callback, std::move(o)});
  ++stats_.requests_finished_total;
  if (seq->paused) --num_paused_;
  seqs_.erase(seq->request.id);  // destroys seq
}

void EngineCore::RefreshKvStats() {
  const BlockManager& b = cache_->blocks();
  stats_.kv_blocks_used = b.NumUsedBlocks(AttentionKind::kFull) + b.NumUsedBlocks(AttentionKind::kSliding);
  stats_.kv_sliding_blocks_used = b.NumUsedBlocks(AttentionKind::kSliding);
  stats_.kv_blocks_free = b.NumFreeBlocks(AttentionKind::kFull) + b.NumFreeBlocks(AttentionKind::kSliding);
  stats_.kv_usage_ratio = b.UsageRatio();
  stats_.kv_cached_blocks = b.NumCachedBlocks(AttentionKind::kFull) + b.NumCachedBlocks(AttentionKind::kSliding);
}

void EngineCore::FailAll(const absl::Status& error, bool count_step_failure, Deliveries& out) {
  LogError(error.ToString(), "; ending ", seqs_.size(), " requests");
  if (count_step_failure) ++stats_.step_failures_total;
  std::vector<Sequence*> all;
  for (auto& [id, seq] : seqs_) all.push_back(seq.get());
  for (Sequence* s : all) Finish(s, FinishReason::kError, absl::Now(), out, error);
  RefreshKvStats();
}

int EngineCore::Sweep(absl::Time now, bool abort_all, Deliveries& out) {
  std::vector<std::pair<Sequence*, FinishReason>> done;
  for (auto& [id, seq] : seqs_) {
    if (abort_all) {
      done.push_back({seq.get(), FinishReason::kAborted});
    } else if (seq->cancel_requested) {
      done.push_back({seq.get(), FinishReason::kCancelled});
    } else if (now >= seq->request.deadline) {
      done.push_back({seq.get(), FinishReason::kDeadlineExceeded});
    }
  }
  for (auto& [seq, reason] : done) Finish(seq, reason, now, out);
  return static_cast<int>(done.size());
}

ScheduledStep EngineCore::Schedule(absl::Time now) {
  ScheduledStep step;
  step.chunks = scheduler_.Schedule();
  StepPlanBuilder builder(&cache_->blocks());
  for (const ScheduledChunk& c : step.chunks.chunks) {
    Sequence* s = c.seq;
    if (!s->first_scheduled) s->first_scheduled = now;
    builder.Add(s->tokens.data() + s->num_computed(), c.num_tokens, s->num_computed(), &s->kv);
  }
  step.plan = builder.Build();
  if (step.empty()) RefreshKvStats();
  return step;
}

StepResult EngineCore::Execute(const ScheduledStep& step) {
  StepResult r;
  // Every exception path below: on a group, the ranks may now be at different collectives.
  r.group_broken = runner_.leads_group();
  try {
    const int64_t index = forward_steps_++;
    if (fault_hook_) fault_hook_(index);
    absl::StatusOr<at::Tensor> logits = runner_.Run(step.plan, &cache_->pools());
    if (!logits.ok()) {
      r.group_broken = false;  // a plan check on rank 0, before any rank heard of the step
      r.host_logits = logits.status();
      return r;
    }
    // The step's one device-to-host copy: the sampler reads host memory only.
    r.host_logits = logits->to(at::kCPU).contiguous();
    r.group_broken = false;
  } catch (const c10::OutOfMemoryError& e) {
    r.out_of_memory = true;
    r.host_logits = absl::InternalError(
        absl::StrCat("engine step failed: device out of memory: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    r.host_logits = absl::InternalError(absl::StrCat("engine step failed: ", ExceptionText(e)));
  } catch (...) {
    r.host_logits = absl::InternalError("engine step failed: unknown exception");
  }
  return r;
}

void EngineCore::SampleAndDeliver(const SchedulerOutput& step, const at::Tensor& host_logits, absl::Time now,
                                  Deliveries& out) {
  const int vocab = static_cast<int>(host_logits.size(1));
  const float* rows = host_logits.data_ptr<float>();  // host memory: Execute copied it
  const StopContext stop_context{&model_.config().eos_token_ids, max_context_};
  for (size_t i = 0; i < step.chunks.size(); ++i) {
    Sequence* s = step.chunks[i].seq;
    if (s->state != SequenceState::kRunning) continue;
    if (s->num_uncomputed() > 0) continue;  // a prefill chunk that does not reach the end yet
    const SampleResult r = SampleToken(rows + i * static_cast<int64_t>(vocab), vocab, s->request.sampling,
                                       s->history, s->seed, s->num_generated(), s->request.logprobs);
    s->tokens.push_back(r.token);
    ++s->history.generated_counts[r.token];
    ++stats_.generation_tokens_total;
    if (!s->first_token) {
      s->first_token = now;
      stats_.prompt_tokens_total += s->num_prompt;  // each request's prompt, counted once
    }
    GenerationOutput o = MakeOutput(*s, now);
    o.token_ids.push_back(r.token);
    if (s->request.logprobs > 0) o.logprobs.push_back(r.logprob);
    out.push_back({s->callback, std::move(o)});
    const FinishReason reason = CheckStop(s->request.stopping, s->stop_token_ids, r.token, s->num_generated(),
                                          static_cast<int64_t>(s->tokens.size()), stop_context);
    if (reason != FinishReason::kNone) Finish(s, reason, now, out);
  }
}

StepInfo EngineCore::Update(const ScheduledStep& step, const StepResult& result, absl::Time started,
                            absl::Time now, Deliveries& out) {
  ++stats_.num_steps_total;
  if (!result.host_logits.ok()) {
    // Only this step's requests end; the engine keeps serving the others and the next ones.
    ++stats_.step_failures_total;
    if (result.out_of_memory) ++stats_.step_oom_failures_total;
    LogError("engine step failed, ending its ", step.chunks.chunks.size(),
             " requests: ", result.host_logits.status().ToString());
    for (const ScheduledChunk& c : step.chunks.chunks) {
      Finish(c.seq, FinishReason::kError, now, out, result.host_logits.status());
    }
  } else {
    ++stats_.logits_host_copies_total;
    scheduler_.Commit(step.chunks);
    const size_t queued_before = out.size();
    SampleAndDeliver(step.chunks, *result.host_logits, now, out);
    if (update_fault_hook_) {
      int finished = 0;
      for (size_t i = queued_before; i < out.size(); ++i) finished += out[i].second.finished ? 1 : 0;
      update_fault_hook_(forward_steps_ - 1, finished);
    }
  }
  RefreshKvStats();
  StepInfo info;
  info.num_seqs = static_cast<int>(step.chunks.chunks.size());
  info.num_prefill_tokens = step.chunks.num_prefill_tokens;
  info.num_decode_tokens = step.chunks.num_decode_tokens;
  info.num_tokens = info.num_prefill_tokens + info.num_decode_tokens;
  info.duration = now - started;
  return info;
}

}  // namespace stepserve
