// What a model's layers need to know about the group they run in: the split, and the communicator for
// the two all-reduces of each decoder layer (after attention, after the MLP or MoE). One rank: no
// communicator, no collective.
#pragma once

#include <memory>

#include <ATen/core/Tensor.h>

#include "model/layers/collectives.h"
#include "model/loading/tensor_split.h"

namespace stepserve {

struct ParallelContext {
  ParallelConfig config;
  std::shared_ptr<Collectives> comm;  // null on a single rank

  bool distributed() const { return comm != nullptr && comm->world_size() > 1; }
  // Sums this rank's partial result with the other ranks' (nothing on a single rank).
  void AllReduce(at::Tensor& partial) const {
    if (distributed()) comm->AllReduceSum(partial);
  }
};

}  // namespace stepserve
