// stepserve: the gRPC model server. Binds first (health NOT_SERVING), loads the model, builds the executor
// (KV cache, warm-up), goes SERVING, and drains on SIGTERM/SIGINT (exit code 0). Signals: one thread takes
// them all (server/process_signals.h; exit codes there and in docs/server.md).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
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
#include "server/api_keys.h"
#include "server/flag_checks.h"
#include "server/process_signals.h"
#include "server/rank_launcher.h"
#include "server/server.h"
#include "server/text_pipeline.h"
#include "server/tensor_parallel_startup.h"

ABSL_FLAG(std::string, host, "0.0.0.0", "Address to listen on for gRPC.");
ABSL_FLAG(int32_t, port, 50051, "gRPC port (0: any free port, reported in the start-up log line).");
ABSL_FLAG(int32_t, metrics_port, 9400, "Prometheus /metrics HTTP port (0: any free port; -1: off).");
ABSL_FLAG(std::string, metrics_host, "127.0.0.1",
          "Address of the /metrics port: loopback by default; in Kubernetes pass 0.0.0.0 (Prometheus scrapes the "
          "pod IP), as deploy/kubernetes does.");
ABSL_FLAG(bool, enable_reflection, false, "Serve gRPC server reflection (grpc.reflection.v1alpha), e.g. for grpcurl.");
ABSL_FLAG(std::vector<std::string>, api_key, {},
          "API keys (a comma-separated list): every StepServe RPC needs metadata \"authorization: Bearer KEY\" "
          "and the HTTP front \"Authorization: Bearer KEY\" (health and /metrics exempt). Visible in the process "
          "list: prefer --api_key_file or the environment variable STEPSERVE_API_KEY (same format, added to these).");
ABSL_FLAG(std::string, api_key_file, "",
          "A file of API keys, one per line ('#' comments): re-read on SIGHUP and when it changes, so keys can be "
          "rotated without a restart.");
ABSL_FLAG(std::string, model, "tiny", "A checkpoint directory or a preset (tiny, small[:LAYERS], flash[:LAYERS]).");
ABSL_FLAG(std::string, dtype, "float32", "Compute dtype: float32 or bfloat16.");
ABSL_FLAG(std::string, device, "auto", "cpu, cuda (or cuda:N), or auto (cuda when available).");
ABSL_FLAG(uint64_t, seed, 0, "Seed of a preset's random weights.");
ABSL_FLAG(int32_t, max_num_seqs, 32, "Sequences in one engine step.");
ABSL_FLAG(int32_t, max_num_batched_tokens, 512, "Tokens in one engine step (prefill chunks + decodes).");
ABSL_FLAG(int64_t, kv_cache_bytes, stepserve::server::kDefaultKvCacheBytes,
          "KV cache size in bytes: the size on the CPU (default 256 MiB); on a GPU a fixed size instead of the "
          "fraction.");
ABSL_FLAG(double, kv_cache_memory_fraction, stepserve::server::kDefaultKvCacheMemoryFraction,
          "CUDA: the KV cache takes this fraction of the device memory the weights leave (default 0.9, as "
          "--dry_run plans); not for the CPU.");
