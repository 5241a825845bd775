// The ATen twin of the routed experts: the per-expert counts come to the host (free on the CPU) and each
// expert with tokens runs its two GEMMs on its rows.
#include <ATen/ATen.h>

#include "model/ops/moe_experts.h"
#include "model/ops/swiglu.h"

namespace stepserve {

at::Tensor MoeExpertsAten(const at::Tensor& y, const MoePermutation& perm, const at::Tensor& gate_up,
                         const at::Tensor& down, double limit) {
  const int64_t num_experts = gate_up.size(0);
  at::Tensor out = at::zeros({y.size(0), y.size(1)}, y.options().dtype(at::kFloat));
  at::Tensor counts = perm.counts.to(at::kCPU, at::kLong);
  at::Tensor token_of = perm.sorted_token.to(at::kLong);
  const int64_t* count = counts.data_ptr<int64_t>();
  int64_t offset = 0;
  for (int64_t e = 0; e < num_experts; ++e) {
    if (count[e] == 0) continue;
    at::Tensor tokens = token_of.narrow(0, offset, count[e]);
    at::Tensor rows = y.index_select(0, tokens);
    at::Tensor h = at::matmul(ClampedSwiGluAten(at::matmul(rows, gate_up[e].t()), limit), down[e].t());
    out.index_add_(0, tokens, h.to(at::kFloat) * perm.sorted_weight.narrow(0, offset, count[e]).unsqueeze(1));
    offset += count[e];
  }
  return out;
}

}  // namespace stepserve
