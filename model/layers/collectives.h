// The collectives a layer's partial sums need, and the control messages of a tensor-parallel group, as an
// interface: the layers and the engine call it; parallel/communicator.h implements it on PyTorch's c10d.
// Failures and timeouts throw (c10::Error), like any other device error of a forward pass.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace stepserve {

// Time spent inside collectives (host wall time: on CUDA, launch time only).
struct CollectiveStats {
  int64_t all_reduces = 0;
  int64_t broadcasts = 0;
  double seconds = 0;
};

class Collectives {
 public:
  virtual ~Collectives() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // Data plane: sums `t` (on the model's device) over the ranks, in place.
  virtual void AllReduceSum(at::Tensor& t) = 0;
  // Data plane: every rank's `t` (the same shape everywhere), in rank order.
  virtual std::vector<at::Tensor> AllGather(const at::Tensor& t) = 0;
  // Control plane: `t` is a CPU tensor; rank 0's contents reach every rank (the same shape everywhere).
  virtual void Broadcast(at::Tensor& t) = 0;
  // Control plane: element-wise minimum over the ranks of a CPU int64 tensor, in place.
  virtual void AllReduceMin(at::Tensor& t) = 0;

  // Time spent inside collectives so far.
  virtual CollectiveStats stats() const = 0;
};

}  // namespace stepserve
