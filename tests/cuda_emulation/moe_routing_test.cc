// The MoE router and permutation kernels (model/ops/cuda/moe_routing.cu), emulated on the CPU: routing against
// the CPU semantics of MoeBlock::Route (sigmoid or softmax scores, top-k of score + bias, unbiased weights,
// optional normalisation, scaling), the permutation against a direct grouping by expert.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>

#include "tests/cuda_emulation/emulation_test_util.h"

namespace stepserve::emulation_test {
namespace {

// MoeBlock::Route's math on the CPU, for router logits already computed (fp32).
std::pair<at::Tensor, at::Tensor> RouteReference(const at::Tensor& logits, const at::Tensor& bias, int top_k,
                                                 bool sigmoid, bool normalize, double scaling) {
  at::Tensor scores = sigmoid ? at::sigmoid(logits) : at::softmax(logits, -1);
  at::Tensor choice = bias.defined() ? scores + bias : scores;
  at::Tensor idx = std::get<1>(at::topk(choice, top_k, -1));
  at::Tensor w = scores.gather(1, idx);
  if (normalize && top_k > 1) w = w / w.sum(-1, true);
  return {idx, w * scaling};
}

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
  auto [idx_ref, w_ref] = RouteReference(logits, bias, top_k, sigmoid, normalize, scaling);
  at::Tensor idx = at::full({tokens, top_k}, -1, Opt(at::kLong));
  at::Tensor w = at::full({tokens, top_k}, std::nan(""), Opt());
  LaunchCheck check;
  ASSERT_EQ(kc::LaunchMoeRoute(logits.data_ptr<float>(), with_bias ? bias.data_ptr<float>() : nullptr, tokens,
                               experts, top_k, sigmoid, normalize, static_cast<float>(scaling),
                               idx.data_ptr<int64_t>(), w.data_ptr<float>(), nullptr),
            cudaSuccess);
  EXPECT_EQ(check.blocks(), static_cast<uint64_t>((tokens + 3) / 4));
  // Same experts in the same order (descending score + bias; no ties in these random logits).
  EXPECT_TRUE(at::equal(idx, idx_ref));
  EXPECT_REL_CLOSE(w, w_ref, kFp32RelTol, "moe route weights " + what);
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

  // The reference: for each expert in turn, its (token, slot) pairs in ascending flat index.
  const int64_t* ip = idx.data_ptr<int64_t>();
  const float* wp = w.data_ptr<float>();
  std::vector<int32_t> counts_ref(experts, 0), offsets_ref(experts + 1, 0), token_ref, slot_ref;
  std::vector<float> weight_ref;
  for (int e = 0; e < experts; ++e) {
    for (int64_t i = 0; i < n; ++i) {
      if (ip[i] != e) continue;
      ++counts_ref[e];
      token_ref.push_back(static_cast<int32_t>(i / top_k));
      slot_ref.push_back(static_cast<int32_t>(i));
      weight_ref.push_back(wp[i]);
    }
    offsets_ref[e + 1] = offsets_ref[e] + counts_ref[e];
  }
  EXPECT_EQ(counts, counts_ref);
  EXPECT_EQ(offsets, offsets_ref);
  EXPECT_EQ(token, token_ref);
  EXPECT_EQ(slot, slot_ref);
  if (with_weights) {
    EXPECT_EQ(weight, weight_ref);
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
