// Checkpoint loading: single file, shards with an index, stored dtypes, extra tensors, and every kind of
// corrupt input, each of which must give an error naming the file and the tensor (never a crash).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>

#include "model/loading/checkpoint.h"
#include "model/loading/config.h"
#include "model/model_loader.h"
#include "model/loading/safetensors.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace stepserve {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

ModelConfig TinyConfig() {
  auto c = LoadModelConfigFile(testing::TinyCheckpointDir() + "/config.json");
  EXPECT_TRUE(c.ok());
  return *c;
}

std::map<std::string, at::Tensor> TinyTensors() {
  auto f = SafetensorsFile::Open(testing::TinyCheckpointDir() + "/model.safetensors");
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, info] : (*f)->tensors()) out[name] = *(*f)->Read(name);
  return out;
}

// A checkpoint directory with the tiny config and the given tensors in one file.
std::string WriteCheckpoint(const std::string& tag, const std::map<std::string, at::Tensor>& tensors) {
  std::string dir = testing::MakeTempDir(tag);
  fs::copy_file(testing::TinyCheckpointDir() + "/config.json", dir + "/config.json");
  EXPECT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors).ok());
  return dir;
}

// Writes a raw safetensors file: 8-byte length, header text, data bytes.
void WriteRaw(const std::string& path, const std::string& header, const std::string& data, int64_t length = -1) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  uint64_t n = length >= 0 ? static_cast<uint64_t>(length) : header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << data;
}

void ExpectMessageHas(const absl::Status& s, const std::vector<std::string>& parts) {
  ASSERT_FALSE(s.ok());
  for (const std::string& p : parts) EXPECT_NE(s.message().find(p), std::string::npos) << s.message();
}

TEST(CheckpointTest, LoadsTinyCheckpoint) {
  auto w = LoadCheckpointWeights(testing::TinyCheckpointDir(), TinyConfig(), at::kFloat);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->size(), ExpectedTensors(TinyConfig()).size());
}

TEST(CheckpointTest, ShardsWithIndexAndMixedStoredDtypesAndExtraTensors) {
  auto tensors = TinyTensors();
  std::string dir = testing::MakeTempDir("shards");
  fs::copy_file(testing::TinyCheckpointDir() + "/config.json", dir + "/config.json");
  std::map<std::string, at::Tensor> a, b;
  json index = {{"metadata", json::object()}, {"weight_map", json::object()}};
  int i = 0;
  for (auto& [name, t] : tensors) {
    // Store some tensors as BF16 and F16 to exercise the conversion.
    at::Tensor stored = (i % 3 == 1) ? t.to(at::kBFloat16) : (i % 3 == 2) ? t.to(at::kHalf) : t;
    ((i % 2) ? a : b)[name] = stored;
    index["weight_map"][name] = (i % 2) ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    ++i;
  }
  // An MTP layer past num_hidden_layers: skipped.
  a["model.layers.5.self_attn.q_proj.weight"] = at::zeros({4, 4});
  index["weight_map"]["model.layers.5.self_attn.q_proj.weight"] = "model-00001-of-00002.safetensors";
  ASSERT_TRUE(WriteSafetensors(dir + "/model-00001-of-00002.safetensors", a).ok());
  ASSERT_TRUE(WriteSafetensors(dir + "/model-00002-of-00002.safetensors", b).ok());
  std::ofstream(dir + "/model.safetensors.index.json") << index.dump();

  auto w = LoadCheckpointWeights(dir, TinyConfig(), at::kFloat);
  ASSERT_TRUE(w.ok()) << w.status();
  for (auto& [name, t] : tensors) {
    at::Tensor expected = a.count(name) ? a[name].to(at::kFloat) : b[name].to(at::kFloat);
    EXPECT_TRUE(at::equal(w->Get(name), expected)) << name;
  }
  EXPECT_FALSE(w->Contains("model.layers.5.self_attn.q_proj.weight"));

  auto bf16 = LoadCheckpointWeights(dir, TinyConfig(), at::kBFloat16);
  ASSERT_TRUE(bf16.ok());
  EXPECT_EQ(bf16->Get("model.norm.weight").scalar_type(), at::kBFloat16);

  // A shard named in the index that is missing.
  fs::remove(dir + "/model-00002-of-00002.safetensors");
  auto missing = LoadCheckpointWeights(dir, TinyConfig(), at::kFloat);
  ExpectMessageHas(missing.status(), {"model-00002-of-00002.safetensors", "missing"});
}

