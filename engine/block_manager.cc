#include "engine/block_manager.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/hash/hash.h"

namespace stepserve {
namespace {

// absl::Hash is seeded per process: keys cannot be precomputed from outside (and every hit is verified).
uint64_t ChainHash(uint64_t parent, const int32_t* tokens, int64_t n) {
  const absl::string_view bytes(reinterpret_cast<const char*>(tokens), static_cast<size_t>(n) * sizeof(int32_t));
  return absl::Hash<std::pair<uint64_t, absl::string_view>>()({parent, bytes});
}

}  // namespace

void SetCacheSalt(KvSequence& seq, absl::string_view salt) {
  // No salt: the default root 0, shared by every unsalted request.
  seq.hash_root = salt.empty() ? 0 : absl::Hash<std::pair<absl::string_view, int>>()({salt, 0x5a17});
  seq.block_hashes.clear();
}

BlockManager::BlockManager(const ModelConfig& config, int block_size, int32_t num_blocks_full,
                           int32_t num_blocks_sliding, bool enable_prefix_caching)
    : block_size_(block_size), window_(config.MaxSlidingWindow()), caching_(enable_prefix_caching) {
  const std::array<int32_t, kNumAttentionKinds> counts = {num_blocks_full, num_blocks_sliding};
  for (AttentionKind kind : {AttentionKind::kFull, AttentionKind::kSliding}) {
    const int k = Index(kind);
    has_kind_[k] = config.HasAttentionKind(kind);
    const int32_t n = has_kind_[k] ? std::max<int32_t>(0, counts[k]) : 0;
    ref_count_[k].assign(n, 0);
    free_[k].reserve(n);
    for (int32_t b = n - 1; b >= 0; --b) free_[k].push_back(b);  // pop_back hands out low ids first
    if (caching_) {
      PoolCache& c = cache_[k];
      c.cached.assign(n, false);
      c.key.assign(n, 0);
      c.parent.assign(n, 0);
      c.tokens.assign(static_cast<size_t>(n) * block_size_, 0);
      c.lru_pos.resize(n);
      c.in_lru.assign(n, false);
    } else {
      cache_[k].cached.assign(n, false);
    }
  }
}

int64_t BlockManager::FirstVisiblePosition(int64_t query_pos, AttentionKind kind) const {
  if (kind == AttentionKind::kFull) return 0;
  return std::max<int64_t>(0, query_pos - window_ + 1);
}

int32_t BlockManager::BlocksNeeded(const KvSequence& seq, int64_t num_new, AttentionKind kind) const {
  if (!HasKind(kind) || num_new <= 0) return 0;
  const int64_t B = block_size_;
  const auto& table = seq.block_table[Index(kind)];
  const int64_t start = seq.num_tokens, length = start + num_new;
  // Blocks entirely before the first key the step's first query sees are returned.
  const int64_t kept_from = FirstVisiblePosition(start, kind);
  int32_t freed = 0, needed = 0;
  for (int64_t b = 0; b < static_cast<int64_t>(table.size()); ++b) {
    // Only a block this sequence holds alone goes back to the pool (a shared prefix block stays in use).
    if (table[b] >= 0 && (b + 1) * B <= kept_from && ref_count_[Index(kind)][table[b]] == 1) ++freed;
  }
  const int64_t write_from = FirstStoredPosition(start, num_new, kind);
  for (int64_t b = write_from / B; write_from < length && b <= (length - 1) / B; ++b) {
    if (b >= static_cast<int64_t>(table.size()) || table[b] < 0) ++needed;
  }
  return needed - freed;
}

bool BlockManager::CanAllocate(const KvSequence& seq, int64_t num_new) const {
  for (AttentionKind kind : {AttentionKind::kFull, AttentionKind::kSliding}) {
    if (BlocksNeeded(seq, num_new, kind) > NumFreeBlocks(kind)) return false;
  }
  return true;
}

bool BlockManager::AllocateSlots(KvSequence& seq, int64_t num_new) {
  if (num_new <= 0 || !CanAllocate(seq, num_new)) return false;
  const int64_t B = block_size_;
  const int64_t start = seq.num_tokens, length = start + num_new;
  for (AttentionKind kind : {AttentionKind::kFull, AttentionKind::kSliding}) {
    if (!HasKind(kind)) continue;
    ReleaseBefore(seq, kind, FirstVisiblePosition(start, kind));
    auto& table = seq.block_table[Index(kind)];
    const int64_t write_from = FirstStoredPosition(start, num_new, kind);
    if (write_from >= length) continue;
    const int64_t last_block = (length - 1) / B;
    if (static_cast<int64_t>(table.size()) <= last_block) table.resize(last_block + 1, -1);
    for (int64_t b = write_from / B; b <= last_block; ++b) {
      if (table[b] < 0) table[b] = Allocate(kind);  // CanAllocate guaranteed enough blocks
    }
  }
  return true;
}

void BlockManager::CommitStep(KvSequence& seq, int64_t num_new, const int32_t* tokens) {
  const int64_t old_full = seq.num_tokens / block_size_;
  seq.num_tokens += num_new;
  if (caching_ && tokens != nullptr) {
    // Register before the sliding blocks go back: a block no later query of this sequence sees may still
    // start another's prefix.
    ComputeBlockHashes(seq, tokens, seq.num_tokens);
    for (int64_t b = old_full; b < seq.num_tokens / block_size_; ++b) {
      for (AttentionKind kind : {AttentionKind::kFull, AttentionKind::kSliding}) {
        if (HasKind(kind)) Register(kind, seq, b, tokens);
      }
    }
  }
  ReleaseBefore(seq, AttentionKind::kSliding, FirstVisiblePosition(seq.num_tokens, AttentionKind::kSliding));
}

void BlockManager::ComputeBlockHashes(KvSequence& seq, const int32_t* tokens, int64_t num_tokens) const {
  const int64_t full = num_tokens / block_size_;
  for (int64_t b = static_cast<int64_t>(seq.block_hashes.size()); b < full; ++b) {
    const uint64_t parent = b == 0 ? seq.hash_root : seq.block_hashes[b - 1];
    seq.block_hashes.push_back(ChainHash(parent, tokens + b * block_size_, block_size_));
  }
}

int32_t BlockManager::Lookup(AttentionKind kind, const KvSequence& seq, int64_t b, const int32_t* tokens) const {
  const PoolCache& c = cache_[Index(kind)];
  auto it = c.index.find(seq.block_hashes[b]);
  if (it == c.index.end()) return -1;
  const int32_t block = it->second;
  const uint64_t parent = b == 0 ? seq.hash_root : seq.block_hashes[b - 1];
  if (c.parent[block] != parent ||
      !std::equal(tokens + b * block_size_, tokens + (b + 1) * block_size_,
                  c.tokens.begin() + static_cast<int64_t>(block) * block_size_)) {
    return -1;  // a hash collision: never served
  }
  return block;
}

void BlockManager::Register(AttentionKind kind, const KvSequence& seq, int64_t b, const int32_t* tokens) {
  const auto& table = seq.block_table[Index(kind)];
  if (b >= static_cast<int64_t>(table.size()) || table[b] < 0) return;  // a sliding block never stored
  const int32_t block = table[b];
  PoolCache& c = cache_[Index(kind)];
  if (c.cached[block]) return;  // a block this sequence got from the cache
  const uint64_t key = seq.block_hashes[b];
  if (!c.index.emplace(key, block).second) return;  // the same prefix is cached in another block already
  c.cached[block] = true;
  c.key[block] = key;
  c.parent[block] = b == 0 ? seq.hash_root : seq.block_hashes[b - 1];
  std::copy(tokens + b * block_size_, tokens + (b + 1) * block_size_,
            c.tokens.begin() + static_cast<int64_t>(block) * block_size_);
}

int64_t BlockManager::MatchPrefix(KvSequence& seq, const int32_t* tokens, int64_t num_tokens, int64_t max_tokens) {
  if (!caching_ || seq.num_tokens != 0) return 0;
  ComputeBlockHashes(seq, tokens, num_tokens);
  const int64_t B = block_size_;
  int64_t k = std::min<int64_t>(std::min(max_tokens, num_tokens) / B, static_cast<int64_t>(seq.block_hashes.size()));
  // Full-attention layers: the longest chain of cached blocks.
  if (HasKind(AttentionKind::kFull)) {
    int64_t found = 0;
    while (found < k && Lookup(AttentionKind::kFull, seq, found, tokens) >= 0) ++found;
    k = found;
  }
  // Sliding layers: the longest of those prefixes whose last window (before its first new query) is cached.
  if (HasKind(AttentionKind::kSliding)) {
    for (; k > 0; --k) {
      const int64_t first = FirstVisiblePosition(k * B, AttentionKind::kSliding) / B;
      bool present = true;
      for (int64_t b = k - 1; b >= first && present; --b) present = Lookup(AttentionKind::kSliding, seq, b, tokens) >= 0;
      if (present) break;
    }
  }
  if (k == 0) return 0;
  for (AttentionKind kind : {AttentionKind::kFull, AttentionKind::kSliding}) {
    if (!HasKind(kind)) continue;
    auto& table = seq.block_table[Index(kind)];
    table.assign(k, -1);
    const int64_t first = FirstVisiblePosition(k * B, kind) / B;
    for (int64_t b = first; b < k; ++b) {
      table[b] = Lookup(kind, seq, b, tokens);
      Acquire(kind, table[b]);
    }
  }
  seq.num_tokens = k * B;
  return seq.num_tokens;
}

void BlockManager::ReleaseBefore(KvSequence& seq, AttentionKind kind, int64_t keep_from) {
  if (kind == AttentionKind::kFull) return;
  auto& table = seq.block_table[Index(kind)];
  const int64_t B = block_size_;
  for (int64_t b = 0; b < static_cast<int64_t>(table.size()) && (b + 1) * B <= keep_from; ++b) {
    if (table[b] >= 0) {
      Free(kind, table[b]);
      table[b] = -1;
    }
  }
}

void BlockManager::Release(KvSequence& seq) {
  for (AttentionKind kind : {AttentionKind::kFull, AttentionKind::kSliding}) {
    // Last block first: a cached chain is then evicted from its tail, and its root (which every hit on the
    // chain needs) last.
    const auto& table = seq.block_table[Index(kind)];
    for (auto it = table.rbegin(); it != table.rend(); ++it) {
      if (*it >= 0) Free(kind, *it);
    }
    seq.block_table[Index(kind)].clear();
  }
  seq.num_tokens = 0;
}

int64_t BlockManager::MaxChunkTokens() const {
  if (!caching_ || !HasKind(AttentionKind::kSliding)) return INT64_MAX;
  // Keep room for the window the chunk's first query reads (ceil(W / B) + 1 blocks) and one partial block.
  const int64_t window_blocks = (window_ + block_size_ - 1) / block_size_ + 2;
  return std::max<int64_t>(block_size_, (NumBlocks(AttentionKind::kSliding) - window_blocks) * block_size_);
}

int32_t BlockManager::BlocksHeldAtLength(int64_t length, AttentionKind kind) const {
  if (!HasKind(kind) || length <= 0) return 0;
  const int64_t B = block_size_;
  // Between steps a sequence of `length` tokens holds what its next query (at `length`) can see.
  const int64_t first = FirstVisiblePosition(length, kind);
  if (first >= length) return 0;
  return static_cast<int32_t>((length - 1) / B - first / B + 1);
}

double BlockManager::UsageRatio() const {
  int64_t used = 0, total = 0;
  for (AttentionKind kind : {AttentionKind::kFull, AttentionKind::kSliding}) {
    used += NumUsedBlocks(kind);
    total += NumBlocks(kind);
  }
  return total == 0 ? 0.0 : static_cast<double>(used) / static_cast<double>(total);
}

int32_t BlockManager::Allocate(AttentionKind kind) {
  const int k = Index(kind);
  auto& free = free_[k];
  int32_t b = -1;
  if (!free.empty()) {
    b = free.back();
    free.pop_back();
  } else if (!lru_[k].empty()) {
    // Evict the least recently used cached block nobody holds.
    PoolCache& c = cache_[k];
    b = lru_[k].front();
    lru_[k].pop_front();
    c.in_lru[b] = false;
    c.index.erase(c.key[b]);
    c.cached[b] = false;
  } else {
    return -1;
  }
  ref_count_[k][b] = 1;
  return b;
}

void BlockManager::Free(AttentionKind kind, int32_t block) {
  const int k = Index(kind);
  int32_t& ref = ref_count_[k][block];
  if (--ref > 0) return;
  PoolCache& c = cache_[k];
  if (c.cached[block]) {
    c.lru_pos[block] = lru_[k].insert(lru_[k].end(), block);  // most recently used: evicted last
    c.in_lru[block] = true;
  } else {
    free_[k].push_back(block);
  }
}

void BlockManager::Acquire(AttentionKind kind, int32_t block) {
  const int k = Index(kind);
  PoolCache& c = cache_[k];
  if (c.in_lru[block]) {
    lru_[k].erase(c.lru_pos[block]);
    c.in_lru[block] = false;
  }
  ++ref_count_[k][block];
}

}  // namespace stepserve
