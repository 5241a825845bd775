// The KV block manager: block ids, reference counts and per-kind free lists; no tensors.
//
// Full-attention and sliding-window layers have separate pools (every layer of a kind shares block ids, so
// one block table per sequence and kind addresses them all, as in vLLM's hybrid allocator). The scheduler
// calls AllocateSlots when it plans a step, and preempts when that fails (vLLM v1's allocate_slots); the
// forward pass only reads the block tables the plan carries. Sliding layers keep only the blocks that a
// query of this step or a later one can still see. Not thread-safe: the engine thread owns it.
//
// Automatic prefix caching (optional): a full block is keyed by a hash chain (its parent's key, its tokens;
// the chain's root is the request's cache salt), registered when the step that filled it commits. A block
// whose last user lets go stays cached and counts as free: it is evicted, least recently used first, only
// when a new block is needed; a block in use is never evicted. Both pools cache: a prefix of P tokens is
// reused only if the full pool has its blocks and the sliding pool the blocks of the last window before P
// (MatchPrefix falls back to the longest block-aligned prefix for which both hold). A hit is verified
// token by token, so a hash collision can never serve another prompt's blocks.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "absl/strings/string_view.h"

#include "model/loading/config.h"

namespace stepserve {

// Per-sequence cache state: ids only. Owned by whoever owns the sequence; released through
// BlockManager::Release.
struct KvSequence {
  int64_t num_tokens = 0;  // tokens whose K/V are in the cache (advanced after a successful step)
  // Logical block index -> physical block id; -1 for sliding blocks already returned to the pool.
  std::array<std::vector<int32_t>, kNumAttentionKinds> block_table;
  // Prefix caching: the root of the hash chain (from the cache salt: SetCacheSalt) and the keys of the
  // sequence's full blocks computed so far (kept across a preemption: the tokens do not change).
  uint64_t hash_root = 0;
  std::vector<uint64_t> block_hashes;
};

// Sets the root of `seq`'s hash chain: sequences share cached blocks only when their salts are equal.
void SetCacheSalt(KvSequence& seq, absl::string_view salt);

class BlockManager {
 public:
  BlockManager(const ModelConfig& config, int block_size, int32_t num_blocks_full, int32_t num_blocks_sliding,
               bool enable_prefix_caching = false);

  bool prefix_caching() const { return caching_; }

  int block_size() const { return block_size_; }
  int sliding_window() const { return window_; }
  bool HasKind(AttentionKind kind) const { return has_kind_[Index(kind)]; }

  // First key position that a query at `query_pos` can see in layers of `kind` (the cache keeps keys for
  // the widest sliding window of the model).
  int64_t FirstVisiblePosition(int64_t query_pos, AttentionKind kind) const;

