#include "model/executor.h"

#include <algorithm>
#include <cmath>
#include <random>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "model/device_memory.h"
#include "model/exception_text.h"
#include "model/logging.h"
#include "model/parallel/step_broadcast.h"
#include "model/request_validation.h"
#include "model/sampler.h"
#include "model/scheduler.h"
#include "model/sequence.h"
#include "model/status_macros.h"

namespace stepserve {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone: return "none";
    case FinishReason::kStopToken: return "stop";
    case FinishReason::kEos: return "eos";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kAborted: return "aborted";
    case FinishReason::kDeadlineExceeded: return "deadline_exceeded";
    case FinishReason::kError: return "error";
  }
  return "unknown";
}


// Everything the engine thread and the API threads share. `mu` guards the scheduler, the sequences
// and the counters; the KV cache and the model are touched by the engine thread alone (the scheduler
// reads the cache's free counts under `mu`, which only the engine thread changes).
class Executor::Impl {
 public:
  Impl(Executor* owner, std::unique_ptr<PagedKvCache> cache, const ExecutorOptions& options)
      : owner_(owner),
        cache_(std::move(cache)),
        scheduler_(SchedulerOptions{options.max_num_seqs, options.max_num_batched_tokens, options.batching_mode},
                   &cache_->blocks()),
        fault_hook_(options.step_fault_hook),
        comm_(owner->model().parallel().distributed() ? owner->model().parallel().comm : nullptr),
        heartbeat_(options.heartbeat_interval),
        on_group_failure_(options.on_group_failure),
        seed_base_(std::random_device{}()) {}

  void Start() { thread_ = std::thread([this] { Loop(); }); }

  absl::Status Submit(GenerationRequest request, OutputCallback callback);
  bool Cancel(const std::string& id);
  ExecutorStats Stats() const;
  void Shutdown(absl::Duration drain_timeout);
  void SetStepObserver(StepObserver observer) {
    std::lock_guard<std::mutex> lock(mu_);
    observer_ = std::move(observer);
  }
  absl::Status RunWarmup();
  void Abort(const absl::Status& why) {
    std::lock_guard<std::mutex> lock(mu_);
    if (abort_request_.ok()) abort_request_ = why;
    cv_.notify_all();
  }

 private:
  using Delivery = std::pair<OutputCallback, GenerationOutput>;

  void Loop();
  // One engine step; returns false when there was nothing to do.
  bool Step();
  // Finishes `seq` (under mu_): frees its blocks, queues its final output, forgets it.
  void Finish(Sequence* seq, FinishReason reason, absl::Time now, std::vector<Delivery>& out,
              const absl::Status& error = absl::OkStatus());
  // Runs the planned step's forward pass and copies its logits to the host (the one device-to-host copy
  // of a step). Every exception becomes a status: the engine thread never dies of a failed step.
  // On a tensor-parallel group, an exception means the group is broken (*group_broken), not just the step.
  absl::StatusOr<at::Tensor> RunForward(const StepPlan& plan, int64_t step_index, bool* out_of_memory,
                                        bool* group_broken);
  // Tensor parallelism: a heartbeat all ranks join; false (after FailGroup) when the group failed.
  bool Heartbeat();
  // The group failed: ends every request in flight with UNAVAILABLE, stops accepting and tells the owner.
  void FailGroup(const absl::Status& cause);
  // Samples each finished chunk's next token from the host logits and delivers it (under mu_).
  void SampleAndDeliver(const SchedulerOutput& plan, const at::Tensor& host_logits, absl::Time now,
                        std::vector<Delivery>& deliveries);
  GenerationOutput MakeOutput(const Sequence& seq, absl::Time now) const;
  static void Deliver(std::vector<Delivery>& deliveries);
  // Ends every request in flight with kError (takes mu_); `count_step_failure` for a failed step.
  void FailAllInFlight(const absl::Status& error, bool count_step_failure = true);
  // Copies the pool occupancy into stats_ (under mu_, on the engine thread).
  void RefreshKvStats();