ABSL_FLAG(int32_t, block_size, 16, "KV cache block size in tokens.");
ABSL_FLAG(int32_t, max_queue, 1024, "Waiting requests before new ones get RESOURCE_EXHAUSTED.");
ABSL_FLAG(int32_t, max_new_tokens_cap, 4096, "Largest stopping.max_new_tokens accepted.");
ABSL_FLAG(int32_t, default_max_new_tokens, 256, "max_new_tokens for requests that leave it unset.");
ABSL_FLAG(int32_t, max_logprobs, 20, "Largest logprobs (top-n) accepted.");
ABSL_FLAG(int32_t, max_stop_token_ids, 1024, "Most entries of stopping.stop_token_ids (stop_token_ids) a request may have.");
ABSL_FLAG(int32_t, max_request_id_length, 256, "Longest request_id in bytes (printable ASCII only).");
ABSL_FLAG(int32_t, max_cache_salt_length, 256, "Longest cache_salt in bytes.");
ABSL_FLAG(int32_t, max_stop_strings, 16, "Most stop strings a request may have.");
ABSL_FLAG(int32_t, max_stop_string_bytes, 1024, "Longest stop string in bytes.");
ABSL_FLAG(int32_t, max_chat_messages, 1024, "Most chat messages a request may have.");
ABSL_FLAG(int32_t, max_tools, 256, "Most tools a chat request may define.");
ABSL_FLAG(double, load_timeout_s, 0,
          "Give up loading the model (config, weights, joining the group) after this many seconds and exit 2 "
          "(0: no limit).");
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
ABSL_FLAG(std::string, tokenizer, "",
          "Directory with the tokenizer (tokenizer.json, tokenizer_config.json, generation_config.json) for text "
          "requests; default: the --model directory (presets bring a builtin one). A checkpoint without "
          "tokenizer.json serves token ids only.");
ABSL_FLAG(std::string, chat_template, "", "A Jinja chat template file that overrides the tokenizer's.");
ABSL_FLAG(std::string, served_model_name, "",
          "The model's name in the APIs (OpenAI `model`, ModelInfo.model); default: the preset name or the "
          "checkpoint directory's base name.");
ABSL_FLAG(int32_t, http_port, 8000, "OpenAI-compatible HTTP port (0: off).");
ABSL_FLAG(std::string, http_host, "", "Address of the HTTP port; empty: the same as --host.");
ABSL_FLAG(int64_t, http_max_body_bytes, 8ll << 20, "Largest HTTP request body; larger ones get 413.");
ABSL_FLAG(int32_t, http_threads, 0,
          "HTTP worker threads: each in-progress HTTP request (a stream until its end) and each idle keep-alive "
          "connection holds one; 0: max(64, 2 * --max_num_seqs + 16).");
ABSL_FLAG(int32_t, max_stream_buffered_outputs, 256,
          "Backpressure: undelivered responses (gRPC messages, HTTP stream events) one stream may hold; at this "
          "many its request is paused (not scheduled) until the client has read half of them.");
ABSL_FLAG(double, stream_stall_timeout_s, 60.0,
          "A stream whose client reads nothing for this long ends (gRPC: RESOURCE_EXHAUSTED) and frees its "
          "request, KV blocks and buffered responses; 0: never.");

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

// --kv_cache_bytes / --kv_cache_memory_fraction, one meaning (server/flag_checks.h).
// Whether the command line sets the flag (Abseil 20220623 keeps IsSpecifiedOnCommandLine private).
bool GivenOnCommandLine(const std::vector<std::string>& args, const std::string& name) {
  for (const std::string& arg : args) {
    if (arg == "--") break;
    for (const std::string& dashes : {std::string("--"), std::string("-")}) {
      const std::string flag = dashes + name;
      if (arg == flag || arg.rfind(flag + "=", 0) == 0) return true;
    }
  }
  return false;
}

absl::StatusOr<stepserve::server::KvCacheSize> KvCacheSizeFromFlags(const at::Device& device,
                                                                    const std::vector<std::string>& args) {
  auto given = [&args](const char* name) { return GivenOnCommandLine(args, name); };
  return stepserve::server::ResolveKvCacheSize(device.is_cuda(), given("kv_cache_bytes"),
                                               absl::GetFlag(FLAGS_kv_cache_bytes), given("kv_cache_memory_fraction"),
                                               absl::GetFlag(FLAGS_kv_cache_memory_fraction));
}

