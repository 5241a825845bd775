#include "model/kv_cache.h"

#include <algorithm>
#include <limits>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"

namespace stepserve {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

int KindIndex(AttentionKind kind) { return static_cast<int>(kind); }

}  // namespace

int64_t KvBlockBytes(const ModelConfig& config, AttentionKind kind, int block_size, at::ScalarType dtype) {
  int64_t per_token = 0;
  for (const LayerConfig& l : config.layers) {
    if (l.attention_kind == kind) per_token += 2LL * l.num_kv_heads * config.head_dim;
  }
  return per_token * block_size * static_cast<int64_t>(at::elementSize(dtype));
}

absl::StatusOr<KvCacheOptions> KvCacheOptionsFromBudget(const ModelConfig& config, int64_t bytes, int block_size,
                                                        int max_num_seqs, at::ScalarType dtype, at::Device device) {
  if (block_size <= 0) return absl::InvalidArgumentError("kv block_size must be positive");
  if (bytes <= 0) return absl::InvalidArgumentError("kv_cache_bytes must be positive");
  KvCacheOptions o;
  o.block_size = block_size;
  o.dtype = dtype;
  o.device = device;
  const bool has_full = config.HasAttentionKind(AttentionKind::kFull);
  const bool has_sliding = config.HasAttentionKind(AttentionKind::kSliding);
  const int64_t full_block = KvBlockBytes(config, AttentionKind::kFull, block_size, dtype);
  const int64_t sliding_block = KvBlockBytes(config, AttentionKind::kSliding, block_size, dtype);
  int64_t sliding_bytes = 0;
  if (has_sliding) {
    const int64_t per_seq = CeilDiv(config.MaxSlidingWindow(), block_size) + 1;
    sliding_bytes = std::max<int64_t>(1, max_num_seqs) * per_seq * sliding_block;
    if (has_full) sliding_bytes = std::min(sliding_bytes, bytes / 2);
    else sliding_bytes = bytes;
    o.num_blocks_sliding = static_cast<int32_t>(sliding_bytes / sliding_block);
    if (o.num_blocks_sliding <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("kv_cache_bytes ", bytes, " holds no sliding-window block (",
                                                     sliding_block, " bytes each)"));
    }
    sliding_bytes = o.num_blocks_sliding * sliding_block;
  }
  if (has_full) {
    o.num_blocks_full = static_cast<int32_t>((bytes - sliding_bytes) / full_block);
    if (o.num_blocks_full <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("kv_cache_bytes ", bytes, " holds no full-attention block (",
                                                     full_block, " bytes each)"));
    }
  }
  return o;
}

PagedKvCache::PagedKvCache(const ModelConfig& config, const KvCacheOptions& options)
    : config_(config),
      options_(options),
      window_(config.MaxSlidingWindow()),
      allocators_{BlockAllocator(options.num_blocks_full), BlockAllocator(options.num_blocks_sliding)} {
  has_kind_[0] = config.HasAttentionKind(AttentionKind::kFull);
  has_kind_[1] = config.HasAttentionKind(AttentionKind::kSliding);
  const auto opts = at::TensorOptions().dtype(options.dtype).device(options.device);
  for (const LayerConfig& l : config.layers) {
    const int64_t blocks = l.attention_kind == AttentionKind::kFull ? options.num_blocks_full
                                                                    : options.num_blocks_sliding;
    const int64_t slots = blocks * options.block_size;
    k_pools_.push_back(at::zeros({slots, l.num_kv_heads, config.head_dim}, opts));
    v_pools_.push_back(at::zeros({slots, l.num_kv_heads, config.head_dim}, opts));
  }
}

int64_t PagedKvCache::FirstLivePosition(int64_t length, AttentionKind kind) const {
  if (kind == AttentionKind::kFull) return 0;
  return std::max<int64_t>(0, length - window_ + 1);
}

int32_t PagedKvCache::BlocksHeldAtLength(int64_t length, AttentionKind kind) const {
  if (!HasKind(kind) || length <= 0) return 0;
  const int64_t B = options_.block_size;
  const int64_t first = FirstLivePosition(length, kind);
  if (first >= length) return 0;
  return static_cast<int32_t>((length - 1) / B - first / B + 1);
}