  Executor* owner_;
  std::unique_ptr<PagedKvCache> cache_;
  mutable std::mutex mu_;
  std::condition_variable cv_;       // wakes the engine thread
  std::condition_variable idle_cv_;  // signals drain progress
  Scheduler scheduler_;
  std::unordered_map<std::string, std::unique_ptr<Sequence>> seqs_;
  ExecutorStats stats_;
  StepObserver observer_;
  std::function<void(int64_t)> fault_hook_;
  std::shared_ptr<Communicator> comm_;  // the tensor-parallel group, or null
  absl::Duration heartbeat_;
  std::function<void(const absl::Status&)> on_group_failure_;
  absl::Time last_contact_ = absl::Now();  // engine thread: the group's last collective
  bool group_failed_ = false;              // engine thread
  absl::Status abort_request_;             // under mu_: Abort() was called
  absl::Status group_failure_;             // under mu_: why the group failed (Submit returns it)
  int64_t forward_steps_ = 0;  // engine thread only
  uint64_t seed_base_;
  uint64_t request_counter_ = 0;
  bool stop_ = false;
  bool aborting_ = false;
  std::thread thread_;
};

absl::Status Executor::Impl::Submit(GenerationRequest request, OutputCallback callback) {
  const ModelConfig& config = owner_->config();
  const ExecutorOptions& opt = owner_->options();
  if (!owner_->accepting()) return absl::UnavailableError("the server is shutting down; not accepting requests");
  RequestLimits limits;
  limits.max_new_tokens_cap = opt.max_new_tokens_cap;
  limits.max_logprobs = opt.max_logprobs;
  limits.max_context = owner_->max_context();
  // The one validator (model/request_validation.h): the server only converts the proto.
  if (absl::Status invalid = ValidateGenerationRequest(request, config, limits); !invalid.ok()) return invalid;
  if (!callback) return absl::InvalidArgumentError("a callback is required");

  std::lock_guard<std::mutex> lock(mu_);
  if (!group_failure_.ok()) return group_failure_;
  if (stop_) return absl::UnavailableError("the executor has stopped");
  if (seqs_.count(request.id)) {
    return absl::AlreadyExistsError(absl::StrCat("request_id: '", request.id, "' is already in flight"));
  }
  if (static_cast<int>(scheduler_.waiting().size()) >= opt.max_queue) {
    return absl::ResourceExhaustedError(absl::StrCat("the waiting queue is full (", opt.max_queue, " requests)"));
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
  seq->request = std::move(request);
  Sequence* raw = seq.get();
  seqs_.emplace(raw->request.id, std::move(seq));
  scheduler_.AddWaiting(raw);
  cv_.notify_all();
  return absl::OkStatus();
}

bool Executor::Impl::Cancel(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return false;
  it->second->cancel_requested = true;
  cv_.notify_all();
  return true;
}

ExecutorStats Executor::Impl::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  ExecutorStats s = stats_;
  s.num_running = static_cast<int>(scheduler_.running().size());
  s.num_waiting = static_cast<int>(scheduler_.waiting().size());
  s.num_preemptions_total = scheduler_.num_preemptions();
  s.prefix_cache_queries_total = scheduler_.prefix_cache_queries();
  s.prefix_cache_hits_total = scheduler_.prefix_cache_hits();
  return s;
}

GenerationOutput Executor::Impl::MakeOutput(const Sequence& seq, absl::Time now) const {
  GenerationOutput out;
  out.request_id = seq.request.id;
  out.time = now;
  out.prompt_tokens = seq.num_prompt;
  out.completion_tokens = seq.num_generated();
  return out;
}

void Executor::Impl::Finish(Sequence* seq, FinishReason reason, absl::Time now, std::vector<Delivery>& out,
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
  seqs_.erase(seq->request.id);  // destroys seq
}