// Every numeric flag that has a range: a bad value is a bad flag (exit 2).
absl::Status CheckNumericFlagsFromFlags() {
  using stepserve::server::NumericFlag;
  using Rule = NumericFlag::Rule;
  return stepserve::server::CheckNumericFlags({
      {"port", static_cast<double>(absl::GetFlag(FLAGS_port)), Rule::kPort},
      {"metrics_port", static_cast<double>(absl::GetFlag(FLAGS_metrics_port)), Rule::kPortOrOff},
      {"http_port", static_cast<double>(absl::GetFlag(FLAGS_http_port)), Rule::kPort},
      {"max_num_seqs", static_cast<double>(absl::GetFlag(FLAGS_max_num_seqs)), Rule::kPositive},
      {"max_num_batched_tokens", static_cast<double>(absl::GetFlag(FLAGS_max_num_batched_tokens)), Rule::kPositive},
      {"kv_cache_bytes", static_cast<double>(absl::GetFlag(FLAGS_kv_cache_bytes)), Rule::kPositive},
      {"kv_cache_memory_fraction", absl::GetFlag(FLAGS_kv_cache_memory_fraction), Rule::kFraction, false},
      {"block_size", static_cast<double>(absl::GetFlag(FLAGS_block_size)), Rule::kPositive},
      {"max_queue", static_cast<double>(absl::GetFlag(FLAGS_max_queue)), Rule::kPositive},
      {"max_new_tokens_cap", static_cast<double>(absl::GetFlag(FLAGS_max_new_tokens_cap)), Rule::kPositive},
      {"default_max_new_tokens", static_cast<double>(absl::GetFlag(FLAGS_default_max_new_tokens)), Rule::kPositive},
      {"max_logprobs", static_cast<double>(absl::GetFlag(FLAGS_max_logprobs)), Rule::kNonNegative},
      {"max_stop_token_ids", static_cast<double>(absl::GetFlag(FLAGS_max_stop_token_ids)), Rule::kNonNegative},
      {"max_request_id_length", static_cast<double>(absl::GetFlag(FLAGS_max_request_id_length)), Rule::kPositive},
      {"max_cache_salt_length", static_cast<double>(absl::GetFlag(FLAGS_max_cache_salt_length)), Rule::kNonNegative},
      {"max_stop_strings", static_cast<double>(absl::GetFlag(FLAGS_max_stop_strings)), Rule::kNonNegative},
      {"max_stop_string_bytes", static_cast<double>(absl::GetFlag(FLAGS_max_stop_string_bytes)), Rule::kPositive},
      {"max_chat_messages", static_cast<double>(absl::GetFlag(FLAGS_max_chat_messages)), Rule::kPositive},
      {"max_tools", static_cast<double>(absl::GetFlag(FLAGS_max_tools)), Rule::kNonNegative},
      {"load_timeout_s", absl::GetFlag(FLAGS_load_timeout_s), Rule::kNonNegative, false},
      {"drain_timeout_s", absl::GetFlag(FLAGS_drain_timeout_s), Rule::kNonNegative, false},
      {"tensor_parallel_size", static_cast<double>(absl::GetFlag(FLAGS_tensor_parallel_size)), Rule::kPositive},
      {"nnodes", static_cast<double>(absl::GetFlag(FLAGS_nnodes)), Rule::kPositive},
      {"node_rank", static_cast<double>(absl::GetFlag(FLAGS_node_rank)), Rule::kNonNegative},
      {"dist_timeout_s", absl::GetFlag(FLAGS_dist_timeout_s), Rule::kPositive, false},
      {"dist_startup_timeout_s", absl::GetFlag(FLAGS_dist_startup_timeout_s), Rule::kPositive, false},
      {"dry_run_device_memory_gib", absl::GetFlag(FLAGS_dry_run_device_memory_gib), Rule::kPositive, false},
      {"http_max_body_bytes", static_cast<double>(absl::GetFlag(FLAGS_http_max_body_bytes)), Rule::kPositive},
      {"http_threads", static_cast<double>(absl::GetFlag(FLAGS_http_threads)), Rule::kNonNegative},
      {"max_stream_buffered_outputs", static_cast<double>(absl::GetFlag(FLAGS_max_stream_buffered_outputs)),
       Rule::kPositive},
      {"stream_stall_timeout_s", absl::GetFlag(FLAGS_stream_stall_timeout_s), Rule::kNonNegative, false},
  });
}

