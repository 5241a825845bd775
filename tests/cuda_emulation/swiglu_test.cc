// The clamped SwiGLU kernel (model/ops/cuda/swiglu.cu), emulated on the CPU, against its CPU twin ClampedSwiGluAten,
// with and without the limit.
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include <ATen/ATen.h>

#include "model/ops/swiglu.h"
#include "tests/cuda_emulation/emulation_test_util.h"

namespace stepserve::emulation_test {
namespace {

// bf16 against the CPU op, relative to the output scale. The kernel computes silu(gate) in fp32 and rounds it
// to bf16 once; LibTorch 1.13's CPU silu on a bf16 tensor rounds exp(-x), 1 + exp(-x) and the quotient to bf16
// one after the other (e.g. gate 1.289: 1.015625 there, 1.0078125 correctly rounded, in the kernel), so the
// two silu values can be a bf16 step apart and the products two (2^-6 relative to an element at most).
// Measured max 1.08e-2 (limit 1.2, where the output scale is only ~1.45), 5.2e-3 (limit 7), 2.5e-3 (no limit).
constexpr double kBf16RelTol = 2e-2;

// dtype, rows, inter, limit
using Case = std::tuple<at::ScalarType, int64_t, int64_t, double>;

void CheckSwiGlu(const Case& c) {
  const auto [dt, rows, inter, limit] = c;
  const std::string what = Name(dt) + " rows " + std::to_string(rows) + " inter " + std::to_string(inter) +
                           " limit " + std::to_string(limit);
  SCOPED_TRACE(what);
  at::Tensor gu = (at::randn({rows, 2 * inter}, Opt()) * 4).to(dt);
  at::Tensor ref = ClampedSwiGluAten(gu, limit);
  at::Tensor out = at::full({rows, inter}, std::nan(""), Opt(dt));
  LaunchCheck check;
  ASSERT_EQ(kc::LaunchClampedSwiGlu(KernelType(dt), gu.data_ptr(), out.data_ptr(), rows, inter,
                                    static_cast<float>(limit), nullptr),
            cudaSuccess);
  EXPECT_GT(check.blocks(), 0u);
  EXPECT_REL_CLOSE(out, ref, dt == at::kFloat ? kFp32RelTol : kBf16RelTol, "swiglu " + what);
  if (limit > 0) {  // |silu| and |up| are clamped to the limit as stored in the dtype; one rounding of the product
    const double lim = at::scalar_tensor(limit, Opt()).to(dt).item<double>();
    EXPECT_LE(out.to(at::kFloat).abs().max().item<float>(), lim * lim * (1.0 + 1.0 / 128));
  }
}

TEST(CudaEmulationSwiGlu, Fp32) {
  at::manual_seed(99);
  for (const Case& c : {Case{at::kFloat, 13, 300, 0.0}, Case{at::kFloat, 13, 300, 7.0}, Case{at::kFloat, 3, 1, 1.2}}) {
    CheckSwiGlu(c);
  }
}

TEST(CudaEmulationSwiGlu, Bf16) {
  at::manual_seed(99);
  for (const Case& c :
       {Case{at::kBFloat16, 13, 300, 0.0}, Case{at::kBFloat16, 13, 300, 1.2}, Case{at::kBFloat16, 7, 77, 7.0}}) {
    CheckSwiGlu(c);
  }
}

TEST(CudaEmulationSwiGluArgs, EmptyAndInvalid) {
  float buf[4] = {};
  EXPECT_EQ(kc::LaunchClampedSwiGlu(kc::DType::kFloat32, nullptr, nullptr, 0, 16, 0.0f, nullptr), cudaSuccess);
  EXPECT_EQ(kc::LaunchClampedSwiGlu(kc::DType::kFloat32, nullptr, buf, 1, 2, 0.0f, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(kc::LaunchClampedSwiGlu(kc::DType::kFloat32, buf, buf, -1, 2, 0.0f, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace stepserve::emulation_test
