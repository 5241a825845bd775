#include "model/model_loader.h"

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/loading/checkpoint.h"
#include "common/exception_text.h"
#include "common/logging.h"
#include "model/loading/weight_sharding.h"
#include "model/loading/presets.h"
#include "common/status_macros.h"

namespace stepserve {

absl::StatusOr<at::ScalarType> ParseDtype(const std::string& name) {
  if (name == "float32" || name == "fp32") return at::kFloat;
  if (name == "bfloat16" || name == "bf16") return at::kBFloat16;
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype '", name, "' (expected float32 or bfloat16)"));
}

const char* DtypeName(at::ScalarType dtype) { return dtype == at::kBFloat16 ? "bfloat16" : "float32"; }

namespace {

// A preset name and layer override, or the spec unchanged with 0 layers when it is no preset.
absl::StatusOr<std::pair<std::string, int>> SplitPresetSpec(const std::string& spec) {
  std::string name = spec;
  int num_layers = 0;
  if (auto colon = spec.find(':'); colon != std::string::npos && IsPresetName(spec.substr(0, colon))) {
    name = spec.substr(0, colon);
    if (!absl::SimpleAtoi(spec.substr(colon + 1), &num_layers) || num_layers <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("model '", spec, "': the layer count after ':' must be a positive integer"));
    }
  }
  return std::make_pair(name, num_layers);
}

absl::Status CheckCheckpointDir(const std::string& spec) {
  // std::filesystem's error_code overloads only: nothing here may throw filesystem_error.
  std::error_code ec;
  if (!std::filesystem::is_directory(spec, ec)) {
    const bool odd_error = ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory;
    return absl::NotFoundError(absl::StrCat("model '", spec, "' is neither a preset (", absl::StrJoin(PresetNames(), ", "),
                                            ") nor a checkpoint directory", odd_error ? " (" : "",
                                            odd_error ? ec.message() : "", odd_error ? ")" : ""));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> LoadModelSpecConfig(const std::string& spec) {
  ASSIGN_OR_RETURN(auto preset, SplitPresetSpec(spec));
  if (IsPresetName(preset.first)) return PresetConfig(preset.first, preset.second);
  RETURN_IF_ERROR(CheckCheckpointDir(spec));
  return LoadModelConfigFile((std::filesystem::path(spec) / "config.json").string());
}

namespace {

absl::Status CheckDeadline(const std::string& spec, absl::Time deadline, const char* before) {
  if (absl::Now() <= deadline) return absl::OkStatus();
  return absl::DeadlineExceededError(absl::StrCat("model '", spec, "': the load timeout passed before ", before));
}

// The load itself; `deadline` is checked between its stages and before each checkpoint tensor.
absl::StatusOr<std::unique_ptr<CausalLM>> LoadModelUntil(const std::string& spec, const ModelLoadOptions& options,
                                                         absl::Time deadline) {
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelSpecConfig(spec));
  RETURN_IF_ERROR(CheckDeadline(spec, deadline, "the weights were read"));
  const ParallelConfig& parallel = options.parallel;
  RETURN_IF_ERROR(ValidateParallelConfig(config, parallel));
  ModelWeights weights;
  if (IsPresetName(SplitPresetSpec(spec)->first)) {
    // Random weights are drawn whole (the same on every rank, from the seed), then cut.
    weights = RandomWeights(config, options.seed, options.dtype, options.device);
    if (parallel.distributed()) weights = ShardWeights(weights, config, parallel);
  } else {
    ASSIGN_OR_RETURN(weights, LoadCheckpointWeights(spec, config, options.dtype, parallel, deadline));
    if (options.device != at::Device(at::kCPU)) {
      ModelWeights moved;
      for (const TensorShard& t : RankTensorShards(config, parallel)) {
        moved.Set(t.name, weights.Get(t.name).to(options.device));
      }
      weights = std::move(moved);
    }
  }
  ParallelContext context{parallel, nullptr};
  if (parallel.distributed()) {
    if (!options.connect_group) return absl::InvalidArgumentError("tensor parallelism needs a way to join the group");
    RETURN_IF_ERROR(CheckDeadline(spec, deadline, "joining the tensor-parallel group"));
    ASSIGN_OR_RETURN(context.comm, options.connect_group());
  }
  RETURN_IF_ERROR(CheckDeadline(spec, deadline, "the model was built"));
  return std::make_unique<CausalLM>(std::move(config), std::move(weights), options.device, std::move(context));
}

}  // namespace

absl::StatusOr<std::unique_ptr<CausalLM>> LoadModel(const std::string& spec, const ModelLoadOptions& options) {
  if (options.dtype != at::kFloat && options.dtype != at::kBFloat16) {
    return absl::InvalidArgumentError("compute dtype must be float32 or bfloat16");
  }
  if (options.load_timeout == absl::InfiniteDuration()) return LoadModelUntil(spec, options, absl::InfiniteFuture());
  if (options.load_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("load_timeout must be positive, got ",
                                                   absl::FormatDuration(options.load_timeout)));
  }
  // The load runs on its own thread so that a read that never returns cannot hold the caller past the
  // timeout. Everything it uses is its own copy or shared with it here; when the caller gives up, the thread
  // finishes (or fails at its next deadline check) on its own and its result is dropped with the state.
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    absl::StatusOr<std::unique_ptr<CausalLM>> result = absl::UnknownError("not loaded");
  };
  auto state = std::make_shared<State>();
  const absl::Time deadline = absl::Now() + options.load_timeout;
  std::thread([state, spec, options, deadline] {
    absl::StatusOr<std::unique_ptr<CausalLM>> result = absl::UnknownError("not loaded");
    try {
      result = LoadModelUntil(spec, options, deadline);
    } catch (const std::exception& e) {
      result = absl::InternalError(absl::StrCat("model '", spec, "': loading failed: ", ExceptionText(e)));
    }
    std::lock_guard<std::mutex> lock(state->mu);
    state->result = std::move(result);
    state->done = true;
    state->cv.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lock(state->mu);
  if (!state->cv.wait_until(lock, absl::ToChronoTime(deadline), [&] { return state->done; })) {
    const std::string why = absl::StrCat("model '", spec, "' did not load within the load timeout of ",
                                         absl::FormatDuration(options.load_timeout));
    LogError(why);
    return absl::DeadlineExceededError(why);
  }
  return std::move(state->result);
}

}  // namespace stepserve
