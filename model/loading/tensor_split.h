// How a model is split across the ranks of a tensor-parallel group (Megatron style), and which slice of
// each weight and of the KV heads one rank holds. Pure arithmetic on the config: no tensors, no transport.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "model/loading/config.h"

namespace stepserve {

struct ParallelConfig {
  int tensor_parallel_size = 1;  // ranks in the group (all nodes together)
  int rank = 0;                  // 0 runs the scheduler and the sampler
  bool expert_parallel = false;  // MoE: whole experts per rank instead of a slice of every expert

  bool distributed() const { return tensor_parallel_size > 1; }
};

// A contiguous slice [begin, begin + size) of some dimension.
struct IndexRange {
  int64_t begin = 0;
  int64_t size = 0;
};

// Errors name the flag (--tensor_parallel_size, --expert_parallel) and the dimension that does not divide.
absl::Status ValidateParallelConfig(const ModelConfig& config, const ParallelConfig& parallel);

// This rank's query heads of a layer.
IndexRange QueryHeadRange(const LayerConfig& layer, const ParallelConfig& parallel);
// This rank's KV heads: a slice when the ranks do not outnumber the KV heads, else the one KV head its
// query heads attend to (replicated on tensor_parallel_size / num_kv_heads ranks, as vLLM does).
IndexRange KvHeadRange(const LayerConfig& layer, const ParallelConfig& parallel);
// An even split of `total` (an MLP's intermediate dimension).
IndexRange EvenSlice(int64_t total, const ParallelConfig& parallel);
// This rank's rows of the vocabulary-parallel lm_head (as vLLM's VocabParallelEmbedding): every rank owns
// VocabShardRows(V, N) = ceil(V / N) vocabulary slots; the slots past V (only the last ranks have any) are
// padding: their rows are absent from the rank's shard (the range is cut at V, possibly to nothing), the
// rank's logits get them as padding columns that the all-gather carries and rank 0 drops.
IndexRange VocabRange(int64_t vocab_size, const ParallelConfig& parallel);
int64_t VocabShardRows(int64_t vocab_size, const ParallelConfig& parallel);
// This rank's experts: all of them without expert parallelism.
IndexRange ExpertRange(const ModelConfig& config, const ParallelConfig& parallel);
// This rank's slice of each expert's intermediate dimension: all of it with expert parallelism.
IndexRange ExpertIntermediateRange(const ModelConfig& config, const ParallelConfig& parallel);

// A layer with num_heads / num_kv_heads set to this rank's.
LayerConfig RankLocalLayer(const LayerConfig& layer, const ParallelConfig& parallel);
// The config with every layer's num_heads / num_kv_heads set to this rank's: what sizes its KV pools.
ModelConfig RankLocalAttentionConfig(const ModelConfig& config, const ParallelConfig& parallel);

}  // namespace stepserve
