// MoE routing (fp32 scores: sigmoid or softmax; the bias steers only the choice; top-k; optional
// normalisation; scaling) and the permutation that groups the (token, slot) pairs by expert for the
// expert GEMMs. CPU twin: ATen; CUDA twin: model/ops/cuda/moe_routing.cu (no host round trip).
#pragma once

#include <ATen/core/Tensor.h>

namespace stepserve {

struct RouterOutput {
  at::Tensor indices;  // int64 [N, top_k], descending by score + bias
  at::Tensor weights;  // fp32 [N, top_k], final (normalised and scaled)
};

// The (token, slot) pairs grouped by expert: expert-major, ascending flat index token * top_k + slot within
// an expert. All on the routing's device.
struct MoePermutation {
  at::Tensor counts;         // int32 [experts]
  at::Tensor offsets;        // int32 [experts + 1]
  at::Tensor sorted_token;   // int32 [N * top_k]: token row of each permuted pair
  at::Tensor sorted_slot;    // int32 [N * top_k]: flat index token * top_k + k
  at::Tensor sorted_weight;  // fp32 [N * top_k] (undefined when no weights were given)
};

// logits: fp32 [N, experts] (the router GEMM); bias fp32 [experts] or undefined.
RouterOutput MoeRoute(const at::Tensor& logits, const at::Tensor& bias, int top_k, bool sigmoid, bool normalize,
                      double scaling);
MoePermutation MoePermute(const at::Tensor& indices, const at::Tensor& weights, int num_experts);

RouterOutput MoeRouteAten(const at::Tensor& logits, const at::Tensor& bias, int top_k, bool sigmoid, bool normalize,
                         double scaling);
MoePermutation MoePermuteAten(const at::Tensor& indices, const at::Tensor& weights, int num_experts);
RouterOutput MoeRouteCuda(const at::Tensor& logits, const at::Tensor& bias, int top_k, bool sigmoid, bool normalize,
                          double scaling);
MoePermutation MoePermuteCuda(const at::Tensor& indices, const at::Tensor& weights, int num_experts);

}  // namespace stepserve
