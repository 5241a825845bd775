#include "model/kernels/paged_attention.h"

#include <algorithm>
#include <limits>
#include <vector>

#include <ATen/ATen.h>

#ifdef STEPSERVE_CUDA
#include "model/kernels/cuda/cuda_ops.h"
#endif

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
      at::Tensor qpos = at::arange(first_q, last_q + 1, at::TensorOptions().dtype(at::kLong).device(q.device()));
      at::Tensor kpos = at::arange(key_pos0 + k_lo, key_pos0 + k_hi, at::TensorOptions().dtype(at::kLong).device(q.device()));
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

at::Tensor PagedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& k_pool,
                          const at::Tensor& v_pool, const std::vector<SeqAttention>& seqs,
                          const AttentionShape& shape) {
#ifdef STEPSERVE_CUDA
  // Pure decode steps use the paged decode kernel; prefill chunks on CUDA still take the ATen path below.
  if (PagedDecodeCudaSupports(q, k_pool, seqs, shape)) {
    return PagedDecodeAttentionCuda(q, k, v, k_pool, v_pool, seqs, shape);
  }
#endif
  at::Tensor out = at::empty(q.sizes(), q.options());
  for (const SeqAttention& s : seqs) {
    at::Tensor qs = q.narrow(0, s.token_begin, s.num_tokens);
    at::Tensor ks = k.narrow(0, s.token_begin, s.num_tokens);
    at::Tensor vs = v.narrow(0, s.token_begin, s.num_tokens);
    int64_t key_pos0 = s.start_pos;
    if (s.cached && s.kv.read_slots.numel() > 0) {
      ks = at::cat({k_pool.index_select(0, s.kv.read_slots), ks}, 0);
      vs = at::cat({v_pool.index_select(0, s.kv.read_slots), vs}, 0);
      key_pos0 = s.kv.read_from_pos;
    }
    out.narrow(0, s.token_begin, s.num_tokens).copy_(SequenceAttention(qs, ks, vs, s.start_pos, key_pos0, shape));
  }
  return out;
}

void WriteKvCache(const at::Tensor& k, const at::Tensor& v, at::Tensor& k_pool, at::Tensor& v_pool,
                  const std::vector<SeqAttention>& seqs) {
#ifdef STEPSERVE_CUDA
  if (k.is_cuda()) return WriteKvCacheCuda(k, v, k_pool, v_pool, seqs);
#endif
  for (const SeqAttention& s : seqs) {
    if (!s.cached || s.kv.write_slots.numel() == 0) continue;
    const int64_t skip = s.kv.write_from_pos - s.start_pos;  // leading rows no future query needs
    const int64_t count = s.kv.write_slots.numel();
    k_pool.index_copy_(0, s.kv.write_slots, k.narrow(0, s.token_begin + skip, count).to(k_pool.scalar_type()));
    v_pool.index_copy_(0, s.kv.write_slots, v.narrow(0, s.token_begin + skip, count).to(v_pool.scalar_type()));
  }
}

}  // namespace stepserve