TEST(CheckpointTest, MissingTensorNamesFileAndTensor) {
  auto tensors = TinyTensors();
  tensors.erase("model.layers.3.moe.router_bias");
  std::string dir = WriteCheckpoint("missing", tensors);
  auto w = LoadCheckpointWeights(dir, TinyConfig(), at::kFloat);
  ExpectMessageHas(w.status(), {"model.safetensors", "model.layers.3.moe.router_bias"});
}

TEST(CheckpointTest, WrongShapeNamesTensorAndShapes) {
  auto tensors = TinyTensors();
  tensors["model.layers.1.self_attn.k_proj.weight"] = at::zeros({32, 64});
  std::string dir = WriteCheckpoint("shape", tensors);
  auto w = LoadCheckpointWeights(dir, TinyConfig(), at::kFloat);
  ExpectMessageHas(w.status(), {"model.layers.1.self_attn.k_proj.weight", "[32, 64]", "[64, 64]"});
}

TEST(CheckpointTest, NonFloatWeightIsRejected) {
  auto tensors = TinyTensors();
  tensors["model.norm.weight"] = at::zeros({64}, at::kLong);
  std::string dir = WriteCheckpoint("dtype", tensors);
  auto w = LoadCheckpointWeights(dir, TinyConfig(), at::kFloat);
  ExpectMessageHas(w.status(), {"model.norm.weight", "I64"});
}

TEST(CheckpointTest, NoWeightsFile) {
  std::string dir = testing::MakeTempDir("empty");
  auto w = LoadCheckpointWeights(dir, TinyConfig(), at::kFloat);
  ExpectMessageHas(w.status(), {dir, "model.safetensors"});
}

// model.safetensors -> model.safetensors (`ln -s model.safetensors model.safetensors`): stat fails with ELOOP.
// The loader reports it naming the path; it used to throw std::filesystem::filesystem_error (abort, exit 134).
TEST(CheckpointTest, SymlinkLoopIsAnErrorNamingThePath) {
  std::string dir = testing::MakeTempDir("symlinkloop");
  fs::copy_file(testing::TinyCheckpointDir() + "/config.json", dir + "/config.json");
  fs::create_symlink("model.safetensors", dir + "/model.safetensors");
  ASSERT_TRUE(fs::is_symlink(fs::symlink_status(dir + "/model.safetensors")));
  absl::StatusOr<ModelWeights> w = absl::UnknownError("not run");
  EXPECT_NO_THROW(w = LoadCheckpointWeights(dir, TinyConfig(), at::kFloat));
  ExpectMessageHas(w.status(), {dir + "/model.safetensors"});
  EXPECT_NE(w.status().code(), absl::StatusCode::kUnknown) << w.status();

  // The same loop as the index file, and as a shard the index names.
  std::string index_dir = testing::MakeTempDir("symlinkloopindex");
  fs::create_symlink("model.safetensors.index.json", index_dir + "/model.safetensors.index.json");
  EXPECT_NO_THROW(w = LoadCheckpointWeights(index_dir, TinyConfig(), at::kFloat));
  ExpectMessageHas(w.status(), {index_dir + "/model.safetensors.index.json"});

  std::string shard_dir = testing::MakeTempDir("symlinkloopshard");
  std::ofstream(shard_dir + "/model.safetensors.index.json")
      << R"({"weight_map": {"model.norm.weight": "model-00001-of-00001.safetensors"}})";
  fs::create_symlink("model-00001-of-00001.safetensors", shard_dir + "/model-00001-of-00001.safetensors");
  EXPECT_NO_THROW(w = LoadCheckpointWeights(shard_dir, TinyConfig(), at::kFloat));
  ExpectMessageHas(w.status(), {shard_dir + "/model-00001-of-00001.safetensors"});

  // Through LoadModel, as stepserve --model=DIR loads it; and a model spec that is itself a loop.
  absl::StatusOr<std::unique_ptr<CausalLM>> model = absl::UnknownError("not run");
  EXPECT_NO_THROW(model = LoadModel(dir, ModelLoadOptions()));
  ExpectMessageHas(model.status(), {dir + "/model.safetensors"});
  const std::string loop_spec = dir + "/loop";
  fs::create_symlink("loop", loop_spec);
  EXPECT_NO_THROW(model = LoadModel(loop_spec, ModelLoadOptions()));
  ExpectMessageHas(model.status(), {loop_spec});
}

