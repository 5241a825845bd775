#include "client/channel.h"

#include <fstream>
#include <sstream>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

namespace stepserve::client {

bool ReadFileToString(const std::string& path, std::string* contents) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream os;
  os << in.rdbuf();
  if (in.bad()) return false;
  *contents = os.str();
  return true;
}

grpc::Status MakeChannel(const ChannelConfig& config, std::shared_ptr<grpc::Channel>* channel) {
  if (config.target.empty()) return {grpc::StatusCode::INVALID_ARGUMENT, "--target is empty"};
  if (config.tls_cert.empty() != config.tls_key.empty()) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "--tls_cert and --tls_key must be given together"};
  }
  const bool tls = config.tls || !config.tls_ca.empty() || !config.tls_cert.empty();
  grpc::ChannelArguments args;
  // Fail fast instead of backing off for long between connection attempts to a server that is down.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (!tls) {
    if (!config.tls_server_name.empty()) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "--tls_server_name needs TLS (--tls or --tls_ca)"};
    }
    creds = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions opts;
    const std::pair<const std::string*, std::string*> files[] = {
        {&config.tls_ca, &opts.pem_root_certs},
        {&config.tls_cert, &opts.pem_cert_chain},
        {&config.tls_key, &opts.pem_private_key}};
    for (const auto& [path, out] : files) {
      if (path->empty()) continue;
      if (!ReadFileToString(*path, out)) {
        return {grpc::StatusCode::INVALID_ARGUMENT, "cannot read TLS file " + *path};
      }
    }
    creds = grpc::SslCredentials(opts);
    if (!config.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(config.tls_server_name);
    }
  }
  *channel = grpc::CreateCustomChannel(config.target, creds, args);
  return grpc::Status::OK;
}

const char* StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "UNKNOWN_CODE";
  }
}

std::string DescribeStatus(const grpc::Status& status, const std::string& target) {
  std::string out = std::string(StatusCodeName(status.error_code())) + ": " + status.error_message();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    out += " (is a stepserve server running at " + target + "?)";
  } else if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    out += " (no answer from " + target + " within the timeout)";
  }
  return out;
}

}  // namespace stepserve::client
