// The CUDA twin of the fused Q/K norm + RoPE: ATen glue around LaunchQkNormRope.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>

#include "model/ops/cuda_util.h"
#include "model/ops/qk_norm_rope.h"

namespace stepserve {

namespace kc = ::stepserve::cuda;
using namespace ::stepserve::cuda_util;

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

}  // namespace stepserve
