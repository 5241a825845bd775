// Models with one attention kind only (issue #18): tests/data/tiny-full (no layer_types: every layer full
// attention) and tests/data/tiny-sliding (every layer sliding, window 8), golden tensors from the
// independent reference. Their logits and per-layer outputs, one-shot and through the paged cache token by
// token (the cached path used to build metadata for the kind that has no layers: "negative dimension -1"
// for full-only, an out-of-range block-table read for sliding-only), and through stepserve-forward.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_join.h"
#include "engine/forward_batch.h"
#include "engine/kv_cache.h"
#include "model/loading/safetensors.h"
#include "tests/test_util.h"

namespace stepserve {
namespace {

constexpr double kTol = 1e-4;

class OneAttentionKindTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::string Dir() const { return testing::CheckpointDir(GetParam()); }
  at::Tensor Golden(const std::string& name) const { return testing::GoldenTensorIn(Dir(), name); }
};

TEST_P(OneAttentionKindTest, TheConfigHasOneKind) {
  std::unique_ptr<CausalLM> model = testing::LoadCheckpointModel(Dir());
  const bool full = GetParam() == "tiny-full";
  EXPECT_EQ(model->config().HasAttentionKind(AttentionKind::kFull), full);
  EXPECT_EQ(model->config().HasAttentionKind(AttentionKind::kSliding), !full);
}

TEST_P(OneAttentionKindTest, LogitsAndLayerOutputsMatchTheGolden) {
  std::unique_ptr<CausalLM> model = testing::LoadCheckpointModel(Dir());
  for (int s = 0; s < 2; ++s) {
    const std::string p = "seq" + std::to_string(s);
    std::vector<at::Tensor> outputs;
    at::Tensor logits = testing::SequenceLogits(*model, Golden(p + ".tokens"),
                                                [&](int, const at::Tensor& h) { outputs.push_back(h.clone()); });
    EXPECT_LE(testing::MaxAbsDiff(logits, Golden(p + ".logits")), kTol) << p;
    if (s == 0) {
      ASSERT_EQ(outputs.size(), 5u);
      for (int i = 0; i < 5; ++i) {
        EXPECT_LE(testing::MaxAbsDiff(outputs[i], Golden("seq0.layer" + std::to_string(i) + ".output")), kTol)
            << "layer " << i;
      }
    }
  }
}

// A prefill chunk, then one token per step through a paged cache of 4-token blocks (37 tokens: past the
// window of 8 and over many blocks), then a second sequence batched with it: every row as the golden.
TEST_P(OneAttentionKindTest, CachedDecodeStepsMatchTheGolden) {
  std::unique_ptr<CausalLM> model = testing::LoadCheckpointModel(Dir());
  KvCacheOptions o;
  o.block_size = 4;
  o.num_blocks_full = 32;
  o.num_blocks_sliding = 32;
  o.device = model->device();
  PagedKvCache cache(model->config(), o);
  const at::Tensor tokens = Golden("seq0.tokens"), expected = Golden("seq0.logits");
  const at::Tensor tokens1 = Golden("seq1.tokens"), expected1 = Golden("seq1.logits");
  KvSequence seq, seq1;
  const int64_t prefill = 6;
  {
    ForwardBatch batch;
    batch.token_ids = tokens.narrow(0, 0, prefill);
    batch.seqs.push_back({prefill, 0, &seq});
    batch.all_logits = true;
    absl::StatusOr<at::Tensor> logits = Forward(*model, batch, &cache);
    ASSERT_TRUE(logits.ok()) << logits.status();
    EXPECT_LE(testing::MaxAbsDiff(*logits, expected.narrow(0, 0, prefill)), kTol);
  }
  for (int64_t t = prefill; t < tokens.size(0); ++t) {
    ForwardBatch batch;
    const int64_t t1 = t - prefill;  // seq1 joins: its tokens one by one alongside
    const bool both = t1 < tokens1.size(0);
    batch.token_ids = both ? at::cat({tokens.narrow(0, t, 1), tokens1.narrow(0, t1, 1)}) : tokens.narrow(0, t, 1);
    batch.seqs.push_back({1, t, &seq});
    if (both) batch.seqs.push_back({1, t1, &seq1});
    absl::StatusOr<at::Tensor> logits = Forward(*model, batch, &cache);
    ASSERT_TRUE(logits.ok()) << "position " << t << ": " << logits.status();
    EXPECT_LE(testing::MaxAbsDiff(logits->narrow(0, 0, 1), expected.narrow(0, t, 1)), kTol) << "position " << t;
    if (both) {
      EXPECT_LE(testing::MaxAbsDiff(logits->narrow(0, 1, 1), expected1.narrow(0, t1, 1)), kTol) << "seq1 " << t1;
    }
  }
}

int RunForwardTool(const std::string& args) {
  const std::string cmd = std::string(STEPSERVE_FORWARD_BIN) + " " + args + " 2>/dev/null";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;  // an abort (the bug) is no exit
}

TEST_P(OneAttentionKindTest, ForwardToolGivesTheGoldenLogits) {
  const at::Tensor tokens = Golden("seq0.tokens");
  std::vector<int64_t> ids(tokens.data_ptr<int64_t>(), tokens.data_ptr<int64_t>() + tokens.numel());
  const std::string out = testing::MakeTempDir("fwd1kind") + "/logits.safetensors";
  ASSERT_EQ(RunForwardTool("--model=" + Dir() + " --tokens=" + absl::StrJoin(ids, ",") + " --out=" + out), 0);
  auto file = SafetensorsFile::Open(out);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_LE(testing::MaxAbsDiff(*(*file)->Read("logits"), Golden("seq0.logits")), kTol);
}

INSTANTIATE_TEST_SUITE_P(Golden, OneAttentionKindTest, ::testing::Values("tiny-full", "tiny-sliding"),
                         [](const auto& info) { return info.param == "tiny-full" ? "FullOnly" : "SlidingOnly"; });

}  // namespace
}  // namespace stepserve
