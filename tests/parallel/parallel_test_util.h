// Tensor-parallel groups inside one test process: one thread per rank, joined into a real c10d Gloo group
// over loopback through an in-process store.
#pragma once

#include <functional>
#include <memory>

#include "model/layers/causal_lm.h"
#include "model/loading/config.h"
#include "parallel/communicator.h"
#include "model/loading/tensor_split.h"
#include "model/loading/weights.h"

namespace stepserve::testing {

// Runs fn(rank, communicator) on `world` threads, one per rank, and joins them. A failed connection fails
// the test.
void RunGroup(int world, const std::function<void(int rank, std::shared_ptr<Communicator> comm)>& fn);

// Rank `parallel.rank`'s model: `full` cut to its shard, fp32 on the CPU.
std::unique_ptr<CausalLM> RankModel(const ModelConfig& config, const ModelWeights& full, const ParallelConfig& parallel,
                                    std::shared_ptr<Communicator> comm);

// The real model's head pattern scaled down: 64 query heads on the full-attention layers, 96 on the sliding
// ones, 8 KV heads, 16 experts with top-4 (tiny's layers and sizes otherwise, head_dim 8).
ModelConfig HeadPatternConfig();
// tiny with 4 query heads on every layer and 2 KV heads: 4 ranks replicate each KV head twice.
ModelConfig FewKvHeadsConfig();

}  // namespace stepserve::testing
