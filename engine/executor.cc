#include "engine/executor.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "common/exception_text.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "engine/device_memory.h"
#include "engine/engine_core.h"
#include "engine/forward_batch.h"
#include "engine/request_validation.h"

namespace stepserve {

// The threaded wrapper around the single-threaded EngineCore: the engine thread's loop, the mutex that
// serialises the core between it and the API threads, drain, abort and the tensor-parallel group's
// heartbeats and failure. `mu_` guards the core (but for its forward pass, which only the engine thread
// runs, on the model and the KV pools alone) and the flags below it.
class Executor::Impl {
 public:
  Impl(Executor* owner, std::unique_ptr<PagedKvCache> cache, const ExecutorOptions& options)
      : owner_(owner),
        core_(owner->model(), std::move(cache), options, owner->max_context()),
        distributed_(core_.runner().leads_group()),
        heartbeat_(options.heartbeat_interval),
        on_group_failure_(options.on_group_failure) {}

  void Start() { thread_ = std::thread([this] { Loop(); }); }

  absl::Status Submit(GenerationRequest request, OutputCallback callback);
  bool Cancel(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    const bool known = core_.Cancel(id);
    if (known) cv_.notify_all();
    return known;
  }
  bool Pause(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return core_.Pause(id);
  }
  bool Resume(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    const bool known = core_.Resume(id);
    if (known) cv_.notify_all();
    return known;
  }
  ExecutorStats Stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return core_.Stats();
  }
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
  void Loop();
  // One engine step (sweep, schedule, execute, update); returns false when there was nothing to do.
  bool Step();
  // Tensor parallelism: a heartbeat all ranks join; false (after FailGroup) when the group failed.
  bool Heartbeat();
  // The group failed: ends every request in flight with UNAVAILABLE, stops accepting and tells the owner.
  void FailGroup(const absl::Status& cause);
  // Ends every request in flight with kError (takes mu_); `count_step_failure` for a failed step.
  void FailAllInFlight(const absl::Status& error, bool count_step_failure = true);
  // Hands outputs to their callbacks, outside the mutex.
  static void Deliver(Deliveries& deliveries);

  Executor* owner_;
  mutable std::mutex mu_;
  std::condition_variable cv_;       // wakes the engine thread
  std::condition_variable idle_cv_;  // signals drain progress
  EngineCore core_;
  StepObserver observer_;
  const bool distributed_;  // rank 0 of a tensor-parallel group
  absl::Duration heartbeat_;
  std::function<void(const absl::Status&)> on_group_failure_;
  // Engine thread only: outputs of the step in progress, kept here so that an exception in the middle of
  // a step still delivers the outputs (final ones included) already queued.
  Deliveries pending_;
  absl::Time last_contact_ = absl::Now();  // engine thread: the group's last collective
  bool group_failed_ = false;              // engine thread
  absl::Status abort_request_;             // under mu_: Abort() was called
  absl::Status group_failure_;             // under mu_: why the group failed (Submit returns it)
  bool stop_ = false;
  bool aborting_ = false;
  std::thread thread_;
};

absl::Status Executor::Impl::Submit(GenerationRequest request, OutputCallback callback) {
  const ExecutorOptions& opt = owner_->options();
  if (!owner_->accepting()) return absl::UnavailableError("the server is shutting down; not accepting requests");
  RequestLimits limits;
  limits.max_new_tokens_cap = opt.max_new_tokens_cap;
  limits.max_logprobs = opt.max_logprobs;
  limits.max_stop_token_ids = opt.max_stop_token_ids;
  limits.max_request_id_length = opt.max_request_id_length;
  limits.max_cache_salt_length = opt.max_cache_salt_length;
  limits.max_context = owner_->max_context();
  // The one validator (engine/request_validation.h): the server only converts the proto.
  if (absl::Status invalid = ValidateGenerationRequest(request, owner_->config(), limits); !invalid.ok()) {
    return invalid;
  }
  if (!callback) return absl::InvalidArgumentError("a callback is required");

  std::lock_guard<std::mutex> lock(mu_);
  if (!group_failure_.ok()) return group_failure_;
  if (stop_) return absl::UnavailableError("the executor has stopped");
  RETURN_IF_ERROR(core_.Add(std::move(request), std::move(callback)));
  cv_.notify_all();
  return absl::OkStatus();
}

