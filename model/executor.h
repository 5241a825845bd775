// The batched executor: owns the model, the paged KV cache and the scheduler, and runs engine steps
// (one batched forward pass each) on a dedicated thread. Thread-safe public API.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "model/causal_lm.h"
#include "model/generation.h"
#include "model/kv_cache.h"
#include "model/scheduler.h"
#include "model/step_plan.h"

namespace stepserve {

struct ExecutorOptions {
  int max_num_seqs = 32;             // sequences in one step
  int max_num_batched_tokens = 512;  // tokens in one step (prefill chunks + decodes)
  int64_t kv_cache_bytes = 256ll << 20;
  double kv_cache_memory_fraction = 0;  // CUDA only: > 0 sizes the cache from free device memory instead
  int block_size = 16;
  int max_queue = 1024;          // waiting requests before Submit returns RESOURCE_EXHAUSTED
  int max_new_tokens_cap = 4096; // largest max_new_tokens accepted
  int max_logprobs = 20;         // largest logprobs (top-n) accepted
  bool run_warmup = true;        // one forward step before Create() returns
  BatchingMode batching_mode = BatchingMode::kContinuous;  // kStatic: the baseline for benchmarks
  // Automatic prefix caching: full blocks stay cached (keyed by a hash chain of their tokens and the
  // request's cache_salt) after their sequence frees them, and are evicted LRU only when a block is needed.
  bool enable_prefix_caching = true;
  // Test-only fault injection: called on the engine thread before each step's forward pass with the step's
  // index (0-based, counting steps that ran a forward pass); whatever it throws is handled like a failure
  // of the forward pass itself.
  std::function<void(int64_t step)> step_fault_hook;
  // Tensor parallelism (the model's communicator): rank 0 sends a heartbeat this often while idle, so a
  // failed rank shows within this interval plus the collective timeout.
  absl::Duration heartbeat_interval = absl::Seconds(1);
  // Called once, on the engine thread, when the tensor-parallel group failed (a collective threw or timed
  // out, or Abort was called): every request in flight has already ended with UNAVAILABLE and the executor
  // accepts no more. The server turns NOT_SERVING and exits non-zero.
  std::function<void(const absl::Status&)> on_group_failure;
};

// The KV cache this model's rank gets under `options` (a byte budget or a fraction of free device memory).
// On a tensor-parallel group every rank calls it at start-up, in the same order: the ranks agree on the
// smallest pool sizes, so that block ids mean the same slots everywhere.
absl::StatusOr<KvCacheOptions> PlanKvCache(const CausalLM& model, const ExecutorOptions& options);

struct ExecutorStats {
  int num_running = 0;
  int num_waiting = 0;
  int32_t kv_blocks_used = 0;          // both pools
  int32_t kv_sliding_blocks_used = 0;  // the sliding-window pool alone
  int32_t kv_blocks_free = 0;
  double kv_usage_ratio = 0.0;
  int64_t kv_capacity_tokens = 0;
  int64_t prompt_tokens_total = 0;      // prompt tokens computed (recomputed ones after preemption too)
  int64_t generation_tokens_total = 0;  // tokens generated and delivered
  int64_t num_preemptions_total = 0;
  int64_t num_steps_total = 0;
  int64_t requests_finished_total = 0;
  int64_t step_failures_total = 0;      // steps whose forward pass failed (their requests ended with kError)
  int64_t step_oom_failures_total = 0;  // of which device out-of-memory errors
  int64_t logits_host_copies_total = 0; // device-to-host logits copies: exactly one per successful step
  int64_t prefix_cache_queries_total = 0;  // prompt tokens looked up in the prefix cache (each admission)
  int64_t prefix_cache_hits_total = 0;     // of which found cached (not computed)
  int32_t kv_cached_blocks = 0;            // blocks held only by the prefix cache (evictable; counted free)
};

// Per-step information for metrics (called on the engine thread after each step).
struct StepInfo {
  int num_seqs = 0;
  int num_tokens = 0;         // tokens in the forward pass
  int num_prefill_tokens = 0;
  int num_decode_tokens = 0;
  absl::Duration duration;
};
using StepObserver = std::function<void(const StepInfo&)>;

class Executor {
 public:
  // Builds the KV cache from `options`, runs a warm-up step if asked, and starts the engine thread.
  static absl::StatusOr<std::unique_ptr<Executor>> Create(std::unique_ptr<CausalLM> model,
                                                          const ExecutorOptions& options);
  ~Executor();  // aborts what is left and joins the engine thread

  // Validates and queues a request. Errors: INVALID_ARGUMENT (a field is out of range, the message names
  // it), ALREADY_EXISTS (id in flight), RESOURCE_EXHAUSTED (waiting queue full), UNAVAILABLE (shutting
  // down). On OK, `callback` receives every output and exactly one finished output.
  absl::Status Submit(GenerationRequest request, OutputCallback callback);

  // Cancels a queued or running request; its blocks are freed before the next step. False if unknown.
  bool Cancel(const std::string& request_id);

  ExecutorStats Stats() const;

  // Declares the tensor-parallel group failed from outside the engine (a worker process exited): the
  // engine thread ends every request in flight with UNAVAILABLE and stops; on_group_failure follows.
  void Abort(const absl::Status& why);
  void SetStepObserver(StepObserver observer);

  // Stops accepting requests; lets in-flight ones finish for up to `drain_timeout`, then aborts the
  // rest (finish reason kAborted) and stops the engine thread. Idempotent.
  void Shutdown(absl::Duration drain_timeout);
  bool accepting() const { return accepting_.load(); }

  const ModelConfig& config() const { return model_->config(); }
  const CausalLM& model() const { return *model_; }
  const ExecutorOptions& options() const { return options_; }
  int64_t kv_capacity_tokens() const;
  // Longest prompt + max_new_tokens a single request may ask for.
  int64_t max_context() const;

 private:
  class Impl;
  Executor(std::unique_ptr<CausalLM> model, const ExecutorOptions& options);

  std::unique_ptr<CausalLM> model_;
  ExecutorOptions options_;
  std::atomic<bool> accepting_{true};
  int64_t kv_capacity_tokens_ = 0;
  int64_t max_context_ = 0;
  std::unique_ptr<Impl> impl_;
};

}  // namespace stepserve
