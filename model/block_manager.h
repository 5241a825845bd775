// The KV block manager: block ids, reference counts and per-kind free lists; no tensors.
//
// Full-attention and sliding-window layers have separate pools (every layer of a kind shares block ids, so
// one block table per sequence and kind addresses them all, as in vLLM's hybrid allocator). The scheduler
// calls AllocateSlots when it plans a step, and preempts when that fails (vLLM v1's allocate_slots); the
// forward pass only reads the block tables the plan carries. Sliding layers keep only the blocks that a
// query of this step or a later one can still see. Not thread-safe: the engine thread owns it.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "model/config.h"

namespace stepserve {

// Per-sequence cache state: ids only. Owned by whoever owns the sequence; released through
// BlockManager::Release.
struct KvSequence {
  int64_t num_tokens = 0;  // tokens whose K/V are in the cache (advanced after a successful step)
  // Logical block index -> physical block id; -1 for sliding blocks already returned to the pool.
  std::array<std::vector<int32_t>, kNumAttentionKinds> block_table;
};

class BlockManager {
 public:
  BlockManager(const ModelConfig& config, int block_size, int32_t num_blocks_full, int32_t num_blocks_sliding);

  int block_size() const { return block_size_; }
  int sliding_window() const { return window_; }
  bool HasKind(AttentionKind kind) const { return has_kind_[Index(kind)]; }

  // First key position that a query at `query_pos` can see in layers of `kind` (the cache keeps keys for
  // the widest sliding window of the model).
  int64_t FirstVisiblePosition(int64_t query_pos, AttentionKind kind) const;

  // First position of the chunk [start, start + n) whose key is stored for `kind`: only keys a later query
  // (at start + n or beyond) can see are kept.
  int64_t FirstStoredPosition(int64_t start, int64_t n, AttentionKind kind) const {
    return std::max(start, FirstVisiblePosition(start + n, kind));
  }

  // Net blocks of `kind` that AllocateSlots(seq, num_new) takes from the pool (negative when sliding
  // blocks it returns outnumber the new ones).
  int32_t BlocksNeeded(const KvSequence& seq, int64_t num_new, AttentionKind kind) const;
  bool CanAllocate(const KvSequence& seq, int64_t num_new) const;

  // Makes room for tokens [seq.num_tokens, seq.num_tokens + num_new): returns the sliding blocks that no
  // query of this step can see, then allocates the blocks where the new keys that a later query can see
  // will be stored. Every block a query of the step reads stays in the table until CommitStep, so the plan's
  // block tables never name a returned block. False, with nothing changed, when a pool is short.
  bool AllocateSlots(KvSequence& seq, int64_t num_new);
  // After the step ran: seq.num_tokens += num_new, and the sliding blocks no later query can see go back.
  void CommitStep(KvSequence& seq, int64_t num_new);

  // Returns every block of `seq` and resets it to length 0.
  void Release(KvSequence& seq);

  // Blocks a sequence of `length` cached tokens holds between steps (what its next query can see).
  int32_t BlocksHeldAtLength(int64_t length, AttentionKind kind) const;

  int32_t NumBlocks(AttentionKind kind) const { return static_cast<int32_t>(ref_count_[Index(kind)].size()); }
  int32_t NumFreeBlocks(AttentionKind kind) const { return static_cast<int32_t>(free_[Index(kind)].size()); }
  int32_t NumUsedBlocks(AttentionKind kind) const { return NumBlocks(kind) - NumFreeBlocks(kind); }
  int32_t RefCount(AttentionKind kind, int32_t block) const { return ref_count_[Index(kind)][block]; }
  // Fraction of blocks in use over both pools, 0..1.
  double UsageRatio() const;

 private:
  static int Index(AttentionKind kind) { return static_cast<int>(kind); }
  int32_t Allocate(AttentionKind kind);
  void Free(AttentionKind kind, int32_t block);
  // Returns the blocks of `kind` that lie wholly before position `keep_from`.
  void ReleaseBefore(KvSequence& seq, AttentionKind kind, int64_t keep_from);

  int block_size_;
  int window_;
  std::array<bool, kNumAttentionKinds> has_kind_{};
  std::array<std::vector<int32_t>, kNumAttentionKinds> ref_count_;
  std::array<std::vector<int32_t>, kNumAttentionKinds> free_;  // a stack: low ids first
};

}  // namespace stepserve
