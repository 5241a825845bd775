// ATen wrapper of LaunchMoeExperts (model/ops/cuda/launchers.h, model/ops/cuda/moe_experts.cu): the routed
// experts of a MoE layer on the GPU from the device permutation, with no host synchronisation (graph
// capturable). Built only with STEPSERVE_CUDA.
#include <cstdint>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "model/ops/cuda/launchers.h"
#include "model/ops/moe_experts.h"

namespace stepserve {
namespace {

namespace kc = ::stepserve::cuda;

void CheckDeviceInt(const at::Tensor& t, const at::Tensor& ref, at::ScalarType type, int64_t numel,
                    const char* name) {
  TORCH_CHECK(t.defined() && t.is_cuda() && t.device() == ref.device(), "MoeExpertsCuda: ", name,
              " must be a tensor on ", ref.device());
  TORCH_CHECK(t.scalar_type() == type, "MoeExpertsCuda: ", name, " must be ", type, ", got ", t.scalar_type());
  TORCH_CHECK(t.numel() == numel, "MoeExpertsCuda: ", name, " must have ", numel, " elements, got ", t.numel());
}

}  // namespace

at::Tensor MoeExpertsCuda(const at::Tensor& y, const MoePermutation& perm, const at::Tensor& gate_up,
                          const at::Tensor& down, double limit) {
  TORCH_CHECK(y.defined() && y.is_cuda() && y.dim() == 2, "MoeExpertsCuda: y must be a CUDA [tokens, hidden] tensor");
  c10::cuda::CUDAGuard guard(y.device());
  TORCH_CHECK(y.scalar_type() == at::kFloat || y.scalar_type() == at::kBFloat16,
              "MoeExpertsCuda: y must be float32 or bfloat16, got ", y.scalar_type());
  const kc::DType dtype = y.scalar_type() == at::kBFloat16 ? kc::DType::kBFloat16 : kc::DType::kFloat32;
  const int64_t tokens = y.size(0), hidden = y.size(1);
  TORCH_CHECK(gate_up.defined() && gate_up.is_cuda() && gate_up.device() == y.device() && gate_up.dim() == 3,
              "MoeExpertsCuda: gate_up must be a [experts, 2 * inter, hidden] tensor on ", y.device());
  TORCH_CHECK(down.defined() && down.is_cuda() && down.device() == y.device() && down.dim() == 3,
              "MoeExpertsCuda: down must be an [experts, hidden, inter] tensor on ", y.device());
  TORCH_CHECK(gate_up.scalar_type() == y.scalar_type() && down.scalar_type() == y.scalar_type(),
              "MoeExpertsCuda: expert weights must have y's dtype ", y.scalar_type(), ", got ",
              gate_up.scalar_type(), " and ", down.scalar_type());
  const int64_t experts = gate_up.size(0);
  const int64_t inter = down.size(2);
  TORCH_CHECK(experts >= 1 && experts <= 1024, "MoeExpertsCuda: 1 to 1024 experts supported, got ", experts);
  TORCH_CHECK(inter >= 1 && gate_up.size(1) == 2 * inter && gate_up.size(2) == hidden,
              "MoeExpertsCuda: gate_up must be [", experts, ", ", 2 * inter, ", ", hidden, "], got ", gate_up.sizes());
  TORCH_CHECK(down.size(0) == experts && down.size(1) == hidden,
              "MoeExpertsCuda: down must be [", experts, ", ", hidden, ", ", inter, "], got ", down.sizes());

  const int64_t pairs = perm.sorted_slot.defined() ? perm.sorted_slot.numel() : 0;
  at::Tensor out = at::empty({tokens, hidden}, y.options().dtype(at::kFloat));
  if (tokens == 0) return out;
  TORCH_CHECK(pairs > 0 && pairs % tokens == 0, "MoeExpertsCuda: the permutation has ", pairs,
              " pairs, not a multiple of the ", tokens, " tokens");
  const int64_t top_k = pairs / tokens;
  TORCH_CHECK(top_k <= 32, "MoeExpertsCuda: top_k <= 32 supported, got ", top_k);
  CheckDeviceInt(perm.offsets, y, at::kInt, experts + 1, "perm.offsets");
  CheckDeviceInt(perm.sorted_slot, y, at::kInt, pairs, "perm.sorted_slot");
  CheckDeviceInt(perm.sorted_weight, y, at::kFloat, pairs, "perm.sorted_weight");

  const at::Tensor yc = y.contiguous();
  const at::Tensor gu = gate_up.contiguous();
  const at::Tensor dn = down.contiguous();
  const at::Tensor offsets = perm.offsets.contiguous();
  const at::Tensor slot = perm.sorted_slot.contiguous();
  const at::Tensor weight = perm.sorted_weight.contiguous();
  const int64_t ws_bytes = kc::MoeExpertsWorkspaceBytes(dtype, tokens, static_cast<int>(top_k),
                                                        static_cast<int>(experts), hidden, inter);
  at::Tensor workspace = at::empty({ws_bytes}, y.options().dtype(at::kByte));
  const cudaError_t err = kc::LaunchMoeExperts(
      dtype, yc.data_ptr(), gu.data_ptr(), dn.data_ptr(), offsets.data_ptr<int32_t>(), slot.data_ptr<int32_t>(),
      weight.data_ptr<float>(), tokens, static_cast<int>(top_k), static_cast<int>(experts), hidden, inter,
      static_cast<float>(limit), workspace.data_ptr(), out.data_ptr<float>(), c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "LaunchMoeExperts: ", cudaGetErrorString(err));
  return out;
}

}  // namespace stepserve
