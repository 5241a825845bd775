#include "model/rotary_embedding.h"

#include <cmath>
#include <vector>

#include <ATen/ATen.h>

namespace stepserve {

RotaryEmbedding::RotaryEmbedding(const LayerConfig& layer, const RopeScaling& scaling, at::Device device)
    : rotary_dim_(layer.use_rope ? layer.rotary_dim : 0) {
  const int half = rotary_dim_ / 2;
  std::vector<float> freq(half);
  for (int i = 0; i < half; ++i) {
    double f = std::pow(layer.rope_theta, -(2.0 * i) / rotary_dim_);
    if (layer.rope_scaled && scaling.enabled) {
      // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, the band between blended.
      const double L = scaling.original_max_position_embeddings;
      const double low_wavelen = L / scaling.low_freq_factor;
      const double high_wavelen = L / scaling.high_freq_factor;
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > low_wavelen) {
        f = f / scaling.factor;
      } else if (wavelen >= high_wavelen) {
        const double s = (L / wavelen - scaling.low_freq_factor) /
                         (scaling.high_freq_factor - scaling.low_freq_factor);
        f = (1.0 - s) * f / scaling.factor + s * f;
      }
    }
    freq[i] = static_cast<float>(f);
  }
  inv_freq_ = at::tensor(freq, at::TensorOptions().dtype(at::kFloat)).to(device);
}

std::pair<at::Tensor, at::Tensor> RotaryEmbedding::CosSin(const at::Tensor& positions) const {
  at::Tensor angles = positions.to(at::kFloat).unsqueeze(1) * inv_freq_.unsqueeze(0);
  return {angles.cos(), angles.sin()};
}

at::Tensor RotaryEmbedding::Apply(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) const {
  if (rotary_dim_ == 0) return x;
  const int half = rotary_dim_ / 2;
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor x1 = xf.narrow(-1, 0, half);
  at::Tensor x2 = xf.narrow(-1, half, half);
  at::Tensor c = cos.unsqueeze(1), s = sin.unsqueeze(1);  // broadcast over heads
  std::vector<at::Tensor> parts = {x1 * c - x2 * s, x2 * c + x1 * s};
  if (rotary_dim_ < x.size(-1)) parts.push_back(xf.narrow(-1, rotary_dim_, x.size(-1) - rotary_dim_));
  return at::cat(parts, -1).to(x.scalar_type());
}

}  // namespace stepserve
