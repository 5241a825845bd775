// Device dispatch of MoE routing and permutation.
#include "model/ops/moe_routing.h"

namespace stepserve {

RouterOutput MoeRoute(const at::Tensor& logits, const at::Tensor& bias, int top_k, bool sigmoid, bool normalize,
                      double scaling) {
#ifdef STEPSERVE_CUDA
  if (logits.is_cuda()) return MoeRouteCuda(logits, bias, top_k, sigmoid, normalize, scaling);
#endif
  return MoeRouteAten(logits, bias, top_k, sigmoid, normalize, scaling);
}

MoePermutation MoePermute(const at::Tensor& indices, const at::Tensor& weights, int num_experts) {
#ifdef STEPSERVE_CUDA
  if (indices.is_cuda()) return MoePermuteCuda(indices, weights, num_experts);
#endif
  return MoePermuteAten(indices, weights, num_experts);
}

}  // namespace stepserve
