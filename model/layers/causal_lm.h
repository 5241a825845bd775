// The Step3p5 causal language model: embedding, decoder layers, final norm, lm_head (or tied embedding).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "model/loading/config.h"
#include "model/layers/decoder_layer.h"
#include "model/layers/kv_pools.h"
#include "model/layers/parallel_context.h"
#include "model/layers/step_inputs.h"
#include "model/layers/step_plan.h"
#include "model/loading/weights.h"

namespace stepserve {

class CausalLM {
 public:
  // Takes the weights (already in the compute dtype, on `device`): the whole model, or on a tensor-parallel
  // group this rank's shard (model/loading/weight_sharding.h) with the group's communicator.
  CausalLM(ModelConfig config, ModelWeights weights, at::Device device, ParallelContext parallel = {});

  const ModelConfig& config() const { return config_; }
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }
  const std::vector<std::unique_ptr<DecoderLayer>>& layers() const { return layers_; }
  const ModelWeights& weights() const { return weights_; }
  const ParallelContext& parallel() const { return parallel_; }
  // The config with this rank's head counts: what its KV pools hold (the config itself on one rank).
  const ModelConfig& kv_config() const { return kv_config_; }

  // Optional hook called with each layer's residual-stream output (tests, debugging).
  using LayerObserver = std::function<void(int layer, const at::Tensor& hidden)>;

  // Runs one planned step: the plan's blocks are already allocated; this only computes (reads and writes
  // the pools, changes no allocator state). Returns fp32 logits on the model's device: [num_seqs, vocab]
  // (last token of each chunk), or [tokens, vocab] when plan.all_logits. Bad plans fail with a status;
  // device errors (CUDA out of memory, a failed launch) throw c10::Error, which the executor catches.
  // On a tensor-parallel group every rank runs the same plan (the engine's step runner sends it: the model
  // only computes); ranks other than 0 return an undefined tensor: lm_head is split by vocabulary and
  // rank 0 gathers the logits and samples. A failed or timed-out collective throws c10::Error.
  absl::StatusOr<at::Tensor> Execute(const StepPlan& plan, KvPools* pools,
                                     const LayerObserver& observer = nullptr) const;

  // Checks a plan on the host alone (what Execute checks first): chunk lengths, positions, token ids, and
  // pools where a chunk is cached. The step runner calls it before other ranks hear of a step.
  absl::Status CheckPlan(const StepPlan& plan, const KvPools* pools) const;
  // A chunk's length, positions and token ids (host data) against the model.
  absl::Status CheckChunk(int64_t start_pos, int64_t num_tokens, const int64_t* tokens) const;

  // The plan on this model's device (for tests that drive one layer).
  StepInputs Upload(const StepPlan& plan) const;

 private:
  ModelConfig config_;
  ModelWeights weights_;
  ParallelContext parallel_;  // before layers_: they keep a pointer to it
  ModelConfig kv_config_;
  at::Device device_;
  at::ScalarType dtype_;
  at::Tensor embed_, final_norm_, lm_head_;
  std::vector<std::unique_ptr<DecoderLayer>> layers_;
};

}  // namespace stepserve
