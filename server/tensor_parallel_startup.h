// The tensor-parallel start-up of the stepserve program (--tensor_parallel_size > 1): where this process sits
// in the group, the c10d store and group connection, the ranks the first process of a node starts (and what
// rank 0 does when one of them exits), and the worker ranks' main. main.cc serves on rank 0 and calls these
// around it.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/executor.h"
#include "model/model_loader.h"
#include "server/rank_launcher.h"

namespace stepserve::server {

// The group's flags, as given.
struct TensorParallelFlags {
  int tensor_parallel_size = 1;   // --tensor_parallel_size
  bool expert_parallel = false;   // --expert_parallel
  int nnodes = 1;                 // --nnodes
  int node_rank = 0;              // --node_rank
  std::string dist_addr;          // --dist_addr
  double dist_timeout_s = 60;     // --dist_timeout_s
  double dist_startup_timeout_s = 1800;  // --dist_startup_timeout_s
  int worker_rank = -1;           // --worker_rank (internal)
};

// Where this process sits in the tensor-parallel group.
struct GroupLayout {
  int world = 1;         // --tensor_parallel_size
  int per_node = 1;      // ranks on each node
  int rank = 0;          // this process's rank
  int local_rank = 0;    // its index on this node (its CUDA device)
  bool spawned = false;  // started by its node's first process (--worker_rank)
  std::string store_host = "127.0.0.1";
  int store_port = 0;    // 0 on rank 0 of a single node: any free port
};

// The flags checked (errors name the flag).
absl::StatusOr<GroupLayout> ResolveGroupLayout(const TensorParallelFlags& flags);

// A split the model cannot take is a bad flag (errors name it; a config that cannot be read: "--model: ...").
// Checked before any port is bound or rank started.
absl::Status CheckModelSplit(const GroupLayout& g, const std::string& model_spec, bool expert_parallel);

// The device of this rank: on CUDA, the local rank's GPU (an error when the node has too few); `device`
// itself for one rank or the CPU.
absl::StatusOr<at::Device> RankDevice(const GroupLayout& g, at::Device device);

// Rank 0: hosts the store (g->store_port receives its port), sets load->connect_group, and starts this
// node's other ranks (null when there are none). A rank that exits before *running_executor is set ends
// start-up at once (exit 1); later it aborts that executor and raises SIGUSR2 (see AwaitGroupFailure).
absl::StatusOr<std::unique_ptr<RankLauncher>> StartTensorParallelGroup(GroupLayout* g, const TensorParallelFlags& flags,
                                                                       const std::vector<std::string>& args,
                                                                       at::Device device,
                                                                       std::atomic<Executor*>* running_executor,
                                                                       ModelLoadOptions* load);

// Rank 0, after SIGUSR2 (a local worker rank exited): the engine fails the group at its next collective and
// raises SIGUSR1. Waits for that (SIGUSR1 blocked in every thread) up to dist_timeout_s + 5 s; false when it
// did not come (the engine is stuck inside a collective that never returns, e.g. NCCL with a dead peer).
bool AwaitGroupFailure(double dist_timeout_s);

// A worker rank: its shard (`load` with dtype, device and seed set), its KV pools, the steps rank 0 sends.
// The first process of a node other than 0 also starts its node's other ranks. Returns the exit code: 0
// after rank 0's stop, 1 when the group failed.
int RunWorkerRank(GroupLayout g, const TensorParallelFlags& flags, const std::vector<std::string>& args,
                  const std::string& model_spec, ModelLoadOptions load, const ExecutorOptions& executor_options);

}  // namespace stepserve::server