TEST(CheckpointTest, BadIndexJson) {
  std::string dir = testing::MakeTempDir("badindex");
  std::ofstream(dir + "/model.safetensors.index.json") << "{\"weight_map\": ";
  auto w = LoadCheckpointWeights(dir, TinyConfig(), at::kFloat);
  ExpectMessageHas(w.status(), {"model.safetensors.index.json", "JSON"});
}

class CorruptFileTest : public ::testing::Test {
 protected:
  std::string path_ = testing::MakeTempDir("corrupt") + "/model.safetensors";
};

TEST_F(CorruptFileTest, TruncatedBeforeHeaderLength) {
  std::ofstream(path_, std::ios::binary) << "abc";
  ExpectMessageHas(SafetensorsFile::Open(path_).status(), {path_, "truncated"});
}

TEST_F(CorruptFileTest, HeaderLengthPastEnd) {
  WriteRaw(path_, "{}", "", 1 << 20);
  ExpectMessageHas(SafetensorsFile::Open(path_).status(), {path_, "header length"});
}

TEST_F(CorruptFileTest, BadJsonHeader) {
  WriteRaw(path_, "{\"a\": [", "");
  ExpectMessageHas(SafetensorsFile::Open(path_).status(), {path_, "JSON"});
}

TEST_F(CorruptFileTest, OffsetsOutOfRange) {
  WriteRaw(path_, R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", std::string(8, '\0'));
  ExpectMessageHas(SafetensorsFile::Open(path_).status(), {path_, "'w'", "out of range"});
}

TEST_F(CorruptFileTest, TruncatedData) {
  // The full checkpoint cut short: the last tensor's bytes are gone.
  std::string src = testing::TinyCheckpointDir() + "/model.safetensors";
  std::ifstream in(src, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream(path_, std::ios::binary) << bytes.substr(0, bytes.size() - 1000);
  ExpectMessageHas(SafetensorsFile::Open(path_).status(), {path_, "out of range"});
}

TEST_F(CorruptFileTest, OverlappingOffsets) {
  WriteRaw(path_,
           R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
               "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
           std::string(12, '\0'));
  ExpectMessageHas(SafetensorsFile::Open(path_).status(), {path_, "overlaps"});
}

TEST_F(CorruptFileTest, UnknownDtype) {
  WriteRaw(path_, R"({"w": {"dtype": "F8_E9", "shape": [2], "data_offsets": [0, 2]}})", std::string(2, '\0'));
  ExpectMessageHas(SafetensorsFile::Open(path_).status(), {path_, "'w'", "F8_E9"});
}

TEST_F(CorruptFileTest, SizeDisagreesWithShape) {
  WriteRaw(path_, R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", std::string(8, '\0'));
  ExpectMessageHas(SafetensorsFile::Open(path_).status(), {path_, "'w'", "need 12"});
}

TEST(ModelLoaderTest, SpecsAndErrors) {
  ModelLoadOptions o;
  EXPECT_TRUE(LoadModel("tiny", o).ok());
  EXPECT_EQ(LoadModel("/nonexistent/dir", o).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(LoadModel("small:x", o).ok());
  auto small2 = LoadModel("small:2", o);
  ASSERT_TRUE(small2.ok()) << small2.status();
  EXPECT_EQ((*small2)->config().num_hidden_layers, 2);
  // Presets are deterministic in the seed.
  auto a = LoadModel("tiny", o), b = LoadModel("tiny", o);
  EXPECT_TRUE(at::equal((*a)->weights().Get("lm_head.weight"), (*b)->weights().Get("lm_head.weight")));
  EXPECT_FALSE(ParseDtype("int8").ok());
}

}  // namespace
}  // namespace stepserve
