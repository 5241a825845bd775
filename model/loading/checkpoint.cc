#include "model/loading/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <system_error>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "model/loading/weight_sharding.h"
#include "model/loading/regular_file.h"
#include "model/loading/safetensors.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace stepserve {
namespace {

namespace fs = std::filesystem;

// tensor name -> shard file name, from model.safetensors.index.json.
absl::StatusOr<std::map<std::string, std::string>> ReadIndex(const std::string& index_path) {
  ASSIGN_OR_RETURN(const std::string text, ReadRegularFile(index_path, kMaxConfigFileBytes));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return absl::DataLossError(absl::StrCat(index_path, ": not valid JSON"));
  if (!j.contains("weight_map") || !j["weight_map"].is_object()) {
    return absl::DataLossError(absl::StrCat(index_path, ": no 'weight_map' object"));
  }
  std::map<std::string, std::string> map;
  for (auto& [name, file] : j["weight_map"].items()) {
    if (!file.is_string()) {
      return absl::DataLossError(absl::StrCat(index_path, ": weight_map entry '", name, "' is not a file name"));
    }
    const std::string shard = file.get<std::string>();
    if (shard.find('/') != std::string::npos || shard == "..") {
      return absl::DataLossError(absl::StrCat(index_path, ": weight_map entry '", name, "' names '", shard,
                                              "' outside the checkpoint directory"));
    }
    map[name] = shard;
  }
  return map;
}

// Whether `p` exists. std::filesystem's error_code overloads only: a path that cannot be examined (a
// symlink loop, a permission denied on the way) is an error naming it, never a filesystem_error thrown
// through the loader.
absl::StatusOr<bool> PathExists(const fs::path& p) {
  std::error_code ec;
  const bool exists = fs::exists(p, ec);
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat(p.string(), ": cannot access: ", ec.message()));
  }
  return exists;
}

}  // namespace

absl::StatusOr<ModelWeights> LoadCheckpointWeights(const std::string& dir, const ModelConfig& config,
                                                   at::ScalarType dtype, const ParallelConfig& parallel,
                                                   absl::Time deadline) {
  const fs::path root(dir);
  const fs::path index_path = root / "model.safetensors.index.json";
  std::map<std::string, std::string> tensor_to_shard;  // empty: single file
  std::set<std::string> shard_names;
  ASSIGN_OR_RETURN(const bool has_index, PathExists(index_path));
  ASSIGN_OR_RETURN(const bool has_single_file,
                   has_index ? absl::StatusOr<bool>(false) : PathExists(root / "model.safetensors"));
  if (has_index) {
    ASSIGN_OR_RETURN(tensor_to_shard, ReadIndex(index_path.string()));
    for (const auto& [name, shard] : tensor_to_shard) shard_names.insert(shard);
  } else if (has_single_file) {
    shard_names.insert("model.safetensors");
  } else {
    return absl::NotFoundError(absl::StrCat(dir, ": no model.safetensors or model.safetensors.index.json"));
  }

  std::map<std::string, std::unique_ptr<SafetensorsFile>> shards;
  for (const std::string& shard : shard_names) {
    const fs::path p = root / shard;
    ASSIGN_OR_RETURN(const bool shard_exists, PathExists(p));
    if (!shard_exists) {
      std::string example;
      for (const auto& [name, s] : tensor_to_shard) {
        if (s == shard) { example = name; break; }
      }
      return absl::NotFoundError(absl::StrCat(p.string(), ": shard named in the index (for tensor '", example,
                                              "') is missing"));
    }
    ASSIGN_OR_RETURN(shards[shard], SafetensorsFile::Open(p.string()));
  }

  ModelWeights weights;
  std::set<std::string> used;
  std::map<std::string, TensorShard> shard_of;
  for (const TensorShard& s : RankTensorShards(config, parallel)) shard_of.emplace(s.name, s);
  for (const TensorSpec& spec : ExpectedTensors(config)) {
    SafetensorsFile* file = nullptr;
    if (tensor_to_shard.empty()) {
      file = shards.begin()->second.get();
    } else {
      auto it = tensor_to_shard.find(spec.name);
      if (it == tensor_to_shard.end()) {
        return absl::NotFoundError(absl::StrCat(index_path.string(), ": tensor '", spec.name, "' is not in the index"));
      }
      file = shards[it->second].get();
    }
    auto info = file->tensors().find(spec.name);
    if (info == file->tensors().end()) {
      return absl::NotFoundError(absl::StrCat(file->path(), ": tensor '", spec.name, "' is missing"));
    }
    if (info->second.shape != spec.shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          file->path(), ": tensor '", spec.name, "' has shape [", absl::StrJoin(info->second.shape, ", "),
          "], expected [", absl::StrJoin(spec.shape, ", "), "]"));
    }
    const std::string& stored = info->second.dtype;
    if (stored != "F32" && stored != "BF16" && stored != "F16") {
      return absl::InvalidArgumentError(absl::StrCat(file->path(), ": tensor '", spec.name, "' has dtype ", stored,
                                                     "; weights must be F32, BF16 or F16"));
    }
    used.insert(spec.name);
    auto shard = shard_of.find(spec.name);
    if (shard == shard_of.end()) continue;  // not this rank's
    const TensorShard& s = shard->second;
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(dir, ": the load timeout passed before tensor '", spec.name,
                                                      "' was read"));
    }
    ASSIGN_OR_RETURN(at::Tensor t, file->ReadSlice(spec.name, s.dim, s.begin, s.size));
    weights.Set(spec.name, t.to(dtype).contiguous());
  }

  size_t extra = 0;
  std::string first_extra;
  for (const auto& [shard, file] : shards) {
    for (const auto& [name, info] : file->tensors()) {
      if (!used.count(name)) {
        if (extra++ == 0) first_extra = name;
      }
    }
  }
  if (extra > 0) {
    LogInfo("checkpoint ", dir, ": skipped ", extra, " tensors the model does not use (first: '", first_extra, "')");
  }
  return weights;
}

}  // namespace stepserve
