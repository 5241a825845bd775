// stepserve: the gRPC model server. Binds first (health NOT_SERVING), loads the model, builds the executor
// (KV cache, warm-up), goes SERVING, and drains on SIGTERM/SIGINT (exit code 0).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Context.h>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "engine/executor.h"
#include "common/logging.h"
#include "model/model_loader.h"
#include "parallel/capacity_plan.h"
#include "parallel/communicator.h"
#include "engine/step_runner.h"
#include "common/status_macros.h"
#include "server/rank_launcher.h"
#include "server/server.h"

ABSL_FLAG(std::string, host, "0.0.0.0", "Address to listen on for gRPC.");
ABSL_FLAG(int32_t, port, 50051, "gRPC port (0: any free port, reported in the start-up log line).");
ABSL_FLAG(int32_t, metrics_port, 9400, "Prometheus /metrics HTTP port (0: any free port; -1: off).");
ABSL_FLAG(std::string, model, "tiny", "A checkpoint directory or a preset (tiny, small[:LAYERS], flash[:LAYERS]).");
ABSL_FLAG(std::string, dtype, "float32", "Compute dtype: float32 or bfloat16.");
ABSL_FLAG(std::string, device, "auto", "cpu, cuda (or cuda:N), or auto (cuda when available).");
ABSL_FLAG(uint64_t, seed, 0, "Seed of a preset's random weights.");
ABSL_FLAG(int32_t, max_num_seqs, 32, "Sequences in one engine step.");
ABSL_FLAG(int32_t, max_num_batched_tokens, 512, "Tokens in one engine step (prefill chunks + decodes).");
ABSL_FLAG(int64_t, kv_cache_bytes, 256ll << 20, "KV cache size in bytes.");
ABSL_FLAG(double, kv_cache_memory_fraction, 0.0,
          "CUDA only: > 0 sizes the KV cache from this fraction of free device memory instead.");
ABSL_FLAG(int32_t, block_size, 16, "KV cache block size in tokens.");
ABSL_FLAG(int32_t, max_queue, 1024, "Waiting requests before new ones get RESOURCE_EXHAUSTED.");
ABSL_FLAG(int32_t, max_new_tokens_cap, 4096, "Largest stopping.max_new_tokens accepted.");
ABSL_FLAG(int32_t, default_max_new_tokens, 256, "max_new_tokens for requests that leave it unset.");
ABSL_FLAG(int32_t, max_logprobs, 20, "Largest logprobs (top-n) accepted.");
ABSL_FLAG(bool, enable_prefix_caching, true,
          "Automatic prefix caching: full KV blocks stay cached after their request ends and later requests with "
          "the same prompt prefix (and cache_salt) reuse them instead of recomputing.");
ABSL_FLAG(double, drain_timeout_s, 30.0, "On SIGTERM/SIGINT: seconds in-flight requests get to finish.");
ABSL_FLAG(std::string, tls_cert, "", "PEM server certificate chain (TLS; plaintext when unset).");
ABSL_FLAG(std::string, tls_key, "", "PEM server private key.");
ABSL_FLAG(std::string, tls_client_ca, "", "PEM roots for client certificates: requires mutual TLS.");
ABSL_FLAG(int32_t, tensor_parallel_size, 1,
          "Ranks (one process per device) that split the model, Megatron style; on one node the first process "
          "starts the others.");
ABSL_FLAG(bool, expert_parallel, false, "MoE: whole experts per rank instead of a slice of every expert.");
ABSL_FLAG(int32_t, nnodes, 1, "Nodes the tensor-parallel group spans (each runs tensor_parallel_size / nnodes ranks).");
ABSL_FLAG(int32_t, node_rank, 0, "This node's index in [0, nnodes); node 0 runs rank 0: the gRPC server.");
ABSL_FLAG(std::string, dist_addr, "",
          "HOST:PORT of the group's rendezvous (a c10d TCPStore hosted by rank 0); required with --nnodes > 1, "
          "127.0.0.1 with any free port on one node.");
ABSL_FLAG(double, dist_timeout_s, 60.0,
          "Collective timeout: a rank that dies or hangs fails the group within about this time.");