  // First position of the chunk [start, start + n) whose key is stored for `kind`: the keys a later query
  // (at start + n or beyond) can see, from the start of their first block (that block is allocated anyway;
  // so every block in a table holds valid keys from its start, and a full one can be cached). With prefix
  // caching every key is stored, so that any block boundary of a long prefill can later start a prefix:
  // the blocks a later query cannot see go to the cache when the step commits (the sliding pool's per-step
  // allowance, SlidingBlocksNeeded, already covers a whole step's new blocks).
  int64_t FirstStoredPosition(int64_t start, int64_t n, AttentionKind kind) const {
    if (caching_) return start;
    return std::max(start, FirstVisiblePosition(start + n, kind) / block_size_ * block_size_);
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
  // With prefix caching and `tokens` (the sequence's tokens, at least seq.num_tokens + num_new of them),
  // the blocks the step filled are registered in the cache first.
  void CommitStep(KvSequence& seq, int64_t num_new, const int32_t* tokens = nullptr);

  // Prefix caching, for a sequence with nothing cached yet: finds the longest block-aligned prefix of
  // `tokens` (at most `max_tokens` of them) whose blocks both pools hold, takes those blocks into `seq`'s
  // tables (shared, reference counted) and sets seq.num_tokens to its length, which it returns (0: no hit,
  // nothing changed). Release undoes it.
  int64_t MatchPrefix(KvSequence& seq, const int32_t* tokens, int64_t num_tokens, int64_t max_tokens);

  // The longest chunk one sequence can feed in a step when the pools are otherwise empty: with prefix
  // caching a chunk stores every key in the sliding pool too, so a long prefill chunk must fit that pool
  // (the scheduler cuts chunks to this; without caching a chunk needs at most a window's blocks).
  int64_t MaxChunkTokens() const;

  // Returns every block of `seq` and resets it to length 0.
  void Release(KvSequence& seq);

  // Blocks a sequence of `length` cached tokens holds between steps (what its next query can see).
  int32_t BlocksHeldAtLength(int64_t length, AttentionKind kind) const;

  int32_t NumBlocks(AttentionKind kind) const { return static_cast<int32_t>(ref_count_[Index(kind)].size()); }
  // Free blocks include the cached ones nobody uses (evictable).
  int32_t NumFreeBlocks(AttentionKind kind) const {
    return static_cast<int32_t>(free_[Index(kind)].size() + lru_[Index(kind)].size());
  }
  // Blocks held only by the prefix cache (evictable).
  int32_t NumCachedBlocks(AttentionKind kind) const { return static_cast<int32_t>(lru_[Index(kind)].size()); }
  int32_t NumUsedBlocks(AttentionKind kind) const { return NumBlocks(kind) - NumFreeBlocks(kind); }
  int32_t RefCount(AttentionKind kind, int32_t block) const { return ref_count_[Index(kind)][block]; }
  // Fraction of blocks in use over both pools, 0..1.
  double UsageRatio() const;

 private:
  static int Index(AttentionKind kind) { return static_cast<int>(kind); }
  // A free block: a never-cached one first, else the least recently used cached one (evicted).
  int32_t Allocate(AttentionKind kind);
  // One reference less; at zero a cached block becomes evictable, any other goes back to the free list.
  void Free(AttentionKind kind, int32_t block);
  // One reference more on a block found in the cache (taken out of the evictable list if it was there).
  void Acquire(AttentionKind kind, int32_t block);
  // Extends seq.block_hashes over the full blocks of its first `num_tokens` tokens.
  void ComputeBlockHashes(KvSequence& seq, const int32_t* tokens, int64_t num_tokens) const;
  // The cached block of `kind` holding logical block `b` of `seq` (same key, parent and tokens), or -1.
  int32_t Lookup(AttentionKind kind, const KvSequence& seq, int64_t b, const int32_t* tokens) const;
  // Registers `seq`'s full block `b` of `kind` (if it is in the table and not cached yet).
  void Register(AttentionKind kind, const KvSequence& seq, int64_t b, const int32_t* tokens);
  // Returns the blocks of `kind` that lie wholly before position `keep_from`.
  void ReleaseBefore(KvSequence& seq, AttentionKind kind, int64_t keep_from);

  // The prefix cache of one pool.
  struct PoolCache {
    std::unordered_map<uint64_t, int32_t> index;  // key -> block
    std::vector<bool> cached;                     // block is in `index`
    std::vector<uint64_t> key, parent;            // per block
    std::vector<int32_t> tokens;                  // per block, block_size of them (verified on a hit)
    std::vector<std::list<int32_t>::iterator> lru_pos;
    std::vector<bool> in_lru;
  };

  int block_size_;
  int window_;
  bool caching_;
  std::array<bool, kNumAttentionKinds> has_kind_{};
  std::array<std::vector<int32_t>, kNumAttentionKinds> ref_count_;
  std::array<std::vector<int32_t>, kNumAttentionKinds> free_;  // a stack: low ids first
  std::array<std::list<int32_t>, kNumAttentionKinds> lru_;     // evictable cached blocks, oldest first
  std::array<PoolCache, kNumAttentionKinds> cache_;
};

}  // namespace stepserve
