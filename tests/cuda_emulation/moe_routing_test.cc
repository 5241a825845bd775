// The MoE router and permutation kernels (model/ops/cuda/moe_routing.cu), emulated on the CPU, against their CPU
// twins MoeRouteAten (sigmoid or softmax scores, top-k of score + bias, unbiased weights, optional normalisation,
// scaling) and MoePermuteAten (the (token, slot) pairs grouped by expert, ascending flat index within one).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>

#include "model/ops/moe_routing.h"
#include "tests/cuda_emulation/emulation_test_util.h"

namespace stepserve::emulation_test {
namespace {

// experts, top_k, sigmoid, bias, normalize, scaling
using RouteCase = std::tuple<int, int, bool, bool, bool, double>;

void CheckRoute(const RouteCase& c) {
  const auto [experts, top_k, sigmoid, with_bias, normalize, scaling] = c;
  const int64_t tokens = 37;  // not a multiple of the 4 tokens per block: the last block's extra warps leave
  const std::string what = std::to_string(experts) + " experts top " + std::to_string(top_k) +
                           (sigmoid ? " sigmoid" : " softmax") + (with_bias ? " bias" : "") +
                           (normalize ? " normalize" : "") + " scale " + std::to_string(scaling);
  SCOPED_TRACE(what);
  at::Tensor logits = at::randn({tokens, experts}, Opt()) * 2;
  at::Tensor bias = with_bias ? at::randn({experts}, Opt()) * 0.1 : at::Tensor();
  const RouterOutput ref = MoeRouteAten(logits, bias, top_k, sigmoid, normalize, scaling);
  at::Tensor idx = at::full({tokens, top_k}, -1, Opt(at::kLong));
  at::Tensor w = at::full({tokens, top_k}, std::nan(""), Opt());
  LaunchCheck check;
  ASSERT_EQ(kc::LaunchMoeRoute(logits.data_ptr<float>(), with_bias ? bias.data_ptr<float>() : nullptr, tokens,
                               experts, top_k, sigmoid, normalize, static_cast<float>(scaling),
                               idx.data_ptr<int64_t>(), w.data_ptr<float>(), nullptr),
            cudaSuccess);
  EXPECT_EQ(check.blocks(), static_cast<uint64_t>((tokens + 3) / 4));
  // Same experts in the same order (descending score + bias; no ties in these random logits).
  EXPECT_TRUE(at::equal(idx, ref.indices));
  EXPECT_REL_CLOSE(w, ref.weights, kFp32RelTol, "moe route weights " + what);
}

// Experts 8..1000 (33, 40, 288, 1000: not multiples of 32), top_k 1..8 and 32, with and without bias,
// normalisation and scaling.
TEST(CudaEmulationMoeRouting, Sigmoid) {
  at::manual_seed(7);
  for (const RouteCase& c : {RouteCase{8, 1, true, true, true, 1.0}, RouteCase{40, 2, true, true, false, 1.0},
                             RouteCase{33, 4, true, false, true, 1.0}, RouteCase{288, 8, true, true, true, 2.5},
                             RouteCase{1000, 8, true, true, true, 1.0}, RouteCase{64, 32, true, true, true, 1.0}}) {
    CheckRoute(c);
  }
}

TEST(CudaEmulationMoeRouting, Softmax) {
  at::manual_seed(8);
  for (const RouteCase& c : {RouteCase{8, 3, false, false, true, 1.0}, RouteCase{40, 8, false, true, true, 2.5},
                             RouteCase{288, 5, false, false, false, 1.0}, RouteCase{33, 1, false, true, false, 1.0}}) {
    CheckRoute(c);
  }
}

// tokens, top_k, experts, with weights
using PermuteCase = std::tuple<int64_t, int, int, bool>;

void CheckPermute(const PermuteCase& c) {
  const auto [tokens, top_k, experts, with_weights] = c;
  const std::string what = std::to_string(tokens) + " tokens top " + std::to_string(top_k) + " of " +
                           std::to_string(experts) + (with_weights ? " with weights" : "");
  SCOPED_TRACE(what);
  // Distinct experts per token, as the router picks them.
  at::Tensor idx = tokens > 0 ? std::get<1>(at::topk(at::rand({tokens, experts}, Opt()), top_k, -1))
                              : at::empty({0, top_k}, Opt(at::kLong));
  at::Tensor w = at::rand({tokens, top_k}, Opt());
  const int64_t n = tokens * top_k;
  std::vector<int32_t> counts(experts, -1), offsets(experts + 1, -1), token(n, -1), slot(n, -1);
  std::vector<float> weight(n, -1.0f);
  LaunchCheck check;
  ASSERT_EQ(kc::LaunchMoePermute(idx.data_ptr<int64_t>(), with_weights ? w.data_ptr<float>() : nullptr, tokens,
                                 top_k, experts, counts.data(), offsets.data(), token.data(), slot.data(),
                                 with_weights ? weight.data() : nullptr, nullptr),
            cudaSuccess);
  EXPECT_GE(check.launches(), 1u);

  const MoePermutation ref = MoePermuteAten(idx, with_weights ? w : at::Tensor(), experts);
  auto ints = [](const std::vector<int32_t>& v) {
    return at::tensor(at::ArrayRef<int32_t>(v), at::TensorOptions().dtype(at::kInt));
  };
  EXPECT_TRUE(at::equal(ints(counts), ref.counts));
  EXPECT_TRUE(at::equal(ints(offsets), ref.offsets));
  EXPECT_TRUE(at::equal(ints(token), ref.sorted_token));
  EXPECT_TRUE(at::equal(ints(slot), ref.sorted_slot));
  if (with_weights) {
    EXPECT_TRUE(at::equal(at::tensor(at::ArrayRef<float>(weight), Opt()), ref.sorted_weight));
  } else {
    EXPECT_EQ(weight, std::vector<float>(n, -1.0f));  // not written
  }
}

TEST(CudaEmulationMoePermute, GroupsPairsByExpert) {
  at::manual_seed(11);
  for (const PermuteCase& c : {PermuteCase{50, 8, 40, true}, PermuteCase{300, 1, 8, true},
                               PermuteCase{37, 4, 33, false}, PermuteCase{9, 2, 300, true},
                               PermuteCase{0, 4, 16, true}}) {
    CheckPermute(c);
  }
}

TEST(CudaEmulationMoeArgs, RejectsBadArguments) {
  float logits[8] = {};
  int64_t idx[8];
  float w[8];
  EXPECT_EQ(kc::LaunchMoeRoute(logits, nullptr, 1, 8, 9, true, true, 1.0f, idx, w, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(kc::LaunchMoeRoute(logits, nullptr, 1, 2000, 2, true, true, 1.0f, idx, w, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(kc::LaunchMoeRoute(logits, nullptr, 1, 8, 0, true, true, 1.0f, idx, w, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace stepserve::emulation_test
