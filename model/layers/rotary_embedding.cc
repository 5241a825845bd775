#include "model/layers/rotary_embedding.h"

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

}  // namespace stepserve
