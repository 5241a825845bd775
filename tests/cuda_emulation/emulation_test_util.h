// Helpers of the emulated-kernel tests: tolerances, error measures, and a check that a launch really ran.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <ATen/ATen.h>

#include "model/ops/cuda/launchers.h"  // the emulated runtime comes with it (tests/cuda_emulation/include)

namespace stepserve::emulation_test {

namespace kc = ::stepserve::cuda;

// fp32 kernels against the fp32 CPU ops: max |got - ref| / max |ref|.
constexpr double kFp32RelTol = 1e-5;

inline at::TensorOptions Opt(at::ScalarType t = at::kFloat) { return at::TensorOptions().dtype(t); }

inline kc::DType KernelType(at::ScalarType t) {
  return t == at::kBFloat16 ? kc::DType::kBFloat16 : kc::DType::kFloat32;
}

inline std::string Name(at::ScalarType t) { return t == at::kBFloat16 ? "bf16" : "fp32"; }

// max |got - ref| relative to the output's scale (max |ref|), both taken in fp64.
inline double RelErr(const at::Tensor& got, const at::Tensor& ref) {
  at::Tensor g = got.to(at::kDouble), r = ref.to(at::kDouble);
  const double scale = std::max(r.abs().max().item<double>(), 1e-30);
  return (g - r).abs().max().item<double>() / scale;
}

// With CUDA_EMU_PRINT_ERRORS=1 the tests print each measured error (how the bf16 tolerances were chosen).
inline void Report(const std::string& what, double err) {
  static const bool print = std::getenv("CUDA_EMU_PRINT_ERRORS") != nullptr;
  if (print) std::printf("[error] %-70s %.3g\n", what.c_str(), err);
}

#define EXPECT_REL_CLOSE(got, ref, tol, what)                                                        \
  do {                                                                                               \
    const double err_ = ::stepserve::emulation_test::RelErr((got), (ref));                           \
    ::stepserve::emulation_test::Report((what), err_);                                               \
    EXPECT_LE(err_, (tol)) << (what);                                                                \
  } while (0)

// Counts the emulated blocks launched while it lives: a launcher that returned cudaSuccess without
// running anything would otherwise pass a test whose outputs happened to be right.
class LaunchCheck {
 public:
  LaunchCheck() : blocks_(cuda_emu::GetStats().blocks), launches_(cuda_emu::GetStats().launches) {}
  uint64_t blocks() const { return cuda_emu::GetStats().blocks - blocks_; }
  uint64_t launches() const { return cuda_emu::GetStats().launches - launches_; }

 private:
  uint64_t blocks_, launches_;
};

}  // namespace stepserve::emulation_test
