// TLS and mutual TLS on loopback, with a throw-away CA made by the openssl command-line tool.
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/server/server_test_util.h"

namespace stepserve::testing {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// ca.pem/ca.key, server.pem/server.key (localhost, 127.0.0.1), client.pem/client.key, all signed by the CA.
bool MakeCertificates(const std::string& dir) {
  const std::string script = absl::StrCat(
      "cd '", dir, "' && ( ",
      "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > server.ext && ",
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=stepserve-test-ca && ",
      "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost && ",
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 "
      "-extfile server.ext && ",
      "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=stepserve-test-client && ",
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2",
      " ) > openssl.log 2>&1");
  return std::system(script.c_str()) == 0;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("openssl version > /dev/null 2>&1") != 0) GTEST_SKIP() << "no openssl command";
    dir_ = MakeTempDir("tls");
    ASSERT_TRUE(MakeCertificates(dir_)) << ReadAll(dir_ + "/openssl.log");
  }

  std::shared_ptr<grpc::Channel> TlsChannel(int port, bool client_certificate) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadAll(dir_ + "/ca.pem");
    if (client_certificate) {
      ssl.pem_private_key = ReadAll(dir_ + "/client.key");
      ssl.pem_cert_chain = ReadAll(dir_ + "/client.pem");
    }
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port), grpc::SslCredentials(ssl), args);
  }

  static grpc::Status Generate(const std::shared_ptr<grpc::Channel>& channel, std::vector<int32_t>* tokens) {
    auto stub = v1::StepServe::NewStub(channel);
    GenerateResult result = RunGenerate(stub.get(), GreedyRequest(Greedy()[0].prompt, 20), absl::Seconds(30));
    *tokens = result.tokens;
    return result.status;
  }

  std::string dir_;
};

TEST_F(TlsTest, ServesOverTlsAndRefusesPlaintext) {
  TestServerOptions options;
  options.tls.cert_file = dir_ + "/server.pem";
  options.tls.key_file = dir_ + "/server.key";
  TestServer server(options);
  std::vector<int32_t> tokens;
  grpc::Status s = Generate(TlsChannel(server.server().port(), false), &tokens);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(tokens, Greedy()[0].greedy);
  auto plaintext = grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials());
  EXPECT_FALSE(Generate(plaintext, &tokens).ok());
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificateSignedByTheCa) {
  TestServerOptions options;
  options.tls.cert_file = dir_ + "/server.pem";
  options.tls.key_file = dir_ + "/server.key";
  options.tls.client_ca_file = dir_ + "/ca.pem";
  TestServer server(options);
  std::vector<int32_t> tokens;
  grpc::Status with_cert = Generate(TlsChannel(server.server().port(), true), &tokens);
  ASSERT_TRUE(with_cert.ok()) << with_cert.error_message();
  EXPECT_EQ(tokens, Greedy()[0].greedy);
  grpc::Status without_cert = Generate(TlsChannel(server.server().port(), false), &tokens);
  EXPECT_EQ(without_cert.error_code(), grpc::StatusCode::UNAVAILABLE) << without_cert.error_message();
}

TEST(TlsOptionsTest, InconsistentTlsOptionsAreRefusedAtStart) {
  server::ServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.metrics_port = -1;
  options.tls.cert_file = "/nonexistent/cert.pem";
  auto missing_key = server::StepServeServer::Start(options);
  EXPECT_EQ(missing_key.status().code(), absl::StatusCode::kInvalidArgument);
  options.tls.key_file = "/nonexistent/key.pem";
  auto unreadable = server::StepServeServer::Start(options);
  EXPECT_EQ(unreadable.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(unreadable.status().message()).find("--tls_cert"), std::string::npos);
  options.tls = server::TlsOptions();
  options.tls.client_ca_file = "/nonexistent/ca.pem";
  EXPECT_EQ(server::StepServeServer::Start(options).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace stepserve::testing
