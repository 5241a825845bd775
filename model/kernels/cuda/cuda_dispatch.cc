// ATen wrappers of the CUDA launchers (model/ops/cuda/launchers.h). Built only with STEPSERVE_CUDA.
#include "model/kernels/cuda/cuda_ops.h"

#include <algorithm>
#include <cmath>
#include <string>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "model/ops/cuda/launchers.h"

namespace stepserve {
namespace {

namespace kc = ::stepserve::cuda;

void Check(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, what, ": ", cudaGetErrorString(err));
}

kc::DType StorageType(const at::Tensor& t, const char* name) {
  if (t.scalar_type() == at::kFloat) return kc::DType::kFloat32;
  if (t.scalar_type() == at::kBFloat16) return kc::DType::kBFloat16;
  TORCH_CHECK(false, name, ": expected float32 or bfloat16, got ", t.scalar_type());
  return kc::DType::kFloat32;
}

void CheckCuda(const at::Tensor& t, const at::Tensor& ref, const char* name) {
  TORCH_CHECK(t.defined() && t.is_cuda() && t.device() == ref.device(), name, ": expected a tensor on ", ref.device());
}

// Weights may be fp32 or the storage dtype (fp32 weights with bf16 storage are supported too).
at::Tensor NormWeight(const at::Tensor& weight, const at::Tensor& ref, const char* name) {
  CheckCuda(weight, ref, name);
  at::Tensor w = weight.contiguous();
  if (w.scalar_type() != at::kFloat && w.scalar_type() != ref.scalar_type()) w = w.to(at::kFloat);
  return w;
}

cudaStream_t Stream() { return c10::cuda::getCurrentCUDAStream(); }

int NumSms(int device) {
  static int cached[64] = {};
  if (device < 0 || device >= 64) return 132;
  if (cached[device] == 0) {
    int n = 0;
    if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || n <= 0) n = 132;
    cached[device] = n;
  }
  return cached[device];
}

}  // namespace

at::Tensor RmsNormCuda(const at::Tensor& x, const at::Tensor& weight, double eps) {
  TORCH_CHECK(x.is_cuda(), "RmsNormCuda: x must be on a CUDA device");
  c10::cuda::CUDAGuard guard(x.device());
  const kc::DType dt = StorageType(x, "RmsNormCuda x");
  at::Tensor xc = x.contiguous();
  at::Tensor w = NormWeight(weight, x, "RmsNormCuda weight");
  const int64_t hidden = x.size(-1);
  TORCH_CHECK(w.numel() == hidden, "RmsNormCuda: weight has ", w.numel(), " elements, expected ", hidden);
  at::Tensor out = at::empty_like(xc);
  Check(kc::LaunchAddRmsNorm(dt, StorageType(w, "weight"), nullptr, xc.data_ptr(), w.data_ptr(), out.data_ptr(),
                             hidden == 0 ? 0 : xc.numel() / hidden, hidden, static_cast<float>(eps), Stream()),
        "LaunchAddRmsNorm");
  return out;
}

at::Tensor AddRmsNormCuda(const at::Tensor& x, at::Tensor& residual, const at::Tensor& weight, double eps) {
  TORCH_CHECK(residual.is_cuda() && residual.is_contiguous(), "AddRmsNormCuda: residual must be contiguous CUDA");
  c10::cuda::CUDAGuard guard(residual.device());
  CheckCuda(x, residual, "AddRmsNormCuda x");
  TORCH_CHECK(x.sizes() == residual.sizes(), "AddRmsNormCuda: x and residual differ in shape");
  const kc::DType dt = StorageType(residual, "AddRmsNormCuda residual");
  at::Tensor xc = x.to(residual.scalar_type()).contiguous();
  at::Tensor w = NormWeight(weight, residual, "AddRmsNormCuda weight");
  const int64_t hidden = residual.size(-1);
  TORCH_CHECK(w.numel() == hidden, "AddRmsNormCuda: weight has ", w.numel(), " elements, expected ", hidden);
  at::Tensor out = at::empty_like(residual);
  Check(kc::LaunchAddRmsNorm(dt, StorageType(w, "weight"), xc.data_ptr(), residual.data_ptr(), w.data_ptr(),
                             out.data_ptr(), hidden == 0 ? 0 : residual.numel() / hidden, hidden,
                             static_cast<float>(eps), Stream()),
        "LaunchAddRmsNorm");
  return out;
}

