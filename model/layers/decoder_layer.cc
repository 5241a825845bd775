#include "model/layers/decoder_layer.h"

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "model/ops/rms_norm.h"

namespace stepserve {

DecoderLayer::DecoderLayer(const ModelConfig& config, int layer_index, const ModelWeights& weights,
                           at::Device device, const ParallelContext& parallel)
    : eps_(config.rms_norm_eps), parallel_(&parallel), attention_(config, layer_index, weights, device, parallel) {
  const std::string p = absl::StrCat("model.layers.", layer_index, ".");
  input_norm_ = weights.Get(p + "input_layernorm.weight");
  post_norm_ = weights.Get(p + "post_attention_layernorm.weight");
  if (config.layers[layer_index].is_moe) {
    moe_ = std::make_unique<MoeBlock>(config, layer_index, weights, parallel.config);
  } else {
    mlp_ = std::make_unique<SwiGluMlp>(weights, p + "mlp.", config.layers[layer_index].swiglu_limit_shared);
  }
}

at::Tensor DecoderLayer::Forward(const at::Tensor& x, const StepInputs& step, KvPools* pools) const {
  at::Tensor h = attention_.Forward(RmsNorm(x, input_norm_, eps_), step, pools);
  // h = x + h in place (h is this layer's own attention output), y = RmsNorm(h): one fused op.
  at::Tensor y = AddRmsNorm(x, h, post_norm_, eps_);
  // On several ranks each holds a slice of the MLP (or some experts): one all-reduce sums the partials.
  at::Tensor m = moe_ ? moe_->Forward(y) : mlp_->Forward(y);
  parallel_->AllReduce(m);
  return h + m;
}

}  // namespace stepserve
