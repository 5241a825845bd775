// Each op's CUDA twin against its ATen twin on the GPU (fp32 to 1e-5 of the output scale, bf16 to 2e-2 of
// it: a few bf16 roundings of 2^-8 each), and the tiny golden model on the GPU. The same kernels run in CI
// through the CPU emulation (tests/cuda_emulation/); this is the real-device counterpart. Built only with
// STEPSERVE_CUDA; every test skips without a CUDA device. scripts/cuda-device-check.sh runs it one test per
// process with CUDA_LAUNCH_BLOCKING=1.
#include <gtest/gtest.h>

#include <vector>

#include <ATen/ATen.h>

#include "model/layers/causal_lm.h"
#include "model/ops/moe_experts.h"
#include "model/ops/moe_routing.h"
#include "model/ops/paged_attention.h"
#include "model/ops/qk_norm_rope.h"
#include "model/ops/rms_norm.h"
#include "model/ops/swiglu.h"
#include "model/layers/step_inputs.h"
#include "tests/test_util.h"

namespace stepserve {
namespace {

at::Device Gpu() { return at::Device(at::kCUDA, 0); }
at::TensorOptions Cpu(at::ScalarType t = at::kFloat) { return at::TensorOptions().dtype(t); }

// Largest difference relative to the reference's largest magnitude (relative, never absolute).
double RelDiff(const at::Tensor& gpu, const at::Tensor& ref) {
  at::Tensor r = ref.to(at::kCPU, at::kDouble);
  const double scale = std::max(1e-6, r.abs().max().item<double>());
  return (gpu.to(at::kCPU, at::kDouble) - r).abs().max().item<double>() / scale;
}
double Tol(at::ScalarType t) { return t == at::kFloat ? 1e-5 : 2e-2; }

class CudaKernelsTest : public ::testing::TestWithParam<at::ScalarType> {
 protected:
  void SetUp() override {
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
    at::manual_seed(1234);
  }
};

TEST_P(CudaKernelsTest, RmsNormAndFusedAdd) {
  const auto dt = GetParam();
  for (int64_t hidden : {64, 100, 4096}) {  // 100: the unvectorised path
    at::Tensor x = (at::randn({7, hidden}) * 3).to(dt).to(Gpu());
    at::Tensor w = (at::randn({hidden}) * 0.1).to(dt).to(Gpu());
    EXPECT_LE(RelDiff(RmsNormCuda(x, w, 1e-5), RmsNormAten(x, w, 1e-5)), Tol(dt)) << hidden;
    at::Tensor r1 = (at::randn({7, hidden}) * 2).to(dt).to(Gpu()), r2 = r1.clone();
    at::Tensor y1 = AddRmsNormCuda(x, r1, w, 1e-5), y2 = AddRmsNormAten(x, r2, w, 1e-5);
    EXPECT_LE(RelDiff(r1, r2), Tol(dt));
    EXPECT_LE(RelDiff(y1, y2), Tol(dt));
  }
}

TEST_P(CudaKernelsTest, QkNormRopeIncludingNoRotaryWithoutPositions) {
  const auto dt = GetParam();
  for (int rotary : {0, 32, 64}) {
    at::Tensor qkv = at::randn({9, (8 + 2 * 2) * 64}).to(dt).to(Gpu());
    at::Tensor qw = (at::randn({64}) * 0.1).to(dt).to(Gpu()), kw = (at::randn({64}) * 0.1).to(dt).to(Gpu());
    at::Tensor pos = rotary > 0 ? at::arange(100, 109, Cpu(at::kLong)).to(Gpu()) : at::Tensor();
    at::Tensor freq = rotary > 0 ? at::rand({rotary / 2}).to(Gpu()) : at::Tensor();
    at::Tensor a = qkv.clone(), b = qkv.clone();
    at::Tensor qa = a.narrow(1, 0, 8 * 64).view({9, 8, 64}), ka = a.narrow(1, 8 * 64, 2 * 64).view({9, 2, 64});
    at::Tensor qb = b.narrow(1, 0, 8 * 64).view({9, 8, 64}), kb = b.narrow(1, 8 * 64, 2 * 64).view({9, 2, 64});
    QkNormRopeCuda(qa, ka, qw, kw, pos, freq, rotary, 1e-6);
    QkNormRopeAten(qb, kb, qw, kw, pos, freq, rotary, 1e-6);
    EXPECT_LE(RelDiff(a, b), Tol(dt)) << "rotary " << rotary;
  }
}

TEST_P(CudaKernelsTest, ClampedSwiGlu) {
  const auto dt = GetParam();
  at::Tensor gu = (at::randn({5, 2 * 96}) * 4).to(dt).to(Gpu());
  for (double limit : {0.0, 7.0}) EXPECT_LE(RelDiff(ClampedSwiGluCuda(gu, limit), ClampedSwiGluAten(gu, limit)), Tol(dt));
}

TEST_P(CudaKernelsTest, MoeRoutePermuteAndExperts) {
  const auto dt = GetParam();
  const int experts = 20, top_k = 4, hidden = 48, inter = 40;
  at::Tensor logits = at::randn({37, experts}).to(Gpu());
  at::Tensor bias = (at::randn({experts}) * 0.1).to(Gpu());
  RouterOutput a = MoeRouteCuda(logits, bias, top_k, true, true, 2.5);
  RouterOutput b = MoeRouteAten(logits, bias, top_k, true, true, 2.5);
  EXPECT_TRUE(at::equal(a.indices, b.indices));
  EXPECT_LE(RelDiff(a.weights, b.weights), 1e-6);
  MoePermutation pa = MoePermuteCuda(a.indices, a.weights, experts);
  MoePermutation pb = MoePermuteAten(b.indices, b.weights, experts);
  for (auto [x, y] : {std::pair{pa.counts, pb.counts}, {pa.offsets, pb.offsets}, {pa.sorted_token, pb.sorted_token},
                      {pa.sorted_slot, pb.sorted_slot}}) {
    EXPECT_TRUE(at::equal(x.cpu(), y.cpu()));
  }
  at::Tensor y = at::randn({37, hidden}).to(dt).to(Gpu());
  at::Tensor gate_up = (at::randn({experts, 2 * inter, hidden}) * 0.2).to(dt).to(Gpu());
  at::Tensor down = (at::randn({experts, hidden, inter}) * 0.2).to(dt).to(Gpu());
  EXPECT_LE(RelDiff(MoeExpertsCuda(y, pa, gate_up, down, 7.0), MoeExpertsAten(y, pb, gate_up, down, 7.0)), Tol(dt));
}

// Decode through block tables: GQA, a sliding window whose oldest blocks are already returned (-1 in the
// table), split-K on a long context, the gate fused; against the ATen twin on the same metadata.
TEST_P(CudaKernelsTest, PagedDecodeAttentionThroughBlockTables) {
  const auto dt = GetParam();
  const int heads = 16, kv_heads = 2, d = 128, B = 16;
  for (int window : {0, 64}) {
    StepPlan plan;
    plan.block_size = B;
    const std::vector<int64_t> contexts = {1, 40, 300, 2000};
    std::vector<int32_t> tables;
    int32_t next_block = 0;
    const int64_t max_blocks = (2000 + B) / B + 1;
    for (int64_t ctx : contexts) {
      plan.token_ids.push_back(1);
      plan.positions.push_back(ctx);
      plan.chunks.push_back({1, ctx, true});
      const int64_t first = window > 0 ? std::max<int64_t>(0, ctx - window + 1) : 0;
      for (int64_t b = 0; b < max_blocks; ++b) {
        const bool live = b * B + B > first && b * B <= ctx;
        tables.push_back(live ? next_block++ : -1);
      }
    }
    for (auto& k : plan.kinds) {
      k.max_blocks = static_cast<int32_t>(max_blocks);
      k.block_tables = tables;
      k.slot_mapping.assign(contexts.size(), -1);
    }
    const StepInputs step = UploadStepPlan(plan, window > 0 ? window : 4096, Gpu());
    const AttentionMetadata& meta = step.attention[window > 0 ? 1 : 0];
    at::Tensor pool_k = at::randn({next_block * B, kv_heads, d}).to(dt).to(Gpu());
    at::Tensor pool_v = at::randn({next_block * B, kv_heads, d}).to(dt).to(Gpu());
    const int64_t n = static_cast<int64_t>(contexts.size());
    at::Tensor q = at::randn({n, heads, d}).to(dt).to(Gpu());
    at::Tensor k = at::randn({n, kv_heads, d}).to(dt).to(Gpu()), v = at::randn({n, kv_heads, d}).to(dt).to(Gpu());
    at::Tensor gate = at::randn({n, heads}).to(dt).to(Gpu());
    const AttentionShape shape{heads, kv_heads, window, 1.0 / std::sqrt(static_cast<double>(d))};
    AttentionMetadata aten = meta;  // the ATen twin gathers by slot
    if (!aten.read_slots.defined()) {
      // Build the slots the twin reads from the same tables on the host.
      std::vector<int64_t> slots;
      for (size_t s = 0; s < contexts.size(); ++s) {
        for (int64_t p = aten.seqs[s].first_cached_pos; p < aten.seqs[s].start_pos; ++p) {
          slots.push_back(tables[s * max_blocks + p / B] * B + p % B);
        }
      }
      aten.read_slots = at::tensor(slots, Cpu(at::kLong)).to(Gpu());
    }
    at::Tensor out = PagedAttentionCuda(q, k, v, pool_k, pool_v, meta, shape, gate);
    at::Tensor ref = PagedAttentionAten(q, k, v, pool_k, pool_v, aten, shape, gate);
    EXPECT_LE(RelDiff(out, ref), Tol(dt)) << "window " << window;
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaKernelsTest, ::testing::Values(at::kFloat, at::kBFloat16),
                         [](const ::testing::TestParamInfo<at::ScalarType>& info) {
                           return info.param == at::kFloat ? std::string("fp32") : std::string("bf16");
                         });

TEST(CudaModelTest, TinyGoldenLogitsOnTheGpu) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  auto model = testing::LoadTinyModel(at::kFloat, Gpu());
  for (int s = 0; s < 3; ++s) {
    const std::string p = "seq" + std::to_string(s);
    at::Tensor logits = testing::SequenceLogits(*model, testing::GoldenTensor(p + ".tokens"));
    EXPECT_LE(testing::MaxAbsDiff(logits.cpu(), testing::GoldenTensor(p + ".logits")), 1e-4) << p;
  }
}

}  // namespace
}  // namespace stepserve
