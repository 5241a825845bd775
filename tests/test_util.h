// Shared helpers for the tests: test data location, golden tensors, the tiny checkpoint.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "model/layers/causal_lm.h"
#include "model/loading/safetensors.h"

namespace stepserve::testing {

std::string TestDataDir();      // tests/data
std::string TinyCheckpointDir();  // tests/data/tiny

// The golden tensors (tests/data/tiny/golden.safetensors), read once.
const SafetensorsFile& Golden();
at::Tensor GoldenTensor(const std::string& name);

// The device tests run the model on: STEPSERVE_TEST_DEVICE ("cpu" by default, "cuda" on a GPU machine:
// scripts/cuda-device-check.sh runs the whole suite that way).
at::Device TestDevice();
// The devices that device-parameterised suites instantiate: cpu, and cuda when LibTorch sees a GPU.
std::vector<std::string> TestDevices();

// The tiny checkpoint loaded from tests/data/tiny.
std::unique_ptr<CausalLM> LoadTinyModel(at::ScalarType dtype = at::kFloat, at::Device device = TestDevice());

// tests/data/tiny/greedy.json: prompts with their 20-token greedy continuations.
struct GreedyCase {
  std::vector<int32_t> prompt;
  std::vector<int32_t> greedy;
};
std::vector<GreedyCase> GreedyCases();

// The other golden checkpoints (tests/data/NAME: "tiny-full", every layer full attention, "tiny-sliding",
// every layer sliding), with the same files as tiny.
std::string CheckpointDir(const std::string& name);
std::unique_ptr<CausalLM> LoadCheckpointModel(const std::string& dir, at::ScalarType dtype = at::kFloat,
                                              at::Device device = TestDevice());
std::vector<GreedyCase> GreedyCasesIn(const std::string& dir);
// A tensor of DIR/golden.safetensors (opened for each call).
at::Tensor GoldenTensorIn(const std::string& dir, const std::string& name);

// Runs `tokens` as one sequence at positions 0..T-1 through a fresh paged cache in the model's dtype and
// returns every token's fp32 logits.
at::Tensor SequenceLogits(const CausalLM& model, const at::Tensor& tokens,
                          const CausalLM::LayerObserver& observer = nullptr);

double MaxAbsDiff(const at::Tensor& a, const at::Tensor& b);

// A fresh temporary directory for one test.
std::string MakeTempDir(const std::string& tag);

}  // namespace stepserve::testing
