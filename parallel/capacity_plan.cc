#include "parallel/capacity_plan.h"

#include <algorithm>

#include <c10/core/ScalarTypeToTypeMeta.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/kv_cache.h"
#include "model/loading/weight_sharding.h"
#include "common/status_macros.h"

namespace stepserve {
namespace {

std::string GiB(int64_t bytes) { return absl::StrFormat("%.2f GiB", static_cast<double>(bytes) / (1ll << 30)); }

}  // namespace

absl::StatusOr<CapacityPlan> PlanCapacity(const ModelConfig& config, const CapacityPlanOptions& o) {
  const int64_t elem = static_cast<int64_t>(c10::elementSize(o.dtype));
  CapacityPlan plan;
  for (const TensorSpec& s : ExpectedTensors(config)) {
    int64_t n = 1;
    for (int64_t d : s.shape) n *= d;
    plan.total_weight_bytes += n * elem;
  }
  plan.fits = true;
  for (int r = 0; r < o.tensor_parallel_size; ++r) {
    const ParallelConfig p{o.tensor_parallel_size, r, o.expert_parallel};
    RETURN_IF_ERROR(ValidateParallelConfig(config, p));
    RankCapacity rc;
    rc.rank = r;
    for (const TensorShard& s : RankTensorShards(config, p)) {
      rc.weight_bytes += s.numel() * elem;
      if (r == 0 && s.dim < 0) plan.replicated_weight_bytes += s.numel() * elem;
    }
    const int64_t left = o.device_memory_bytes - rc.weight_bytes;
    rc.kv_bytes = left > 0 ? static_cast<int64_t>(static_cast<double>(left) * o.memory_fraction) : left;
    absl::StatusOr<KvCacheOptions> kv = absl::ResourceExhaustedError("no memory left");
    if (rc.kv_bytes > 0) {
      kv = KvCacheOptionsFromBudget(RankLocalAttentionConfig(config, p), rc.kv_bytes, o.block_size, o.max_num_seqs,
                                    o.max_num_batched_tokens, o.dtype, at::kCPU);
    }
    if (kv.ok()) {
      rc.kv_capacity_tokens = static_cast<int64_t>(config.HasAttentionKind(AttentionKind::kFull)
                                                       ? kv->num_blocks_full
                                                       : kv->num_blocks_sliding) *
                              o.block_size;
      if (!config.HasAttentionKind(AttentionKind::kFull)) rc.kv_capacity_tokens = config.max_position_embeddings;
      rc.longest_context = std::min<int64_t>(rc.kv_capacity_tokens, config.max_position_embeddings);
    } else {
      plan.fits = false;
    }
    plan.ranks.push_back(rc);
  }
  return plan;
}

std::string FormatCapacityPlan(const ModelConfig& config, const CapacityPlanOptions& o, const CapacityPlan& plan) {
  std::string out = absl::StrCat(
      "model: ", config.num_hidden_layers, " layers, ", GiB(plan.total_weight_bytes), " of weights in ",
      c10::toString(o.dtype), " (", GiB(plan.replicated_weight_bytes), " replicated on every rank)\n",
      "group: --tensor_parallel_size=", o.tensor_parallel_size, o.expert_parallel ? " --expert_parallel" : "",
      "; per device ", GiB(o.device_memory_bytes), ", ", absl::StrFormat("%.0f%%", o.memory_fraction * 100),
      " of what the weights leave for the KV cache (--kv_cache_memory_fraction)\n");
  absl::StrAppend(&out, absl::StrFormat("%-5s %14s %14s %16s %16s\n", "rank", "weights", "kv cache", "kv tokens",
                                        "longest context"));
  for (const RankCapacity& r : plan.ranks) {
    absl::StrAppend(&out, absl::StrFormat("%-5d %14s %14s %16d %16d\n", r.rank, GiB(r.weight_bytes),
                                          r.kv_bytes > 0 ? GiB(r.kv_bytes) : std::string("none"),
                                          r.kv_capacity_tokens, r.longest_context));
  }
  if (!plan.fits) {
    absl::StrAppend(&out, "verdict: does NOT fit: a rank has no room for its KV cache; add ranks or memory\n");
  } else {
    int64_t longest = config.max_position_embeddings;
    for (const RankCapacity& r : plan.ranks) longest = std::min(longest, r.longest_context);
    absl::StrAppend(&out, "verdict: fits; the longest context of one sequence is ", longest, " tokens (",
                    "max_position_embeddings ", config.max_position_embeddings, ")\n");
  }
  return out;
}

}  // namespace stepserve
