// The ATen twin of paged attention (prefill and decode) and of the KV write. Pure ATen, so it also runs
// on CUDA tensors (the CUDA twin uses it for prefill chunks); the only host data it reads is the metadata's
// per-sequence host part.
#include <algorithm>
#include <limits>
#include <vector>

#include <ATen/ATen.h>

#include "model/ops/paged_attention.h"

namespace stepserve {
namespace {

// Scores held at once per query tile, in floats (64 MiB): bounds the memory of long prefill chunks.
constexpr int64_t kMaxTileScores = int64_t{16} << 20;

// Rows of queries per tile: as many as the score budget allows (at least 16), and for sliding-window
// layers about one window, so that each tile only multiplies against the keys it can see.
int64_t QueryTileRows(int64_t n, int64_t num_keys, const AttentionShape& shape) {
  int64_t rows = std::max<int64_t>(16, kMaxTileScores / std::max<int64_t>(1, shape.num_heads * num_keys));
  if (shape.window > 0) rows = std::min<int64_t>(rows, std::max<int64_t>(64, shape.window));
  return std::min(rows, n);
}

// Attention for one sequence: queries at start_pos.., keys at key_pos0.. (cached then new, consecutive
// positions), fp32 math. Queries go in tiles; a tile multiplies only against the key range it can see
// (causal end, window start), and only a tile's own scores [heads, rows, keys] are materialised.
at::Tensor SequenceAttention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values,
                             int64_t start_pos, int64_t key_pos0, const AttentionShape& shape) {
  const int64_t n = q.size(0), d = q.size(2), nkv = shape.num_kv_heads;
  const int64_t group = shape.num_heads / nkv;
  const int64_t nk = keys.size(0);
  at::Tensor kt = keys.to(at::kFloat).permute({1, 2, 0});   // [nkv, d, nk]
  at::Tensor vv = values.to(at::kFloat).permute({1, 0, 2}); // [nkv, nk, d]
  at::Tensor qf = q.to(at::kFloat);
  const int64_t tile = QueryTileRows(n, nk, shape);
  std::vector<at::Tensor> outs;
  outs.reserve((n + tile - 1) / tile);
  for (int64_t t0 = 0; t0 < n; t0 += tile) {
    const int64_t tn = std::min(tile, n - t0);
    const int64_t first_q = start_pos + t0, last_q = first_q + tn - 1;
    // Keys [k_lo, k_hi) hold every position some query of the tile sees.
    const int64_t k_hi = std::min(nk, last_q - key_pos0 + 1);
    const int64_t k_lo = shape.window > 0 ? std::max<int64_t>(0, first_q - shape.window + 1 - key_pos0) : 0;
    const int64_t kn = k_hi - k_lo;
    // [nkv, group * tn, d]: the queries sharing one KV head side by side.
    at::Tensor qg = qf.narrow(0, t0, tn).view({tn, nkv, group, d}).permute({1, 2, 0, 3}).reshape({nkv, group * tn, d});
    at::Tensor scores = at::bmm(qg, kt.narrow(2, k_lo, kn)).mul_(shape.scale).view({nkv, group, tn, kn});
    if (tn > 1) {
      // Causal and window masks inside the tile's key range (a lone decode query sees all of it).
      const auto lopts = at::TensorOptions().dtype(at::kLong).device(q.device());
      at::Tensor qpos = at::arange(first_q, last_q + 1, lopts);
      at::Tensor kpos = at::arange(key_pos0 + k_lo, key_pos0 + k_hi, lopts);
      at::Tensor rel = qpos.unsqueeze(1) - kpos.unsqueeze(0);  // i - j
      at::Tensor hidden = rel < 0;
      if (shape.window > 0) hidden = hidden.logical_or(rel >= shape.window);
      scores.masked_fill_(hidden, -std::numeric_limits<float>::infinity());
    }
    at::Tensor probs = at::softmax(scores, -1).view({nkv, group * tn, kn});
    at::Tensor out = at::bmm(probs, vv.narrow(1, k_lo, kn));  // [nkv, group * tn, d]
    outs.push_back(out.view({nkv, group, tn, d}).permute({2, 0, 1, 3}).reshape({tn, shape.num_heads, d}));
  }
  return outs.size() == 1 ? outs[0] : at::cat(outs, 0);
}

}  // namespace

at::Tensor PagedAttentionAten(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& k_pool,
                             const at::Tensor& v_pool, const AttentionMetadata& meta, const AttentionShape& shape,
                             const at::Tensor& gate) {
  at::Tensor out = at::empty(q.sizes(), q.options());
  for (const AttentionSeq& s : meta.seqs) {
    at::Tensor qs = q.narrow(0, s.token_begin, s.num_tokens);
    at::Tensor ks = k.narrow(0, s.token_begin, s.num_tokens);
    at::Tensor vs = v.narrow(0, s.token_begin, s.num_tokens);
    int64_t key_pos0 = s.start_pos;
    if (s.num_cached() > 0) {
      at::Tensor slots = meta.read_slots.narrow(0, s.read_offset, s.num_cached());
      ks = at::cat({k_pool.index_select(0, slots).to(k.scalar_type()), ks}, 0);
      vs = at::cat({v_pool.index_select(0, slots).to(v.scalar_type()), vs}, 0);
      key_pos0 = s.first_cached_pos;
    }
    out.narrow(0, s.token_begin, s.num_tokens).copy_(SequenceAttention(qs, ks, vs, s.start_pos, key_pos0, shape));
  }
  if (gate.defined()) out = (out.to(at::kFloat) * at::sigmoid(gate.to(at::kFloat)).unsqueeze(-1)).to(q.scalar_type());
  return out;
}

void WriteKvCacheAten(const at::Tensor& k, const at::Tensor& v, at::Tensor& k_pool, at::Tensor& v_pool,
                     const AttentionMetadata& meta) {
  if (!meta.write_rows.defined() || meta.write_rows.numel() == 0) return;
  k_pool.index_copy_(0, meta.write_slots, k.index_select(0, meta.write_rows).to(k_pool.scalar_type()));
  v_pool.index_copy_(0, meta.write_slots, v.index_select(0, meta.write_rows).to(v_pool.scalar_type()));
}

}  // namespace stepserve
