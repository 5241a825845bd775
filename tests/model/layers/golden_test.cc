// fp32 parity with the golden tensors of the independent reference implementation (<= 1e-4).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "engine/step_plan_builder.h"
#include "model/ops/rms_norm.h"
#include "tests/test_util.h"

namespace stepserve {
namespace {

using testing::GoldenTensor;
using testing::MaxAbsDiff;

constexpr double kTol = 1e-4;

class GoldenTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { model_ = testing::LoadTinyModel().release(); }
  static void TearDownTestSuite() { delete model_; }
  static CausalLM* model_;

  at::Tensor SequenceLogits(const at::Tensor& tokens, const CausalLM::LayerObserver& observer = nullptr) {
    return testing::SequenceLogits(*model_, tokens, observer);
  }
};
CausalLM* GoldenTest::model_ = nullptr;

TEST_F(GoldenTest, LogitsOfAllThreeSequences) {
  for (int s = 0; s < 3; ++s) {
    const std::string p = "seq" + std::to_string(s);
    at::Tensor logits = SequenceLogits(GoldenTensor(p + ".tokens"));
    EXPECT_LE(MaxAbsDiff(logits, GoldenTensor(p + ".logits")), kTol) << p;
  }
}

TEST_F(GoldenTest, PerLayerResidualOutputs) {
  std::vector<at::Tensor> outputs;
  SequenceLogits(GoldenTensor("seq0.tokens"), [&](int, const at::Tensor& h) { outputs.push_back(h.clone()); });
  ASSERT_EQ(outputs.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_LE(MaxAbsDiff(outputs[i], GoldenTensor("seq0.layer" + std::to_string(i) + ".output")), kTol)
        << "layer " << i;
  }
}

TEST_F(GoldenTest, RopeTables) {
  at::Tensor positions = at::arange(40, at::TensorOptions().dtype(at::kLong));
  for (int i = 0; i < 5; ++i) {
    at::Tensor angles = positions.to(at::kFloat).unsqueeze(1) *
                        model_->layers()[i]->attention().rotary().inv_freq().unsqueeze(0);
    at::Tensor cos = angles.cos(), sin = angles.sin();
    const std::string p = "rope.layer" + std::to_string(i);
    EXPECT_LE(MaxAbsDiff(cos, GoldenTensor(p + ".cos")), kTol) << p;
    EXPECT_LE(MaxAbsDiff(sin, GoldenTensor(p + ".sin")), kTol) << p;
  }
}

TEST_F(GoldenTest, FinalRmsNorm) {
  at::Tensor out = RmsNorm(GoldenTensor("rmsnorm.input"), model_->weights().Get("model.norm.weight"),
                           model_->config().rms_norm_eps);
  EXPECT_LE(MaxAbsDiff(out, GoldenTensor("rmsnorm.output")), kTol);
}

TEST_F(GoldenTest, AttentionSublayerAtOffsetPositions) {
  at::Tensor x = GoldenTensor("attn.input");
  // One uncached chunk at positions 30.. (the golden positions).
  StepPlanBuilder builder(nullptr);
  const std::vector<int64_t> ids(x.size(0), 0);
  builder.Add(ids.data(), x.size(0), 30, nullptr);
  const StepInputs step = model_->Upload(builder.Build());
  ASSERT_TRUE(at::equal(step.positions, GoldenTensor("attn.positions").to(at::kLong)));
  for (int layer : {0, 1}) {
    at::Tensor out = model_->layers()[layer]->attention().Forward(x, step, nullptr);
    EXPECT_LE(MaxAbsDiff(out, GoldenTensor("attn.layer" + std::to_string(layer) + ".output")), kTol)
        << "layer " << layer;
  }
}

TEST_F(GoldenTest, DenseMlp) {
  at::Tensor out = model_->layers()[0]->mlp()->Forward(GoldenTensor("attn.input"));
  EXPECT_LE(MaxAbsDiff(out, GoldenTensor("mlp.layer0.output")), kTol);
}

// Sorts each row's chosen experts by index (the golden order) and the weights alongside.
std::pair<at::Tensor, at::Tensor> SortedRoute(const RouterOutput& r) {
  auto [idx, order] = r.indices.sort(-1);
  return {idx, r.weights.gather(1, order)};
}

TEST_F(GoldenTest, MoeRoutingAndRoutedOutput) {
  const MoeBlock* moe = model_->layers()[4]->moe();
  ASSERT_NE(moe, nullptr);
  at::Tensor x = GoldenTensor("attn.input");
  RouterOutput route = moe->Route(x);
  auto [idx, w] = SortedRoute(route);
  EXPECT_TRUE(at::equal(idx, GoldenTensor("moe.layer4.router_indices")));
  EXPECT_LE(MaxAbsDiff(w, GoldenTensor("moe.layer4.router_weights")), kTol);
  EXPECT_LE(MaxAbsDiff(moe->RoutedForward(x, route), GoldenTensor("moe.layer4.routed_output")), kTol);
}

TEST_F(GoldenTest, RouterChoicesInsideTheFullModel) {
  // Router decisions of layers 2..4 on seq0, from the post-attention-norm input of each MoE layer.
  std::vector<at::Tensor> outputs;
  SequenceLogits(GoldenTensor("seq0.tokens"), [&](int, const at::Tensor& h) { outputs.push_back(h.clone()); });
  for (int layer = 2; layer <= 4; ++layer) {
    // Recompute the MoE input: h = x + attn(norm(x)), y = post_norm(h); x is the previous layer's output.
    const DecoderLayer& dl = *model_->layers()[layer];
    const int64_t T = outputs[layer - 1].size(0);
    StepPlanBuilder builder(nullptr);
    const std::vector<int64_t> ids(T, 0);
    builder.Add(ids.data(), T, 0, nullptr);
    const StepInputs step = model_->Upload(builder.Build());
    at::Tensor x = outputs[layer - 1];
    at::Tensor h = x + dl.attention().Forward(
                           RmsNorm(x, model_->weights().Get("model.layers." + std::to_string(layer) +
                                                            ".input_layernorm.weight"),
                                   1e-5),
                           step, nullptr);
    at::Tensor y = RmsNorm(h, dl.post_attention_layernorm(), 1e-5);
    auto [idx, w] = SortedRoute(dl.moe()->Route(y));
    const std::string p = "seq0.layer" + std::to_string(layer);
    EXPECT_TRUE(at::equal(idx, GoldenTensor(p + ".router_indices"))) << p;
    EXPECT_LE(MaxAbsDiff(w, GoldenTensor(p + ".router_weights")), kTol) << p;
  }
}

}  // namespace
}  // namespace stepserve
