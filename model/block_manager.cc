#include "model/block_manager.h"

#include <algorithm>

namespace stepserve {

BlockManager::BlockManager(const ModelConfig& config, int block_size, int32_t num_blocks_full,
                           int32_t num_blocks_sliding)
    : block_size_(block_size), window_(config.MaxSlidingWindow()) {
  const std::array<int32_t, kNumAttentionKinds> counts = {num_blocks_full, num_blocks_sliding};
  for (AttentionKind kind : {AttentionKind::kFull, AttentionKind::kSliding}) {
    const int k = Index(kind);
    has_kind_[k] = config.HasAttentionKind(kind);
    const int32_t n = has_kind_[k] ? std::max<int32_t>(0, counts[k]) : 0;
    ref_count_[k].assign(n, 0);
    free_[k].reserve(n);
    for (int32_t b = n - 1; b >= 0; --b) free_[k].push_back(b);  // pop_back hands out low ids first
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
    if (table[b] >= 0 && (b + 1) * B <= kept_from) ++freed;
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

void BlockManager::CommitStep(KvSequence& seq, int64_t num_new) {
  seq.num_tokens += num_new;
  ReleaseBefore(seq, AttentionKind::kSliding, FirstVisiblePosition(seq.num_tokens, AttentionKind::kSliding));
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
    for (int32_t b : seq.block_table[Index(kind)]) {
      if (b >= 0) Free(kind, b);
    }
    seq.block_table[Index(kind)].clear();
  }
  seq.num_tokens = 0;
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
  auto& free = free_[Index(kind)];
  if (free.empty()) return -1;
  const int32_t b = free.back();
  free.pop_back();
  ref_count_[Index(kind)][b] = 1;
  return b;
}

void BlockManager::Free(AttentionKind kind, int32_t block) {
  int32_t& ref = ref_count_[Index(kind)][block];
  if (--ref == 0) free_[Index(kind)].push_back(block);
}

}  // namespace stepserve