ABSL_FLAG(double, dist_startup_timeout_s, 1800.0, "How long ranks wait for each other at start (loading included).");
ABSL_FLAG(int32_t, worker_rank, -1, "Internal: run as this worker rank (set by the process that starts it).");
ABSL_FLAG(bool, dry_run, false,
          "Print the per-rank weight bytes, the KV capacity per rank and the longest context that fits, then exit "
          "without loading any weight.");
ABSL_FLAG(double, dry_run_device_memory_gib, 141.0,
          "--dry_run: memory of each device in GiB (141: H200, 80: H100); the KV cache gets "
          "--kv_cache_memory_fraction (0.9 when unset) of what the weights leave.");

namespace {

using stepserve::LogError;
using stepserve::LogInfo;

absl::StatusOr<at::Device> ResolveDevice(const std::string& name) {
  if (name == "auto") return at::hasCUDA() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  try {
    at::Device device(name);
    if (device.is_cuda() && !at::hasCUDA()) return absl::InvalidArgumentError("--device: CUDA is not available");
    if (!device.is_cpu() && !device.is_cuda()) {
      return absl::InvalidArgumentError(absl::StrCat("--device: unsupported device \"", name, "\""));
    }
    return device;
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("--device: cannot parse \"", name, "\" (cpu, cuda or auto)"));
  }
}

// Where this process sits in the tensor-parallel group (flags checked; errors name the flag).
struct GroupLayout {
  int world = 1;         // --tensor_parallel_size
  int per_node = 1;      // ranks on each node
  int rank = 0;          // this process's rank
  int local_rank = 0;    // its index on this node (its CUDA device)
  bool spawned = false;  // started by its node's first process (--worker_rank)
  std::string store_host = "127.0.0.1";
  int store_port = 0;    // 0 on rank 0 of a single node: any free port
};

