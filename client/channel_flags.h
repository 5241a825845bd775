// The channel flags stepctl and stepbench share: --target and the TLS flags, read into a ChannelConfig.
#pragma once

#include "client/channel.h"
#include "client/cli_flags.h"

namespace stepserve::client {

// Adds --target, --tls, --tls_ca, --tls_cert, --tls_key and --tls_server_name to `flags`, each writing its
// field of *config (which keeps its value, the default, when the flag is absent).
void AddChannelFlags(FlagSet* flags, ChannelConfig* config);

}  // namespace stepserve::client
