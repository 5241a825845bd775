// The executor's knobs, its statistics and the per-step figures it reports (engine/executor.h).
#pragma once

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/scheduler.h"

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
  // Request limits (engine/request_validation.h: RequestLimits), each refused with INVALID_ARGUMENT naming
  // the field.
  int max_stop_token_ids = 1024;    // entries of stopping.stop_token_ids
  int max_request_id_length = 256;  // bytes of request_id (printable ASCII only: no control characters)
  int max_cache_salt_length = 256;  // bytes of cache_salt
  bool run_warmup = true;        // one forward step before Create() returns
  BatchingMode batching_mode = BatchingMode::kContinuous;  // kStatic: the baseline for benchmarks
  // Automatic prefix caching: full blocks stay cached (keyed by a hash chain of their tokens and the
  // request's cache_salt) after their sequence frees them, and are evicted LRU only when a block is needed.
  bool enable_prefix_caching = true;
  // Test-only fault injection: called on the engine thread before each step's forward pass with the step's
  // index (0-based, counting steps that ran a forward pass); whatever it throws is handled like a failure
  // of the forward pass itself.
  std::function<void(int64_t step)> step_fault_hook;
  // Test-only fault injection after the forward pass: called on the engine thread in EngineCore::Update once
  // a successful step's outputs are queued (final ones included), with the step's index and how many
  // requests finished in it; whatever it throws escapes the step as a bug outside the forward pass would.
  std::function<void(int64_t step, int num_finished)> update_fault_hook;
  // Tensor parallelism (the model's communicator): rank 0 sends a heartbeat this often while idle, so a
  // failed rank shows within this interval plus the collective timeout.
  absl::Duration heartbeat_interval = absl::Seconds(1);
  // Called once, on the engine thread, when the tensor-parallel group failed (a collective threw or timed
  // out, or Abort was called): every request in flight has already ended with UNAVAILABLE and the executor
  // accepts no more. The server turns NOT_SERVING and exits non-zero.
  std::function<void(const absl::Status&)> on_group_failure;
};

struct ExecutorStats {
  int num_running = 0;  // running and not paused
  int num_waiting = 0;  // waiting and not paused
  int num_paused = 0;   // paused (Executor::Pause): not scheduled until resumed
  int num_paused_holding_kv = 0;  // of which admitted and still holding KV blocks (not preempted)
  int64_t pauses_total = 0;       // Pause calls that paused a request that was not paused
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

}  // namespace stepserve