absl::StatusOr<GroupLayout> ResolveGroupLayout() {
  GroupLayout g;
  g.world = absl::GetFlag(FLAGS_tensor_parallel_size);
  const int nnodes = absl::GetFlag(FLAGS_nnodes), node_rank = absl::GetFlag(FLAGS_node_rank);
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
  const int worker_rank = absl::GetFlag(FLAGS_worker_rank);
  g.spawned = worker_rank >= 0;
  g.rank = g.spawned ? worker_rank : node_rank * g.per_node;
  if (g.rank >= g.world) {
    return absl::InvalidArgumentError(absl::StrCat("--worker_rank=", g.rank, " is outside the group of ", g.world));
  }
  g.local_rank = g.rank % g.per_node;
  const std::string addr = absl::GetFlag(FLAGS_dist_addr);
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

// --dry_run: the capacity plan from the config alone.
int RunDryRun(const std::string& model_spec, at::ScalarType dtype) {
  auto config = stepserve::LoadModelSpecConfig(model_spec);
  if (!config.ok()) {
    LogError("--model: ", config.status().message());
    return 2;
  }
  stepserve::CapacityPlanOptions o;
  o.tensor_parallel_size = absl::GetFlag(FLAGS_tensor_parallel_size);
  o.expert_parallel = absl::GetFlag(FLAGS_expert_parallel);
  o.dtype = dtype;
  o.device_memory_bytes = static_cast<int64_t>(absl::GetFlag(FLAGS_dry_run_device_memory_gib) * (1ll << 30));
  if (absl::GetFlag(FLAGS_kv_cache_memory_fraction) > 0) o.memory_fraction = absl::GetFlag(FLAGS_kv_cache_memory_fraction);
  o.block_size = absl::GetFlag(FLAGS_block_size);
  o.max_num_seqs = absl::GetFlag(FLAGS_max_num_seqs);
  o.max_num_batched_tokens = absl::GetFlag(FLAGS_max_num_batched_tokens);
  auto plan = stepserve::PlanCapacity(*config, o);
  if (!plan.ok()) {
    LogError(plan.status().message());
    return 2;
  }
  std::cout << stepserve::FormatCapacityPlan(*config, o, *plan) << std::flush;
  return plan->fits ? 0 : 3;
}

stepserve::ExecutorOptions ExecutorOptionsFromFlags() {
  stepserve::ExecutorOptions executor_options;
  executor_options.max_num_seqs = absl::GetFlag(FLAGS_max_num_seqs);
  executor_options.max_num_batched_tokens = absl::GetFlag(FLAGS_max_num_batched_tokens);
  executor_options.kv_cache_bytes = absl::GetFlag(FLAGS_kv_cache_bytes);
  executor_options.kv_cache_memory_fraction = absl::GetFlag(FLAGS_kv_cache_memory_fraction);
  executor_options.block_size = absl::GetFlag(FLAGS_block_size);
  executor_options.max_queue = absl::GetFlag(FLAGS_max_queue);
  executor_options.max_new_tokens_cap = absl::GetFlag(FLAGS_max_new_tokens_cap);
  executor_options.max_logprobs = absl::GetFlag(FLAGS_max_logprobs);
  executor_options.enable_prefix_caching = absl::GetFlag(FLAGS_enable_prefix_caching);
  executor_options.run_warmup = true;
  return executor_options;
}

// What the group needs from this process: the store (rank 0 of node 0 hosts it) and how to join.
struct GroupConnection {
  c10::intrusive_ptr<c10d::Store> store;
  std::function<absl::StatusOr<std::shared_ptr<stepserve::Communicator>>()> connect;
};

absl::StatusOr<GroupConnection> OpenGroupStore(GroupLayout* g, at::Device device) {
  const absl::Duration startup = absl::Seconds(absl::GetFlag(FLAGS_dist_startup_timeout_s));
  const absl::Duration timeout = absl::Seconds(absl::GetFlag(FLAGS_dist_timeout_s));
  int bound_port = g->store_port;
  ASSIGN_OR_RETURN(c10::intrusive_ptr<c10d::Store> store,
                   stepserve::ConnectTcpStore(g->store_host, g->store_port, g->rank == 0, g->world, startup,
                                              &bound_port));
  g->store_port = bound_port;
  stepserve::C10dOptions o;
  o.rank = g->rank;
  o.world_size = g->world;
  o.device = device;
  o.timeout = timeout;
  if (absl::GetFlag(FLAGS_nnodes) == 1) o.gloo_hostname = "127.0.0.1";
  GroupConnection c;
  c.store = store;
  c.connect = [store, o] { return stepserve::ConnectC10dGroup(store, o); };
  return c;
}

// The other ranks of this node, started by its first process (the same flags, plus where the store is).
absl::StatusOr<std::unique_ptr<stepserve::server::RankLauncher>> StartLocalRanks(
    const GroupLayout& g, const std::vector<std::string>& args,
    stepserve::server::RankLauncher::FailureCallback on_failure) {
  std::vector<int> ranks;
  for (int r = g.rank + 1; r < g.rank + g.per_node; ++r) ranks.push_back(r);
  if (ranks.empty()) return std::unique_ptr<stepserve::server::RankLauncher>();
  std::vector<std::string> child_args = args;
  child_args.push_back(absl::StrCat("--dist_addr=", g.store_host, ":", g.store_port));
  return stepserve::server::RankLauncher::Spawn(child_args, ranks, std::move(on_failure));
}

// A worker rank: its shard, its KV pools, the steps rank 0 sends. Exit 0 after rank 0's stop, 1 when the
// group failed.
int RunWorker(GroupLayout g, const std::vector<std::string>& args, at::ScalarType dtype, at::Device device) {
  auto connection = OpenGroupStore(&g, device);
  if (!connection.ok()) {
    LogError("rank ", g.rank, ": ", connection.status().message());
    return 1;
  }
  std::unique_ptr<stepserve::server::RankLauncher> local_ranks;
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
  const std::string model_spec = absl::GetFlag(FLAGS_model);
  stepserve::ModelLoadOptions load;
  load.dtype = dtype;
  load.device = device;
  load.seed = absl::GetFlag(FLAGS_seed);
  load.parallel = {g.world, g.rank, absl::GetFlag(FLAGS_expert_parallel)};
  load.connect_group = connection->connect;
  auto model = stepserve::LoadModel(model_spec, load);
  if (!model.ok()) {
    LogError("rank ", g.rank, ": cannot load model ", model_spec, ": ", model.status().message());
    return 1;
  }
  LogInfo("rank ", g.rank, ": ", (*model)->weights().TotalBytes(), " bytes of weights on ", device.str());
  auto kv = stepserve::PlanKvCache(**model, ExecutorOptionsFromFlags());
  if (!kv.ok()) {
    LogError("rank ", g.rank, ": ", kv.status().message());
    return 1;
  }
  stepserve::KvPools pools((*model)->kv_config(), *kv);
  const absl::Status served = stepserve::ServeWorkerSteps(**model, &pools);
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

int Run(const std::vector<std::string>& args) {
  // Block the termination signals in every thread (the ones gRPC, civetweb and the executor start inherit
  // the mask); this thread takes them with sigwait. SIGUSR1: the tensor-parallel group failed.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR1);
  sigaddset(&signals, SIGUSR2);  // a worker process of this node exited
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto dtype = stepserve::ParseDtype(absl::GetFlag(FLAGS_dtype));
  if (!dtype.ok()) {
    LogError("--dtype: ", dtype.status().message());
    return 2;
  }
  auto layout = ResolveGroupLayout();
  if (!layout.ok()) {
    LogError(layout.status().message());
    return 2;
  }
  if (absl::GetFlag(FLAGS_dry_run)) return RunDryRun(absl::GetFlag(FLAGS_model), *dtype);
  if (layout->world > 1) {
    // A split the model cannot take is a bad flag: refused before any port is bound or rank started.
    auto config = stepserve::LoadModelSpecConfig(absl::GetFlag(FLAGS_model));
    if (!config.ok()) {
      LogError("--model: ", config.status().message());
      return 2;
    }
    const stepserve::ParallelConfig split{layout->world, layout->rank, absl::GetFlag(FLAGS_expert_parallel)};
    if (absl::Status s = stepserve::ValidateParallelConfig(*config, split); !s.ok()) {
      LogError(s.message());
      return 2;
    }
  }
  auto device = ResolveDevice(absl::GetFlag(FLAGS_device));
  if (!device.ok()) {
    LogError(device.status().message());
    return 2;
  }
  if (device->is_cuda() && layout->world > 1) {
    const int visible = static_cast<int>(at::getNumGPUs());
    if (layout->per_node > visible) {
      LogError("--tensor_parallel_size=", layout->world, " needs ", layout->per_node, " GPUs on this node; ",
               visible, " are visible");
      return 2;
    }
    device = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(layout->local_rank));
  }
  if (layout->rank != 0) return RunWorker(*layout, args, *dtype, *device);

  stepserve::server::ServerOptions options;
  options.host = absl::GetFlag(FLAGS_host);
  options.port = absl::GetFlag(FLAGS_port);
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  options.default_max_new_tokens = absl::GetFlag(FLAGS_default_max_new_tokens);

  auto server = stepserve::server::StepServeServer::Start(options);
  if (!server.ok()) {
    LogError("cannot start the server: ", server.status().message());
    return 1;
  }

  const std::string model_spec = absl::GetFlag(FLAGS_model);
  LogInfo("loading model ", model_spec, " (", stepserve::DtypeName(*dtype), " on ", device->str(), ")");
  stepserve::ModelLoadOptions load;
  load.dtype = *dtype;
  load.device = *device;
  load.seed = absl::GetFlag(FLAGS_seed);
  load.parallel = {layout->world, 0, absl::GetFlag(FLAGS_expert_parallel)};

  // Tensor parallelism: host the store, start this node's other ranks, join once the weights are loaded.
  // A rank that exits before the executor runs ends start-up at once; later, it fails the group.
  std::atomic<stepserve::Executor*> running_executor{nullptr};
  std::unique_ptr<stepserve::server::RankLauncher> local_ranks;
  if (layout->world > 1) {
    auto connection = OpenGroupStore(&*layout, *device);
    if (!connection.ok()) {
      LogError(connection.status().message());
      return 1;
    }
    load.connect_group = connection->connect;
    auto launched = StartLocalRanks(*layout, args, [&running_executor](const absl::Status& s) {
      stepserve::Executor* ex = running_executor.load();
      if (ex == nullptr) {
        LogError("start-up failed: ", s.message());
        std::_Exit(1);
      }
      ex->Abort(s);
      kill(getpid(), SIGUSR2);
    });
    if (!launched.ok()) {
      LogError(launched.status().message());
      return 1;
    }
    local_ranks = std::move(launched).value();
    LogInfo("tensor parallel: ", layout->world, " ranks", absl::GetFlag(FLAGS_expert_parallel) ? " (expert parallel)" : "",
            ", rendezvous at ", layout->store_host, ":", layout->store_port);
  }
  auto model = stepserve::LoadModel(model_spec, load);
  if (!model.ok()) {
    LogError("cannot load model ", model_spec, ": ", model.status().message());
    return 1;
  }

  stepserve::ExecutorOptions executor_options = ExecutorOptionsFromFlags();
  stepserve::server::StepServeServer* server_ptr = server->get();
  executor_options.on_group_failure = [server_ptr](const absl::Status& s) {
    // Health NOT_SERVING now; the main thread exits non-zero (kill: the signal reaches its sigwait).
    server_ptr->BeginDrain();
    kill(getpid(), SIGUSR1);
  };
  auto executor = stepserve::Executor::Create(std::move(model).value(), executor_options);
  if (!executor.ok()) {
    LogError("cannot build the executor: ", executor.status().message());
    return 1;
  }
  running_executor = executor->get();
  if (absl::Status s = (*server)->AttachExecutor(std::move(executor).value(), model_spec); !s.ok()) {
    LogError("cannot start serving: ", s.message());
    return 1;
  }

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  if (signal_number == SIGUSR2) {
    // A worker exited: the engine fails the group at its next collective (then SIGUSR1). If it is stuck
    // inside one that never returns (an NCCL all-reduce with a dead peer waits for the watchdog), stop
    // anyway: clients then see the connection drop, which gRPC reports as UNAVAILABLE too.
    sigset_t failed;
    sigemptyset(&failed);
    sigaddset(&failed, SIGUSR1);
    const timespec limit{static_cast<time_t>(absl::GetFlag(FLAGS_dist_timeout_s)) + 5, 0};
    if (sigtimedwait(&failed, nullptr, &limit) != SIGUSR1) {
      LogError("the engine did not notice the failed rank within --dist_timeout_s; exiting now");
      (*server)->BeginDrain();
      if (local_ranks) local_ranks->Kill();
      std::_Exit(1);
    }
    signal_number = SIGUSR1;
  }
  // From here on ranks exit because of this stop (a drain's stop message, or the failure): not news.
  if (local_ranks) local_ranks->ExpectExits();
  if (signal_number == SIGUSR1) {
    LogError("the tensor-parallel group failed; stopping (exit code 1 so that the group restarts)");
    (*server)->Drain(absl::ZeroDuration());
    if (local_ranks) local_ranks->Kill();
    return 1;
  }
  const absl::Duration drain_timeout = absl::Seconds(absl::GetFlag(FLAGS_drain_timeout_s));
  LogInfo("received ", signal_number == SIGTERM ? "SIGTERM" : "SIGINT", "; draining for up to ",
          absl::FormatDuration(drain_timeout));
  (*server)->Drain(drain_timeout);
  running_executor = nullptr;
  server->reset();
  if (local_ranks) {
    if (absl::Status s = local_ranks->Wait(absl::Seconds(30)); !s.ok()) {
      LogError("worker ranks: ", s.message());
      return 1;
    }
  }
  LogInfo("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("stepserve: gRPC server for Step3p5 models. Flags: --helpfull.");
  absl::ParseCommandLine(argc, argv);
  // The flags as given: the worker ranks this process starts get the same ones.
  return Run(std::vector<std::string>(argv + 1, argv + argc));
}
