// The collectives a tensor-parallel group needs, on PyTorch's c10d: a data plane on the model's device
// (all-reduce of activations; NCCL on CUDA, Gloo on the CPU) and a control plane on the host (Gloo: the
// step plans rank 0 broadcasts, heartbeats, start-up agreements). Failures and timeouts throw c10::Error,
// like any other device error of a forward pass; the executor turns them into a group failure.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/util/intrusive_ptr.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "model/layers/collectives.h"

namespace c10d {
class Store;
}  // namespace c10d

namespace stepserve {

// Counts the time spent in collectives for stats(); C10dCommunicator is the one implementation.
class Communicator : public Collectives {
 public:
  CollectiveStats stats() const override;


 protected:
  // Accumulates one collective's wall time.
  class Timer {
   public:
    Timer(Communicator* c, bool broadcast);
    ~Timer();

   private:
    Communicator* c_;
    bool broadcast_;
    std::chrono::steady_clock::time_point start_;
  };

 private:
  std::atomic<int64_t> all_reduces_{0}, broadcasts_{0}, nanos_{0};
};

struct C10dOptions {
  int rank = 0;
  int world_size = 1;
  at::Device device = at::kCPU;      // the data plane's device (NCCL when CUDA)
  absl::Duration timeout = absl::Seconds(60);  // every collective, and the connection at start
  std::string gloo_hostname;         // the address Gloo binds; empty: GLOO_SOCKET_IFNAME, else the host name
};

// Connects this rank to the group through `store` (every rank calls it; returns when all have joined).
absl::StatusOr<std::shared_ptr<Communicator>> ConnectC10dGroup(const c10::intrusive_ptr<c10d::Store>& store,
                                                               const C10dOptions& options);

// The group's rendezvous: a c10d TCPStore at host:port, hosted by the caller when `is_server` (port 0:
// any free port). `*bound_port` receives the port in use.
absl::StatusOr<c10::intrusive_ptr<c10d::Store>> ConnectTcpStore(const std::string& host, int port, bool is_server,
                                                                int world_size, absl::Duration timeout,
                                                                int* bound_port = nullptr);

}  // namespace stepserve
