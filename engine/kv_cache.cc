#include "engine/kv_cache.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"

namespace stepserve {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

int64_t SlidingBlocksNeeded(const ModelConfig& config, int block_size, int max_num_seqs,
                            int max_num_batched_tokens) {
  const int64_t seqs = std::max(1, max_num_seqs);
  const int64_t per_seq = CeilDiv(config.MaxSlidingWindow(), block_size) + 1;
  const int64_t transient = CeilDiv(std::max(1, max_num_batched_tokens), block_size) + seqs;
  return seqs * per_seq + transient;
}

int64_t SlidingBlocksForOneSequence(const ModelConfig& config, int block_size, int max_num_batched_tokens,
                                    bool prefix_caching) {
  const int64_t W = config.MaxSlidingWindow(), B = std::max(1, block_size);
  if (!config.HasAttentionKind(AttentionKind::kSliding) || W <= 0) return 0;
  const int64_t window_blocks = CeilDiv(W, B);
  // With caching: a chunk of n <= max(B, (pool - window_blocks - 2) * B) tokens starting at s holds the
  // blocks of [s - W + 1, s + n - 1], at most floor((n + W - 2) / B) + 2 of them: window_blocks + 2 for n = B.
  if (prefix_caching) return window_blocks + 2;
  // Without: the window the first query reads (<= window_blocks + 1 blocks) and the chunk's stored last
  // window (<= window_blocks + 1), and never more than the span of a whole chunk of T tokens and its window.
  const int64_t T = std::max(1, max_num_batched_tokens);
  return std::min((T + W - 2) / B + 2, 2 * window_blocks + 2);
}

int64_t MinKvCacheBytes(const ModelConfig& config, int block_size, int max_num_seqs, int max_num_batched_tokens,
                        bool prefix_caching, at::ScalarType dtype) {
  const int64_t need = SlidingBlocksForOneSequence(config, block_size, max_num_batched_tokens, prefix_caching);
  auto works = [&](int64_t bytes) {
    absl::StatusOr<KvCacheOptions> o = KvCacheOptionsFromBudget(config, bytes, block_size, max_num_seqs,
                                                                max_num_batched_tokens, dtype, at::kCPU);
    return o.ok() && o->num_blocks_sliding >= need;
  };
  // Both pools only grow with the budget: the first budget that works is found by bisection.
  int64_t hi = 1;
  while (!works(hi)) {
    if (hi >= (int64_t{1} << 62)) return -1;
    hi *= 2;
  }
  int64_t lo = hi / 2;  // does not work (or is 0)
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (works(mid) ? hi : lo) = mid;
  }
  return hi;
}

absl::StatusOr<KvCacheOptions> KvCacheOptionsFromBudget(const ModelConfig& config, int64_t bytes, int block_size,
                                                        int max_num_seqs, int max_num_batched_tokens,
                                                        at::ScalarType dtype, at::Device device) {
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
    sliding_bytes = SlidingBlocksNeeded(config, block_size, max_num_seqs, max_num_batched_tokens) * sliding_block;
    sliding_bytes = has_full ? std::min(sliding_bytes, bytes / 2) : bytes;
    o.num_blocks_sliding = static_cast<int32_t>(std::min<int64_t>(sliding_bytes / sliding_block, INT32_MAX));
    if (o.num_blocks_sliding <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("kv_cache_bytes ", bytes, " holds no sliding-window block (",
                                                     sliding_block, " bytes each)"));
    }
    sliding_bytes = o.num_blocks_sliding * sliding_block;
  }
  if (has_full) {
    o.num_blocks_full = static_cast<int32_t>(std::min<int64_t>((bytes - sliding_bytes) / full_block, INT32_MAX));
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
      blocks_(config, options.block_size, options.num_blocks_full, options.num_blocks_sliding,
              options.enable_prefix_caching),
      pools_(config, options) {}

int64_t PagedKvCache::CapacityTokens() const {
  if (blocks_.HasKind(AttentionKind::kFull)) {
    return static_cast<int64_t>(blocks_.NumBlocks(AttentionKind::kFull)) * block_size();
  }
  // Sliding-only models: a sequence holds at most its window, so one sequence fits whenever a window does.
  const int64_t per_seq = CeilDiv(config_.MaxSlidingWindow(), block_size()) + 1;
  return blocks_.NumBlocks(AttentionKind::kSliding) >= per_seq ? config_.max_position_embeddings : 0;
}

}  // namespace stepserve