void QkNormRopeCuda(at::Tensor& q, at::Tensor& k, const at::Tensor& q_weight, const at::Tensor& k_weight,
                    const at::Tensor& positions, const at::Tensor& inv_freq, int rotary_dim, double eps) {
  TORCH_CHECK(q.is_cuda() && q.dim() == 3 && k.dim() == 3, "QkNormRopeCuda: q, k must be CUDA [N, heads, d]");
  c10::cuda::CUDAGuard guard(q.device());
  CheckCuda(k, q, "QkNormRopeCuda k");
  TORCH_CHECK(k.scalar_type() == q.scalar_type(), "QkNormRopeCuda: q and k dtypes differ");
  const int64_t n = q.size(0), d = q.size(2);
  TORCH_CHECK(k.size(0) == n && k.size(2) == d, "QkNormRopeCuda: q and k shapes disagree");
  for (const at::Tensor* t : {&q, &k}) {
    TORCH_CHECK(t->stride(2) == 1 && t->stride(1) == d, "QkNormRopeCuda: q/k need head stride d, channel stride 1");
  }
  const kc::DType dt = StorageType(q, "QkNormRopeCuda q");
  at::Tensor qw = NormWeight(q_weight, q, "q_weight"), kw = NormWeight(k_weight, q, "k_weight");
  TORCH_CHECK(qw.scalar_type() == kw.scalar_type(), "QkNormRopeCuda: q_weight and k_weight dtypes differ");
  TORCH_CHECK(qw.numel() == d && kw.numel() == d, "QkNormRopeCuda: norm weights must have head_dim elements");
  at::Tensor pos, freq;
  if (rotary_dim > 0) {
    CheckCuda(positions, q, "positions");
    CheckCuda(inv_freq, q, "inv_freq");
    pos = positions.to(at::kLong).contiguous();
    freq = inv_freq.to(at::kFloat).contiguous();
    TORCH_CHECK(pos.numel() == n && freq.numel() >= rotary_dim / 2, "QkNormRopeCuda: positions/inv_freq sizes");
  }
  Check(kc::LaunchQkNormRope(dt, StorageType(qw, "q_weight"), q.data_ptr(), q.stride(0), k.data_ptr(), k.stride(0),
                             qw.data_ptr(), kw.data_ptr(), rotary_dim > 0 ? pos.data_ptr<int64_t>() : nullptr,
                             rotary_dim > 0 ? freq.data_ptr<float>() : nullptr, n, static_cast<int>(q.size(1)),
                             static_cast<int>(k.size(1)), static_cast<int>(d), rotary_dim, static_cast<float>(eps),
                             Stream()),
        "LaunchQkNormRope");
}

at::Tensor ClampedSwiGluCuda(const at::Tensor& gate_up, double limit) {
  TORCH_CHECK(gate_up.is_cuda(), "ClampedSwiGluCuda: gate_up must be on a CUDA device");
  c10::cuda::CUDAGuard guard(gate_up.device());
  const kc::DType dt = StorageType(gate_up, "ClampedSwiGluCuda gate_up");
  at::Tensor gu = gate_up.contiguous();
  TORCH_CHECK(gu.dim() >= 1 && gu.size(-1) % 2 == 0, "ClampedSwiGluCuda: last dim must be even");
  const int64_t inter = gu.size(-1) / 2;
  std::vector<int64_t> sizes(gu.sizes().begin(), gu.sizes().end());
  sizes.back() = inter;
  at::Tensor out = at::empty(sizes, gu.options());
  const int64_t rows = inter == 0 ? 0 : out.numel() / inter;
  Check(kc::LaunchClampedSwiGlu(dt, gu.data_ptr(), out.data_ptr(), rows, inter, static_cast<float>(limit), Stream()),
        "LaunchClampedSwiGlu");
  return out;
}

