// Resolves a model spec ("tiny", "small:4", "flash:4" or a checkpoint directory) into a CausalLM.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "model/layers/causal_lm.h"
#include "model/layers/collectives.h"
#include "model/loading/tensor_split.h"

namespace stepserve {

struct ModelLoadOptions {
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
  uint64_t seed = 0;  // presets only
  // Tensor parallelism: this rank's split (checked against the config; errors name the flag), and how it
  // joins its group, called once its weights are loaded (so that the slowest rank's loading never counts
  // against the collective timeout). Required when parallel.tensor_parallel_size > 1.
  ParallelConfig parallel;
  std::function<absl::StatusOr<std::shared_ptr<Collectives>>()> connect_group;
  // The longest the whole load may take (config, weights, joining the group); InfiniteDuration: no limit.
  // Past it LoadModel returns DEADLINE_EXCEEDED naming the model and the timeout, even when a read is
  // stuck (a hung network filesystem): with a timeout the load runs on a thread of its own, which LoadModel
  // leaves behind when it gives up; that thread stops at its next check (between stages and before each
  // checkpoint tensor) and frees what it loaded. Zero or negative: INVALID_ARGUMENT.
  absl::Duration load_timeout = absl::InfiniteDuration();
};

// Parses "float32" / "bfloat16" (also "fp32", "bf16").
absl::StatusOr<at::ScalarType> ParseDtype(const std::string& name);
const char* DtypeName(at::ScalarType dtype);

// A preset name, optionally with ":LAYERS" to override its layer count, or a checkpoint directory.
absl::StatusOr<std::unique_ptr<CausalLM>> LoadModel(const std::string& spec, const ModelLoadOptions& options);

// The config of a model spec without loading any weight (--dry_run).
absl::StatusOr<ModelConfig> LoadModelSpecConfig(const std::string& spec);

}  // namespace stepserve
