// Server-side hardening (issue #18) on a real server on loopback: API keys on every StepServe RPC (health
// exempt), malformed request bodies (INVALID_ARGUMENT with a message, counted), request ids a client cannot
// use to block others, reflection off by default.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <grpc/grpc.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/byte_buffer.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include "nlohmann/json.hpp"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "server/api_keys.h"
#include "tests/server/server_test_util.h"

namespace stepserve::testing {
namespace {

// One unary call of `method` with raw bytes through grpc::GenericStub (also for the streaming Generate: the
// server's refusal comes before any message). The status.
grpc::Status RawCall(std::shared_ptr<grpc::Channel> channel, const std::string& method, const std::string& bytes,
                     const std::string& authorization = "", grpc::ByteBuffer* response = nullptr) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(30)));
  if (!authorization.empty()) context.AddMetadata("authorization", authorization);
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer local;
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&context, method, grpc::StubOptions(), &request, response != nullptr ? response : &local,
                 [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  return status;
}

std::vector<std::string> StepServeMethods() {
  const google::protobuf::ServiceDescriptor* service =
      v1::GenerateRequest::descriptor()->file()->FindServiceByName("StepServe");
  std::vector<std::string> methods;
  for (int i = 0; i < service->method_count(); ++i) {
    methods.push_back(absl::StrCat("/stepserve.v1.StepServe/", service->method(i)->name()));
  }
  return methods;
}

TEST(HardeningTest, ApiKeysGuardEveryStepServeRpcButNotHealth) {
  auto keys = server::ApiKeys::Create({"k-one,k-two"}, "");
  ASSERT_TRUE(keys.ok()) << keys.status();
  TestServerOptions options;
  options.api_keys = keys->get();
  TestServer server(options);

  const std::vector<std::string> methods = StepServeMethods();
  ASSERT_EQ(methods.size(), 4u);  // Generate, GetModelInfo, Tokenize, Detokenize: a new one is covered too
  for (const std::string& method : methods) {
    for (const std::string& auth : {std::string(), std::string("Bearer wrong"), std::string("k-one"),
                                    std::string("Basic k-one")}) {
      grpc::Status s = RawCall(server.channel(), method, "", auth);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << method << " with \"" << auth << "\"";
      EXPECT_TRUE(absl::StrContains(s.error_message(), "API key")) << s.error_message();
      EXPECT_FALSE(absl::StrContains(s.error_message(), "k-one")) << s.error_message();
    }
  }
  // With a key: served (every key valid).
  EXPECT_TRUE(RawCall(server.channel(), "/stepserve.v1.StepServe/GetModelInfo", "", "Bearer k-one").ok());
  EXPECT_TRUE(RawCall(server.channel(), "/stepserve.v1.StepServe/GetModelInfo", "", "bearer k-two").ok());
  auto stub = server.stub();
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer k-two");
    context.set_deadline(DeadlineIn(absl::Seconds(60)));
    auto reader = stub->Generate(&context, GreedyRequest(Greedy()[0].prompt, 4));
    v1::GenerateResponse response;
    int tokens = 0;
    while (reader->Read(&response)) tokens += response.token_ids_size();
    EXPECT_TRUE(reader->Finish().ok());
    EXPECT_EQ(tokens, 4);
  }
  // Health stays open (Kubernetes probes carry no key), and so does /metrics.
  {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    EXPECT_TRUE(server.health_stub()->Check(&context, request, &response).ok());
  }
  PrometheusText m = server.Metrics();
  EXPECT_EQ(m.Get("stepserve_unauthenticated_requests_total{method=\"Generate\"}"), 4);
  EXPECT_EQ(m.Get("stepserve_unauthenticated_requests_total{method=\"GetModelInfo\"}"), 4);
  EXPECT_EQ(m.Get("stepserve_request_failure_total{code=\"UNAUTHENTICATED\"}"), 4);
}

TEST(HardeningTest, ApiKeysGuardTheHttpFrontButNotItsHealth) {
  auto keys = server::ApiKeys::Create({"h-key"}, "");
  ASSERT_TRUE(keys.ok()) << keys.status();
  TestServerOptions options;
  options.api_keys = keys->get();
  options.text = true;
  options.http = true;
  TestServer server(options);
  const int port = server.server().http_port();
  ASSERT_GT(port, 0);
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(60, 0);
  const std::string body = R"({"model": "tiny", "prompt": "hi", "max_tokens": 2})";
  for (const std::string& auth : {std::string(), std::string("Bearer nope"), std::string("h-key")}) {
    httplib::Headers headers;
    if (!auth.empty()) headers.emplace("Authorization", auth);
    auto models = cli.Get("/v1/models", headers);
    ASSERT_TRUE(models);
    EXPECT_EQ(models->status, 401) << auth;
    auto completion = cli.Post("/v1/completions", headers, body, "application/json");
    ASSERT_TRUE(completion);
    EXPECT_EQ(completion->status, 401) << auth;
    const nlohmann::json error = nlohmann::json::parse(completion->body);
    EXPECT_EQ(error["error"]["code"], "invalid_api_key") << completion->body;
    EXPECT_EQ(error["error"]["type"], "invalid_request_error") << completion->body;
  }
  auto health = cli.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  httplib::Headers good = {{"Authorization", "Bearer h-key"}};
  auto models = cli.Get("/v1/models", good);
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 200) << models->body;
  auto completion = cli.Post("/v1/completions", good, body, "application/json");
  ASSERT_TRUE(completion);
  EXPECT_EQ(completion->status, 200) << completion->body;
  EXPECT_EQ(server.Metrics().Get("stepserve_unauthenticated_requests_total{method=\"http\"}"), 6);
}