void Executor::Impl::RefreshKvStats() {
  const BlockManager& b = cache_->blocks();
  stats_.kv_blocks_used = b.NumUsedBlocks(AttentionKind::kFull) + b.NumUsedBlocks(AttentionKind::kSliding);
  stats_.kv_sliding_blocks_used = b.NumUsedBlocks(AttentionKind::kSliding);
  stats_.kv_blocks_free = b.NumFreeBlocks(AttentionKind::kFull) + b.NumFreeBlocks(AttentionKind::kSliding);
  stats_.kv_usage_ratio = b.UsageRatio();
  stats_.kv_cached_blocks = b.NumCachedBlocks(AttentionKind::kFull) + b.NumCachedBlocks(AttentionKind::kSliding);
}

void Executor::Impl::FailAllInFlight(const absl::Status& error, bool count_step_failure) {
  std::vector<Delivery> deliveries;
  {
    std::lock_guard<std::mutex> lock(mu_);
    LogError(error.ToString(), "; ending ", seqs_.size(), " requests");
    if (count_step_failure) ++stats_.step_failures_total;
    std::vector<Sequence*> all;
    for (auto& [id, seq] : seqs_) all.push_back(seq.get());
    for (Sequence* s : all) Finish(s, FinishReason::kError, absl::Now(), deliveries, error);
    RefreshKvStats();
  }
  Deliver(deliveries);
}

void Executor::Impl::Deliver(std::vector<Delivery>& deliveries) {
  for (auto& [callback, output] : deliveries) callback(output);
  deliveries.clear();
}

