// Paged KV cache with separate block pools for full-attention and sliding-window layers.
//
// Every layer owns K and V pools shaped [num_blocks, block_size, kv_heads, head_dim]; all layers of one
// attention kind share block ids, so one block table per sequence and kind addresses them all (as in vLLM's
// hybrid allocator). Sliding-window layers keep only the blocks that a future query can still see: once a
// sequence has length L, positions below L - window + 1 are dead and their blocks go back to the pool.
//
// Within a step, each layer first reads the cached keys it needs and only then writes the step's new keys,
// so blocks that die in this step can be reused for this step's writes (no transient over-allocation).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/block_allocator.h"
#include "model/config.h"

namespace stepserve {

struct KvCacheOptions {
  int block_size = 16;
  int32_t num_blocks_full = 0;     // blocks in the full-attention pool
  int32_t num_blocks_sliding = 0;  // blocks in the sliding-window pool
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
};

// Bytes one block costs across every layer of `kind`.
int64_t KvBlockBytes(const ModelConfig& config, AttentionKind kind, int block_size, at::ScalarType dtype);

// Splits a byte budget between the two pools: the sliding pool gets what `max_num_seqs` sequences need at
// their bound (ceil(window / block) + 1 blocks each), the full pool the rest. Error if nothing fits.
absl::StatusOr<KvCacheOptions> KvCacheOptionsFromBudget(const ModelConfig& config, int64_t bytes, int block_size,
                                                        int max_num_seqs, at::ScalarType dtype, at::Device device);

// Per-sequence cache state. Owned by whoever owns the sequence; released through PagedKvCache::Release.
struct KvSequence {
  int64_t num_tokens = 0;  // tokens whose K/V have been written (the logical length)
  // Logical block index -> physical block id; -1 for sliding blocks already returned to the pool.
  std::array<std::vector<int32_t>, kNumAttentionKinds> block_table;
};

// Where one sequence's cached keys are read from and its new keys written to, for one attention kind.
struct KvStepPlan {
  int64_t read_from_pos = 0;  // first cached position attention reads (keys run contiguously to the chunk end)
  at::Tensor read_slots;      // int64 [start_pos - read_from_pos], flat slot ids
  int64_t write_from_pos = 0; // first position of the chunk written to the cache
  at::Tensor write_slots;     // int64 [start_pos + num_new - write_from_pos]
};

class PagedKvCache {
 public:
  PagedKvCache(const ModelConfig& config, const KvCacheOptions& options);

  const KvCacheOptions& options() const { return options_; }
  int block_size() const { return options_.block_size; }

  // Net blocks of `kind` that appending `num_new` tokens to `seq` takes from the pool (may be negative
  // for sliding layers, which release dead blocks).
  int32_t BlocksNeeded(const KvSequence& seq, int64_t num_new, AttentionKind kind) const;
  bool CanAppend(const KvSequence& seq, int64_t num_new) const;
  // Blocks a sequence of `length` tokens holds between steps (for admission and the sliding bound).
  int32_t BlocksHeldAtLength(int64_t length, AttentionKind kind) const;

  // Grows `seq` by `num_new` tokens: releases sliding blocks that die, allocates the blocks the new tokens
  // land in, and returns where each kind reads and writes. Fails (leaving `seq` unchanged) if blocks run out.
  absl::StatusOr<std::array<KvStepPlan, kNumAttentionKinds>> Append(KvSequence& seq, int64_t num_new);

  // Returns every block of `seq` to the pools and resets it to length 0.
  void Release(KvSequence& seq);

  // Per-layer pools, viewed flat as [num_blocks * block_size, kv_heads, head_dim].
  at::Tensor& KeyPool(int layer) { return k_pools_[layer]; }
  at::Tensor& ValuePool(int layer) { return v_pools_[layer]; }

  int32_t NumBlocks(AttentionKind kind) const { return allocators_[static_cast<int>(kind)].num_blocks(); }
  int32_t NumFreeBlocks(AttentionKind kind) const { return allocators_[static_cast<int>(kind)].num_free(); }
  int32_t NumUsedBlocks(AttentionKind kind) const { return allocators_[static_cast<int>(kind)].num_used(); }
  bool HasKind(AttentionKind kind) const { return has_kind_[static_cast<int>(kind)]; }
  // Largest sequence length the full pool can hold (or, without full layers, effectively unbounded).
  int64_t CapacityTokens() const;
  // Fraction of blocks in use over both pools, 0..1.
  double UsageRatio() const;

 private:
  int64_t FirstLivePosition(int64_t length, AttentionKind kind) const;

  ModelConfig config_;
  KvCacheOptions options_;
  int window_ = 0;
  std::array<bool, kNumAttentionKinds> has_kind_{};
  std::array<BlockAllocator, kNumAttentionKinds> allocators_;
  std::vector<at::Tensor> k_pools_, v_pools_;
};

}  // namespace stepserve
