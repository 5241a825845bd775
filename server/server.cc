#include "server/server.h"

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
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string address = JoinHostPort(options.host, options.port);
  builder.AddListeningPort(address, credentials, &s->port_);
  builder.RegisterService(&s->generate_);
  builder.RegisterService(&s->health_);
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    s->server_.reset();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  std::string metrics_where = "off";
  if (options.metrics_port >= 0) {
    const std::string metrics_address =
        JoinHostPort(options.metrics_host.empty() ? options.host : options.metrics_host, options.metrics_port);
    RETURN_IF_ERROR(s->metrics_.StartHttp(metrics_address));
    metrics_where = absl::StrCat("port ", s->metrics_.http_port(), " /metrics");
  }
  LogInfo("gRPC listening on ", JoinHostPort(options.host, s->port_), " (", TransportName(options.tls),
          "); metrics on ", metrics_where, "; health NOT_SERVING until the model is loaded");
  return s;
}

StepServeServer::~StepServeServer() {
  Drain(absl::ZeroDuration());
  metrics_.SetStatsSource(nullptr);
  metrics_.StopHttp();
  server_.reset();
  executor_.reset();
}

absl::Status StepServeServer::AttachExecutor(std::unique_ptr<Executor> executor, const std::string& model_name) {
  if (executor == nullptr) return absl::InvalidArgumentError("no executor");
  std::lock_guard<std::mutex> lock(drain_mu_);
  if (drained_ || generate_.draining()) return absl::FailedPreconditionError("the server is draining");
  if (executor_ != nullptr) return absl::FailedPreconditionError("an executor is already attached");
  executor_ = std::move(executor);
  Executor* e = executor_.get();
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
  generate_.Attach(e, info, defaults);
  LogInfo("serving model ", model_name, " (", dtype, " on ", device, ", ", config.num_hidden_layers,
          " layers, vocab ", config.vocab_size, "): KV cache ", e->kv_capacity_tokens(), " tokens, max context ",
          e->max_context(), ", max_num_seqs ", e->options().max_num_seqs, ", max_queue ", e->options().max_queue,
          ", prefix caching ", e->options().enable_prefix_caching ? "on" : "off", "; health SERVING");
  health_.SetAll(HealthCheckResponse::SERVING);
  return absl::OkStatus();
}

void StepServeServer::BeginDrain() {
  if (generate_.draining()) return;
  generate_.BeginDrain();
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
  if (!generate_.WaitForIdle(absl::Now() + options_.stream_grace)) {
    LogWarning("drain: ", generate_.active_streams(), " streams still open after the grace period; cancelling them");
  }
  health_.Shutdown();
  if (server_ != nullptr) server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  LogInfo("drained in ", absl::FormatDuration(absl::Now() - start), "; gRPC server stopped");
}

}  // namespace stepserve::server
