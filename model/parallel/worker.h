// The loop of every rank but 0 in a tensor-parallel group: run each step plan rank 0 broadcasts against
// this rank's shard and KV pools, join its heartbeats, until rank 0 says stop.
#pragma once

#include "absl/status/status.h"
#include "model/causal_lm.h"
#include "model/kv_cache.h"

namespace stepserve {

// OK when rank 0 sent stop; UNAVAILABLE when the group failed (rank 0 or another rank died or hung past
// the collective timeout): the caller exits non-zero so that the whole group restarts.
absl::Status ServeWorkerSteps(const CausalLM& model, KvPools* pools);

}  // namespace stepserve
