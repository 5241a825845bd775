// Runs planned steps on the model: the control plane of tensor parallelism lives here, not in the model.
// On a group, rank 0's runner checks each plan, sends it to the other ranks (engine/step_broadcast.h) and
// runs it; the other ranks receive and run the same plans in ServeWorkerSteps. Heartbeats keep idle ranks
// inside their collective timeout; a stop message ends their loops.
#pragma once

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/layers/causal_lm.h"
#include "model/layers/kv_pools.h"
#include "model/layers/step_plan.h"

namespace stepserve {

class StepRunner {
 public:
  explicit StepRunner(const CausalLM& model) : model_(model) {}

  // True on rank 0 of a group of two or more ranks: the runner then talks to the others.
  bool leads_group() const;

  // Checks the plan on the host, sends it to the other ranks (rank 0 of a group; only a plan that passed
  // the checks, so that they never get a bad one) and executes it. Bad plans fail with a status; device
  // and collective failures throw, as CausalLM::Execute does.
  absl::StatusOr<at::Tensor> Run(const StepPlan& plan, KvPools* pools,
                                 const CausalLM::LayerObserver& observer = nullptr) const;
  // A heartbeat all ranks join (rank 0 of a group; nothing otherwise). Throws when the group failed.
  void Heartbeat() const;
  // Tells the other ranks to leave ServeWorkerSteps (rank 0 of a group; nothing otherwise). Throws on failure.
  void Stop() const;

 private:
  const CausalLM& model_;
};

// The loop of every rank but 0 in a tensor-parallel group: run each step plan rank 0 sends against this
// rank's shard and KV pools, join its heartbeats, until rank 0 says stop. OK when rank 0 sent stop;
// UNAVAILABLE when the group failed (rank 0 or another rank died or hung past the collective timeout): the
// caller exits non-zero so that the whole group restarts.
absl::Status ServeWorkerSteps(const CausalLM& model, KvPools* pools);

}  // namespace stepserve
