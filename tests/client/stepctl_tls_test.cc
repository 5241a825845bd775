// stepctl over TLS and mutual TLS against a live server, with a throwaway CA made by openssl.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "live_server.h"
#include "subprocess.h"

namespace stepserve::testing {
namespace {

std::string Describe(const CommandResult& r) {
  return "exit " + std::to_string(r.exit_code) + (r.timed_out ? " (timed out)" : "") + "\nstdout:\n" + r.out +
         "\nstderr:\n" + r.err;
}

// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, in a fresh directory.
class Certificates {
 public:
  bool Make(std::string* error) {
    char tmpl[] = "/tmp/stepctl_tls_XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return false;
    dir_ = tmpl;
    std::ofstream(dir_ + "/server.ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    std::ofstream(dir_ + "/client.ext") << "extendedKeyUsage=clientAuth\n";
    const std::string ec = "-newkey", curve = "ec", opt = "-pkeyopt", param = "ec_paramgen_curve:prime256v1";
    const std::vector<std::vector<std::string>> steps = {
        {"req", "-x509", ec, curve, opt, param, "-nodes", "-keyout", P("ca.key"), "-out", P("ca.pem"), "-days", "2",
         "-subj", "/CN=stepserve-test-ca"},
        {"req", ec, curve, opt, param, "-nodes", "-keyout", P("server.key"), "-out", P("server.csr"), "-subj",
         "/CN=localhost"},
        {"x509", "-req", "-in", P("server.csr"), "-CA", P("ca.pem"), "-CAkey", P("ca.key"), "-CAcreateserial",
         "-out", P("server.pem"), "-days", "2", "-extfile", P("server.ext")},
        {"req", ec, curve, opt, param, "-nodes", "-keyout", P("client.key"), "-out", P("client.csr"), "-subj",
         "/CN=stepctl-test"},
        {"x509", "-req", "-in", P("client.csr"), "-CA", P("ca.pem"), "-CAkey", P("ca.key"), "-CAcreateserial",
         "-out", P("client.pem"), "-days", "2", "-extfile", P("client.ext")},
    };
    for (auto args : steps) {
      args.insert(args.begin(), kOpenssl);
      const CommandResult r = RunCommand(args, 60);
      if (r.exit_code != 0) {
        *error = "openssl " + args[1] + ": " + Describe(r);
        return false;
      }
    }
    return true;
  }
  ~Certificates() {
    if (!dir_.empty()) RunCommand({"/bin/rm", "-rf", dir_}, 30);
  }
  std::string P(const std::string& name) const { return dir_ + "/" + name; }

  static constexpr const char* kOpenssl = "/usr/bin/openssl";

 private:
  std::string dir_;
};

TEST(StepctlTlsTest, MutualTlsWorksAndPlaintextOrNoClientCertificateFail) {
  if (!ServerInBuild()) GTEST_SKIP() << "stepserve is not built in this configuration";
  if (::access(Certificates::kOpenssl, X_OK) != 0) GTEST_SKIP() << "no openssl to make test certificates";
  Certificates certs;
  std::string error;
  ASSERT_TRUE(certs.Make(&error)) << error;

  client::ChannelConfig probe;
  probe.tls_ca = certs.P("ca.pem");
  probe.tls_cert = certs.P("client.pem");
  probe.tls_key = certs.P("client.key");
  auto server = LiveServer::Start({"--tls_cert=" + certs.P("server.pem"), "--tls_key=" + certs.P("server.key"),
                                   "--tls_client_ca=" + certs.P("ca.pem")},
                                  &error, probe);
  ASSERT_NE(server, nullptr) << error;
  const std::string target = "--target=" + server->target();
  const auto stepctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), STEPCTL_BIN);
    args.push_back(target);
    args.push_back("--timeout_s=10");
    return RunCommand(args, 60);
  };

  CommandResult r = stepctl({"health", "--tls_ca=" + certs.P("ca.pem"), "--tls_cert=" + certs.P("client.pem"),
                             "--tls_key=" + certs.P("client.key")});
  EXPECT_EQ(r.exit_code, 0) << Describe(r) << server->log();
  EXPECT_EQ(r.out, "SERVING\n");
  r = stepctl({"generate", "--tokens=1,2", "--max_new_tokens=2", "--ignore_eos", "--tls_ca=" + certs.P("ca.pem"),
               "--tls_cert=" + certs.P("client.pem"), "--tls_key=" + certs.P("client.key"),
               "--tls_server_name=localhost"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_NE(r.out.find("completion_tokens=2"), std::string::npos) << r.out;

  // The server requires a client certificate.
  r = stepctl({"health", "--tls_ca=" + certs.P("ca.pem")});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_FALSE(r.err.empty());
  // A plaintext client cannot talk to a TLS server.
  r = stepctl({"health"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  // A client that does not trust the server's CA (its own certificate as the root) fails the handshake.
  r = stepctl({"health", "--tls_ca=" + certs.P("client.pem"), "--tls_cert=" + certs.P("client.pem"),
               "--tls_key=" + certs.P("client.key")});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
}

}  // namespace
}  // namespace stepserve::testing
