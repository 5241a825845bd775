#include "server/tensor_parallel_startup.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <functional>
#include <utility>

#include <ATen/Context.h>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "engine/step_runner.h"
#include "parallel/communicator.h"

namespace stepserve::server {
namespace {

// What the group needs from this process: the store (rank 0 of node 0 hosts it) and how to join.
struct GroupConnection {
  c10::intrusive_ptr<c10d::Store> store;
  std::function<absl::StatusOr<std::shared_ptr<Communicator>>()> connect;
};

absl::StatusOr<GroupConnection> OpenGroupStore(GroupLayout* g, const TensorParallelFlags& flags, at::Device device) {
  const absl::Duration startup = absl::Seconds(flags.dist_startup_timeout_s);
  const absl::Duration timeout = absl::Seconds(flags.dist_timeout_s);
  int bound_port = g->store_port;
  ASSIGN_OR_RETURN(c10::intrusive_ptr<c10d::Store> store,
                   ConnectTcpStore(g->store_host, g->store_port, g->rank == 0, g->world, startup, &bound_port));
  g->store_port = bound_port;
  C10dOptions o;
  o.rank = g->rank;
  o.world_size = g->world;
  o.device = device;
  o.timeout = timeout;
  if (flags.nnodes == 1) o.gloo_hostname = "127.0.0.1";
  GroupConnection c;
  c.store = store;
  c.connect = [store, o] { return ConnectC10dGroup(store, o); };
  return c;
}

// The other ranks of this node, started by its first process (the same flags, plus where the store is).
absl::StatusOr<std::unique_ptr<RankLauncher>> StartLocalRanks(const GroupLayout& g,
                                                              const std::vector<std::string>& args,
                                                              RankLauncher::FailureCallback on_failure) {
  std::vector<int> ranks;
  for (int r = g.rank + 1; r < g.rank + g.per_node; ++r) ranks.push_back(r);
  if (ranks.empty()) return std::unique_ptr<RankLauncher>();
  std::vector<std::string> child_args = args;
  child_args.push_back(absl::StrCat("--dist_addr=", g.store_host, ":", g.store_port));
  return RankLauncher::Spawn(child_args, ranks, std::move(on_failure));
}

}  // namespace

absl::StatusOr<GroupLayout> ResolveGroupLayout(const TensorParallelFlags& flags) {
  GroupLayout g;
  g.world = flags.tensor_parallel_size;
  const int nnodes = flags.nnodes, node_rank = flags.node_rank;
  if (g.world < 1) return absl::InvalidArgumentError("--tensor_parallel_size must be >= 1");
  if (nnodes < 1) return absl::InvalidArgumentError("--nnodes must be >= 1");
  if (g.world % nnodes != 0) {
    return absl::InvalidArgumentError(absl::StrCat("--nnodes=", nnodes, " does not divide --tensor_parallel_size=",
                                                   g.world, " (every node runs the same number of ranks)"));
  }
  if (node_rank < 0 || node_rank >= nnodes) {
    return absl::InvalidArgumentError(absl::StrCat("--node_rank=", node_rank, " is outside [0, --nnodes=", nnodes, ")"));
  }
  g.per_node = g.world / nnodes;
  const int worker_rank = flags.worker_rank;
  g.spawned = worker_rank >= 0;
  g.rank = g.spawned ? worker_rank : node_rank * g.per_node;
  if (g.rank >= g.world) {
    return absl::InvalidArgumentError(absl::StrCat("--worker_rank=", g.rank, " is outside the group of ", g.world));
  }
  g.local_rank = g.rank % g.per_node;
  const std::string& addr = flags.dist_addr;
  if (addr.empty()) {
    if (nnodes > 1) return absl::InvalidArgumentError("--dist_addr=HOST:PORT is required with --nnodes > 1");
  } else {
    const size_t colon = addr.rfind(':');
    if (colon == std::string::npos || colon == 0 || !absl::SimpleAtoi(addr.substr(colon + 1), &g.store_port) ||
        g.store_port < 0 || g.store_port > 65535 || (g.rank != 0 && g.store_port == 0)) {
      return absl::InvalidArgumentError(absl::StrCat("--dist_addr: expected HOST:PORT, got \"", addr, "\""));
    }
    g.store_host = addr.substr(0, colon);
  }
  return g;
}

absl::Status CheckModelSplit(const GroupLayout& g, const std::string& model_spec, bool expert_parallel) {
  if (g.world == 1) return absl::OkStatus();
  auto config = LoadModelSpecConfig(model_spec);
  if (!config.ok()) return absl::Status(config.status().code(), absl::StrCat("--model: ", config.status().message()));
  return ValidateParallelConfig(*config, ParallelConfig{g.world, g.rank, expert_parallel});
}

absl::StatusOr<at::Device> RankDevice(const GroupLayout& g, at::Device device) {
  if (!device.is_cuda() || g.world == 1) return device;
  const int visible = static_cast<int>(at::getNumGPUs());
  if (g.per_node > visible) {
    return absl::InvalidArgumentError(absl::StrCat("--tensor_parallel_size=", g.world, " needs ", g.per_node,
                                                   " GPUs on this node; ", visible, " are visible"));
  }
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(g.local_rank));
}