int32_t PagedKvCache::BlocksNeeded(const KvSequence& seq, int64_t num_new, AttentionKind kind) const {
  if (!HasKind(kind)) return 0;
  const int64_t B = options_.block_size;
  const auto& table = seq.block_table[KindIndex(kind)];
  const int64_t length = seq.num_tokens + num_new;
  const int64_t live_from = FirstLivePosition(length, kind);
  int32_t freed = 0, needed = 0;
  for (int64_t b = 0; b < static_cast<int64_t>(table.size()); ++b) {
    if (table[b] >= 0 && (b + 1) * B <= live_from) ++freed;
  }
  const int64_t write_from = std::max(seq.num_tokens, live_from);
  if (write_from < length) {
    for (int64_t b = write_from / B; b <= (length - 1) / B; ++b) {
      if (b >= static_cast<int64_t>(table.size()) || table[b] < 0) ++needed;
    }
  }
  return needed - freed;
}

bool PagedKvCache::CanAppend(const KvSequence& seq, int64_t num_new) const {
  for (AttentionKind kind : {AttentionKind::kFull, AttentionKind::kSliding}) {
    if (BlocksNeeded(seq, num_new, kind) > NumFreeBlocks(kind)) return false;
  }
  return true;
}

absl::StatusOr<std::array<KvStepPlan, kNumAttentionKinds>> PagedKvCache::Append(KvSequence& seq, int64_t num_new) {
  if (num_new <= 0) return absl::InvalidArgumentError("Append needs at least one new token");
  if (!CanAppend(seq, num_new)) {
    return absl::ResourceExhaustedError(absl::StrCat("KV cache has too few free blocks for ", num_new, " tokens"));
  }
  const int64_t B = options_.block_size;
  const int64_t start = seq.num_tokens;
  const int64_t length = start + num_new;
  std::array<KvStepPlan, kNumAttentionKinds> plans;
  for (AttentionKind kind : {AttentionKind::kFull, AttentionKind::kSliding}) {
    if (!HasKind(kind)) continue;
    auto& table = seq.block_table[KindIndex(kind)];
    BlockAllocator& alloc = allocators_[KindIndex(kind)];
    KvStepPlan& plan = plans[KindIndex(kind)];
    // Reads use the table as it is before this step.
    plan.read_from_pos = FirstLivePosition(start, kind);
    std::vector<int64_t> read(static_cast<size_t>(start - plan.read_from_pos));
    for (int64_t p = plan.read_from_pos; p < start; ++p) read[p - plan.read_from_pos] = table[p / B] * B + p % B;
    // Release blocks that no query after this step can see; this step's writes may reuse them, which is
    // safe because every layer reads before it writes.
    const int64_t live_from = FirstLivePosition(length, kind);
    for (int64_t b = 0; b < static_cast<int64_t>(table.size()); ++b) {
      if (table[b] >= 0 && (b + 1) * B <= live_from) {
        alloc.Free(table[b]);
        table[b] = -1;
      }
    }
    plan.write_from_pos = std::max(start, live_from);
    std::vector<int64_t> write(static_cast<size_t>(length - plan.write_from_pos));
    if (plan.write_from_pos < length) {
      const int64_t last_block = (length - 1) / B;
      if (static_cast<int64_t>(table.size()) <= last_block) table.resize(last_block + 1, -1);
      for (int64_t b = plan.write_from_pos / B; b <= last_block; ++b) {
        if (table[b] < 0) table[b] = alloc.Allocate();  // CanAppend guaranteed enough blocks
      }
      for (int64_t p = plan.write_from_pos; p < length; ++p) write[p - plan.write_from_pos] = table[p / B] * B + p % B;
    }
    const auto idx = at::TensorOptions().dtype(at::kLong);
    plan.read_slots = at::tensor(read, idx).to(options_.device);
    plan.write_slots = at::tensor(write, idx).to(options_.device);
  }
  seq.num_tokens = length;
  return plans;
}

void PagedKvCache::Release(KvSequence& seq) {
  for (int k = 0; k < kNumAttentionKinds; ++k) {
    for (int32_t b : seq.block_table[k]) {
      if (b >= 0) allocators_[k].Free(b);
    }
    seq.block_table[k].clear();
  }
  seq.num_tokens = 0;
}

int64_t PagedKvCache::CapacityTokens() const {
  if (HasKind(AttentionKind::kFull)) return static_cast<int64_t>(NumBlocks(AttentionKind::kFull)) * block_size();
  return std::numeric_limits<int64_t>::max();
}

double PagedKvCache::UsageRatio() const {
  int64_t used = 0, total = 0;
  for (int k = 0; k < kNumAttentionKinds; ++k) {
    if (!has_kind_[k]) continue;
    used += allocators_[k].num_used();
    total += allocators_[k].num_blocks();
  }
  return total == 0 ? 0.0 : static_cast<double>(used) / static_cast<double>(total);
}

}  // namespace stepserve
