// The RMSNorm kernel (model/ops/cuda/rms_norm.cu), emulated on the CPU, against its CPU twins RmsNormAten and
// AddRmsNormAten: plain and with the fused residual add; vectorised (hidden a multiple of 16 bytes, aligned) and
// scalar paths; 128/256/512 threads.
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include <ATen/ATen.h>

#include "model/ops/rms_norm.h"
#include "tests/cuda_emulation/emulation_test_util.h"

namespace stepserve::emulation_test {
namespace {

// bf16 against the CPU op, relative to the output scale. Both compute in fp32 and round the output once; the
// sum of squares is reduced in another order, so an output may round to the neighbouring bf16 value: one bf16
// step, at most 2^-7 of the largest output. Measured: 0 (bit-identical) in every case here.
constexpr double kBf16RelTol = 8e-3;

constexpr double kEps = 1e-6;

// storage dtype, weight dtype, hidden, fused residual add, misaligned (forces the scalar path)
using Case = std::tuple<at::ScalarType, at::ScalarType, int64_t, bool, bool>;

void CheckRmsNorm(const Case& c) {
  const auto [dt, wdt, hidden, fused, misaligned] = c;
  const int64_t rows = 5;
  const std::string what = Name(dt) + " w " + Name(wdt) + " hidden " + std::to_string(hidden) +
                           (fused ? " +residual" : "") + (misaligned ? " misaligned" : "");
  SCOPED_TRACE(what);
  at::Tensor x = (at::randn({rows, hidden}, Opt()) * 3).to(dt);
  at::Tensor residual = at::randn({rows, hidden}, Opt()).to(dt);
  at::Tensor w = (at::randn({hidden}, Opt()) * 0.2).to(wdt);
  // The CPU twins: residual += x (in the storage dtype, in place), then RMSNorm(+1) of the sum.
  at::Tensor res_ref = residual.clone();
  at::Tensor ref = fused ? AddRmsNormAten(x, res_ref, w, kEps) : RmsNormAten(res_ref, w, kEps);

  // Storage for the kernel; one element of offset makes every row pointer misaligned for the vector path.
  const int64_t off = misaligned ? 1 : 0;
  at::Tensor res_buf = at::empty({rows * hidden + off}, Opt(dt));
  at::Tensor out_buf = at::empty({rows * hidden + off}, Opt(dt));
  at::Tensor res = res_buf.narrow(0, off, rows * hidden).view({rows, hidden});
  at::Tensor out = out_buf.narrow(0, off, rows * hidden).view({rows, hidden});
  res.copy_(residual);
  out.fill_(std::nan(""));
  LaunchCheck check;
  ASSERT_EQ(kc::LaunchAddRmsNorm(KernelType(dt), KernelType(wdt), fused ? x.data_ptr() : nullptr, res.data_ptr(),
                                 w.data_ptr(), out.data_ptr(), rows, hidden, static_cast<float>(kEps), nullptr),
            cudaSuccess);
  EXPECT_EQ(check.blocks(), static_cast<uint64_t>(rows));
  const double tol = dt == at::kFloat ? kFp32RelTol : kBf16RelTol;
  EXPECT_REL_CLOSE(out, ref, tol, "rms_norm out " + what);
  if (fused) {
    EXPECT_TRUE(at::equal(res, res_ref)) << "residual sum";  // one rounding of the same fp32 sum
  } else {
    EXPECT_TRUE(at::equal(res, residual)) << "residual untouched";
  }
}

// hidden 64: vector path (fp32 4 per load, bf16 8), 128 threads; 77 and 100 (bf16): scalar path; 64 with
// misaligned pointers: scalar path; 1024/1030: 256 threads; 4096: 512 threads.
TEST(CudaEmulationRmsNorm, Fp32) {
  at::manual_seed(1234);
  for (const Case& c : {Case{at::kFloat, at::kFloat, 64, false, false}, Case{at::kFloat, at::kFloat, 64, true, false},
                        Case{at::kFloat, at::kFloat, 77, false, false}, Case{at::kFloat, at::kFloat, 77, true, false},
                        Case{at::kFloat, at::kFloat, 64, true, true}, Case{at::kFloat, at::kFloat, 1024, true, false},
                        Case{at::kFloat, at::kFloat, 4096, false, false}}) {
    CheckRmsNorm(c);
  }
}

TEST(CudaEmulationRmsNorm, Bf16) {
  at::manual_seed(1234);
  for (const Case& c :
       {Case{at::kBFloat16, at::kBFloat16, 64, false, false}, Case{at::kBFloat16, at::kFloat, 64, true, false},
        Case{at::kBFloat16, at::kBFloat16, 77, true, false}, Case{at::kBFloat16, at::kFloat, 100, false, false},
        Case{at::kBFloat16, at::kBFloat16, 64, true, true}, Case{at::kBFloat16, at::kBFloat16, 1030, true, false},
        Case{at::kBFloat16, at::kFloat, 4096, true, false}}) {
    CheckRmsNorm(c);
  }
}

TEST(CudaEmulationRmsNormArgs, RejectsBadArguments) {
  float buf[8] = {};
  EXPECT_EQ(kc::LaunchAddRmsNorm(kc::DType::kFloat32, kc::DType::kFloat32, nullptr, buf, nullptr, buf, 1, 8, 1e-6f,
                                 nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(kc::LaunchAddRmsNorm(kc::DType::kFloat32, kc::DType::kBFloat16, nullptr, buf, buf, buf + 0, 1, 8, 1e-6f,
                                 nullptr),
            cudaErrorInvalidValue);  // bf16 weights with fp32 storage: no such instantiation
  EXPECT_EQ(kc::LaunchAddRmsNorm(kc::DType::kFloat32, kc::DType::kFloat32, nullptr, buf, buf, buf, 0, 8, 1e-6f,
                                 nullptr),
            cudaSuccess);  // no rows: nothing to do
}

}  // namespace
}  // namespace stepserve::emulation_test
