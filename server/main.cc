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

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "engine/executor.h"
#include "common/logging.h"
#include "model/model_loader.h"
#include "parallel/capacity_plan.h"
#include "server/rank_launcher.h"
#include "server/server.h"
#include "server/tensor_parallel_startup.h"

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

stepserve::server::TensorParallelFlags TensorParallelFlagsFromFlags() {
  stepserve::server::TensorParallelFlags f;
  f.tensor_parallel_size = absl::GetFlag(FLAGS_tensor_parallel_size);
  f.expert_parallel = absl::GetFlag(FLAGS_expert_parallel);
  f.nnodes = absl::GetFlag(FLAGS_nnodes);
  f.node_rank = absl::GetFlag(FLAGS_node_rank);
  f.dist_addr = absl::GetFlag(FLAGS_dist_addr);
  f.dist_timeout_s = absl::GetFlag(FLAGS_dist_timeout_s);
  f.dist_startup_timeout_s = absl::GetFlag(FLAGS_dist_startup_timeout_s);
  f.worker_rank = absl::GetFlag(FLAGS_worker_rank);
  return f;
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
  const stepserve::server::TensorParallelFlags tp_flags = TensorParallelFlagsFromFlags();
  auto layout = stepserve::server::ResolveGroupLayout(tp_flags);
  if (!layout.ok()) {
    LogError(layout.status().message());
    return 2;
  }
  if (absl::GetFlag(FLAGS_dry_run)) return RunDryRun(absl::GetFlag(FLAGS_model), *dtype);
  // A split the model cannot take is a bad flag: refused before any port is bound or rank started.
  if (absl::Status s = stepserve::server::CheckModelSplit(*layout, absl::GetFlag(FLAGS_model), tp_flags.expert_parallel);
      !s.ok()) {
    LogError(s.message());
    return 2;
  }
  auto device = ResolveDevice(absl::GetFlag(FLAGS_device));
  if (!device.ok()) {
    LogError(device.status().message());
    return 2;
  }
  device = stepserve::server::RankDevice(*layout, *device);
  if (!device.ok()) {
    LogError(device.status().message());
    return 2;
  }
  const std::string model_spec = absl::GetFlag(FLAGS_model);
  stepserve::ModelLoadOptions load;
  load.dtype = *dtype;
  load.device = *device;
  load.seed = absl::GetFlag(FLAGS_seed);
  if (layout->rank != 0) {
    return stepserve::server::RunWorkerRank(*layout, tp_flags, args, model_spec, load, ExecutorOptionsFromFlags());
  }

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

  LogInfo("loading model ", model_spec, " (", stepserve::DtypeName(*dtype), " on ", device->str(), ")");
  load.parallel = {layout->world, 0, tp_flags.expert_parallel};

  // Tensor parallelism: host the store, start this node's other ranks, join once the weights are loaded.
  // A rank that exits before the executor runs ends start-up at once; later, it fails the group.
  std::atomic<stepserve::Executor*> running_executor{nullptr};
  std::unique_ptr<stepserve::server::RankLauncher> local_ranks;
  if (layout->world > 1) {
    auto launched =
        stepserve::server::StartTensorParallelGroup(&*layout, tp_flags, args, *device, &running_executor, &load);
    if (!launched.ok()) {
      LogError(launched.status().message());
      return 1;
    }
    local_ranks = std::move(launched).value();
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
    if (!stepserve::server::AwaitGroupFailure(tp_flags.dist_timeout_s)) {
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