std::pair<at::Tensor, at::Tensor> MoeRouteCuda(const at::Tensor& logits, const at::Tensor& bias, int top_k,
                                               bool sigmoid, bool normalize, double scaling) {
  TORCH_CHECK(logits.is_cuda() && logits.dim() == 2, "MoeRouteCuda: logits must be CUDA [N, experts]");
  c10::cuda::CUDAGuard guard(logits.device());
  at::Tensor lg = logits.to(at::kFloat).contiguous();
  at::Tensor b;
  if (bias.defined()) {
    CheckCuda(bias, logits, "MoeRouteCuda bias");
    b = bias.to(at::kFloat).contiguous();
    TORCH_CHECK(b.numel() == lg.size(1), "MoeRouteCuda: bias must have one entry per expert");
  }
  const int64_t n = lg.size(0);
  at::Tensor indices = at::empty({n, top_k}, lg.options().dtype(at::kLong));
  at::Tensor weights = at::empty({n, top_k}, lg.options());
  Check(kc::LaunchMoeRoute(lg.data_ptr<float>(), b.defined() ? b.data_ptr<float>() : nullptr, n,
                           static_cast<int>(lg.size(1)), top_k, sigmoid, normalize, static_cast<float>(scaling),
                           indices.data_ptr<int64_t>(), weights.data_ptr<float>(), Stream()),
        "LaunchMoeRoute");
  return {indices, weights};
}

MoePermutation MoePermuteCuda(const at::Tensor& indices, const at::Tensor& weights, int num_experts) {
  TORCH_CHECK(indices.is_cuda() && indices.dim() == 2, "MoePermuteCuda: indices must be CUDA [N, top_k]");
  c10::cuda::CUDAGuard guard(indices.device());
  at::Tensor idx = indices.to(at::kLong).contiguous();
  at::Tensor w;
  if (weights.defined()) {
    CheckCuda(weights, indices, "MoePermuteCuda weights");
    w = weights.to(at::kFloat).contiguous();
    TORCH_CHECK(w.numel() == idx.numel(), "MoePermuteCuda: weights and indices differ in size");
  }
  const int64_t n = idx.numel();
  const auto i32 = idx.options().dtype(at::kInt);
  MoePermutation p;
  p.counts = at::empty({num_experts}, i32);
  p.offsets = at::empty({num_experts + 1}, i32);
  p.sorted_token = at::empty({n}, i32);
  p.sorted_slot = at::empty({n}, i32);
  if (w.defined()) p.sorted_weight = at::empty({n}, idx.options().dtype(at::kFloat));
  Check(kc::LaunchMoePermute(idx.data_ptr<int64_t>(), w.defined() ? w.data_ptr<float>() : nullptr, idx.size(0),
                             static_cast<int>(idx.size(1)), num_experts, p.counts.data_ptr<int32_t>(),
                             p.offsets.data_ptr<int32_t>(), p.sorted_token.data_ptr<int32_t>(),
                             p.sorted_slot.data_ptr<int32_t>(),
                             w.defined() ? p.sorted_weight.data_ptr<float>() : nullptr, Stream()),
        "LaunchMoePermute");
  return p;
}

bool IsDecodeStep(const std::vector<SeqAttention>& seqs) {
  return !seqs.empty() &&
         std::all_of(seqs.begin(), seqs.end(), [](const SeqAttention& s) { return s.num_tokens == 1; });
}

bool PagedDecodeCudaSupports(const at::Tensor& q, const at::Tensor& k_pool, const std::vector<SeqAttention>& seqs,
                             const AttentionShape& shape) {
  const bool storage = q.scalar_type() == at::kFloat || q.scalar_type() == at::kBFloat16;
  const bool pools = !k_pool.defined() || (k_pool.is_cuda() && k_pool.scalar_type() == q.scalar_type());
  return q.is_cuda() && q.dim() == 3 && storage && pools && q.size(2) <= 256 && shape.num_kv_heads > 0 &&
         shape.num_heads % shape.num_kv_heads == 0 && IsDecodeStep(seqs);
}

at::Tensor PagedDecodeAttentionCuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& k_pool, const at::Tensor& v_pool,
                                    const std::vector<SeqAttention>& seqs, const AttentionShape& shape,
                                    const at::Tensor& gate, int num_splits) {
  TORCH_CHECK(q.is_cuda() && q.dim() == 3, "PagedDecodeAttentionCuda: q must be CUDA [N, heads, d]");
  TORCH_CHECK(IsDecodeStep(seqs), "PagedDecodeAttentionCuda: every sequence must have exactly one token");
  c10::cuda::CUDAGuard guard(q.device());
  CheckCuda(k, q, "k");
  CheckCuda(v, q, "v");
  const kc::DType dt = StorageType(q, "PagedDecodeAttentionCuda q");
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
              "PagedDecodeAttentionCuda: q, k, v dtypes differ");
  const int64_t n = q.size(0), d = q.size(2);
  TORCH_CHECK(q.size(1) == shape.num_heads && k.size(1) == shape.num_kv_heads && k.size(2) == d &&
                  v.sizes() == k.sizes() && k.size(0) == n,
              "PagedDecodeAttentionCuda: shapes disagree with AttentionShape");
  at::Tensor qc = q.contiguous(), kc_ = k.contiguous(), vc = v.contiguous();

  const int64_t S = static_cast<int64_t>(seqs.size());
  TORCH_CHECK(n <= INT32_MAX && S <= INT32_MAX, "PagedDecodeAttentionCuda: batch too large");
  // Per-sequence metadata, one host-to-device copy: q_row, q_pos, first_pos, num_cached, slot_begin.
  at::Tensor meta_host = at::empty({5 * S}, at::TensorOptions().dtype(at::kInt).pinned_memory(true));
  int32_t* m = meta_host.data_ptr<int32_t>();
  std::vector<at::Tensor> slot_lists;
  int64_t slot_total = 0, max_keys = 1;
  for (int64_t i = 0; i < S; ++i) {
    const SeqAttention& s = seqs[i];
    const int64_t cached = s.cached && s.kv.read_slots.defined() ? s.kv.read_slots.numel() : 0;
    TORCH_CHECK(s.start_pos <= INT32_MAX && slot_total + cached <= INT32_MAX, "PagedDecodeAttentionCuda: too long");
    m[i] = static_cast<int32_t>(s.token_begin);
    m[S + i] = static_cast<int32_t>(s.start_pos);
    m[2 * S + i] = static_cast<int32_t>(cached > 0 ? s.kv.read_from_pos : s.start_pos);
    m[3 * S + i] = static_cast<int32_t>(cached);
    m[4 * S + i] = static_cast<int32_t>(slot_total);
    if (cached > 0) slot_lists.push_back(s.kv.read_slots.to(q.device(), at::kLong));
    slot_total += cached;
    max_keys = std::max(max_keys, cached + 1);
  }
  at::Tensor meta = meta_host.to(q.device(), at::kInt, /*non_blocking=*/true);
  at::Tensor slots = slot_lists.empty() ? at::Tensor() : at::cat(slot_lists).contiguous();
  if (slots.defined()) {
    for (const at::Tensor* pool : {&k_pool, &v_pool}) {
      CheckCuda(*pool, q, "kv pool");
      TORCH_CHECK(pool->scalar_type() == q.scalar_type() && pool->is_contiguous() && pool->dim() == 3 &&
                      pool->size(1) == shape.num_kv_heads && pool->size(2) == d,
                  "PagedDecodeAttentionCuda: pools must be contiguous [slots, kv_heads, d] in q's dtype");
    }
  }

  kc::PagedDecodeParams p;
  p.dtype = dt;
  p.q = qc.data_ptr();
  p.k_new = kc_.data_ptr();
  p.v_new = vc.data_ptr();
  p.k_pool = slots.defined() ? k_pool.data_ptr() : nullptr;
  p.v_pool = slots.defined() ? v_pool.data_ptr() : nullptr;
  at::Tensor out = at::empty(q.sizes(), qc.options());
  p.out = out.data_ptr();
  p.num_seqs = static_cast<int>(S);
  p.q_heads = shape.num_heads;
  p.kv_heads = shape.num_kv_heads;
  p.head_dim = static_cast<int>(d);
  p.window = shape.window;
  p.scale = static_cast<float>(shape.scale);
  const int32_t* md = meta.data_ptr<int32_t>();
  p.q_row = md;
  p.q_pos = md + S;
  p.first_pos = md + 2 * S;
  p.num_cached = md + 3 * S;
  p.slot_begin = md + 4 * S;
  p.slots = slots.defined() ? slots.data_ptr<int64_t>() : nullptr;
  at::Tensor g;
  if (gate.defined()) {
    CheckCuda(gate, q, "gate");
    g = gate.scalar_type() == at::kBFloat16 ? gate : gate.to(at::kFloat);
    if (g.stride(-1) != 1) g = g.contiguous();
    TORCH_CHECK(g.dim() == 2 && g.size(0) == n && g.size(1) == shape.num_heads, "gate must be [N, heads]");
    p.gate = g.data_ptr();
    p.gate_dtype = g.scalar_type() == at::kBFloat16 ? kc::DType::kBFloat16 : kc::DType::kFloat32;
    p.gate_stride = g.stride(0);
  }
  p.max_keys = static_cast<int>(std::min<int64_t>(max_keys, INT32_MAX));
  p.num_splits = num_splits;
  p.num_sms = NumSms(q.device().index());
  const int splits = kc::PagedDecodeNumSplits(p);
  at::Tensor workspace;
  if (splits > 1) {
    workspace = at::empty({kc::PagedDecodeWorkspaceFloats(p, splits)}, qc.options().dtype(at::kFloat));
    p.workspace = workspace.data_ptr<float>();
  }
  Check(kc::LaunchPagedDecodeAttention(p, Stream()), "LaunchPagedDecodeAttention");
  return out;
}

