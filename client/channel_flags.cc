#include "client/channel_flags.h"

namespace stepserve::client {

void AddChannelFlags(FlagSet* flags, ChannelConfig* config) {
  flags->AddString("target", &config->target, "server address host:port");
  flags->AddBool("tls", &config->tls, "use TLS with the system roots");
  flags->AddString("tls_ca", &config->tls_ca, "PEM roots to verify the server; implies TLS");
  flags->AddString("tls_cert", &config->tls_cert, "PEM client certificate chain for mutual TLS");
  flags->AddString("tls_key", &config->tls_key, "PEM client private key for mutual TLS");
  flags->AddString("tls_server_name", &config->tls_server_name, "name to verify in the server certificate");
}

}  // namespace stepserve::client
