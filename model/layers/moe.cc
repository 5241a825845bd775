#include "model/layers/moe.h"

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "model/ops/moe_experts.h"

namespace stepserve {

MoeBlock::MoeBlock(const ModelConfig& config, int layer_index, const ModelWeights& weights,
                   const ParallelConfig& parallel)
    : top_k_(config.moe_top_k),
      sigmoid_(config.router_sigmoid),
      norm_weights_(config.norm_expert_weight),
      scaling_(config.moe_router_scaling_factor),
      limit_(config.layers[layer_index].swiglu_limit),
      expert_begin_(ExpertRange(config, parallel).begin),
      num_experts_(config.moe_num_experts) {
  const std::string p = absl::StrCat("model.layers.", layer_index, ".");
  router_weight_ = weights.Get(p + "moe.gate.weight").to(at::kFloat);
  if (config.use_moe_router_bias) router_bias_ = weights.Get(p + "moe.router_bias").to(at::kFloat);
  gate_up_proj_ = at::cat({weights.Get(p + "moe.gate_proj.weight"), weights.Get(p + "moe.up_proj.weight")}, 1)
                      .contiguous();
  down_proj_ = weights.Get(p + "moe.down_proj.weight").contiguous();
  if (config.share_expert_dim > 0) {
    shared_expert_ = std::make_unique<SwiGluMlp>(weights, p + "share_expert.",
                                                 config.layers[layer_index].swiglu_limit_shared);
  }
}

RouterOutput MoeBlock::Route(const at::Tensor& y) const {
  at::Tensor logits = at::matmul(y.to(at::kFloat), router_weight_.t());
  return MoeRoute(logits, router_bias_, top_k_, sigmoid_, norm_weights_, scaling_);
}

at::Tensor MoeBlock::RoutedForward(const at::Tensor& y, const RouterOutput& route) const {
  const int64_t local = gate_up_proj_.size(0);
  if (local == num_experts_) {
    const MoePermutation perm = MoePermute(route.indices, route.weights, static_cast<int>(local));
    return MoeExperts(y, perm, gate_up_proj_, down_proj_, limit_).to(y.scalar_type());
  }
  // Expert parallelism: pairs routed to other ranks' experts go to one extra bucket past this rank's
  // experts, which the permutation then leaves out: MoeExperts computes only this rank's pairs, and the
  // others contribute zero (all on the device, no host round trip).
  at::Tensor ids = route.indices - expert_begin_;
  ids = ids.masked_fill((ids < 0).logical_or(ids >= local), local);
  MoePermutation perm = MoePermute(ids, route.weights, static_cast<int>(local + 1));
  perm.counts = perm.counts.narrow(0, 0, local);
  perm.offsets = perm.offsets.narrow(0, 0, local + 1);
  return MoeExperts(y, perm, gate_up_proj_, down_proj_, limit_).to(y.scalar_type());
}

at::Tensor MoeBlock::Forward(const at::Tensor& y) const {
  at::Tensor routed = RoutedForward(y, Route(y));
  if (shared_expert_) routed = routed + shared_expert_->Forward(y);
  return routed;
}

}  // namespace stepserve