void WriteKvCacheCuda(const at::Tensor& k, const at::Tensor& v, at::Tensor& k_pool, at::Tensor& v_pool,
                      const std::vector<SeqAttention>& seqs) {
  std::vector<int64_t> rows;
  std::vector<at::Tensor> slot_lists;
  for (const SeqAttention& s : seqs) {
    if (!s.cached || !s.kv.write_slots.defined() || s.kv.write_slots.numel() == 0) continue;
    const int64_t skip = s.kv.write_from_pos - s.start_pos;
    for (int64_t i = 0; i < s.kv.write_slots.numel(); ++i) rows.push_back(s.token_begin + skip + i);
    slot_lists.push_back(s.kv.write_slots);
  }
  if (rows.empty()) return;
  TORCH_CHECK(k.is_cuda(), "WriteKvCacheCuda: k must be on a CUDA device");
  c10::cuda::CUDAGuard guard(k.device());
  CheckCuda(v, k, "WriteKvCacheCuda v");
  CheckCuda(k_pool, k, "WriteKvCacheCuda k_pool");
  CheckCuda(v_pool, k, "WriteKvCacheCuda v_pool");
  TORCH_CHECK(k_pool.is_contiguous() && v_pool.is_contiguous() && k_pool.scalar_type() == v_pool.scalar_type(),
              "WriteKvCacheCuda: pools must be contiguous and of one dtype");
  const kc::DType dt = StorageType(k_pool, "WriteKvCacheCuda pool");
  at::Tensor kc_ = k.to(k_pool.scalar_type()).contiguous(), vc = v.to(v_pool.scalar_type()).contiguous();
  const int64_t row_elems = k_pool.numel() / std::max<int64_t>(k_pool.size(0), 1);
  TORCH_CHECK(kc_.numel() / std::max<int64_t>(kc_.size(0), 1) == row_elems && vc.sizes() == kc_.sizes(),
              "WriteKvCacheCuda: k/v rows do not match the pool rows");
  at::Tensor src = at::tensor(rows, at::TensorOptions().dtype(at::kLong)).to(k.device());
  at::Tensor slots = at::cat(slot_lists).to(k.device(), at::kLong).contiguous();
  Check(kc::LaunchWriteKvCache(dt, kc_.data_ptr(), vc.data_ptr(), k_pool.data_ptr(), v_pool.data_ptr(),
                               src.data_ptr<int64_t>(), slots.data_ptr<int64_t>(), static_cast<int64_t>(rows.size()),
                               row_elems, Stream()),
        "LaunchWriteKvCache");
}

}  // namespace stepserve