TEST(HardeningTest, MalformedRequestBodiesGetInvalidArgumentAndAreCounted) {
  TestServer server;
  const std::string garbage("\x0a\x10" "abc\xff\xff", 7);  // field 1, length 16, 5 bytes follow
  for (const std::string& method : StepServeMethods()) {
    grpc::Status s = RawCall(server.channel(), method, garbage);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method << ": " << s.error_message();
    EXPECT_TRUE(absl::StrContains(s.error_message(), "is not a valid stepserve.v1.")) << s.error_message();
  }
  PrometheusText m = server.Metrics();
  EXPECT_EQ(m.Get("stepserve_malformed_requests_total{method=\"Generate\"}"), 1);
  EXPECT_EQ(m.Get("stepserve_malformed_requests_total{method=\"Tokenize\"}"), 1);
  EXPECT_EQ(m.Get("stepserve_request_failure_total{code=\"INVALID_ARGUMENT\"}"), 1);  // Generate's
  // A valid body still works after them (an empty GetModelInfoRequest is valid: zero bytes).
  grpc::ByteBuffer info;
  ASSERT_TRUE(RawCall(server.channel(), "/stepserve.v1.StepServe/GetModelInfo", "", "", &info).ok());
}

// The probe: one client names its requests stepserve-1..20 (the names the server used to give unnamed
// requests) and keeps them in flight; every unnamed request of another client must still be served.
TEST(HardeningTest, ClientRequestIdsCannotBlockOthers) {
  TestServerOptions options;
  options.executor.max_num_seqs = 32;
  TestServer server(options);
  const int64_t max_context = server.executor().max_context();

  // Each client its own connection (channels in one process share connections by default): without API
  // keys a client is its connection.
  auto own_connection = [&] {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return grpc::CreateCustomChannel(server.target(), grpc::InsecureChannelCredentials(), args);
  };
  auto squatter_channel = own_connection();
  auto squatter = v1::StepServe::NewStub(squatter_channel);
  struct Held {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader;
  };
  std::vector<std::unique_ptr<Held>> held;
  for (int i = 1; i <= 20; ++i) {
    auto h = std::make_unique<Held>();
    v1::GenerateRequest request = LongRequest(Greedy()[0].prompt, max_context);
    request.set_request_id(absl::StrCat("stepserve-", i));
    h->reader = squatter->Generate(&h->context, request);
    v1::GenerateResponse first;
    ASSERT_TRUE(h->reader->Read(&first)) << i;
    EXPECT_EQ(first.request_id(), absl::StrCat("stepserve-", i));  // echoed back unchanged
    held.push_back(std::move(h));
  }

  // Another client (its own channel: another peer) sends 25 unnamed requests: all served.
  auto other_channel = own_connection();
  auto other = v1::StepServe::NewStub(other_channel);
  for (int i = 0; i < 25; ++i) {
    GenerateResult r = RunGenerate(other.get(), GreedyRequest(Greedy()[1].prompt, 2));
    ASSERT_TRUE(r.status.ok()) << i << ": " << r.status.error_message();
    ASSERT_FALSE(r.messages.empty());
    EXPECT_TRUE(absl::StartsWith(r.messages[0].request_id(), "stepserve-")) << r.messages[0].request_id();
  }
  // The other client may use the same names: ids are unique per client, not across clients.
  GenerateResult same_name = [&] {
    v1::GenerateRequest request = GreedyRequest(Greedy()[1].prompt, 2);
    request.set_request_id("stepserve-3");
    return RunGenerate(other.get(), request);
  }();
  EXPECT_TRUE(same_name.status.ok()) << same_name.status.error_message();
  ASSERT_FALSE(same_name.messages.empty());
  EXPECT_EQ(same_name.messages[0].request_id(), "stepserve-3");
  // The squatter itself cannot reuse a name it has in flight.
  v1::GenerateRequest again = GreedyRequest(Greedy()[1].prompt, 2);
  again.set_request_id("stepserve-3");
  GenerateResult dup = RunGenerate(squatter.get(), again);
  EXPECT_EQ(dup.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(dup.status.error_message(), "already in flight")) << dup.status.error_message();
  // Bad client ids are still refused naming the field.
  v1::GenerateRequest bad = GreedyRequest(Greedy()[1].prompt, 2);
  bad.set_request_id(std::string(300, 'x'));
  GenerateResult too_long = RunGenerate(other.get(), bad);
  EXPECT_EQ(too_long.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StartsWith(too_long.status.error_message(), "request_id:")) << too_long.status.error_message();
  bad.set_request_id("evil\nline");
  GenerateResult control = RunGenerate(other.get(), bad);
  EXPECT_EQ(control.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  for (auto& h : held) h->context.TryCancel();
  for (auto& h : held) {
    v1::GenerateResponse r;
    while (h->reader->Read(&r)) {
    }
    h->reader->Finish();
  }
  // Once a request is over its name is free again.
  EXPECT_TRUE(WaitFor([&] { return server.executor().Stats().num_running == 0; }));
  GenerateResult reuse = RunGenerate(squatter.get(), again);
  EXPECT_TRUE(reuse.status.ok()) << reuse.status.error_message();
}

TEST(HardeningTest, ReflectionIsOffByDefault) {
  TestServer server;
  grpc::Status s = RawCall(server.channel(), "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                           std::string("\x3a\x00", 2));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED) << s.error_message();
}

}  // namespace
}  // namespace stepserve::testing
