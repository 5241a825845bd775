// gRPC channel creation shared by stepctl and stepbench: plaintext, or TLS with an optional client
// certificate (mutual TLS).
#pragma once

#include <memory>
#include <string>

#include <grpcpp/channel.h>
#include <grpcpp/support/status.h>

namespace stepserve::client {

struct ChannelConfig {
  std::string target = "localhost:50051";
  bool tls = false;             // TLS with the system roots unless tls_ca is set
  std::string tls_ca;           // PEM file: roots used to verify the server; implies TLS
  std::string tls_cert;         // PEM file: client certificate chain (needs tls_key)
  std::string tls_key;          // PEM file: client private key (needs tls_cert)
  std::string tls_server_name;  // overrides the name checked against the server certificate
};

// Builds the channel; a file that cannot be read or an inconsistent set of TLS flags gives an
// INVALID_ARGUMENT status (a usage error) and no channel.
grpc::Status MakeChannel(const ChannelConfig& config, std::shared_ptr<grpc::Channel>* channel);

// Whole file contents; false when the file cannot be read.
bool ReadFileToString(const std::string& path, std::string* contents);

// "UNAVAILABLE", "INVALID_ARGUMENT", ...
const char* StatusCodeName(grpc::StatusCode code);

// "CODE: message", with a hint about the target for an unreachable server.
std::string DescribeStatus(const grpc::Status& status, const std::string& target);

}  // namespace stepserve::client
