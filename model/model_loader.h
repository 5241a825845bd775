// Resolves a model spec ("tiny", "small:4", "flash:4" or a checkpoint directory) into a CausalLM.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "model/causal_lm.h"

namespace stepserve {

struct ModelLoadOptions {
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
  uint64_t seed = 0;  // presets only
};

// Parses "float32" / "bfloat16" (also "fp32", "bf16").
absl::StatusOr<at::ScalarType> ParseDtype(const std::string& name);
const char* DtypeName(at::ScalarType dtype);

// A preset name, optionally with ":LAYERS" to override its layer count, or a checkpoint directory.
absl::StatusOr<std::unique_ptr<CausalLM>> LoadModel(const std::string& spec, const ModelLoadOptions& options);

}  // namespace stepserve
