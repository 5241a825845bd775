// Built-in model presets with deterministic random weights, usable wherever a checkpoint directory is.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "model/loading/config.h"
#include "model/loading/weights.h"

namespace stepserve {

// "tiny" (the golden test config), "small" (a CPU benchmark size), "flash" (Step-3.5-Flash dimensions).
// `num_layers` > 0 overrides the layer count (the per-layer pattern is kept).
absl::StatusOr<ModelConfig> PresetConfig(const std::string& name, int num_layers = 0);
std::vector<std::string> PresetNames();
bool IsPresetName(const std::string& name);

// The preset's config.json text (what PresetConfig parses).
absl::StatusOr<std::string> PresetConfigJson(const std::string& name, int num_layers = 0);

// Every tensor of ExpectedTensors(config), random and deterministic in `seed`, in `dtype` on `device`.
ModelWeights RandomWeights(const ModelConfig& config, uint64_t seed, at::ScalarType dtype, at::Device device);

}  // namespace stepserve
