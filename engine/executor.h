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
#include "engine/executor_options.h"
#include "model/layers/causal_lm.h"
#include "engine/generation.h"
#include "engine/kv_cache.h"

namespace stepserve {

// The KV cache this model's rank gets under `options` (a byte budget or a fraction of free device memory).
// On a tensor-parallel group every rank calls it at start-up, in the same order: the ranks agree on the
// smallest pool sizes, so that block ids mean the same slots everywhere.
absl::StatusOr<KvCacheOptions> PlanKvCache(const CausalLM& model, const ExecutorOptions& options);

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

  // Flow control for a front whose client stopped reading: a paused request is not scheduled (it makes
  // no progress and produces no output) until Resume. A paused running request keeps its KV blocks while
  // the pool has room; when another sequence needs blocks, paused ones are preempted first (recomputed on
  // resume, usually from their own blocks in the prefix cache). Cancellation and deadlines still apply. Any
  // thread, the output callback included; idempotent. False if the id is unknown (e.g. it just finished).
  bool Pause(const std::string& request_id);
  bool Resume(const std::string& request_id);

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
