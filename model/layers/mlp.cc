#include "model/layers/mlp.h"

#include <ATen/ATen.h>

namespace stepserve {

SwiGluMlp::SwiGluMlp(const ModelWeights& weights, const std::string& prefix, double limit)
    : gate_up_proj_(at::cat({weights.Get(prefix + "gate_proj.weight"), weights.Get(prefix + "up_proj.weight")}, 0)
                        .contiguous()),
      down_proj_(weights.Get(prefix + "down_proj.weight")),
      limit_(limit) {}

at::Tensor SwiGluMlp::Forward(const at::Tensor& x) const {
  return at::matmul(ClampedSwiGlu(at::matmul(x, gate_up_proj_.t()), limit_), down_proj_.t());
}

}  // namespace stepserve
