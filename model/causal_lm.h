// The Step3p5 causal language model: embedding, decoder layers, final norm, lm_head (or tied embedding).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "model/config.h"
#include "model/decoder_layer.h"
#include "model/forward_batch.h"
#include "model/kv_cache.h"
#include "model/weights.h"

namespace stepserve {

class CausalLM {
 public:
  // Takes the weights (already in the compute dtype, on `device`).
  CausalLM(ModelConfig config, ModelWeights weights, at::Device device);

  const ModelConfig& config() const { return config_; }
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }
  const std::vector<std::unique_ptr<DecoderLayer>>& layers() const { return layers_; }
  const ModelWeights& weights() const { return weights_; }

  // Optional hook called with each layer's residual-stream output (tests, debugging).
  using LayerObserver = std::function<void(int layer, const at::Tensor& hidden)>;

  // Runs the packed batch; appends each cached chunk's keys to `cache` (which may be null when no chunk
  // has a handle). Returns fp32 logits: [num_seqs, vocab] (last token of each), or [tokens, vocab] when
  // batch.all_logits. Fails without side effects on bad input or when the cache lacks blocks.
  absl::StatusOr<at::Tensor> Forward(const ForwardBatch& batch, PagedKvCache* cache,
                                     const LayerObserver& observer = nullptr) const;

  // Builds per-step metadata and grows each handle's cache state (exposed for the executor and tests).
  absl::StatusOr<StepAttentionMetadata> PrepareStep(const ForwardBatch& batch, PagedKvCache* cache) const;

 private:
  ModelConfig config_;
  ModelWeights weights_;
  at::Device device_;
  at::ScalarType dtype_;
  at::Tensor embed_, final_norm_, lm_head_;
  std::vector<std::unique_ptr<DecoderLayer>> layers_;
};

}  // namespace stepserve
