#include "model/loading/weight_sharding.h"

#include <unordered_map>

#include <ATen/ATen.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace stepserve {

std::vector<int64_t> TensorShard::shape() const {
  std::vector<int64_t> s = full_shape;
  if (dim >= 0) s[dim] = size;
  return s;
}

int64_t TensorShard::numel() const {
  int64_t n = 1;
  for (int64_t d : shape()) n *= d;
  return n;
}

std::vector<TensorShard> RankTensorShards(const ModelConfig& c, const ParallelConfig& p) {
  std::vector<TensorShard> shards;
  const int64_t D = c.head_dim;
  for (const TensorSpec& spec : ExpectedTensors(c)) {
    TensorShard s{spec.name, spec.shape};
    auto slice = [&](int dim, IndexRange r, int64_t unit = 1) {
      s.dim = dim;
      s.begin = r.begin * unit;
      s.size = r.size * unit;
    };
    const std::string& n = spec.name;
    if (n == "lm_head.weight") {
      slice(0, VocabRange(c.vocab_size, p));  // vocab parallel (the last ranks' shards may be short: padded)
    } else if (absl::StartsWith(n, "model.layers.")) {
      const int layer = std::stoi(n.substr(13));
      const LayerConfig& l = c.layers[layer];
      const std::string leaf = n.substr(n.find('.', 13) + 1);
      if (leaf == "self_attn.q_proj.weight") {
        slice(0, QueryHeadRange(l, p), D);
      } else if (leaf == "self_attn.k_proj.weight" || leaf == "self_attn.v_proj.weight") {
        slice(0, KvHeadRange(l, p), D);
      } else if (leaf == "self_attn.o_proj.weight") {
        slice(1, QueryHeadRange(l, p), D);
      } else if (leaf == "self_attn.g_proj.weight") {
        slice(0, QueryHeadRange(l, p));
      } else if (leaf == "mlp.gate_proj.weight" || leaf == "mlp.up_proj.weight") {
        slice(0, EvenSlice(c.intermediate_size, p));
      } else if (leaf == "mlp.down_proj.weight") {
        slice(1, EvenSlice(c.intermediate_size, p));
      } else if (leaf == "share_expert.gate_proj.weight" || leaf == "share_expert.up_proj.weight") {
        slice(0, EvenSlice(c.share_expert_dim, p));
      } else if (leaf == "share_expert.down_proj.weight") {
        slice(1, EvenSlice(c.share_expert_dim, p));
      } else if (leaf == "moe.gate_proj.weight" || leaf == "moe.up_proj.weight") {
        // [experts, inter, hidden]
        p.expert_parallel ? slice(0, ExpertRange(c, p)) : slice(1, ExpertIntermediateRange(c, p));
      } else if (leaf == "moe.down_proj.weight") {
        // [experts, hidden, inter]
        p.expert_parallel ? slice(0, ExpertRange(c, p)) : slice(2, ExpertIntermediateRange(c, p));
      }
    }
    // A "slice" covering the whole dimension is the whole tensor.
    if (s.dim >= 0 && s.begin == 0 && s.size == s.full_shape[s.dim]) s.dim = -1;
    shards.push_back(std::move(s));
  }
  return shards;
}

at::Tensor SliceTensor(const at::Tensor& full, const TensorShard& shard) {
  return shard.dim < 0 ? full : full.narrow(shard.dim, shard.begin, shard.size);
}

ModelWeights ShardWeights(const ModelWeights& full, const ModelConfig& config, const ParallelConfig& parallel) {
  ModelWeights out;
  for (const TensorShard& s : RankTensorShards(config, parallel)) {
    out.Set(s.name, SliceTensor(full.Get(s.name), s).contiguous().clone());
  }
  return out;
}

int64_t RankWeightBytes(const ModelConfig& config, const ParallelConfig& parallel, int64_t element_size) {
  int64_t bytes = 0;
  for (const TensorShard& s : RankTensorShards(config, parallel)) bytes += s.numel() * element_size;
  return bytes;
}

}  // namespace stepserve
