// --dry_run: what a tensor-parallel deployment needs per rank, from the config alone (no weight loaded):
// weight bytes, the KV cache left at a memory budget, and the longest context that fits.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <c10/core/ScalarType.h>

#include "absl/status/statusor.h"
#include "model/loading/config.h"
#include "model/loading/tensor_split.h"

namespace stepserve {

struct CapacityPlanOptions {
  int tensor_parallel_size = 1;
  bool expert_parallel = false;
  at::ScalarType dtype = at::kBFloat16;
  int64_t device_memory_bytes = 0;
  // Of the memory left after the rank's weights, the part for the KV cache (the rest: activations, NCCL):
  // what --kv_cache_memory_fraction means at run time (a fraction of the free device memory after loading).
  double memory_fraction = 0.9;
  int block_size = 16;
  int max_num_seqs = 32;
  int max_num_batched_tokens = 512;
};

struct RankCapacity {
  int rank = 0;
  int64_t weight_bytes = 0;
  int64_t kv_bytes = 0;           // what is left for the KV cache (<= 0: the weights do not fit)
  int64_t kv_capacity_tokens = 0;  // tokens the full-attention pool holds
  int64_t longest_context = 0;    // one sequence: min(capacity, max_position_embeddings)
};

struct CapacityPlan {
  int64_t total_weight_bytes = 0;       // the whole model, one copy
  int64_t replicated_weight_bytes = 0;  // held by every rank (embedding, norms, routers)
  std::vector<RankCapacity> ranks;
  bool fits = false;  // every rank has room for at least one block of each pool
};

// Errors name the flag (bad splits) like ValidateParallelConfig.
absl::StatusOr<CapacityPlan> PlanCapacity(const ModelConfig& config, const CapacityPlanOptions& options);

// A table for people: one line per rank, and a verdict.
std::string FormatCapacityPlan(const ModelConfig& config, const CapacityPlanOptions& options, const CapacityPlan& plan);

}  // namespace stepserve