absl::StatusOr<at::Tensor> Executor::Impl::RunForward(const StepPlan& plan, int64_t step_index,
                                                      bool* out_of_memory, bool* group_broken) {
  *out_of_memory = false;
  // Every exception path below: on a group, the ranks may now be at different collectives.
  *group_broken = comm_ != nullptr;
  try {
    if (fault_hook_) fault_hook_(step_index);
    absl::StatusOr<at::Tensor> logits = owner_->model().Execute(plan, &cache_->pools());
    if (!logits.ok()) {
      *group_broken = false;  // a plan check on rank 0, before any rank heard of the step
      return logits.status();
    }
    // The step's one device-to-host copy: the sampler reads host memory only.
    at::Tensor host = logits->to(at::kCPU).contiguous();
    *group_broken = false;
    return host;
  } catch (const c10::OutOfMemoryError& e) {
    *out_of_memory = true;
    return absl::InternalError(absl::StrCat("engine step failed: device out of memory: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("engine step failed: ", ExceptionText(e)));
  } catch (...) {
    return absl::InternalError("engine step failed: unknown exception");
  }
}

void Executor::Impl::SampleAndDeliver(const SchedulerOutput& plan, const at::Tensor& host_logits, absl::Time now,
                                      std::vector<Delivery>& deliveries) {
  const int vocab = static_cast<int>(host_logits.size(1));
  const float* rows = host_logits.data_ptr<float>();  // host memory: RunForward copied it
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    Sequence* s = plan.chunks[i].seq;
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
    deliveries.push_back({s->callback, std::move(o)});

    const StoppingCriteria& stop = s->request.stopping;
    const auto& stops = stop.stop_token_ids;
    const auto& eos = owner_->config().eos_token_ids;
    FinishReason reason = FinishReason::kNone;
    if (std::find(stops.begin(), stops.end(), r.token) != stops.end()) {
      reason = FinishReason::kStopToken;
    } else if (!stop.ignore_eos && std::find(eos.begin(), eos.end(), r.token) != eos.end()) {
      reason = FinishReason::kEos;
    } else if (s->num_generated() >= stop.max_new_tokens ||
               static_cast<int64_t>(s->tokens.size()) >= owner_->max_context()) {
      reason = FinishReason::kLength;
    }
    if (reason != FinishReason::kNone) Finish(s, reason, now, deliveries);
  }
}

bool Executor::Impl::Step() {
  std::vector<Delivery> deliveries;
  SchedulerOutput plan;
  StepPlan step_plan;
  {
    std::unique_lock<std::mutex> lock(mu_);
    const absl::Time now = absl::Now();
    // Cancellations, deadlines and (past the drain timeout) aborts take effect before scheduling.
    std::vector<Sequence*> done;
    std::vector<FinishReason> reasons;
    for (auto& [id, seq] : seqs_) {
      if (aborting_) {
        done.push_back(seq.get());
        reasons.push_back(FinishReason::kAborted);
      } else if (seq->cancel_requested) {
        done.push_back(seq.get());
        reasons.push_back(FinishReason::kCancelled);
      } else if (now >= seq->request.deadline) {
        done.push_back(seq.get());
        reasons.push_back(FinishReason::kDeadlineExceeded);
      }
    }
    for (size_t i = 0; i < done.size(); ++i) Finish(done[i], reasons[i], now, deliveries);
    // The scheduler allocates every scheduled chunk's blocks; the plan is all the forward pass needs.
    plan = scheduler_.Schedule();
    StepPlanBuilder builder(&cache_->blocks());
    for (const ScheduledChunk& c : plan.chunks) {
      Sequence* s = c.seq;
      if (!s->first_scheduled) s->first_scheduled = now;
      builder.Add(s->tokens.data() + s->num_computed(), c.num_tokens, s->num_computed(), &s->kv);
    }
    step_plan = builder.Build();
    if (plan.chunks.empty()) {
      RefreshKvStats();
      idle_cv_.notify_all();
      lock.unlock();
      Deliver(deliveries);
      return !done.empty();
    }
  }

  // The forward pass runs without the lock: only this thread touches the model and the KV pools.
  const absl::Time t0 = absl::Now();
  bool out_of_memory = false, group_broken = false;
  absl::StatusOr<at::Tensor> logits = RunForward(step_plan, forward_steps_++, &out_of_memory, &group_broken);
  const absl::Time t1 = absl::Now();
  last_contact_ = t1;
  if (group_broken) {
    Deliver(deliveries);
    FailGroup(logits.status());
    return true;
  }
  StepObserver observer;
  StepInfo info;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.num_steps_total;
    if (!logits.ok()) {
      // Only this step's requests end; the engine keeps serving the others and the next ones.
      ++stats_.step_failures_total;
      if (out_of_memory) ++stats_.step_oom_failures_total;
      LogError("engine step failed, ending its ", plan.chunks.size(), " requests: ", logits.status().ToString());
      for (const ScheduledChunk& c : plan.chunks) Finish(c.seq, FinishReason::kError, t1, deliveries, logits.status());
    } else {
      ++stats_.logits_host_copies_total;
      // With the tokens: the blocks this step filled become cached prefixes (prefix caching).
      for (const ScheduledChunk& c : plan.chunks) {
        cache_->blocks().CommitStep(c.seq->kv, c.num_tokens, c.seq->tokens.data());
      }
      SampleAndDeliver(plan, *logits, t1, deliveries);
    }
    RefreshKvStats();
    observer = observer_;
    info.num_seqs = static_cast<int>(plan.chunks.size());
    info.num_prefill_tokens = plan.num_prefill_tokens;
    info.num_decode_tokens = plan.num_decode_tokens;
    info.num_tokens = plan.num_prefill_tokens + plan.num_decode_tokens;
    info.duration = t1 - t0;
  }
  Deliver(deliveries);
  if (observer) observer(info);
  return true;
}

bool Executor::Impl::Heartbeat() {
  absl::Status failure;
  try {
    SendHeartbeat(*comm_);
    last_contact_ = absl::Now();
    return true;
  } catch (const std::exception& e) {
    failure = absl::UnavailableError(absl::StrCat("heartbeat failed: ", ExceptionText(e)));
  }
  FailGroup(failure);
  return false;
}

void Executor::Impl::FailGroup(const absl::Status& cause) {
  const absl::Status status =
      absl::UnavailableError(absl::StrCat("the tensor-parallel group failed: ", cause.message()));
  group_failed_ = true;
  owner_->accepting_ = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    group_failure_ = status;
    stop_ = true;
  }
  FailAllInFlight(status, /*count_step_failure=*/false);
  {
    std::lock_guard<std::mutex> lock(mu_);
    idle_cv_.notify_all();
  }
  if (on_group_failure_) on_group_failure_(status);
}

