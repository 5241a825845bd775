// The K/V tensors of every layer: what the forward pass reads and writes. It never allocates blocks; the
// engine's block manager hands out their ids (engine/block_manager.h).
//
// Every layer owns K and V pools viewed flat as [num_blocks * block_size, kv_heads, head_dim]; all layers
// of one attention kind share block ids, so one block table per sequence and kind addresses them all.
// Slot s of a pool is row s: block s / block_size, offset s % block_size. Within a step, each layer first
// reads the cached keys it needs and only then writes the step's new keys.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "model/loading/config.h"

namespace stepserve {

struct KvPoolOptions {
  int block_size = 16;
  int32_t num_blocks_full = 0;     // blocks in the full-attention pool
  int32_t num_blocks_sliding = 0;  // blocks in the sliding-window pool
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
};

// Bytes one block costs across every layer of `kind`.
int64_t KvBlockBytes(const ModelConfig& config, AttentionKind kind, int block_size, at::ScalarType dtype);

class KvPools {
 public:
  KvPools(const ModelConfig& config, const KvPoolOptions& options);
  at::Tensor& KeyPool(int layer) { return k_pools_[layer]; }
  at::Tensor& ValuePool(int layer) { return v_pools_[layer]; }

 private:
  std::vector<at::Tensor> k_pools_, v_pools_;
};

}  // namespace stepserve
