#include "model/moe.h"

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"

#ifdef STEPSERVE_CUDA
#include "model/kernels/cuda/cuda_ops.h"
#endif

namespace stepserve {

MoeBlock::MoeBlock(const ModelConfig& config, int layer_index, const ModelWeights& weights)
    : top_k_(config.moe_top_k),
      sigmoid_(config.router_sigmoid),
      norm_weights_(config.norm_expert_weight),
      scaling_(config.moe_router_scaling_factor),
      limit_(config.layers[layer_index].swiglu_limit) {
  const std::string p = absl::StrCat("model.layers.", layer_index, ".");
  router_weight_ = weights.Get(p + "moe.gate.weight").to(at::kFloat);
  if (config.use_moe_router_bias) router_bias_ = weights.Get(p + "moe.router_bias").to(at::kFloat);
  gate_up_proj_ = at::cat({weights.Get(p + "moe.gate_proj.weight"), weights.Get(p + "moe.up_proj.weight")}, 1)
                      .contiguous();
  down_proj_ = weights.Get(p + "moe.down_proj.weight");
  if (config.share_expert_dim > 0) {
    shared_expert_ = std::make_unique<SwiGluMlp>(weights, p + "share_expert.",
                                                 config.layers[layer_index].swiglu_limit_shared);
  }
}

RouterOutput MoeBlock::Route(const at::Tensor& y) const {
  at::Tensor logits = at::matmul(y.to(at::kFloat), router_weight_.t());
#ifdef STEPSERVE_CUDA
  if (logits.is_cuda()) {
    auto [indices, weights] = MoeRouteCuda(logits, router_bias_, top_k_, sigmoid_, norm_weights_, scaling_);
    return RouterOutput{indices, weights};
  }
#endif
  at::Tensor scores = sigmoid_ ? at::sigmoid(logits) : at::softmax(logits, -1);
  at::Tensor choice = router_bias_.defined() ? scores + router_bias_ : scores;
  RouterOutput out;
  out.indices = std::get<1>(at::topk(choice, top_k_, -1));
  out.weights = scores.gather(1, out.indices);
  if (norm_weights_ && top_k_ > 1) out.weights = out.weights / out.weights.sum(-1, true);
  out.weights = out.weights * scaling_;
  return out;
}

at::Tensor MoeBlock::RoutedForward(const at::Tensor& y, const RouterOutput& route) const {
  const int64_t num_experts = gate_up_proj_.size(0);
  at::Tensor out = at::zeros({y.size(0), y.size(1)}, y.options().dtype(at::kFloat));
  // Group (token, slot) pairs by expert: sort the flat expert ids once, then walk the runs.
  at::Tensor flat = route.indices.reshape({-1});
  at::Tensor order = at::argsort(flat);
  at::Tensor counts = at::bincount(flat, /*weights=*/{}, num_experts).to(at::kCPU);
  at::Tensor token_of = at::div(order, top_k_, "floor");
  at::Tensor weight_of = route.weights.reshape({-1}).index_select(0, order);
  const int64_t* count = counts.data_ptr<int64_t>();
  int64_t offset = 0;
  for (int64_t e = 0; e < num_experts; ++e) {
    if (count[e] == 0) continue;
    at::Tensor tokens = token_of.narrow(0, offset, count[e]);
    at::Tensor rows = y.index_select(0, tokens);
    at::Tensor h = at::matmul(ClampedSwiGlu(at::matmul(rows, gate_up_proj_[e].t()), limit_), down_proj_[e].t());
    out.index_add_(0, tokens, h.to(at::kFloat) * weight_of.narrow(0, offset, count[e]).unsqueeze(1));
    offset += count[e];
  }
  return out.to(y.scalar_type());
}

at::Tensor MoeBlock::Forward(const at::Tensor& y) const {
  at::Tensor routed = RoutedForward(y, Route(y));
  if (shared_expert_) routed = routed + shared_expert_->Forward(y);
  return routed;
}

}  // namespace stepserve
