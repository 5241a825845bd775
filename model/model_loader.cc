#include "model/model_loader.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/checkpoint.h"
#include "model/logging.h"
#include "model/presets.h"
#include "model/status_macros.h"

namespace stepserve {

absl::StatusOr<at::ScalarType> ParseDtype(const std::string& name) {
  if (name == "float32" || name == "fp32") return at::kFloat;
  if (name == "bfloat16" || name == "bf16") return at::kBFloat16;
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype '", name, "' (expected float32 or bfloat16)"));
}

const char* DtypeName(at::ScalarType dtype) { return dtype == at::kBFloat16 ? "bfloat16" : "float32"; }

absl::StatusOr<std::unique_ptr<CausalLM>> LoadModel(const std::string& spec, const ModelLoadOptions& options) {
  if (options.dtype != at::kFloat && options.dtype != at::kBFloat16) {
    return absl::InvalidArgumentError("compute dtype must be float32 or bfloat16");
  }
  std::string name = spec;
  int num_layers = 0;
  if (auto colon = spec.find(':'); colon != std::string::npos && IsPresetName(spec.substr(0, colon))) {
    name = spec.substr(0, colon);
    if (!absl::SimpleAtoi(spec.substr(colon + 1), &num_layers) || num_layers <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("model '", spec, "': the layer count after ':' must be a positive integer"));
    }
  }
  if (IsPresetName(name)) {
    ASSIGN_OR_RETURN(ModelConfig config, PresetConfig(name, num_layers));
    ModelWeights weights = RandomWeights(config, options.seed, options.dtype, options.device);
    return std::make_unique<CausalLM>(std::move(config), std::move(weights), options.device);
  }
  // std::filesystem's error_code overloads only: nothing here may throw filesystem_error.
  std::error_code ec;
  if (!std::filesystem::is_directory(spec, ec)) {
    const bool odd_error = ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory;
    return absl::NotFoundError(absl::StrCat("model '", spec, "' is neither a preset (", absl::StrJoin(PresetNames(), ", "),
                                            ") nor a checkpoint directory", odd_error ? " (" : "",
                                            odd_error ? ec.message() : "", odd_error ? ")" : ""));
  }
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfigFile((std::filesystem::path(spec) / "config.json").string()));
  ASSIGN_OR_RETURN(ModelWeights weights, LoadCheckpointWeights(spec, config, options.dtype));
  if (options.device != at::Device(at::kCPU)) {
    ModelWeights moved;
    for (const TensorSpec& t : ExpectedTensors(config)) moved.Set(t.name, weights.Get(t.name).to(options.device));
    weights = std::move(moved);
  }
  return std::make_unique<CausalLM>(std::move(config), std::move(weights), options.device);
}

}  // namespace stepserve
