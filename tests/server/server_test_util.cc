#include "tests/server/server_test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "tests/test_util.h"
#include "text/jinja/chat_template.h"
#include "text/tokenizer/builtin_tokenizer.h"

namespace stepserve::testing {

const std::vector<GreedyCase>& Greedy() {
  static const std::vector<GreedyCase> cases = GreedyCases();
  return cases;
}

TestServer::TestServer(const TestServerOptions& options) : options_(options) {
  SetLogQuiet(true);
  server::ServerOptions server_options;
  server_options.host = "127.0.0.1";
  server_options.port = 0;
  server_options.metrics_port = 0;
  server_options.tls = options.tls;
  server_options.enable_reflection = options.enable_reflection;
  server_options.api_keys = options.api_keys;
  server_options.stream_flow = options.stream_flow;
  if (options.http) {
    server_options.http_port = 0;
    server_options.http_host = "127.0.0.1";
    server_options.http_max_body_bytes = options.http_options.max_body_bytes;
    server_options.http_threads = options.http_options.threads;
  }
  auto server = server::StepServeServer::Start(server_options);
  if (!server.ok()) throw std::runtime_error(std::string(server.status().message()));
  server_ = std::move(server).value();
  if (options.attach_executor) AttachExecutor();
}

TestServer::~TestServer() { server_.reset(); }

void TestServer::AttachExecutor() {
  auto executor = Executor::Create(LoadTinyModel(at::kFloat), options_.executor);
  if (!executor.ok()) throw std::runtime_error(std::string(executor.status().message()));
  std::shared_ptr<server::TextPipeline> text;
  if (options_.text) {
    auto tokenizer = text::BuiltinTokenizer((*executor)->config().vocab_size);
    if (!tokenizer.ok()) throw std::runtime_error(std::string(tokenizer.status().message()));
    auto chat_template = text::ChatTemplate::Parse(std::string(text::BuiltinStepChatTemplate()));
    if (!chat_template.ok()) throw std::runtime_error(std::string(chat_template.status().message()));
    text = std::make_shared<server::TextPipeline>(*tokenizer, *chat_template, "tiny");
  }
  absl::Status s = server_->AttachExecutor(std::move(executor).value(), "tiny-test", text);
  if (!s.ok()) throw std::runtime_error(std::string(s.message()));
}

std::string TestServer::target() const { return absl::StrCat("127.0.0.1:", server_->port()); }

std::shared_ptr<grpc::Channel> TestServer::channel() {
  if (channel_ == nullptr) channel_ = grpc::CreateChannel(target(), grpc::InsecureChannelCredentials());
  return channel_;
}

std::unique_ptr<v1::StepServe::Stub> TestServer::stub() { return v1::StepServe::NewStub(channel()); }

std::unique_ptr<grpc::health::v1::Health::Stub> TestServer::health_stub() {
  return grpc::health::v1::Health::NewStub(channel());
}

std::string TestServer::ScrapeMetricsHttp() { return HttpGet(server_->metrics_port(), "/metrics"); }

PrometheusText TestServer::Metrics() {
  auto parsed = ParsePrometheusText(ScrapeMetricsHttp());
  if (!parsed.ok()) throw std::runtime_error(std::string(parsed.status().message()));
  return *parsed;
}

v1::GenerateRequest GreedyRequest(const std::vector<int32_t>& prompt, int max_new_tokens) {
  v1::GenerateRequest request;
  request.mutable_prompt_token_ids()->Add(prompt.begin(), prompt.end());
  request.mutable_stopping()->set_max_new_tokens(max_new_tokens);
  request.mutable_stopping()->set_ignore_eos(true);
  return request;
}

v1::GenerateRequest LongRequest(const std::vector<int32_t>& prompt, int64_t max_context) {
  int64_t n = std::min<int64_t>(max_context - static_cast<int64_t>(prompt.size()), 4096);
  return GreedyRequest(prompt, static_cast<int>(n));
}

std::chrono::system_clock::time_point DeadlineIn(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoNanoseconds(d);
}

GenerateResult RunGenerate(v1::StepServe::Stub* stub, const v1::GenerateRequest& request, absl::Duration timeout) {
  GenerateResult result;
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(timeout));
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader = stub->Generate(&context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    result.tokens.insert(result.tokens.end(), response.token_ids().begin(), response.token_ids().end());
    result.messages.push_back(response);
  }
  result.status = reader->Finish();
  return result;
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (condition()) return true;
    if (absl::Now() >= deadline) return condition();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::string HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    throw std::runtime_error(absl::StrCat("cannot connect to 127.0.0.1:", port));
  }
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  if (send(fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size())) {
    close(fd);
    throw std::runtime_error("send failed");
  }
  std::string response;
  char buffer[8192];
  while (true) {
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n < 0) {
      close(fd);
      throw std::runtime_error("recv failed or timed out");
    }
    if (n == 0) break;
    response.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  const size_t header_end = response.find("\r\n\r\n");
  if (header_end == std::string::npos) throw std::runtime_error("no HTTP header");
  const std::string status_line = response.substr(0, response.find("\r\n"));
  if (!absl::StrContains(status_line, " 200")) throw std::runtime_error("HTTP status: " + status_line);
  return response.substr(header_end + 4);
}

}  // namespace stepserve::testing
