// The paged KV cache: per-layer K and V pools (tensors) plus the block manager that hands out their ids.
//
// Every layer owns K and V pools viewed flat as [num_blocks * block_size, kv_heads, head_dim]; all layers
// of one attention kind share block ids (model/block_manager.h), so one block table per sequence and kind
// addresses them all. Slot s of a pool is row s: block s / block_size, offset s % block_size.
//
// Within a step, each layer first reads the cached keys it needs and only then writes the step's new keys.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "model/block_manager.h"
#include "model/config.h"

namespace stepserve {

struct KvCacheOptions {
  int block_size = 16;
  int32_t num_blocks_full = 0;     // blocks in the full-attention pool
  int32_t num_blocks_sliding = 0;  // blocks in the sliding-window pool
  bool enable_prefix_caching = false;  // BlockManager keeps freed full blocks cached
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
};

// Bytes one block costs across every layer of `kind`.
int64_t KvBlockBytes(const ModelConfig& config, AttentionKind kind, int block_size, at::ScalarType dtype);

// Blocks of the sliding pool that `max_num_seqs` sequences need at once: each holds at most
// ceil(window / block) + 1 blocks between steps, and a step's chunks (at most `max_num_batched_tokens` new
// tokens in all) add their new blocks while the blocks they replace are still read.
int64_t SlidingBlocksNeeded(const ModelConfig& config, int block_size, int max_num_seqs,
                            int max_num_batched_tokens);

// Splits a byte budget between the two pools: the sliding pool gets SlidingBlocksNeeded (at most half the
// budget when there are full layers), the full pool the rest. Error if a pool gets no block.
absl::StatusOr<KvCacheOptions> KvCacheOptionsFromBudget(const ModelConfig& config, int64_t bytes, int block_size,
                                                        int max_num_seqs, int max_num_batched_tokens,
                                                        at::ScalarType dtype, at::Device device);

// The K/V tensors of every layer. The forward pass reads and writes them; it never allocates blocks.
class KvPools {
 public:
  KvPools(const ModelConfig& config, const KvCacheOptions& options);
  at::Tensor& KeyPool(int layer) { return k_pools_[layer]; }
  at::Tensor& ValuePool(int layer) { return v_pools_[layer]; }

 private:
  std::vector<at::Tensor> k_pools_, v_pools_;
};

// The pools and their block manager, built together from one set of options.
class PagedKvCache {
 public:
  PagedKvCache(const ModelConfig& config, const KvCacheOptions& options);

  const KvCacheOptions& options() const { return options_; }
  int block_size() const { return options_.block_size; }
  BlockManager& blocks() { return blocks_; }
  const BlockManager& blocks() const { return blocks_; }
  KvPools& pools() { return pools_; }

  // Tokens the cache holds: the full pool's tokens (the longest sequence it can hold, and the sum over
  // all sequences); without full-attention layers a sequence only ever holds its window, so any length up
  // to max_position_embeddings fits once one window does (0 when none does).
  int64_t CapacityTokens() const;

 private:
  ModelConfig config_;
  KvCacheOptions options_;
  BlockManager blocks_;
  KvPools pools_;
};

}  // namespace stepserve