stepserve::ExecutorOptions ExecutorOptionsFromFlags(const stepserve::server::KvCacheSize& kv_cache) {
  stepserve::ExecutorOptions executor_options;
  executor_options.max_num_seqs = absl::GetFlag(FLAGS_max_num_seqs);
  executor_options.max_num_batched_tokens = absl::GetFlag(FLAGS_max_num_batched_tokens);
  executor_options.kv_cache_bytes = kv_cache.bytes;
  executor_options.kv_cache_memory_fraction = kv_cache.fraction;
  executor_options.block_size = absl::GetFlag(FLAGS_block_size);
  executor_options.max_queue = absl::GetFlag(FLAGS_max_queue);
  executor_options.max_new_tokens_cap = absl::GetFlag(FLAGS_max_new_tokens_cap);
  executor_options.max_logprobs = absl::GetFlag(FLAGS_max_logprobs);
  executor_options.max_stop_token_ids = absl::GetFlag(FLAGS_max_stop_token_ids);
  executor_options.max_request_id_length = absl::GetFlag(FLAGS_max_request_id_length);
  executor_options.max_cache_salt_length = absl::GetFlag(FLAGS_max_cache_salt_length);
  executor_options.enable_prefix_caching = absl::GetFlag(FLAGS_enable_prefix_caching);
  executor_options.run_warmup = true;
  return executor_options;
}

