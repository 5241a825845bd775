#include "server/server.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "model/model_loader.h"
#include "common/status_macros.h"

namespace stepserve::server {
namespace {

using grpc::health::v1::HealthCheckResponse;

absl::StatusOr<std::string> ReadFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read \"", path, "\""));
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeCredentials(const TlsOptions& tls) {
  if (tls.cert_file.empty() && tls.key_file.empty()) {
    if (!tls.client_ca_file.empty()) {
      return absl::InvalidArgumentError("--tls_client_ca needs --tls_cert and --tls_key");
    }
    return grpc::InsecureServerCredentials();
  }
  if (tls.cert_file.empty() || tls.key_file.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key must be given together");
  }
  ASSIGN_OR_RETURN(std::string cert, ReadFile("--tls_cert", tls.cert_file));
  ASSIGN_OR_RETURN(std::string key, ReadFile("--tls_key", tls.key_file));
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (!tls.client_ca_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadFile("--tls_client_ca", tls.client_ca_file));
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  ssl.pem_key_cert_pairs.push_back({std::move(key), std::move(cert)});
  return grpc::SslServerCredentials(ssl);
}

// Reflection on or off for one server. Loading libgrpc++_reflection registers its plugin for every
// ServerBuilder at static initialisation, so "off" has to remove it, not just not add it.
class ReflectionOption final : public grpc::ServerBuilderOption {
 public:
  explicit ReflectionOption(bool enable) : enable_(enable) {}
  void UpdateArguments(grpc::ChannelArguments* /*args*/) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    const std::string name = grpc::reflection::ProtoServerReflectionPlugin().name();
    plugins->erase(std::remove_if(plugins->begin(), plugins->end(),
                                  [&name](const auto& plugin) { return plugin->name() == name; }),
                   plugins->end());
    if (enable_) plugins->push_back(std::make_unique<grpc::reflection::ProtoServerReflectionPlugin>());
  }

 private:
  const bool enable_;
};

const char* TransportName(const TlsOptions& tls) {
  if (tls.cert_file.empty()) return "plaintext";
  return tls.client_ca_file.empty() ? "TLS" : "mutual TLS";
}

}  // namespace

std::string JoinHostPort(const std::string& host, int port) {
  if (host.find(':') != std::string::npos && host.front() != '[') return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

StepServeServer::StepServeServer(const ServerOptions& options) : options_(options), generate_(&metrics_) {}

absl::StatusOr<std::unique_ptr<StepServeServer>> StepServeServer::Start(const ServerOptions& options) {
  std::unique_ptr<StepServeServer> s(new StepServeServer(options));
  s->health_.SetStatus("", HealthCheckResponse::NOT_SERVING);
  s->health_.SetStatus(kStepServeServiceName, HealthCheckResponse::NOT_SERVING);

  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials, MakeCredentials(options.tls));
  grpc::ServerBuilder builder;
  // Reflection for this server only, when asked (InitProtoReflectionServerBuilderPlugin would turn it on
  // for every server the process builds).
  builder.SetOption(std::make_unique<ReflectionOption>(options.enable_reflection));
  s->generate_.SetApiKeys(options.api_keys);
  s->generate_.SetStreamFlowOptions(options.stream_flow);
  const std::string address = JoinHostPort(options.host, options.port);
  builder.AddListeningPort(address, credentials, &s->port_);
  builder.RegisterService(&s->generate_);
  builder.RegisterService(&s->health_);
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    s->server_.reset();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  std::string http_where = "off";
  if (options.http_port >= 0) {
    openai::HttpOptions http;
    http.host = options.http_host.empty() ? options.host : options.http_host;
    http.port = options.http_port;
    http.max_body_bytes = options.http_max_body_bytes;
    http.threads = options.http_threads;
    http.api_keys = options.api_keys;
    http.max_stream_buffered_outputs = options.stream_flow.max_buffered_outputs;
    http.stream_stall_timeout = options.stream_flow.stall_timeout;
    ASSIGN_OR_RETURN(s->http_, openai::OpenAiHttpServer::Start(http, &s->metrics_));
    http_where = absl::StrCat(JoinHostPort(http.host, s->http_->port()), " (", http.threads, " threads)");
  }
  std::string metrics_where = "off";
  if (options.metrics_port >= 0) {
    const std::string metrics_address =
        JoinHostPort(options.metrics_host.empty() ? options.host : options.metrics_host, options.metrics_port);
    RETURN_IF_ERROR(s->metrics_.StartHttp(metrics_address));
    metrics_where = absl::StrCat(
        JoinHostPort(options.metrics_host.empty() ? options.host : options.metrics_host, s->metrics_.http_port()),
        "/metrics");
  }
  const bool keys = options.api_keys != nullptr && options.api_keys->enabled();
  LogInfo("gRPC listening on ", JoinHostPort(options.host, s->port_), " (", TransportName(options.tls),
          keys ? ", API keys required" : ", no API key", options.enable_reflection ? ", reflection on" : "",
          "); OpenAI HTTP on ", http_where, "; metrics on ", metrics_where,
          "; health NOT_SERVING until the model is loaded");
  return s;
}

