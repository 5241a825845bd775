#include "tests/test_util.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <vector>

#include "engine/forward_batch.h"
#include "model/model_loader.h"
#include "nlohmann/json.hpp"

namespace stepserve::testing {

std::string TestDataDir() { return STEPSERVE_TEST_DATA_DIR; }
std::string TinyCheckpointDir() { return TestDataDir() + "/tiny"; }

const SafetensorsFile& Golden() {
  static std::unique_ptr<SafetensorsFile> file = [] {
    auto f = SafetensorsFile::Open(TinyCheckpointDir() + "/golden.safetensors");
    if (!f.ok()) throw std::runtime_error(std::string(f.status().message()));
    return std::move(f).value();
  }();
  return *file;
}

at::Tensor GoldenTensor(const std::string& name) {
  auto t = Golden().Read(name);
  if (!t.ok()) throw std::runtime_error(std::string(t.status().message()));
  return *t;
}

at::Device TestDevice() {
  const char* env = std::getenv("STEPSERVE_TEST_DEVICE");
  return at::Device(env != nullptr && *env != '\0' ? env : "cpu");
}

std::vector<std::string> TestDevices() {
  std::vector<std::string> devices = {"cpu"};
  if (at::hasCUDA()) devices.push_back("cuda");
  return devices;
}

std::unique_ptr<CausalLM> LoadTinyModel(at::ScalarType dtype, at::Device device) {
  return LoadCheckpointModel(TinyCheckpointDir(), dtype, device);
}

std::string CheckpointDir(const std::string& name) { return TestDataDir() + "/" + name; }

std::unique_ptr<CausalLM> LoadCheckpointModel(const std::string& dir, at::ScalarType dtype, at::Device device) {
  ModelLoadOptions options;
  options.dtype = dtype;
  options.device = device;
  auto model = LoadModel(dir, options);
  if (!model.ok()) throw std::runtime_error(std::string(model.status().message()));
  return std::move(model).value();
}

at::Tensor GoldenTensorIn(const std::string& dir, const std::string& name) {
  auto file = SafetensorsFile::Open(dir + "/golden.safetensors");
  if (!file.ok()) throw std::runtime_error(std::string(file.status().message()));
  auto t = (*file)->Read(name);
  if (!t.ok()) throw std::runtime_error(std::string(t.status().message()));
  return *t;
}

std::vector<GreedyCase> GreedyCases() { return GreedyCasesIn(TinyCheckpointDir()); }

std::vector<GreedyCase> GreedyCasesIn(const std::string& dir) {
  std::ifstream in(dir + "/greedy.json");
  if (!in) throw std::runtime_error("cannot open " + dir + "/greedy.json");
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<GreedyCase> cases;
  for (const auto& c : nlohmann::json::parse(ss.str())) {
    cases.push_back({c["prompt"].get<std::vector<int32_t>>(), c["greedy"].get<std::vector<int32_t>>()});
  }
  return cases;
}

at::Tensor SequenceLogits(const CausalLM& model, const at::Tensor& tokens, const CausalLM::LayerObserver& observer) {
  KvCacheOptions o;
  o.num_blocks_full = static_cast<int32_t>(tokens.numel() / o.block_size + 1);
  o.num_blocks_sliding = o.num_blocks_full + 1;
  o.dtype = model.dtype();
  o.device = model.device();
  PagedKvCache cache(model.config(), o);
  KvSequence seq;
  ForwardBatch batch;
  batch.token_ids = tokens;
  batch.seqs.push_back({tokens.numel(), 0, &seq});
  batch.all_logits = true;
  auto logits = Forward(model, batch, &cache, observer);
  if (!logits.ok()) throw std::runtime_error(std::string(logits.status().message()));
  return *logits;
}

double MaxAbsDiff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

namespace {
// Removes every directory MakeTempDir made when the test program exits.
class TempDirRegistry {
 public:
  ~TempDirRegistry() {
    std::error_code ignored;
    for (const std::string& dir : dirs_) std::filesystem::remove_all(dir, ignored);
  }
  void Add(std::string dir) {
    std::lock_guard<std::mutex> lock(mu_);
    dirs_.push_back(std::move(dir));
  }

 private:
  std::mutex mu_;
  std::vector<std::string> dirs_;
};
}  // namespace

std::string MakeTempDir(const std::string& tag) {
  static TempDirRegistry registry;
  std::string pattern = (std::filesystem::temp_directory_path() / ("stepserve-" + tag + "-XXXXXX")).string();
  if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  registry.Add(pattern);
  return pattern;
}

}  // namespace stepserve::testing
