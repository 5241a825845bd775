#include "model/loading/tensor_split.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace stepserve {

absl::Status ValidateParallelConfig(const ModelConfig& config, const ParallelConfig& p) {
  const int n = p.tensor_parallel_size;
  if (n < 1) return absl::InvalidArgumentError(absl::StrCat("--tensor_parallel_size must be >= 1, got ", n));
  if (p.rank < 0 || p.rank >= n) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", p.rank, " is outside [0, --tensor_parallel_size=", n, ")"));
  }
  // The vocabulary need not divide: lm_head's shards are padded (VocabRange).
  bool any_moe = false, any_dense = false;
  for (size_t i = 0; i < config.layers.size(); ++i) {
    const LayerConfig& l = config.layers[i];
    if (l.num_heads % n != 0) {
      return absl::InvalidArgumentError(absl::StrCat("--tensor_parallel_size=", n, " does not divide the ",
                                                     l.num_heads, " query heads of layer ", i));
    }
    if (l.num_kv_heads % n != 0 && n % l.num_kv_heads != 0) {
      return absl::InvalidArgumentError(absl::StrCat("--tensor_parallel_size=", n, " and the ", l.num_kv_heads,
                                                     " KV heads of layer ", i,
                                                     ": one must divide the other to split or replicate them"));
    }
    any_moe = any_moe || l.is_moe;
    any_dense = any_dense || !l.is_moe;
  }
  if (any_dense && config.intermediate_size % n != 0) {
    return absl::InvalidArgumentError(absl::StrCat("--tensor_parallel_size=", n, " does not divide the dense MLP's ",
                                                   "intermediate_size ", config.intermediate_size));
  }
  if (p.expert_parallel && !any_moe) {
    return absl::InvalidArgumentError("--expert_parallel needs a model with MoE layers");
  }
  if (any_moe) {
    if (config.share_expert_dim % n != 0) {
      return absl::InvalidArgumentError(absl::StrCat("--tensor_parallel_size=", n, " does not divide the shared ",
                                                     "expert's share_expert_dim ", config.share_expert_dim));
    }
    if (p.expert_parallel && config.moe_num_experts % n != 0) {
      return absl::InvalidArgumentError(absl::StrCat("--expert_parallel: --tensor_parallel_size=", n,
                                                     " does not divide the ", config.moe_num_experts, " experts"));
    }
    if (!p.expert_parallel && config.moe_intermediate_size % n != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--tensor_parallel_size=", n, " does not divide moe_intermediate_size ", config.moe_intermediate_size,
          " (try --expert_parallel to split whole experts instead)"));
    }
  }
  return absl::OkStatus();
}

IndexRange EvenSlice(int64_t total, const ParallelConfig& p) {
  const int64_t size = total / p.tensor_parallel_size;
  return {p.rank * size, size};
}

int64_t VocabShardRows(int64_t vocab_size, const ParallelConfig& p) {
  return (vocab_size + p.tensor_parallel_size - 1) / p.tensor_parallel_size;
}

IndexRange VocabRange(int64_t vocab_size, const ParallelConfig& p) {
  const int64_t rows = VocabShardRows(vocab_size, p);
  const int64_t begin = std::min<int64_t>(vocab_size, p.rank * rows);
  return {begin, std::min<int64_t>(rows, vocab_size - begin)};
}

IndexRange QueryHeadRange(const LayerConfig& layer, const ParallelConfig& p) { return EvenSlice(layer.num_heads, p); }

IndexRange KvHeadRange(const LayerConfig& layer, const ParallelConfig& p) {
  const int n = p.tensor_parallel_size;
  if (layer.num_kv_heads >= n) return EvenSlice(layer.num_kv_heads, p);
  // More ranks than KV heads: n / kv consecutive ranks share (replicate) one KV head, the one their query
  // heads belong to (query head h attends KV head h / (heads / kv_heads)).
  return {p.rank / (n / layer.num_kv_heads), 1};
}

IndexRange ExpertRange(const ModelConfig& config, const ParallelConfig& p) {
  if (!p.expert_parallel) return {0, config.moe_num_experts};
  return EvenSlice(config.moe_num_experts, p);
}

IndexRange ExpertIntermediateRange(const ModelConfig& config, const ParallelConfig& p) {
  if (p.expert_parallel) return {0, config.moe_intermediate_size};
  return EvenSlice(config.moe_intermediate_size, p);
}

LayerConfig RankLocalLayer(const LayerConfig& layer, const ParallelConfig& p) {
  LayerConfig local = layer;
  local.num_heads = static_cast<int>(QueryHeadRange(layer, p).size);
  local.num_kv_heads = static_cast<int>(KvHeadRange(layer, p).size);
  return local;
}

ModelConfig RankLocalAttentionConfig(const ModelConfig& config, const ParallelConfig& p) {
  ModelConfig local = config;
  for (LayerConfig& l : local.layers) l = RankLocalLayer(l, p);
  return local;
}

}  // namespace stepserve
