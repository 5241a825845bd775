// The CUDA twins of MoE routing and permutation: ATen glue around LaunchMoeRoute / LaunchMoePermute.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>

#include "model/ops/cuda_util.h"
#include "model/ops/moe_routing.h"

namespace stepserve {

namespace kc = ::stepserve::cuda;
using namespace ::stepserve::cuda_util;

RouterOutput MoeRouteCuda(const at::Tensor& logits, const at::Tensor& bias, int top_k, bool sigmoid, bool normalize,
                          double scaling) {
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
  RouterOutput out;
  out.indices = at::empty({n, top_k}, lg.options().dtype(at::kLong));
  out.weights = at::empty({n, top_k}, lg.options());
  Check(kc::LaunchMoeRoute(lg.data_ptr<float>(), b.defined() ? b.data_ptr<float>() : nullptr, n,
                           static_cast<int>(lg.size(1)), top_k, sigmoid, normalize, static_cast<float>(scaling),
                           out.indices.data_ptr<int64_t>(), out.weights.data_ptr<float>(), Stream()),
        "LaunchMoeRoute");
  return out;
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

}  // namespace stepserve