void Executor::Impl::FailAllInFlight(const absl::Status& error, bool count_step_failure) {
  Deliveries deliveries;
  {
    std::lock_guard<std::mutex> lock(mu_);
    core_.FailAll(error, count_step_failure, deliveries);
  }
  Deliver(deliveries);
}

void Executor::Impl::Deliver(Deliveries& deliveries) {
  for (auto& [callback, output] : deliveries) callback(output);
  deliveries.clear();
}

bool Executor::Impl::Step() {
  ScheduledStep step;
  {
    std::unique_lock<std::mutex> lock(mu_);
    const absl::Time now = absl::Now();
    const int ended = core_.Sweep(now, aborting_, pending_);
    step = core_.Schedule(now);
    if (step.empty()) {
      idle_cv_.notify_all();
      lock.unlock();
      Deliver(pending_);
      return ended > 0;
    }
  }
  // The forward pass runs without the lock: only this thread touches the model and the KV pools.
  const absl::Time t0 = absl::Now();
  const StepResult result = core_.Execute(step);
  const absl::Time t1 = absl::Now();
  last_contact_ = t1;
  if (result.group_broken) {
    Deliver(pending_);
    FailGroup(result.host_logits.status());
    return true;
  }
  StepObserver observer;
  StepInfo info;
  {
    std::lock_guard<std::mutex> lock(mu_);
    info = core_.Update(step, result, t0, t1, pending_);
    observer = observer_;
  }
  Deliver(pending_);
  if (observer) observer(info);
  return true;
}

bool Executor::Impl::Heartbeat() {
  absl::Status failure;
  try {
    core_.runner().Heartbeat();
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
      auto ready = [&] { return stop_ || !core_.empty() || !abort_request_.ok(); };
      if (distributed_) {
        // Idle ranks must hear from rank 0 before their collective timeout: wake up for heartbeats.
        cv_.wait_for(lock, absl::ToChronoMilliseconds(heartbeat_), ready);
      } else {
        cv_.wait(lock, ready);
      }
      abort = abort_request_;
      if (abort.ok() && stop_ && core_.empty()) {
        idle_cv_.notify_all();
        break;
      }
    }
    if (!abort.ok()) {
      FailGroup(abort);
      return;
    }
    if (distributed_ && absl::Now() - last_contact_ >= heartbeat_ && !Heartbeat()) return;
    bool progressed = false;
    try {
      progressed = Step();
    } catch (const std::exception& e) {
      // A failure outside the forward pass (Execute catches those) is a bug; deliver what the step had
      // already queued, then end what is in flight with a clear status rather than let the exception
      // kill the engine thread and the server.
      Deliver(pending_);
      FailAllInFlight(absl::InternalError(absl::StrCat("engine step failed outside the forward pass: ", e.what())));
      progressed = true;
    }
    if (group_failed_) return;
    if (!progressed) {
      // Nothing schedulable (e.g. the pool is full of queued work that cannot start): wait briefly. When
      // every request is paused, only a resume, cancel or new request (each notifies) or a deadline (checked
      // here every 100 ms) can change that: no need to spin.
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(core_.all_paused() ? 100 : 5));
    }
  }
  // A clean stop: the other ranks leave their loops and exit 0.
  try {
    core_.runner().Stop();
  } catch (const std::exception& e) {
    LogWarning("could not tell the other ranks to stop: ", ExceptionText(e));
  }
}

void Executor::Impl::Shutdown(absl::Duration drain_timeout) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!thread_.joinable()) return;
    const absl::Time deadline = absl::Now() + drain_timeout;
    while (!core_.empty() && absl::Now() < deadline) {
      idle_cv_.wait_for(lock, std::chrono::milliseconds(10));
    }
    if (!core_.empty()) {
      LogWarning("drain timeout: aborting ", core_.num_in_flight(), " requests still in flight");
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
    logits = Forward(owner_->model(), batch, &core_.cache());
  } catch (const std::exception& e) {
    logits = absl::InternalError(absl::StrCat("warm-up step failed: ", ExceptionText(e)));
  }
  core_.cache().blocks().Release(warm);
  return logits.status();
}

