#include "model/kernels/paged_attention.h"

#include <ATen/ATen.h>

#ifdef STEPSERVE_CUDA
#include "model/kernels/cuda/cuda_ops.h"
#endif

namespace stepserve {
namespace {

// Attention for one sequence: queries at start_pos.., keys at key_pos0.. (cached then new), fp32 math.
at::Tensor SequenceAttention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values,
                             int64_t start_pos, int64_t key_pos0, const AttentionShape& shape) {
  const int64_t n = q.size(0), d = q.size(2), nkv = shape.num_kv_heads;
  const int64_t group = shape.num_heads / nkv;
  const int64_t nk = keys.size(0);
  // [nkv, group * n, d]: the queries sharing one KV head side by side.
  at::Tensor qg = q.to(at::kFloat).view({n, nkv, group, d}).permute({1, 2, 0, 3}).reshape({nkv, group * n, d});
  at::Tensor kt = keys.to(at::kFloat).permute({1, 2, 0});   // [nkv, d, nk]
  at::Tensor vv = values.to(at::kFloat).permute({1, 0, 2}); // [nkv, nk, d]
  at::Tensor scores = at::bmm(qg, kt).mul_(shape.scale).view({nkv, group, n, nk});
  if (n > 1) {
    // A single decode query sees every cached key by construction; chunks need the causal/window mask.
    at::Tensor qpos = at::arange(start_pos, start_pos + n, at::TensorOptions().dtype(at::kLong).device(q.device()));
    at::Tensor kpos = at::arange(key_pos0, key_pos0 + nk, at::TensorOptions().dtype(at::kLong).device(q.device()));
    at::Tensor rel = qpos.unsqueeze(1) - kpos.unsqueeze(0);  // i - j
    at::Tensor hidden = rel < 0;
    if (shape.window > 0) hidden = hidden.logical_or(rel >= shape.window);
    scores.masked_fill_(hidden, -std::numeric_limits<float>::infinity());
  }
  at::Tensor probs = at::softmax(scores, -1).view({nkv, group * n, nk});
  at::Tensor out = at::bmm(probs, vv);  // [nkv, group * n, d]
  return out.view({nkv, group, n, d}).permute({2, 0, 1, 3}).reshape({n, shape.num_heads, d});
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
