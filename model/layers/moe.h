// Step3p5 mixture of experts: fp32 router (sigmoid or softmax; bias only steers the choice), top-k,
// optional normalisation and scaling; tokens are grouped per chosen expert, plus a shared expert. Routing,
// the permutation and the expert GEMMs are ops (model/ops/moe_*.h): on CUDA none of them reads the host.
#pragma once

#include <memory>

#include <ATen/core/Tensor.h>

#include "model/loading/config.h"
#include "model/layers/mlp.h"
#include "model/ops/moe_routing.h"
#include "model/loading/tensor_split.h"
#include "model/loading/weights.h"

namespace stepserve {

class MoeBlock {
 public:
  // `weights` hold this rank's experts, or its slice of every expert (model/loading/weight_sharding.h).
  MoeBlock(const ModelConfig& config, int layer_index, const ModelWeights& weights, const ParallelConfig& parallel);

  RouterOutput Route(const at::Tensor& y) const;
  // The routed experts alone (no shared expert); with expert parallelism, this rank's experts only. On
  // several ranks, the result is this rank's partial sum.
  at::Tensor RoutedForward(const at::Tensor& y, const RouterOutput& route) const;
  // Routed experts plus shared expert.
  at::Tensor Forward(const at::Tensor& y) const;

 private:
  int top_k_;
  bool sigmoid_, norm_weights_;
  double scaling_, limit_;
  at::Tensor router_weight_;  // fp32 [E, hidden]
  at::Tensor router_bias_;    // fp32 [E] or undefined
  int64_t expert_begin_ = 0;  // this rank's first expert (expert parallelism)
  int64_t num_experts_ = 0;   // all experts (the router's)
  at::Tensor gate_up_proj_;   // [E, 2 * I, hidden], packed at load
  at::Tensor down_proj_;      // [E, hidden, I]
  std::unique_ptr<SwiGluMlp> shared_expert_;
};

}  // namespace stepserve