void Executor::Impl::Loop() {
  while (true) {
    absl::Status abort;
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto ready = [&] { return stop_ || !seqs_.empty() || !abort_request_.ok(); };
      if (comm_ != nullptr) {
        // Idle ranks must hear from rank 0 before their collective timeout: wake up for heartbeats.
        cv_.wait_for(lock, absl::ToChronoMilliseconds(heartbeat_), ready);
      } else {
        cv_.wait(lock, ready);
      }
      abort = abort_request_;
      if (abort.ok() && stop_ && seqs_.empty()) {
        idle_cv_.notify_all();
        break;
      }
    }
    if (!abort.ok()) {
      FailGroup(abort);
      return;
    }
    if (comm_ != nullptr && absl::Now() - last_contact_ >= heartbeat_ && !Heartbeat()) return;
    bool progressed = false;
    try {
      progressed = Step();
    } catch (const std::exception& e) {
      // A failure outside the forward pass (RunForward catches those) is a bug; end what is in flight
      // with a clear status rather than let the exception kill the engine thread and the server.
      FailAllInFlight(absl::InternalError(absl::StrCat("engine step failed outside the forward pass: ", e.what())));
      progressed = true;
    }
    if (group_failed_) return;
    if (!progressed) {
      // Nothing schedulable (e.g. the pool is full of queued work that cannot start): wait briefly.
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(5));
    }
  }
  // A clean stop: the other ranks leave their loops and exit 0.
  if (comm_ != nullptr) {
    try {
      SendStop(*comm_);
    } catch (const std::exception& e) {
      LogWarning("could not tell the other ranks to stop: ", e.what());
    }
  }
}

void Executor::Impl::Shutdown(absl::Duration drain_timeout) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!thread_.joinable()) return;
    const absl::Time deadline = absl::Now() + drain_timeout;
    while (!seqs_.empty() && absl::Now() < deadline) {
      idle_cv_.wait_for(lock, std::chrono::milliseconds(10));
    }
    if (!seqs_.empty()) {
      LogWarning("drain timeout: aborting ", seqs_.size(), " requests still in flight");
      aborting_ = true;
    }
    stop_ = true;
    cv_.notify_all();
  }
  thread_.join();
}

absl::Status Executor::Impl::RunWarmup() {
  // One short prefill through a throw-away sequence exercises every layer and kernel once.
  KvSequence warm;
  ForwardBatch batch;
  const int64_t n = std::min<int64_t>(4, owner_->max_context());
  batch.token_ids = at::zeros({n}, at::TensorOptions().dtype(at::kLong));
  batch.seqs.push_back({n, 0, &warm});
  absl::StatusOr<at::Tensor> logits = absl::UnknownError("warm-up did not run");
  try {
    logits = owner_->model().Forward(batch, cache_.get());
  } catch (const std::exception& e) {
    logits = absl::InternalError(absl::StrCat("warm-up step failed: ", e.what()));
  }
  cache_->blocks().Release(warm);
  return logits.status();
}

