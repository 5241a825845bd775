// fp32 parity with the golden tensors of the independent reference implementation (<= 1e-4).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "model/rms_norm.h"
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
    auto [cos, sin] = model_->layers()[i]->attention().rotary().CosSin(positions);
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
  StepAttentionMetadata meta;
  meta.positions = GoldenTensor("attn.positions");
  for (int k = 0; k < kNumAttentionKinds; ++k) {
    SeqAttention s;
    s.num_tokens = x.size(0);
    s.start_pos = 30;
    meta.seqs[k].push_back(s);
  }
  for (int layer : {0, 1}) {
    at::Tensor out = model_->layers()[layer]->attention().Forward(x, meta, nullptr);
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
    StepAttentionMetadata meta;
    const int64_t T = outputs[layer - 1].size(0);
    meta.positions = at::arange(T, at::TensorOptions().dtype(at::kLong));
    for (int k = 0; k < kNumAttentionKinds; ++k) {
      SeqAttention s;
      s.num_tokens = T;
      meta.seqs[k].push_back(s);
    }
    at::Tensor x = outputs[layer - 1];
    at::Tensor h = x + dl.attention().Forward(
                           RmsNorm(x, model_->weights().Get("model.layers." + std::to_string(layer) +
                                                            ".input_layernorm.weight"),
                                   1e-5),
                           meta, nullptr);
    at::Tensor y = RmsNorm(h, dl.post_attention_layernorm(), 1e-5);
    auto [idx, w] = SortedRoute(dl.moe()->Route(y));
    const std::string p = "seq0.layer" + std::to_string(layer);
    EXPECT_TRUE(at::equal(idx, GoldenTensor(p + ".router_indices"))) << p;
    EXPECT_LE(MaxAbsDiff(w, GoldenTensor(p + ".router_weights")), kTol) << p;
  }
}

}  // namespace
}  // namespace stepserve
