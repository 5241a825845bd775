// The engine's logic, single-threaded (as vLLM v1's EngineCore and MLC-LLM's engine actions): sweep
// (cancellations, deadlines, aborts), schedule (the scheduler allocates), execute the step (the step
// runner; every exception becomes a status), update from its output (the scheduler commits, the sampler
// picks each token, the stop checker ends sequences). It owns the requests in flight, the scheduler and
// the KV cache. Not thread-safe: the Executor (engine/executor.h) serialises every call under its mutex,
// except Execute, which touches only the model and the KV pools and runs on the engine thread alone.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/executor_options.h"
#include "engine/generation.h"
#include "engine/kv_cache.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"
#include "engine/step_runner.h"
#include "model/layers/causal_lm.h"
#include "model/layers/step_plan.h"

namespace stepserve {

// Outputs to hand to their callbacks once the mutex is released.
using Delivery = std::pair<OutputCallback, GenerationOutput>;
using Deliveries = std::vector<Delivery>;

// A scheduled step: which chunks run, and the plan the forward pass needs.
struct ScheduledStep {
  SchedulerOutput chunks;
  StepPlan plan;
  bool empty() const { return chunks.chunks.empty(); }
};

// What a step's forward pass gave: host logits, or why it failed.
struct StepResult {
  absl::StatusOr<at::Tensor> host_logits = absl::UnknownError("not run");
  bool out_of_memory = false;
  bool group_broken = false;  // on a tensor-parallel group, the ranks may now be at different collectives
};

class EngineCore {
 public:
  EngineCore(const CausalLM& model, std::unique_ptr<PagedKvCache> cache, const ExecutorOptions& options,
             int64_t max_context);

  // Queues a validated request. ALREADY_EXISTS (id in flight) or RESOURCE_EXHAUSTED (queue full).
  absl::Status Add(GenerationRequest request, OutputCallback callback);
  // Marks a request cancelled; the next Sweep ends it. False if unknown.
  bool Cancel(const std::string& id);
  // Flow control: a paused request is not scheduled until resumed (engine/scheduler.h: it keeps its KV
  // blocks until a step needs them). Idempotent; false if unknown (finished already, or never added).
  bool Pause(const std::string& id);
  bool Resume(const std::string& id);
  // Every request in flight is paused (nothing to schedule until a resume, cancel, deadline or new request).
  bool all_paused() const { return !seqs_.empty() && num_paused_ == static_cast<int>(seqs_.size()); }
  bool empty() const { return seqs_.empty(); }
  size_t num_in_flight() const { return seqs_.size(); }

  // 1. Cancellations, deadlines and (with `abort_all`) aborts take effect; returns how many ended.
  int Sweep(absl::Time now, bool abort_all, Deliveries& out);
  // 2. The scheduler picks the step and allocates its blocks; the plan is all the forward pass needs.
  ScheduledStep Schedule(absl::Time now);
  // 3. Runs the forward pass and copies the logits to the host (the step's one device-to-host copy).
  // No exception escapes. Engine thread only; touches no state the other calls read.
  StepResult Execute(const ScheduledStep& step);
  // 4. Commits the step's blocks, samples and delivers each finished chunk's token, ends what stopped; or,
  // when the step failed, ends only its requests with kError. Returns the step's figures for metrics.
  StepInfo Update(const ScheduledStep& step, const StepResult& result, absl::Time started, absl::Time now,
                  Deliveries& out);

  // Ends every request in flight with kError and `error` (a group failure or a bug outside the forward pass).
  void FailAll(const absl::Status& error, bool count_step_failure, Deliveries& out);

  // The step runner (heartbeats and stop for the other ranks of a group).
  const StepRunner& runner() const { return runner_; }
  const PagedKvCache& cache() const { return *cache_; }
  PagedKvCache& cache() { return *cache_; }
  ExecutorStats Stats() const;

 private:
  // Frees the sequence's blocks, queues its final output and forgets it.
  void Finish(Sequence* seq, FinishReason reason, absl::Time now, Deliveries& out,
              const absl::Status& error = absl::OkStatus());
  void SampleAndDeliver(const SchedulerOutput& step, const at::Tensor& host_logits, absl::Time now, Deliveries& out);
  GenerationOutput MakeOutput(const Sequence& seq, absl::Time now) const;
  // Copies the pool occupancy into stats_.
  void RefreshKvStats();

  const CausalLM& model_;
  std::unique_ptr<PagedKvCache> cache_;
  Scheduler scheduler_;
  StepRunner runner_;
  std::unordered_map<std::string, std::unique_ptr<Sequence>> seqs_;
  ExecutorStats stats_;
  int max_queue_;
  int64_t max_context_;
  std::function<void(int64_t)> fault_hook_;
  std::function<void(int64_t, int)> update_fault_hook_;  // test-only (ExecutorOptions::update_fault_hook)
  int64_t forward_steps_ = 0;  // engine thread only (Execute)
  uint64_t seed_base_;
  uint64_t request_counter_ = 0;
  int num_paused_ = 0;  // sequences in seqs_ with `paused` set
};

}  // namespace stepserve
