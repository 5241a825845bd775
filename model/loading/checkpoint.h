// Loads a Hugging Face-format Step3p5 checkpoint directory (config.json + safetensors).
#pragma once

#include <string>

#include <c10/core/ScalarType.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "model/loading/config.h"
#include "model/loading/tensor_split.h"
#include "model/loading/weights.h"

namespace stepserve {

// Loads every tensor ExpectedTensors(config) names from `dir`: either `model.safetensors` or the shards
// listed in `model.safetensors.index.json`. Stored F32/BF16/F16 tensors are converted to `dtype`.
// Extra tensors (e.g. MTP layers) are skipped with one log line. Errors name the file and tensor.
// With a tensor-parallel `parallel`, only this rank's slices are read (model/loading/weight_sharding.h),
// straight from the memory-mapped shards: the rank's host memory is about its shard, not the model.
// Only regular files are opened (a FIFO, a device or a directory where a file belongs is an error, never a
// hang). Past `deadline` (checked before each tensor) it stops with DEADLINE_EXCEEDED.
absl::StatusOr<ModelWeights> LoadCheckpointWeights(const std::string& dir, const ModelConfig& config,
                                                   at::ScalarType dtype, const ParallelConfig& parallel = {},
                                                   absl::Time deadline = absl::InfiniteFuture());

}  // namespace stepserve
