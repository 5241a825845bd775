// One Step3p5 decoder layer: h = x + attn(norm(x)); out = h + mlp_or_moe(post_norm(h)).
#pragma once

#include <memory>

#include <ATen/core/Tensor.h>

#include "model/layers/attention.h"
#include "model/layers/mlp.h"
#include "model/layers/moe.h"

namespace stepserve {

class DecoderLayer {
 public:
  // `parallel` (this rank's split and communicator) outlives the layer; the default is a single rank.
  DecoderLayer(const ModelConfig& config, int layer_index, const ModelWeights& weights, at::Device device,
               const ParallelContext& parallel);

  at::Tensor Forward(const at::Tensor& x, const StepInputs& step, KvPools* pools) const;

  const Attention& attention() const { return attention_; }
  const MoeBlock* moe() const { return moe_.get(); }
  const SwiGluMlp* mlp() const { return mlp_.get(); }
  const at::Tensor& post_attention_layernorm() const { return post_norm_; }

 private:
  double eps_;
  const ParallelContext* parallel_;
  at::Tensor input_norm_, post_norm_;
  Attention attention_;
  std::unique_ptr<SwiGluMlp> mlp_;  // dense layers
  std::unique_ptr<MoeBlock> moe_;   // MoE layers
};

}  // namespace stepserve
