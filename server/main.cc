// stepserve: the gRPC model server. Binds first (health NOT_SERVING), loads the model, builds the executor
// (KV cache, warm-up), goes SERVING, and drains on SIGTERM/SIGINT (exit code 0).
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include <ATen/Context.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "model/executor.h"
#include "model/logging.h"
#include "model/model_loader.h"
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
ABSL_FLAG(double, drain_timeout_s, 30.0, "On SIGTERM/SIGINT: seconds in-flight requests get to finish.");
ABSL_FLAG(std::string, tls_cert, "", "PEM server certificate chain (TLS; plaintext when unset).");
ABSL_FLAG(std::string, tls_key, "", "PEM server private key.");
ABSL_FLAG(std::string, tls_client_ca, "", "PEM roots for client certificates: requires mutual TLS.");

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

int Run() {
  // Block the termination signals in every thread (the ones gRPC, civetweb and the executor start inherit
  // the mask); this thread takes them with sigwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  stepserve::server::ServerOptions options;
  options.host = absl::GetFlag(FLAGS_host);
  options.port = absl::GetFlag(FLAGS_port);
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  options.default_max_new_tokens = absl::GetFlag(FLAGS_default_max_new_tokens);

  auto dtype = stepserve::ParseDtype(absl::GetFlag(FLAGS_dtype));
  if (!dtype.ok()) {
    LogError("--dtype: ", dtype.status().message());
    return 2;
  }
  auto device = ResolveDevice(absl::GetFlag(FLAGS_device));
  if (!device.ok()) {
    LogError(device.status().message());
    return 2;
  }

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
  auto model = stepserve::LoadModel(model_spec, load);
  if (!model.ok()) {
    LogError("cannot load model ", model_spec, ": ", model.status().message());
    return 1;
  }

  stepserve::ExecutorOptions executor_options;
  executor_options.max_num_seqs = absl::GetFlag(FLAGS_max_num_seqs);
  executor_options.max_num_batched_tokens = absl::GetFlag(FLAGS_max_num_batched_tokens);
  executor_options.kv_cache_bytes = absl::GetFlag(FLAGS_kv_cache_bytes);
  executor_options.kv_cache_memory_fraction = absl::GetFlag(FLAGS_kv_cache_memory_fraction);
  executor_options.block_size = absl::GetFlag(FLAGS_block_size);
  executor_options.max_queue = absl::GetFlag(FLAGS_max_queue);
  executor_options.max_new_tokens_cap = absl::GetFlag(FLAGS_max_new_tokens_cap);
  executor_options.max_logprobs = absl::GetFlag(FLAGS_max_logprobs);
  executor_options.run_warmup = true;
  auto executor = stepserve::Executor::Create(std::move(model).value(), executor_options);
  if (!executor.ok()) {
    LogError("cannot build the executor: ", executor.status().message());
    return 1;
  }
  if (absl::Status s = (*server)->AttachExecutor(std::move(executor).value(), model_spec); !s.ok()) {
    LogError("cannot start serving: ", s.message());
    return 1;
  }

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  const absl::Duration drain_timeout = absl::Seconds(absl::GetFlag(FLAGS_drain_timeout_s));
  LogInfo("received ", signal_number == SIGTERM ? "SIGTERM" : "SIGINT", "; draining for up to ",
          absl::FormatDuration(drain_timeout));
  (*server)->Drain(drain_timeout);
  server->reset();
  LogInfo("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("stepserve: gRPC server for Step3p5 models. Flags: --helpfull.");
  absl::ParseCommandLine(argc, argv);
  return Run();
}
