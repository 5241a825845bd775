// The CUDA twin of paged attention: the paged decode kernel (gate fused in its epilogue) for decode steps
// it supports, the ATen twin otherwise (prefill chunks); the KV write as one launch. Everything the
// kernels read is already on the device in the step's metadata: no host work per layer.
#include <algorithm>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>

#include "model/ops/cuda_util.h"
#include "model/ops/paged_attention.h"

namespace stepserve {
namespace {

namespace kc = ::stepserve::cuda;
using namespace ::stepserve::cuda_util;

bool DecodeKernelSupports(const at::Tensor& q, const at::Tensor& k_pool, const AttentionMetadata& meta,
                          const AttentionShape& shape) {
  const bool storage = q.scalar_type() == at::kFloat || q.scalar_type() == at::kBFloat16;
  const bool pools = meta.total_cached == 0 ||
                     (k_pool.defined() && k_pool.scalar_type() == q.scalar_type() && k_pool.is_contiguous());
  return meta.decode && q.dim() == 3 && storage && pools && q.size(2) <= 256 && shape.num_kv_heads > 0 &&
         shape.num_heads % shape.num_kv_heads == 0 && meta.max_cached < INT32_MAX;
}

}  // namespace

at::Tensor PagedAttentionCuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& k_pool,
                              const at::Tensor& v_pool, const AttentionMetadata& meta, const AttentionShape& shape,
                              const at::Tensor& gate) {
  if (!DecodeKernelSupports(q, k_pool, meta, shape)) {
    TORCH_CHECK(meta.total_cached == 0 || meta.read_slots.defined(),
                "PagedAttentionCuda: this step's metadata has no read slots for the ATen path");
    return PagedAttentionAten(q, k, v, k_pool, v_pool, meta, shape, gate);
  }
  c10::cuda::CUDAGuard guard(q.device());
  CheckCuda(k, q, "k");
  CheckCuda(v, q, "v");
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
              "PagedAttentionCuda: q, k, v dtypes differ");
  const int64_t n = q.size(0), d = q.size(2), S = static_cast<int64_t>(meta.seqs.size());
  TORCH_CHECK(q.size(1) == shape.num_heads && k.size(1) == shape.num_kv_heads && k.size(2) == d &&
                  v.sizes() == k.sizes() && k.size(0) == n && S == n,
              "PagedAttentionCuda: shapes disagree with AttentionShape");
  at::Tensor qc = q.contiguous(), kc_ = k.contiguous(), vc = v.contiguous();

  kc::PagedDecodeParams p;
  p.dtype = StorageType(q, "PagedAttentionCuda q");
  p.q = qc.data_ptr();
  p.k_new = kc_.data_ptr();
  p.v_new = vc.data_ptr();
  if (meta.total_cached > 0) {
    for (const at::Tensor* pool : {&k_pool, &v_pool}) {
      CheckCuda(*pool, q, "kv pool");
      TORCH_CHECK(pool->dim() == 3 && pool->size(1) == shape.num_kv_heads && pool->size(2) == d,
                  "PagedAttentionCuda: pools must be [slots, kv_heads, d]");
    }
    p.k_pool = k_pool.data_ptr();
    p.v_pool = v_pool.data_ptr();
  }
  at::Tensor out = at::empty(q.sizes(), qc.options());
  p.out = out.data_ptr();
  p.num_seqs = static_cast<int>(S);
  p.q_heads = shape.num_heads;
  p.kv_heads = shape.num_kv_heads;
  p.head_dim = static_cast<int>(d);
  p.window = shape.window;
  p.scale = static_cast<float>(shape.scale);
  CheckCuda(meta.seq_info, q, "seq_info");
  CheckCuda(meta.block_tables, q, "block_tables");
  const int32_t* info = meta.seq_info.data_ptr<int32_t>();
  p.q_row = info;
  p.q_pos = info + S;
  p.first_pos = info + 2 * S;
  p.num_cached = info + 3 * S;
  p.block_tables = meta.block_tables.data_ptr<int32_t>();
  p.max_blocks = static_cast<int>(meta.block_tables.size(1));
  p.block_size = meta.block_size;
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
  p.max_keys = static_cast<int>(meta.max_cached + 1);
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
                      const AttentionMetadata& meta) {
  if (!meta.write_rows.defined() || meta.write_rows.numel() == 0) return;
  TORCH_CHECK(k.is_cuda(), "WriteKvCacheCuda: k must be on a CUDA device");
  c10::cuda::CUDAGuard guard(k.device());
  CheckCuda(v, k, "WriteKvCacheCuda v");
  CheckCuda(k_pool, k, "WriteKvCacheCuda k_pool");
  CheckCuda(v_pool, k, "WriteKvCacheCuda v_pool");
  CheckCuda(meta.write_rows, k, "write_rows");
  TORCH_CHECK(k_pool.is_contiguous() && v_pool.is_contiguous() && k_pool.scalar_type() == v_pool.scalar_type(),
              "WriteKvCacheCuda: pools must be contiguous and of one dtype");
  const kc::DType dt = StorageType(k_pool, "WriteKvCacheCuda pool");
  at::Tensor kc_ = k.to(k_pool.scalar_type()).contiguous(), vc = v.to(v_pool.scalar_type()).contiguous();
  const int64_t row_elems = k_pool.numel() / std::max<int64_t>(k_pool.size(0), 1);
  TORCH_CHECK(kc_.numel() / std::max<int64_t>(kc_.size(0), 1) == row_elems && vc.sizes() == kc_.sizes(),
              "WriteKvCacheCuda: k/v rows do not match the pool rows");
  Check(kc::LaunchWriteKvCache(dt, kc_.data_ptr(), vc.data_ptr(), k_pool.data_ptr(), v_pool.data_ptr(),
                               meta.write_rows.data_ptr<int64_t>(), meta.write_slots.data_ptr<int64_t>(),
                               meta.write_rows.numel(), row_elems, Stream()),
        "LaunchWriteKvCache");
}

}  // namespace stepserve
