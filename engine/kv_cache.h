// The paged KV cache: the layers' K and V pools (model/layers/kv_pools.h) plus the block manager that hands
// out their ids, and how a byte budget splits between the full-attention and sliding-window pools.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "engine/block_manager.h"
#include "model/layers/kv_pools.h"
#include "model/loading/config.h"

namespace stepserve {

// The pools' shape plus what the block manager needs to know.
struct KvCacheOptions : KvPoolOptions {
  bool enable_prefix_caching = false;  // BlockManager keeps freed full blocks cached
};

// Blocks of the sliding pool that `max_num_seqs` sequences need at once: each holds at most
// ceil(window / block) + 1 blocks between steps, and a step's chunks (at most `max_num_batched_tokens` new
// tokens in all) add their new blocks while the blocks they replace are still read.
int64_t SlidingBlocksNeeded(const ModelConfig& config, int block_size, int max_num_seqs,
                            int max_num_batched_tokens);

// Blocks of the sliding pool that one sequence alone needs so that it always makes progress: the blocks of
// the window its first query reads, held while the step's chunk adds its own. With prefix caching a chunk
// stores every key and the scheduler cuts chunks to BlockManager::MaxChunkTokens (at least one block), so
// ceil(window / block) + 2; without, a chunk of up to `max_num_batched_tokens` stores its last window only.
// A smaller pool would make an accepted request preempt itself every step (0 without sliding layers).
int64_t SlidingBlocksForOneSequence(const ModelConfig& config, int block_size, int max_num_batched_tokens,
                                    bool prefix_caching);

// The smallest byte budget for which KvCacheOptionsFromBudget gives a sliding pool of at least
// SlidingBlocksForOneSequence blocks and a full pool of at least one block (-1 if none up to 2^62 does).
int64_t MinKvCacheBytes(const ModelConfig& config, int block_size, int max_num_seqs, int max_num_batched_tokens,
                        bool prefix_caching, at::ScalarType dtype);

// Splits a byte budget between the two pools: the sliding pool gets SlidingBlocksNeeded (at most half the
// budget when there are full layers), the full pool the rest. Error if a pool gets no block.
absl::StatusOr<KvCacheOptions> KvCacheOptionsFromBudget(const ModelConfig& config, int64_t bytes, int block_size,
                                                        int max_num_seqs, int max_num_batched_tokens,
                                                        at::ScalarType dtype, at::Device device);


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
