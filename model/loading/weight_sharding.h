// Which slice of each checkpoint tensor a rank holds (model/loading/tensor_split.h decides the split):
// the one list that loading, the presets' random weights and --dry_run all use.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "model/loading/config.h"
#include "model/loading/tensor_split.h"
#include "model/loading/weights.h"

namespace stepserve {

struct TensorShard {
  std::string name;
  std::vector<int64_t> full_shape;  // as stored in the checkpoint
  int dim = -1;                     // the sliced dimension; -1: the whole tensor (replicated)
  int64_t begin = 0, size = 0;      // the slice of `dim`

  std::vector<int64_t> shape() const;  // this rank's shape
  int64_t numel() const;
};

// Every tensor rank `parallel.rank` holds. lm_head is vocab parallel (VocabRange: ceil(V/N) rows per rank, the
// last ranks' cut at V; a rank past the end holds a 0-row slice); the embedding,
// the norms and the routers are replicated.
std::vector<TensorShard> RankTensorShards(const ModelConfig& config, const ParallelConfig& parallel);

// A view of `full`'s slice.
at::Tensor SliceTensor(const at::Tensor& full, const TensorShard& shard);

// A rank's weights cut from the whole model's (contiguous copies; the presets and the tests).
ModelWeights ShardWeights(const ModelWeights& full, const ModelConfig& config, const ParallelConfig& parallel);

// Bytes of a rank's weights in `element_size`-byte elements.
int64_t RankWeightBytes(const ModelConfig& config, const ParallelConfig& parallel, int64_t element_size);

}  // namespace stepserve
