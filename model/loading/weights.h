// The named weight tensors of a Step3p5 model, and the list of names/shapes a config requires.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "model/loading/config.h"

namespace stepserve {

struct TensorSpec {
  std::string name;  // Hugging Face name, e.g. "model.layers.0.self_attn.q_proj.weight"
  std::vector<int64_t> shape;
};

// Every tensor a checkpoint for `config` must hold, with its exact shape.
std::vector<TensorSpec> ExpectedTensors(const ModelConfig& config);

class ModelWeights {
 public:
  void Set(const std::string& name, at::Tensor t) { tensors_[name] = std::move(t); }
  bool Contains(const std::string& name) const { return tensors_.count(name) > 0; }
  // The tensor, or an undefined tensor when absent (callers validated presence at load time).
  const at::Tensor& Get(const std::string& name) const;
  size_t size() const { return tensors_.size(); }
  int64_t TotalBytes() const;

 private:
  std::unordered_map<std::string, at::Tensor> tensors_;
};

}  // namespace stepserve
