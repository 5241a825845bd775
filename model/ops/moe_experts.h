// The routed experts of an MoE layer over a permutation (model/ops/moe_routing.h):
// out[t] = sum over t's pairs of weight * down_e(ClampedSwiGlu(gate_up_e(y[t]), limit)), fp32 [N, hidden].
// CPU twin: ATen, one GEMM pair per expert that has tokens; CUDA twin: grouped GEMMs over the permutation,
// with no host round trip (model/ops/cuda/moe_experts.cu).
#pragma once

#include <ATen/core/Tensor.h>

#include "model/ops/moe_routing.h"

namespace stepserve {

// y [N, hidden]; gate_up [experts, 2 * inter, hidden]; down [experts, hidden, inter]; perm with weights.
at::Tensor MoeExperts(const at::Tensor& y, const MoePermutation& perm, const at::Tensor& gate_up,
                      const at::Tensor& down, double limit);
at::Tensor MoeExpertsAten(const at::Tensor& y, const MoePermutation& perm, const at::Tensor& gate_up,
                         const at::Tensor& down, double limit);
at::Tensor MoeExpertsCuda(const at::Tensor& y, const MoePermutation& perm, const at::Tensor& gate_up,
                          const at::Tensor& down, double limit);

}  // namespace stepserve