absl::StatusOr<KvCacheOptions> PlanKvCache(const CausalLM& model, const ExecutorOptions& options) {
  absl::StatusOr<KvCacheOptions> kv = absl::InvalidArgumentError("kv_cache_memory_fraction must be in (0, 1)");
  if (options.kv_cache_memory_fraction < 1) {
    absl::StatusOr<int64_t> bytes = options.kv_cache_bytes;
    if (options.kv_cache_memory_fraction > 0) {
      bytes = FreeDeviceMemoryBytes(model.device());
      if (bytes.ok()) bytes = static_cast<int64_t>(static_cast<double>(*bytes) * options.kv_cache_memory_fraction);
    }
    kv = bytes.ok() ? KvCacheOptionsFromBudget(model.kv_config(), *bytes, options.block_size, options.max_num_seqs,
                                               options.max_num_batched_tokens, model.dtype(), model.device())
                    : absl::StatusOr<KvCacheOptions>(bytes.status());
  }
  if (!model.parallel().distributed()) return kv;
  // Every rank joins, even one that failed (-1), so that none waits for the others until the timeout.
  at::Tensor blocks = at::full({2}, -1, at::TensorOptions().dtype(at::kLong));
  if (kv.ok()) {
    blocks.data_ptr<int64_t>()[0] = kv->num_blocks_full;
    blocks.data_ptr<int64_t>()[1] = kv->num_blocks_sliding;
  }
  try {
    model.parallel().comm->AllReduceMin(blocks);
  } catch (const std::exception& e) {  // c10::Error, or Gloo's own gloo::IoException
    return absl::UnavailableError(absl::StrCat("the ranks could not agree on the KV cache: ", ExceptionText(e)));
  }
  if (!kv.ok()) return kv.status();
  if (blocks.data_ptr<int64_t>()[0] < 0) {
    return absl::FailedPreconditionError("another rank could not size its KV cache (see its log)");
  }
  kv->num_blocks_full = static_cast<int32_t>(blocks.data_ptr<int64_t>()[0]);
  kv->num_blocks_sliding = static_cast<int32_t>(blocks.data_ptr<int64_t>()[1]);
  return kv;
}

Executor::Executor(std::unique_ptr<CausalLM> model, const ExecutorOptions& options)
    : model_(std::move(model)), options_(options) {}

absl::StatusOr<std::unique_ptr<Executor>> Executor::Create(std::unique_ptr<CausalLM> model,
                                                           const ExecutorOptions& options) {
  if (model == nullptr) return absl::InvalidArgumentError("no model");
  if (options.max_num_seqs < 1) return absl::InvalidArgumentError("max_num_seqs must be >= 1");
  if (options.max_num_batched_tokens < 1) return absl::InvalidArgumentError("max_num_batched_tokens must be >= 1");
  if (options.max_queue < 0) return absl::InvalidArgumentError("max_queue must be >= 0");
  ASSIGN_OR_RETURN(KvCacheOptions kv, PlanKvCache(*model, options));
  kv.enable_prefix_caching = options.enable_prefix_caching;
  std::unique_ptr<Executor> ex(new Executor(std::move(model), options));
  auto cache = std::make_unique<PagedKvCache>(ex->model().kv_config(), kv);
  ex->kv_capacity_tokens_ = cache->CapacityTokens();
  ex->max_context_ = std::min<int64_t>(ex->config().max_position_embeddings, ex->kv_capacity_tokens_);
  ex->impl_ = std::make_unique<Impl>(ex.get(), std::move(cache), options);
  if (ex->max_context_ < 1) return absl::InvalidArgumentError("the KV cache cannot hold a single sequence");
  if (options.run_warmup) RETURN_IF_ERROR(ex->impl_->RunWarmup());
  ex->impl_->Start();
  return ex;
}

Executor::~Executor() {
  accepting_ = false;
  if (impl_) impl_->Shutdown(absl::ZeroDuration());
}

absl::Status Executor::Submit(GenerationRequest request, OutputCallback callback) {
  return impl_->Submit(std::move(request), std::move(callback));
}
bool Executor::Cancel(const std::string& request_id) { return impl_->Cancel(request_id); }
ExecutorStats Executor::Stats() const {
  ExecutorStats s = impl_->Stats();
  s.kv_capacity_tokens = kv_capacity_tokens();
  return s;
}
void Executor::Abort(const absl::Status& why) { impl_->Abort(why); }
void Executor::SetStepObserver(StepObserver observer) { impl_->SetStepObserver(std::move(observer)); }

int64_t Executor::kv_capacity_tokens() const { return kv_capacity_tokens_; }
int64_t Executor::max_context() const { return max_context_; }

void Executor::Shutdown(absl::Duration drain_timeout) {
  accepting_ = false;
  impl_->Shutdown(drain_timeout);
}

}  // namespace stepserve
