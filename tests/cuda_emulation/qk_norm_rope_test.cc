// The per-head Q/K RMSNorm + partial RoPE kernel (model/ops/cuda/qk_norm_rope.cu), emulated on the CPU,
// against its CPU twin QkNormRopeAten (inv_freq from RotaryEmbedding), in place on views into a packed QKV
// buffer, including rotary_dim 0 with positions == nullptr (as the wrapper passes it).
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include <ATen/ATen.h>

#include "model/loading/config.h"
#include "model/ops/qk_norm_rope.h"
#include "model/layers/rotary_embedding.h"
#include "tests/cuda_emulation/emulation_test_util.h"

namespace stepserve::emulation_test {
namespace {

// bf16 against the CPU ops, relative to the output scale. The normalised head is rounded to bf16 at the same
// point on both sides; the sum of squares is reduced in another order and cosf/sinf differ from ATen's
// vectorised cos/sin by an ulp, so an element may round to the neighbouring bf16 value: one bf16 step of the
// largest outputs (at most 2^-7 relative to them). Measured: 0 (bit-identical) in every case here.
constexpr double kBf16RelTol = 8e-3;

constexpr double kEps = 1e-5;

// storage dtype, weight dtype, head_dim, rotary_dim
using Case = std::tuple<at::ScalarType, at::ScalarType, int, int>;

void CheckQkNormRope(const Case& c) {
  const auto [dt, wdt, d, rotary_dim] = c;
  const int64_t n = 5, nh = 4, nkv = 2;
  const std::string what = Name(dt) + " w " + Name(wdt) + " head_dim " + std::to_string(d) + " rotary " +
                           std::to_string(rotary_dim);
  SCOPED_TRACE(what);
  LayerConfig layer;
  layer.rope_theta = 5e5;
  layer.rotary_dim = rotary_dim;
  layer.use_rope = rotary_dim > 0;
  RotaryEmbedding rope(layer, RopeScaling{}, at::kCPU);

  at::Tensor qkv = at::randn({n, (nh + 2 * nkv) * d}, Opt()).to(dt);
  at::Tensor qw = (at::randn({d}, Opt()) * 0.1).to(wdt), kw = (at::randn({d}, Opt()) * 0.1).to(wdt);
  at::Tensor positions = at::randint(0, 200000, {n}, Opt(at::kLong));
  positions[0] = 0;
  // The CPU twin, in place on views into its own copy of the packed buffer (rotary_dim 0: no positions).
  at::Tensor ref_buf = qkv.clone();
  at::Tensor q_ref = ref_buf.narrow(1, 0, nh * d).view({n, nh, d});
  at::Tensor k_ref = ref_buf.narrow(1, nh * d, nkv * d).view({n, nkv, d});
  QkNormRopeAten(q_ref, k_ref, qw, kw, rotary_dim > 0 ? positions : at::Tensor(), rope.inv_freq(), rotary_dim, kEps);

  at::Tensor buf = qkv.clone();
  at::Tensor q = buf.narrow(1, 0, nh * d).view({n, nh, d});
  at::Tensor k = buf.narrow(1, nh * d, nkv * d).view({n, nkv, d});
  at::Tensor inv_freq = rope.inv_freq().contiguous();
  LaunchCheck check;
  // rotary_dim 0: no positions, no frequencies (null pointers, as the ATen wrapper passes them).
  ASSERT_EQ(kc::LaunchQkNormRope(KernelType(dt), KernelType(wdt), q.data_ptr(), q.stride(0), k.data_ptr(),
                                 k.stride(0), qw.data_ptr(), kw.data_ptr(),
                                 rotary_dim > 0 ? positions.data_ptr<int64_t>() : nullptr,
                                 rotary_dim > 0 ? inv_freq.data_ptr<float>() : nullptr, n, nh, nkv, d, rotary_dim,
                                 static_cast<float>(kEps), nullptr),
            cudaSuccess);
  EXPECT_GT(check.blocks(), 0u);
  const double tol = dt == at::kFloat ? kFp32RelTol : kBf16RelTol;
  EXPECT_REL_CLOSE(q, q_ref, tol, "qk_norm_rope q " + what);
  EXPECT_REL_CLOSE(k, k_ref, tol, "qk_norm_rope k " + what);
  // V (the rest of the packed row) is untouched.
  EXPECT_TRUE(at::equal(buf.narrow(1, (nh + nkv) * d, nkv * d), qkv.narrow(1, (nh + nkv) * d, nkv * d)));
}

// rotary_dim 0 (positions == nullptr), partial (32 of 64, 64 of 128, 16 of 80) and full; head_dim 64/128/80.
TEST(CudaEmulationQkNormRope, Fp32) {
  at::manual_seed(4321);
  for (const Case& c : {Case{at::kFloat, at::kFloat, 64, 0}, Case{at::kFloat, at::kFloat, 64, 32},
                        Case{at::kFloat, at::kFloat, 64, 64}, Case{at::kFloat, at::kFloat, 128, 64},
                        Case{at::kFloat, at::kFloat, 80, 16}}) {
    CheckQkNormRope(c);
  }
}

TEST(CudaEmulationQkNormRope, Bf16) {
  at::manual_seed(4321);
  for (const Case& c : {Case{at::kBFloat16, at::kBFloat16, 64, 0}, Case{at::kBFloat16, at::kBFloat16, 128, 64},
                        Case{at::kBFloat16, at::kFloat, 64, 64}, Case{at::kBFloat16, at::kFloat, 80, 16}}) {
    CheckQkNormRope(c);
  }
}

TEST(CudaEmulationQkNormRopeArgs, RejectsBadArguments) {
  float buf[64] = {};
  int64_t pos = 0;
  // rotary_dim > 0 needs positions and frequencies.
  EXPECT_EQ(kc::LaunchQkNormRope(kc::DType::kFloat32, kc::DType::kFloat32, buf, 8, buf, 8, buf, buf, nullptr, buf, 1,
                                 1, 1, 8, 8, 1e-5f, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(kc::LaunchQkNormRope(kc::DType::kFloat32, kc::DType::kFloat32, buf, 8, buf, 8, buf, buf, &pos, nullptr,
                                 1, 1, 1, 8, 8, 1e-5f, nullptr),
            cudaErrorInvalidValue);
  // odd head_dim, rotary_dim > head_dim
  EXPECT_EQ(kc::LaunchQkNormRope(kc::DType::kFloat32, kc::DType::kFloat32, buf, 8, buf, 8, buf, buf, &pos, buf, 1, 1,
                                 1, 7, 0, 1e-5f, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(kc::LaunchQkNormRope(kc::DType::kFloat32, kc::DType::kFloat32, buf, 8, buf, 8, buf, buf, &pos, buf, 1, 1,
                                 1, 8, 10, 1e-5f, nullptr),
            cudaErrorInvalidValue);
}

}  // namespace
}  // namespace stepserve::emulation_test
