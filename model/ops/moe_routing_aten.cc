// The ATen twins of MoE routing and permutation.
#include <ATen/ATen.h>

#include "model/ops/moe_routing.h"

namespace stepserve {

RouterOutput MoeRouteAten(const at::Tensor& logits, const at::Tensor& bias, int top_k, bool sigmoid, bool normalize,
                         double scaling) {
  at::Tensor scores = sigmoid ? at::sigmoid(logits) : at::softmax(logits, -1);
  at::Tensor choice = bias.defined() ? scores + bias : scores;
  RouterOutput out;
  out.indices = std::get<1>(at::topk(choice, top_k, -1));
  out.weights = scores.gather(1, out.indices);
  if (normalize && top_k > 1) out.weights = out.weights / out.weights.sum(-1, true);
  out.weights = out.weights * scaling;
  return out;
}

MoePermutation MoePermuteAten(const at::Tensor& indices, const at::Tensor& weights, int num_experts) {
  const int64_t top_k = indices.size(1);
  at::Tensor flat = indices.reshape({-1});
  // A stable sort keeps ascending flat indices within each expert.
  at::Tensor order = std::get<1>(at::sort(flat, /*stable=*/true, /*dim=*/0, /*descending=*/false));
  MoePermutation p;
  at::Tensor counts = at::bincount(flat, /*weights=*/{}, num_experts);
  p.counts = counts.to(at::kInt);
  p.offsets = at::cat({at::zeros({1}, counts.options()), at::cumsum(counts, 0)}).to(at::kInt);
  p.sorted_slot = order.to(at::kInt);
  p.sorted_token = at::div(order, top_k, "floor").to(at::kInt);
  if (weights.defined()) p.sorted_weight = weights.reshape({-1}).to(at::kFloat).index_select(0, order);
  return p;
}

}  // namespace stepserve