int Run(const std::vector<std::string>& args) {
  // main() started the signal thread before anything else (server/process_signals.h): SIGTERM/SIGINT exit
  // until SetServing, then come to WaitForStop below, as do SIGUSR1 (the tensor-parallel group failed) and
  // SIGUSR2 (a worker process of this node exited); SIGHUP reloads the API keys.
  stepserve::server::ProcessSignals& signals = stepserve::server::ProcessSignals::Start();
  if (absl::Status s = CheckNumericFlagsFromFlags(); !s.ok()) {
    LogError(s.message());
    return 2;
  }

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
  auto kv_cache = KvCacheSizeFromFlags(*device, args);
  if (!kv_cache.ok()) {
    LogError(kv_cache.status().message());
    return 2;
  }
  const std::string model_spec = absl::GetFlag(FLAGS_model);
  stepserve::ModelLoadOptions load;
  load.dtype = *dtype;
  load.device = *device;
  load.seed = absl::GetFlag(FLAGS_seed);
  if (absl::GetFlag(FLAGS_load_timeout_s) > 0) load.load_timeout = absl::Seconds(absl::GetFlag(FLAGS_load_timeout_s));
  if (layout->rank != 0) {
    return stepserve::server::RunWorkerRank(*layout, tp_flags, args, model_spec, load,
                                            ExecutorOptionsFromFlags(*kv_cache));
  }

  // The text front (tokenizer, chat template) before anything binds: a bad one is a bad flag.
  std::shared_ptr<stepserve::server::TextPipeline> text;
  {
    auto config = stepserve::LoadModelSpecConfig(model_spec);
    if (!config.ok()) {
      LogError("--model: ", config.status().message());
      return 2;
    }
    stepserve::server::TextOptions text_options;
    text_options.tokenizer_dir = absl::GetFlag(FLAGS_tokenizer);
    text_options.chat_template_file = absl::GetFlag(FLAGS_chat_template);
    text_options.served_model_name = absl::GetFlag(FLAGS_served_model_name);
    auto loaded = stepserve::server::TextPipeline::Load(text_options, model_spec, config->vocab_size);
    if (!loaded.ok()) {
      LogError(loaded.status().message());
      return 2;
    }
    text = *std::move(loaded);
    stepserve::server::TextLimits limits;
    limits.max_stop_strings = absl::GetFlag(FLAGS_max_stop_strings);
    limits.max_stop_string_bytes = absl::GetFlag(FLAGS_max_stop_string_bytes);
    limits.max_chat_messages = absl::GetFlag(FLAGS_max_chat_messages);
    limits.max_tools = absl::GetFlag(FLAGS_max_tools);
    text->set_limits(limits);
  }

  // API keys before anything binds: a bad key file is a bad flag. SIGHUP re-reads the file.
  // STEPSERVE_API_KEY (a comma-separated list, e.g. from a Kubernetes Secret) adds to --api_key.
  std::vector<std::string> flag_keys = absl::GetFlag(FLAGS_api_key);
  if (const char* env = std::getenv("STEPSERVE_API_KEY"); env != nullptr && *env != '\0') flag_keys.emplace_back(env);
  auto api_keys = stepserve::server::ApiKeys::Create(flag_keys, absl::GetFlag(FLAGS_api_key_file));
  if (!api_keys.ok()) {
    LogError(api_keys.status().message());
    return 2;
  }
  // Never destroyed: the signal thread may reload it until the process exits.
  stepserve::server::ApiKeys* keys = api_keys->release();
  signals.SetReloadHook([keys] {
    if (keys->key_file().empty()) {
      stepserve::LogInfo("SIGHUP: no --api_key_file to reload");
      return;
    }
    if (keys->Reload().ok()) stepserve::LogInfo("SIGHUP: ", keys->num_keys(), " API keys now valid");
  });

  stepserve::server::ServerOptions options;
  options.host = absl::GetFlag(FLAGS_host);
  options.metrics_host = absl::GetFlag(FLAGS_metrics_host);
  options.enable_reflection = absl::GetFlag(FLAGS_enable_reflection);
  options.api_keys = keys;
  options.port = absl::GetFlag(FLAGS_port);
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  options.default_max_new_tokens = absl::GetFlag(FLAGS_default_max_new_tokens);
  options.http_port = absl::GetFlag(FLAGS_http_port) == 0 ? -1 : absl::GetFlag(FLAGS_http_port);
  options.http_host = absl::GetFlag(FLAGS_http_host);
  options.http_max_body_bytes = static_cast<size_t>(std::max<int64_t>(1, absl::GetFlag(FLAGS_http_max_body_bytes)));
  options.http_threads = absl::GetFlag(FLAGS_http_threads) > 0
                             ? absl::GetFlag(FLAGS_http_threads)
                             : std::max(64, 2 * absl::GetFlag(FLAGS_max_num_seqs) + 16);
  options.stream_flow.max_buffered_outputs = absl::GetFlag(FLAGS_max_stream_buffered_outputs);
  options.stream_flow.stall_timeout = absl::GetFlag(FLAGS_stream_stall_timeout_s) > 0
                                          ? absl::Seconds(absl::GetFlag(FLAGS_stream_stall_timeout_s))
                                          : absl::InfiniteDuration();

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

  stepserve::ExecutorOptions executor_options = ExecutorOptionsFromFlags(*kv_cache);
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
  if (absl::Status s = (*server)->AttachExecutor(std::move(executor).value(), text->model_name(), text);
      !s.ok()) {
    LogError("cannot start serving: ", s.message());
    return 1;
  }

  signals.SetServing();
  int signal_number = signals.WaitForStop();
  if (signal_number == SIGUSR2) {
    // A worker exited: the engine fails the group at its next collective (then SIGUSR1). If it is stuck
    // inside one that never returns (an NCCL all-reduce with a dead peer waits for the watchdog), stop
    // anyway: clients then see the connection drop, which gRPC reports as UNAVAILABLE too.
    // (The signal thread takes SIGUSR1 too: wait for it there, as long as AwaitGroupFailure would.)
    if (signals.WaitForStop(absl::Seconds(tp_flags.dist_timeout_s + 5)) != SIGUSR1) {
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
  // Before any thread of ours exists: every thread started from here on blocks the signals, one takes them.
  stepserve::server::ProcessSignals::Start();
  absl::SetProgramUsageMessage("stepserve: gRPC server for Step3p5 models. Flags: --helpfull.");
  absl::ParseCommandLine(argc, argv);
  // The flags as given: the worker ranks this process starts get the same ones.
  return Run(std::vector<std::string>(argv + 1, argv + argc));
}