absl::StatusOr<std::unique_ptr<RankLauncher>> StartTensorParallelGroup(GroupLayout* g, const TensorParallelFlags& flags,
                                                                       const std::vector<std::string>& args,
                                                                       at::Device device,
                                                                       std::atomic<Executor*>* running_executor,
                                                                       ModelLoadOptions* load) {
  ASSIGN_OR_RETURN(GroupConnection connection, OpenGroupStore(g, flags, device));
  load->connect_group = connection.connect;
  ASSIGN_OR_RETURN(std::unique_ptr<RankLauncher> local_ranks,
                   StartLocalRanks(*g, args, [running_executor](const absl::Status& s) {
                     Executor* ex = running_executor->load();
                     if (ex == nullptr) {
                       LogError("start-up failed: ", s.message());
                       std::_Exit(1);
                     }
                     ex->Abort(s);
                     kill(getpid(), SIGUSR2);
                   }));
  LogInfo("tensor parallel: ", g->world, " ranks", flags.expert_parallel ? " (expert parallel)" : "",
          ", rendezvous at ", g->store_host, ":", g->store_port);
  return local_ranks;
}

bool AwaitGroupFailure(double dist_timeout_s) {
  sigset_t failed;
  sigemptyset(&failed);
  sigaddset(&failed, SIGUSR1);
  const timespec limit{static_cast<time_t>(dist_timeout_s) + 5, 0};
  return sigtimedwait(&failed, nullptr, &limit) == SIGUSR1;
}

int RunWorkerRank(GroupLayout g, const TensorParallelFlags& flags, const std::vector<std::string>& args,
                  const std::string& model_spec, ModelLoadOptions load, const ExecutorOptions& executor_options) {
  auto connection = OpenGroupStore(&g, flags, load.device);
  if (!connection.ok()) {
    LogError("rank ", g.rank, ": ", connection.status().message());
    return 1;
  }
  std::unique_ptr<RankLauncher> local_ranks;
  if (!g.spawned) {  // the first process of a node other than 0
    auto launched = StartLocalRanks(g, args, [](const absl::Status& s) {
      LogError("a rank of this node failed (", s.message(), "); exiting");
      std::_Exit(1);
    });
    if (!launched.ok()) {
      LogError(launched.status().message());
      return 1;
    }
    local_ranks = std::move(launched).value();
  }
  load.parallel = {g.world, g.rank, flags.expert_parallel};
  load.connect_group = connection->connect;
  auto model = LoadModel(model_spec, load);
  if (!model.ok()) {
    LogError("rank ", g.rank, ": cannot load model ", model_spec, ": ", model.status().message());
    return 1;
  }
  LogInfo("rank ", g.rank, ": ", (*model)->weights().TotalBytes(), " bytes of weights on ", load.device.str());
  auto kv = PlanKvCache(**model, executor_options);
  if (!kv.ok()) {
    LogError("rank ", g.rank, ": ", kv.status().message());
    return 1;
  }
  KvPools pools((*model)->kv_config(), *kv);
  const absl::Status served = ServeWorkerSteps(**model, &pools);
  if (!served.ok()) {
    LogError(served.message());
    return 1;
  }
  if (local_ranks) {
    if (absl::Status s = local_ranks->Wait(absl::Seconds(30)); !s.ok()) {
      LogError(s.message());
      return 1;
    }
  }
  return 0;
}

}  // namespace stepserve::server
