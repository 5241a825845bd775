// The CPU PagedAttention against a direct evaluation of the attention formula, in cases that need its
// query tiling: prefill chunks longer than one tile, sliding windows, cached keys older than the window,
// several sequences in one call, and decode.
#include <cmath>
#include <limits>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "model/ops/paged_attention.h"

namespace stepserve {
namespace {

struct Case {
  int64_t cached = 0;     // keys in the pool before this chunk (positions start_pos - cached ..)
  int64_t num_tokens = 0; // this chunk
};

// out[i, h] = sum_j softmax_j(q_i . k_j * scale) v_j over visible j, in double, one query at a time.
at::Tensor Reference(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values, int64_t start_pos,
                     int64_t key_pos0, const AttentionShape& shape) {
  const int64_t n = q.size(0), heads = q.size(1), d = q.size(2);
  const int64_t group = heads / shape.num_kv_heads;
  at::Tensor out = at::zeros({n, heads, d}, at::kDouble);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t qpos = start_pos + i;
    std::vector<int64_t> visible;
    for (int64_t j = 0; j < keys.size(0); ++j) {
      const int64_t kpos = key_pos0 + j;
      if (kpos <= qpos && (shape.window <= 0 || qpos - kpos < shape.window)) visible.push_back(j);
    }
    at::Tensor idx = at::tensor(visible, at::kLong);
    // Each query head h reads KV head h / group.
    at::Tensor kv_head = at::div(at::arange(heads, at::kLong), group, "floor");
    at::Tensor k = keys.index_select(0, idx).index_select(1, kv_head).to(at::kDouble);  // [m, heads, d]
    at::Tensor v = values.index_select(0, idx).index_select(1, kv_head).to(at::kDouble);
    at::Tensor s = (k * q[i].to(at::kDouble)).sum(-1) * shape.scale;                   // [m, heads]
    out[i] = (at::softmax(s, 0).unsqueeze(-1) * v).sum(0);
  }
  return out;
}

void ExpectMatchesReference(const std::vector<Case>& cases, const AttentionShape& shape, int64_t d) {
  at::manual_seed(7);
  int64_t total = 0, slots = 0;
  for (const Case& c : cases) {
    total += c.num_tokens;
    slots += c.cached;
  }
  at::Tensor q = at::randn({total, shape.num_heads, d});
  at::Tensor k = at::randn({total, shape.num_kv_heads, d});
  at::Tensor v = at::randn({total, shape.num_kv_heads, d});
  at::Tensor k_pool = at::randn({slots + 8, shape.num_kv_heads, d});
  at::Tensor v_pool = at::randn({slots + 8, shape.num_kv_heads, d});
  AttentionMetadata meta;
  std::vector<at::Tensor> slot_lists;
  int64_t row = 0, slot = 8;  // slots 0..7 stay unused: a wrong gather would read them
  for (const Case& c : cases) {
    AttentionSeq s;
    s.token_begin = row;
    s.num_tokens = c.num_tokens;
    s.start_pos = 1000 + c.cached;  // positions need not start at 0
    s.first_cached_pos = s.start_pos - c.cached;
    s.read_offset = meta.total_cached;
    slot_lists.push_back(at::arange(slot, slot + c.cached, at::kLong).flip(0));  // slots in any order
    meta.seqs.push_back(s);
    meta.total_cached += c.cached;
    row += c.num_tokens;
    slot += c.cached;
  }
  meta.read_slots = at::cat(slot_lists);
  at::Tensor out = PagedAttention(q, k, v, k_pool, v_pool, meta, shape, at::Tensor());
  for (const AttentionSeq& s : meta.seqs) {
    at::Tensor read = meta.read_slots.narrow(0, s.read_offset, s.num_cached());
    at::Tensor keys = at::cat({k_pool.index_select(0, read), k.narrow(0, s.token_begin, s.num_tokens)});
    at::Tensor values = at::cat({v_pool.index_select(0, read), v.narrow(0, s.token_begin, s.num_tokens)});
    at::Tensor expected = Reference(q.narrow(0, s.token_begin, s.num_tokens), keys, values, s.start_pos,
                                    s.first_cached_pos, shape);
    const double diff =
        (out.narrow(0, s.token_begin, s.num_tokens).to(at::kDouble) - expected).abs().max().item<double>();
    EXPECT_LT(diff, 1e-5) << "sequence at row " << s.token_begin << " (" << s.num_tokens << " tokens)";
  }
}

TEST(PagedAttentionTest, FullAttentionChunkSpanningSeveralQueryTiles) {
  // 64 heads x 800 keys: the 16M-score budget gives 327-row tiles, so 700 queries take 3 tiles.
  ExpectMatchesReference({{100, 700}}, {64, 8, 0, 0.25}, 8);
}

TEST(PagedAttentionTest, SlidingWindowTilesSkipKeysOutsideTheWindow) {
  // Window 48 (64-row tiles); the cache holds 70 keys, some older than any query can see.
  ExpectMatchesReference({{70, 200}, {0, 130}, {5, 3}}, {12, 4, 48, 0.3}, 16);
}

TEST(PagedAttentionTest, DecodeWithWindowIgnoresKeysOlderThanTheWindow) {
  ExpectMatchesReference({{40, 1}, {16, 1}, {3, 1}}, {8, 2, 16, 0.5}, 16);
}

}  // namespace
}  // namespace stepserve