namespace {

// A pool of sliding-window blocks too small for one sequence's window and one step's new blocks would make an
// accepted request preempt itself every step until its deadline: refused at start-up, naming the budget that
// works.
absl::Status CheckSlidingPool(const CausalLM& model, const ExecutorOptions& options, const KvCacheOptions& kv,
                              int64_t budget) {
  const ModelConfig& config = model.kv_config();
  const int64_t need = SlidingBlocksForOneSequence(config, options.block_size, options.max_num_batched_tokens,
                                                   options.enable_prefix_caching);
  if (need == 0 || kv.num_blocks_sliding >= need) return absl::OkStatus();
  const int64_t min_bytes = MinKvCacheBytes(config, options.block_size, options.max_num_seqs,
                                            options.max_num_batched_tokens, options.enable_prefix_caching,
                                            model.dtype());
  return absl::InvalidArgumentError(absl::StrCat(
      "kv cache: the sliding-window pool gets ", kv.num_blocks_sliding, " blocks of ", options.block_size,
      " tokens, fewer than the ", need, " one sequence needs (its window of ", config.MaxSlidingWindow(),
      " tokens and one step's new blocks", options.enable_prefix_caching ? ", prefix caching on" : "",
      "): a request would preempt itself every step. The smallest KV cache budget that works is ", min_bytes,
      " bytes per rank (kv_cache_bytes, or kv_cache_memory_fraction of the free device memory); this one is ",
      budget, model.parallel().distributed() ? " (or another rank's smaller pool)" : ""));
}

}  // namespace

absl::StatusOr<KvCacheOptions> PlanKvCache(const CausalLM& model, const ExecutorOptions& options) {
  absl::StatusOr<KvCacheOptions> kv = absl::InvalidArgumentError("kv_cache_memory_fraction must be in [0, 1)");
  int64_t budget = 0;
  if (options.kv_cache_memory_fraction >= 0 && options.kv_cache_memory_fraction < 1) {
    absl::StatusOr<int64_t> bytes = options.kv_cache_bytes;
    if (options.kv_cache_memory_fraction > 0) {
      bytes = FreeDeviceMemoryBytes(model.device());
      if (bytes.ok()) bytes = static_cast<int64_t>(static_cast<double>(*bytes) * options.kv_cache_memory_fraction);
    }
    kv = bytes.ok() ? KvCacheOptionsFromBudget(model.kv_config(), *bytes, options.block_size, options.max_num_seqs,
                                               options.max_num_batched_tokens, model.dtype(), model.device())
                    : absl::StatusOr<KvCacheOptions>(bytes.status());
    if (bytes.ok()) budget = *bytes;
  }
  if (!model.parallel().distributed()) {
    if (kv.ok()) RETURN_IF_ERROR(CheckSlidingPool(model, options, *kv, budget));
    return kv;
  }
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
  // After the agreement: every rank sees the same pool sizes, so all refuse (or accept) together.
  RETURN_IF_ERROR(CheckSlidingPool(model, options, *kv, budget));
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
  if (options.block_size < 1) return absl::InvalidArgumentError("block_size must be >= 1");
  if (options.max_stop_token_ids < 0) return absl::InvalidArgumentError("max_stop_token_ids must be >= 0");
  if (options.max_request_id_length < 1) return absl::InvalidArgumentError("max_request_id_length must be >= 1");
  if (options.max_cache_salt_length < 0) return absl::InvalidArgumentError("max_cache_salt_length must be >= 0");
  if (options.heartbeat_interval <= absl::ZeroDuration() || options.heartbeat_interval == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError("heartbeat_interval must be positive and finite");
  }
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
bool Executor::Pause(const std::string& request_id) { return impl_->Pause(request_id); }
bool Executor::Resume(const std::string& request_id) { return impl_->Resume(request_id); }
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
