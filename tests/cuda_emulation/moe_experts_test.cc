// The routed MoE experts (model/ops/cuda/moe_experts.cu), emulated on the CPU: routing (LaunchMoeRoute) ->
// permutation (LaunchMoePermute) -> LaunchMoeExperts, against an ATen reference on CPU tensors that does what
// MoeBlock::RoutedForward does: for each expert e, rows = y[tokens routed to e],
// h = matmul(ClampedSwiGlu(matmul(rows, gate_up[e].t()), limit), down[e].t()), out.index_add_(0, tokens, h.float() * w).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "model/ops/swiglu.h"
#include "tests/cuda_emulation/emulation_test_util.h"

namespace stepserve::emulation_test {
namespace {

// bf16 tolerances, relative to the output scale (max |ref|); measured with CUDA_EMU_PRINT_ERRORS=1.
//
// Against the CPU op ClampedSwiGlu as LibTorch 1.13 computes it: its vectorised bf16 silu rounds exp(-x),
// 1 + exp(-x) and the quotient each to bf16, while the kernel (like swiglu.cu, CUDA ATen and newer CPU ATen)
// computes silu in fp32 and rounds once, so ~30% of the silu values differ by one bf16 step and that propagates
// through the down projection. Measured max 5.6e-3 over these cases (9.0e-3 with other seeds).
constexpr double kBf16VsCpuOpTol = 2e-2;
// Against the same reference with silu computed in fp32 and rounded once (every other rounding point as on the
// CPU): only the GEMM summation order differs, which now and then moves an intermediate across a bf16 rounding
// boundary (one bf16 step, <= 2^-7 relative). Measured max 8.8e-4 (1.9e-3 with other seeds); most cases are
// bit-exact. fp32 against the CPU op: measured max 5.1e-7.
constexpr double kBf16VsFp32SiluTol = 8e-3;

// ClampedSwiGlu with silu taken in fp32 and rounded once to the storage dtype.
at::Tensor ClampedSwiGluFp32Silu(const at::Tensor& gate_up, double limit) {
  const int64_t inter = gate_up.size(-1) / 2;
  at::Tensor gate = at::silu(gate_up.narrow(-1, 0, inter).to(at::kFloat)).to(gate_up.scalar_type());
  at::Tensor up = gate_up.narrow(-1, inter, inter);
  if (limit > 0) {
    gate = gate.clamp_max(limit);
    up = up.clamp(-limit, limit);
  }
  return gate * up;
}

// MoeBlock::RoutedForward's expert loop from the router output (indices int64 / weights fp32 [tokens, top_k]).
at::Tensor Reference(const at::Tensor& y, const at::Tensor& indices, const at::Tensor& weights,
                     const at::Tensor& gate_up, const at::Tensor& down, double limit, bool fp32_silu) {
  const int64_t top_k = indices.size(1);
  at::Tensor out = at::zeros({y.size(0), y.size(1)}, y.options().dtype(at::kFloat));
  at::Tensor flat = indices.reshape({-1});
  at::Tensor flat_w = weights.reshape({-1});
  for (int64_t e = 0; e < gate_up.size(0); ++e) {
    at::Tensor pos = at::nonzero(flat == e).reshape({-1});  // ascending flat index token * top_k + k
    if (pos.numel() == 0) continue;
    at::Tensor tokens = at::div(pos, top_k, "floor");
    at::Tensor rows = y.index_select(0, tokens);
    at::Tensor gu = at::matmul(rows, gate_up[e].t());
    at::Tensor act = fp32_silu ? ClampedSwiGluFp32Silu(gu, limit) : ClampedSwiGlu(gu, limit);
    at::Tensor h = at::matmul(act, down[e].t());
    out.index_add_(0, tokens, h.to(at::kFloat) * flat_w.index_select(0, pos).unsqueeze(1));
  }
  return out;
}

struct Case {
  int64_t tokens;
  int experts;
  int top_k;
  int64_t hidden;
  int64_t inter;
  float limit;
  at::ScalarType dtype;
  float bias_scale = 0.0f;  // router bias ~ N(0, bias_scale^2): skews the routing (many rows per expert)
};

std::string Describe(const Case& c) {
  return Name(c.dtype) + " tokens " + std::to_string(c.tokens) + " experts " + std::to_string(c.experts) +
         " top " + std::to_string(c.top_k) + " hidden " + std::to_string(c.hidden) + " inter " +
         std::to_string(c.inter) + " limit " + std::to_string(static_cast<int>(c.limit));
}

struct Result {
  cudaError_t err = cudaSuccess;
  at::Tensor out;             // LaunchMoeExperts, fp32 [tokens, hidden]
  at::Tensor ref;             // the reference with the CPU op ClampedSwiGlu
  at::Tensor ref_fp32_silu;   // the reference with silu in fp32, rounded once
  at::Tensor counts;          // int32 [experts]
  uint64_t blocks = 0;        // emulated blocks of LaunchMoeExperts
};

Result RunCase(const Case& c, uint64_t seed) {
  at::manual_seed(seed);
  at::Tensor y = at::randn({c.tokens, c.hidden}, Opt()).to(c.dtype);
  // Pre-activations ~ N(0, 16): limit 7 clamps a fair share of both gate and up.
  at::Tensor gate_up = (at::randn({c.experts, 2 * c.inter, c.hidden}, Opt()) * (4.0 / std::sqrt(c.hidden))).to(c.dtype);
  at::Tensor down = (at::randn({c.experts, c.hidden, c.inter}, Opt()) / std::sqrt(c.inter)).to(c.dtype);
  at::Tensor logits = at::randn({c.tokens, c.experts}, Opt());
  at::Tensor bias = c.bias_scale > 0 ? at::randn({c.experts}, Opt()) * c.bias_scale : at::Tensor();

  Result r;
  const int64_t pairs = c.tokens * c.top_k;
  at::Tensor indices = at::empty({c.tokens, c.top_k}, Opt(at::kLong));
  at::Tensor weights = at::empty({c.tokens, c.top_k}, Opt());
  r.err = kc::LaunchMoeRoute(logits.data_ptr<float>(), bias.defined() ? bias.data_ptr<float>() : nullptr, c.tokens,
                             c.experts, c.top_k, /*sigmoid=*/true, /*normalize=*/true, /*scaling=*/2.5f,
                             indices.data_ptr<int64_t>(), weights.data_ptr<float>(), nullptr);
  if (r.err != cudaSuccess) return r;
  r.counts = at::empty({c.experts}, Opt(at::kInt));
  at::Tensor offsets = at::empty({c.experts + 1}, Opt(at::kInt));
  at::Tensor sorted_token = at::empty({pairs}, Opt(at::kInt));
  at::Tensor sorted_slot = at::empty({pairs}, Opt(at::kInt));
  at::Tensor sorted_weight = at::empty({pairs}, Opt());
  r.err = kc::LaunchMoePermute(indices.data_ptr<int64_t>(), weights.data_ptr<float>(), c.tokens, c.top_k, c.experts,
                               r.counts.data_ptr<int32_t>(), offsets.data_ptr<int32_t>(),
                               sorted_token.data_ptr<int32_t>(), sorted_slot.data_ptr<int32_t>(),
                               sorted_weight.data_ptr<float>(), nullptr);
  if (r.err != cudaSuccess) return r;

  const int64_t ws_bytes =
      kc::MoeExpertsWorkspaceBytes(KernelType(c.dtype), c.tokens, c.top_k, c.experts, c.hidden, c.inter);
  // Poisoned with 0xff bytes (NaN as fp32, as bf16 and -1 as int32) and a NaN output: a read of anything the
  // kernels did not write, or an output element they did not write, shows up as NaN.
  at::Tensor workspace = at::full({ws_bytes}, 0xff, Opt(at::kByte));
  r.out = at::full({c.tokens, c.hidden}, std::nan(""), Opt());
  LaunchCheck check;
  r.err = kc::LaunchMoeExperts(KernelType(c.dtype), y.data_ptr(), gate_up.data_ptr(), down.data_ptr(),
                               offsets.data_ptr<int32_t>(), sorted_slot.data_ptr<int32_t>(),
                               sorted_weight.data_ptr<float>(), c.tokens, c.top_k, c.experts, c.hidden, c.inter,
                               c.limit, workspace.data_ptr(), r.out.data_ptr<float>(), nullptr);
  r.blocks = check.blocks();
  r.ref = Reference(y, indices, weights, gate_up, down, c.limit, /*fp32_silu=*/false);
  r.ref_fp32_silu = Reference(y, indices, weights, gate_up, down, c.limit, /*fp32_silu=*/true);
  return r;
}

// Every (tokens, experts, top_k) combination; the shape and the limit cycle so that each (shape, limit) pair is
// covered three times (the full cross product costs ~6x the emulation time for little more coverage).
// 48/40: one tile each way; 67/33 and 130/71: odd sizes, K and N tails, several N tiles and K steps.
std::vector<Case> Grid(at::ScalarType dtype) {
  const std::pair<int64_t, int64_t> shapes[] = {{48, 40}, {67, 33}, {130, 71}};
  std::vector<Case> cases;
  int i = 0;
  for (int64_t tokens : {1, 5, 37}) {
    for (int experts : {8, 20}) {
      for (int top_k : {1, 2, 4}) {
        const auto [hidden, inter] = shapes[i % 3];
        const float limit = (i / 3) % 2 == 0 ? 0.0f : 7.0f;
        cases.push_back(Case{tokens, experts, top_k, hidden, inter, limit, dtype});
        ++i;
      }
    }
  }
  return cases;
}

void CheckResult(const Case& c, const Result& r) {
  const std::string what = "moe experts " + Describe(c);
  ASSERT_EQ(r.err, cudaSuccess) << what << ": " << cudaGetErrorString(r.err) << " " << cuda_emu::LastFaultMessage();
  EXPECT_GT(r.blocks, 0u) << what;
  ASSERT_FALSE(at::isnan(r.out).any().item<bool>()) << what << ": unwritten output or a read of unwritten workspace";
  if (c.dtype == at::kFloat) {
    EXPECT_REL_CLOSE(r.out, r.ref, kFp32RelTol, what);
  } else {
    EXPECT_REL_CLOSE(r.out, r.ref, kBf16VsCpuOpTol, what + " vs cpu op");
    EXPECT_REL_CLOSE(r.out, r.ref_fp32_silu, kBf16VsFp32SiluTol, what + " vs fp32 silu");
  }
}

void CheckCase(const Case& c, uint64_t seed) { CheckResult(c, RunCase(c, seed)); }

TEST(CudaEmulationMoeExperts, Fp32MatchesCpu) {
  uint64_t seed = 1;
  for (const Case& c : Grid(at::kFloat)) CheckCase(c, seed++);
}

TEST(CudaEmulationMoeExperts, Bf16MatchesCpu) {
  uint64_t seed = 101;
  for (const Case& c : Grid(at::kBFloat16)) CheckCase(c, seed++);
}

TEST(CudaEmulationMoeExperts, ManyRowsPerExpert) {
  // A strong router bias sends most tokens to a few experts: several 64-row m-tiles for one expert.
  for (at::ScalarType dt : {at::kFloat, at::kBFloat16}) {
    const Case c{150, 8, 2, 67, 71, 7.0f, dt, /*bias_scale=*/4.0f};
    const Result r = RunCase(c, 99);
    CheckResult(c, r);
    ASSERT_TRUE(r.counts.defined());
    EXPECT_GT(r.counts.max().item<int>(), 128) << "routing not skewed enough to need three m-tiles";
  }
}

TEST(CudaEmulationMoeExperts, LimitClamps) {
  const Case clamped{37, 8, 4, 48, 40, 7.0f, at::kFloat};
  Case unclamped = clamped;
  unclamped.limit = 0.0f;
  const Result a = RunCase(clamped, 5), b = RunCase(unclamped, 5);
  ASSERT_EQ(a.err, cudaSuccess);
  ASSERT_EQ(b.err, cudaSuccess);
  EXPECT_FALSE(at::equal(a.out, b.out)) << "the limit should change the result at these scales";
  EXPECT_REL_CLOSE(a.out, a.ref, kFp32RelTol, "moe experts limit 7");
  EXPECT_REL_CLOSE(b.out, b.ref, kFp32RelTol, "moe experts no limit");
}

TEST(CudaEmulationMoeExperts, Deterministic) {
  for (at::ScalarType dt : {at::kFloat, at::kBFloat16}) {
    const Case c{37, 20, 4, 67, 33, 7.0f, dt};
    const Result a = RunCase(c, 7), b = RunCase(c, 7);
    ASSERT_EQ(a.err, cudaSuccess);
    ASSERT_EQ(b.err, cudaSuccess);
    EXPECT_TRUE(at::equal(a.out, b.out)) << Describe(c);
  }
}

TEST(CudaEmulationMoeExperts, EmptyAndInvalid) {
  EXPECT_EQ(kc::LaunchMoeExperts(kc::DType::kFloat32, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 2, 8,
                                 48, 40, 0.0f, nullptr, nullptr, nullptr),
            cudaSuccess);
  float buf[4] = {};
  int32_t ibuf[4] = {};
  auto launch = [&](int top_k, int experts, int64_t hidden, int64_t inter) {
    return kc::LaunchMoeExperts(kc::DType::kFloat32, buf, buf, buf, ibuf, ibuf, buf, 1, top_k, experts, hidden,
                                inter, 0.0f, buf, buf, nullptr);
  };
  LaunchCheck check;
  EXPECT_EQ(launch(0, 8, 48, 40), cudaErrorInvalidValue);
  EXPECT_EQ(launch(33, 64, 48, 40), cudaErrorInvalidValue);
  EXPECT_EQ(launch(2, 0, 48, 40), cudaErrorInvalidValue);
  EXPECT_EQ(launch(2, 1025, 48, 40), cudaErrorInvalidValue);
  EXPECT_EQ(launch(2, 8, 0, 40), cudaErrorInvalidValue);
  EXPECT_EQ(launch(2, 8, 48, 0), cudaErrorInvalidValue);
  EXPECT_EQ(kc::LaunchMoeExperts(kc::DType::kFloat32, nullptr, buf, buf, ibuf, ibuf, buf, 1, 2, 8, 48, 40, 0.0f, buf,
                                 buf, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(check.launches(), 0u);
}

}  // namespace
}  // namespace stepserve::emulation_test