StepServeServer::~StepServeServer() {
  Drain(absl::ZeroDuration());
  metrics_.SetStatsSource(nullptr);
  metrics_.StopHttp();
  if (http_ != nullptr) http_->Stop();
  server_.reset();
  executor_.reset();
}

absl::Status StepServeServer::AttachExecutor(std::unique_ptr<Executor> executor, const std::string& given_name,
                                             std::shared_ptr<TextPipeline> text) {
  if (executor == nullptr) return absl::InvalidArgumentError("no executor");
  std::lock_guard<std::mutex> lock(drain_mu_);
  if (drained_ || generate_.draining()) return absl::FailedPreconditionError("the server is draining");
  if (executor_ != nullptr) return absl::FailedPreconditionError("an executor is already attached");
  executor_ = std::move(executor);
  Executor* e = executor_.get();
  if (text == nullptr) text = std::make_shared<TextPipeline>(nullptr, nullptr, given_name);
  text->set_metrics(&metrics_);
  const std::string model_name = text->model_name();
  const ModelConfig& config = e->config();
  const std::string device = e->model().device().str();
  const std::string dtype = DtypeName(e->model().dtype());

  v1::ModelInfo info;
  info.set_model(model_name);
  info.set_dtype(dtype);
  info.set_device(device);
  info.set_vocab_size(config.vocab_size);
  info.set_max_context(static_cast<int32_t>(e->max_context()));
  info.set_num_layers(config.num_hidden_layers);
  for (int id : config.eos_token_ids) info.add_eos_token_ids(id);
  info.set_kv_capacity_tokens(e->kv_capacity_tokens());
  info.set_max_num_seqs(e->options().max_num_seqs);
  info.set_prefix_caching(e->options().enable_prefix_caching);
  text->FillModelInfo(&info);

  RequestDefaults defaults;
  defaults.default_max_new_tokens = options_.default_max_new_tokens;
  defaults.max_new_tokens_cap = e->options().max_new_tokens_cap;
  defaults.max_context = e->max_context();

  metrics_.SetStatsSource([e](ExecutorStats* stats) {
    *stats = e->Stats();
    return true;
  });
  metrics_.SetModelInfo(model_name, device, dtype);
  ServerMetrics* metrics = &metrics_;
  e->SetStepObserver([metrics](const StepInfo& step) { metrics->ObserveStep(step); });
  generate_.Attach(e, info, defaults, text);
  if (http_ != nullptr) http_->Attach(e, text, defaults);
  LogInfo("serving model ", model_name, " (", dtype, " on ", device, ", ", config.num_hidden_layers,
          " layers, vocab ", config.vocab_size, "): KV cache ", e->kv_capacity_tokens(), " tokens, max context ",
          e->max_context(), ", max_num_seqs ", e->options().max_num_seqs, ", max_queue ", e->options().max_queue,
          ", prefix caching ", e->options().enable_prefix_caching ? "on" : "off", ", tokenizer ",
          text->has_tokenizer() ? (text->has_chat_template() ? "and chat template" : "(no chat template)")
                                : "none (token ids only)",
          "; health SERVING");
  health_.SetAll(HealthCheckResponse::SERVING);
  return absl::OkStatus();
}

void StepServeServer::BeginDrain() {
  if (generate_.draining()) return;
  generate_.BeginDrain();
  if (http_ != nullptr) http_->BeginDrain();
  health_.SetAll(HealthCheckResponse::NOT_SERVING);
  LogInfo("draining: health NOT_SERVING, new requests refused; ", generate_.active_streams(),
          " streams in flight");
}

void StepServeServer::Drain(absl::Duration timeout) {
  std::lock_guard<std::mutex> lock(drain_mu_);
  if (drained_) return;
  drained_ = true;
  BeginDrain();
  const absl::Time start = absl::Now();
  if (executor_ != nullptr) executor_->Shutdown(timeout);
  const absl::Time grace = absl::Now() + options_.stream_grace;
  if (!generate_.WaitForIdle(grace)) {
    LogWarning("drain: ", generate_.active_streams(), " streams still open after the grace period; cancelling them");
  }
  if (http_ != nullptr) {
    if (!http_->WaitForIdle(grace)) {
      LogWarning("drain: ", http_->active_requests(), " HTTP requests still open after the grace period; closing");
    }
    http_->Stop();
  }
  health_.Shutdown();
  if (server_ != nullptr) server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  LogInfo("drained in ", absl::FormatDuration(absl::Now() - start), "; gRPC server stopped");
}

}  // namespace stepserve::server
