// Runs the stepserve-forward program: golden logits through the tool, and its error exits.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <sys/wait.h>

#include "absl/strings/str_join.h"
#include "model/loading/safetensors.h"
#include "tests/test_util.h"

namespace stepserve {
namespace {

int RunTool(const std::string& args) {
  const std::string cmd = std::string(STEPSERVE_FORWARD_BIN) + " " + args + " 2>/dev/null";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string TokenList(const at::Tensor& t) {
  std::vector<int64_t> v(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
  return absl::StrJoin(v, ",");
}

TEST(ForwardToolTest, GoldenLogitsThroughTheProgram) {
  const std::string out = testing::MakeTempDir("fwd") + "/logits.safetensors";
  for (int s = 0; s < 3; ++s) {
    const std::string p = "seq" + std::to_string(s);
    ASSERT_EQ(RunTool("--model=" + testing::TinyCheckpointDir() + " --tokens=" +
                  TokenList(testing::GoldenTensor(p + ".tokens")) + " --out=" + out),
              0);
    auto file = SafetensorsFile::Open(out);
    ASSERT_TRUE(file.ok()) << file.status();
    at::Tensor logits = *(*file)->Read("logits");
    EXPECT_LE(testing::MaxAbsDiff(logits, testing::GoldenTensor(p + ".logits")), 1e-4) << p;
  }
}

TEST(ForwardToolTest, PresetAndBfloat16) {
  const std::string out = testing::MakeTempDir("fwd") + "/logits.safetensors";
  EXPECT_EQ(RunTool("--model=tiny --tokens=1,2,3 --dtype=bfloat16 --out=" + out), 0);
  auto file = SafetensorsFile::Open(out);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ((*file)->Read("logits")->sizes(), (std::vector<int64_t>{3, 300}));
}

TEST(ForwardToolTest, ErrorsExitWithCode2) {
  const std::string out = testing::MakeTempDir("fwd") + "/x.safetensors";
  EXPECT_EQ(RunTool("--model=nosuchpreset --tokens=1 --out=" + out), 2);
  EXPECT_EQ(RunTool("--model=/no/such/dir --tokens=1 --out=" + out), 2);
  EXPECT_EQ(RunTool("--model=tiny --tokens=1,300 --out=" + out), 2);
  EXPECT_EQ(RunTool("--model=tiny --tokens=1,-1 --out=" + out), 2);
  EXPECT_EQ(RunTool("--model=tiny --tokens=1,a --out=" + out), 2);
  EXPECT_EQ(RunTool("--model=tiny --tokens=1 --dtype=int8 --out=" + out), 2);
  EXPECT_EQ(RunTool("--model=tiny --tokens=1 --bogus=1 --out=" + out), 2);
  EXPECT_EQ(RunTool("--model=tiny --tokens=1"), 2);
  EXPECT_EQ(RunTool("--model=tiny --tokens=1 --out=/no/such/dir/x"), 2);
  const std::string bad = testing::MakeTempDir("badckpt");
  std::system(("cp " + testing::TinyCheckpointDir() + "/config.json " + bad + "/ && printf abc > " + bad +
               "/model.safetensors").c_str());
  EXPECT_EQ(RunTool("--model=" + bad + " --tokens=1 --out=" + out), 2);
}

}  // namespace
}  // namespace stepserve
