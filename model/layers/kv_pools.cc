#include "model/layers/kv_pools.h"

#include <ATen/ATen.h>

namespace stepserve {

int64_t KvBlockBytes(const ModelConfig& config, AttentionKind kind, int block_size, at::ScalarType dtype) {
  int64_t per_token = 0;
  for (const LayerConfig& l : config.layers) {
    if (l.attention_kind == kind) per_token += 2LL * l.num_kv_heads * config.head_dim;
  }
  return per_token * block_size * static_cast<int64_t>(at::elementSize(dtype));
}

KvPools::KvPools(const ModelConfig& config, const KvPoolOptions& options) {
  const auto opts = at::TensorOptions().dtype(options.dtype).device(options.device);
  for (const LayerConfig& l : config.layers) {
    const int64_t blocks = l.attention_kind == AttentionKind::kFull ? options.num_blocks_full
                                                                    : options.num_blocks_sliding;
    const int64_t slots = blocks * options.block_size;
    k_pools_.push_back(at::zeros({slots, l.num_kv_heads, config.head_dim}, opts));
    v_pools_.push_back(at::zeros({slots, l.num_kv_heads, config.head_dim}, opts));
  }
}

}  // namespace stepserve
