#include "model/decoder_layer.h"

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "model/rms_norm.h"

#ifdef STEPSERVE_CUDA
#include "model/kernels/cuda/cuda_ops.h"
#endif

namespace stepserve {

DecoderLayer::DecoderLayer(const ModelConfig& config, int layer_index, const ModelWeights& weights,
                           at::Device device)
    : eps_(config.rms_norm_eps), attention_(config, layer_index, weights, device) {
  const std::string p = absl::StrCat("model.layers.", layer_index, ".");
  input_norm_ = weights.Get(p + "input_layernorm.weight");
  post_norm_ = weights.Get(p + "post_attention_layernorm.weight");
  if (config.layers[layer_index].is_moe) {
    moe_ = std::make_unique<MoeBlock>(config, layer_index, weights);
  } else {
    mlp_ = std::make_unique<SwiGluMlp>(weights, p + "mlp.", config.layers[layer_index].swiglu_limit_shared);
  }
}

at::Tensor DecoderLayer::Forward(const at::Tensor& x, const StepAttentionMetadata& meta,
                                 PagedKvCache* cache) const {
  at::Tensor h = attention_.Forward(RmsNorm(x, input_norm_, eps_), meta, cache);
  at::Tensor y = AddResidualAndNorm(x, h);
  return h + (moe_ ? moe_->Forward(y) : mlp_->Forward(y));
}

at::Tensor DecoderLayer::AddResidualAndNorm(const at::Tensor& residual, at::Tensor& h) const {
#ifdef STEPSERVE_CUDA
  if (h.is_cuda() && h.is_contiguous() && h.scalar_type() == residual.scalar_type()) {
    return AddRmsNormCuda(residual, h, post_norm_, eps_);
  }
#endif
  h = residual + h;
  return RmsNorm(h, post_norm_, eps_);
}

}  // namespace stepserve
