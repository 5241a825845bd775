// Backpressure on Generate streams (issue 18: "a client that never reads holds unbounded server memory"):
// a raw HTTP/2 client that answers PING but never opens its streams' flow-control windows
// (tests/server/stalled_grpc_client.mjs, Node's built-in http2) gets its requests paused in the executor once
// --max_stream_buffered_outputs responses wait, holds bounded memory, and its streams end after the stall
// timeout with the request cancelled and its KV blocks back; a slow reader still gets every token in order.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tests/server/child_process.h"
#include "tests/server/server_test_util.h"

namespace stepserve::testing {
namespace {

// The full path of `program` on PATH (the child is started with execv), or "" when there is none.
std::string FindOnPath(const std::string& program) {
  FILE* pipe = popen(absl::StrCat("command -v ", program, " 2>/dev/null").c_str(), "r");
  if (pipe == nullptr) return "";
  char buffer[4096];
  std::string out;
  while (fgets(buffer, sizeof(buffer), pipe) != nullptr) out += buffer;
  pclose(pipe);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

// Waits until `paused` requests are paused and generation has stopped (the same count 300 ms apart).
bool WaitForStablePause(Executor& ex, int paused, absl::Duration timeout) {
  return WaitFor(
      [&] {
        const ExecutorStats before = ex.Stats();
        if (before.num_paused != paused) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        const ExecutorStats after = ex.Stats();
        return after.num_paused == paused && after.generation_tokens_total == before.generation_tokens_total;
      },
      timeout);
}

// This process's resident set (the server runs in it).
int64_t RssBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

std::string Describe(const ExecutorStats& s) {
  return absl::StrCat("running ", s.num_running, ", waiting ", s.num_waiting, ", paused ", s.num_paused,
                      ", kv blocks used ", s.kv_blocks_used, ", generated ", s.generation_tokens_total);
}

// The probe of issue 18, scaled to the tiny model: 20 streams of ~4000 tokens each with logprobs=20 (80,000
// tokens, which took +2.17 GB before streams were bounded).
TEST(BackpressureTest, ClientThatNeverReadsIsPausedHoldsBoundedMemoryAndEndsAfterTheStallTimeout) {
  const std::string node = FindOnPath("node");
  if (node.empty()) GTEST_SKIP() << "needs node (Node.js 18+)";
  TestServer server;
  server::StreamFlowOptions flow;
  flow.max_buffered_outputs = 16;
  flow.stall_timeout = absl::Seconds(4);
  flow.reset_grace = absl::Seconds(1);
  server.server().generate_service().SetStreamFlowOptions(flow);
  Executor& ex = server.executor();
  v1::GenerateRequest request = LongRequest({5, 6, 7}, ex.max_context());
  request.set_logprobs(20);
  const int max_new = request.stopping().max_new_tokens();
  ASSERT_GE(max_new, 1000);
  constexpr int kStreams = 20;

  const int64_t rss_before = RssBytes();
  const int64_t tokens_before = ex.Stats().generation_tokens_total;
  const absl::Time started = absl::Now();
  Child client({node, absl::StrCat(STEPSERVE_SOURCE_DIR, "/tests/server/stalled_grpc_client.mjs"), server.target(),
                absl::BytesToHexString(request.SerializeAsString()), std::to_string(kStreams), "15000"},
               /*capture_stdout=*/true);

  // Every request is paused once its stream's buffer is full: generation stops, far short of max_new_tokens.
  ASSERT_TRUE(WaitFor([&] { return ex.Stats().num_paused == kStreams; }, absl::Seconds(60)))
      << Describe(ex.Stats()) << "\n" << client.output();
  const int64_t generated = ex.Stats().generation_tokens_total - tokens_before;
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const ExecutorStats paused = ex.Stats();
  EXPECT_EQ(paused.generation_tokens_total - tokens_before, generated) << "paused requests must not be scheduled";
  EXPECT_EQ(paused.num_running, 0);
  // Per stream: the 16 queued responses, the few the transport took before the 1 KiB window closed, one
  // step's overshoot. Unbounded, it was all 20 x max_new.
  EXPECT_LE(generated, kStreams * 64) << "of " << kStreams * max_new;
  EXPECT_GT(paused.kv_blocks_used, 0);  // a paused request keeps its blocks while nobody needs them
  PrometheusText m = server.Metrics();
  EXPECT_EQ(m.Get("stepserve_streams_paused{front=\"grpc\"}"), kStreams);
  EXPECT_EQ(m.Get("stepserve_num_requests_paused"), kStreams);
  const int64_t rss_paused = RssBytes();
  // 80,000 tokens with logprobs took +2.17 GB; bounded, the buffers are 20 x 16 small messages.
  EXPECT_LT(rss_paused - rss_before, 256ll << 20) << "RSS grew by " << (rss_paused - rss_before);

  // After the stall timeout: each stream ends (RESOURCE_EXHAUSTED), its request is cancelled, its KV blocks
  // come back, and gRPC lets go of it.
  ASSERT_TRUE(WaitFor(
      [&] {
        const ExecutorStats s = ex.Stats();
        return s.num_paused + s.num_running + s.num_waiting == 0;
      },
      absl::Seconds(30)))
      << Describe(ex.Stats());
  EXPECT_GE(absl::Now() - started, flow.stall_timeout);
  EXPECT_EQ(ex.Stats().kv_blocks_used, 0);
  EXPECT_EQ(ex.Stats().generation_tokens_total - tokens_before, generated);
  ASSERT_TRUE(WaitFor([&] { return server.server().generate_service().active_streams() == 0; }, absl::Seconds(30)))
      << server.server().generate_service().active_streams() << " streams still open";
  m = server.Metrics();
  EXPECT_EQ(m.Get("stepserve_streams_stalled_total{front=\"grpc\"}"), kStreams);
  EXPECT_EQ(m.Get("stepserve_streams_paused{front=\"grpc\"}"), 0);
  EXPECT_EQ(m.Get("stepserve_num_requests_paused"), 0);
  EXPECT_EQ(m.Get("stepserve_request_failure_total{code=\"RESOURCE_EXHAUSTED\"}"), kStreams);

  // The client got every stream's status while it still held the connection.
  ASSERT_EQ(client.WaitExit(absl::Seconds(60)), 0) << client.output();
  const std::string out = client.output();
  const nlohmann::json report = nlohmann::json::parse(out.substr(out.find('{')));
  ASSERT_EQ(report["streams"].size(), static_cast<size_t>(kStreams)) << out;
  for (const auto& stream : report["streams"]) {
    EXPECT_TRUE(stream["headers"].get<bool>()) << stream.dump();
    // The status reached it ahead of the responses it never read: RESOURCE_EXHAUSTED, saying why.
    EXPECT_EQ(stream["grpcStatus"], "8") << stream.dump();
    EXPECT_NE(stream["grpcMessage"].is_string() ? stream["grpcMessage"].get<std::string>().find("did not read")
                                                : std::string::npos,
              std::string::npos)
        << stream.dump();
  }
}

// The same client on streams whose requests are short: the executor finishes them (no pause needed), but the
// client takes neither the responses nor the status. The stall timeout still ends them and gRPC lets go.
TEST(BackpressureTest, FinishedStreamsStuckBehindAClosedWindowAreReleasedToo) {
  const std::string node = FindOnPath("node");
  if (node.empty()) GTEST_SKIP() << "needs node (Node.js 18+)";
  TestServer server;
  server::StreamFlowOptions flow;
  flow.max_buffered_outputs = 256;
  flow.stall_timeout = absl::Seconds(2);
  flow.reset_grace = absl::Milliseconds(500);
  server.server().generate_service().SetStreamFlowOptions(flow);
  v1::GenerateRequest request = GreedyRequest({4, 3, 2}, 60);
  request.set_logprobs(20);  // 60 responses of some 300 bytes: far more than a 1 KiB window
  Child client({node, absl::StrCat(STEPSERVE_SOURCE_DIR, "/tests/server/stalled_grpc_client.mjs"), server.target(),
                absl::BytesToHexString(request.SerializeAsString()), "3", "8000"},
               /*capture_stdout=*/true);
  ASSERT_TRUE(WaitFor([&] { return server.executor().Stats().requests_finished_total == 3; }, absl::Seconds(60)));
  EXPECT_EQ(server.executor().Stats().num_paused, 0);
  EXPECT_EQ(server.server().generate_service().active_streams(), 3);  // stuck behind the window
  ASSERT_TRUE(WaitFor([&] { return server.server().generate_service().active_streams() == 0; }, absl::Seconds(30)));
  PrometheusText m = server.Metrics();
  EXPECT_EQ(m.Get("stepserve_streams_stalled_total{front=\"grpc\"}"), 3);
  EXPECT_EQ(server.executor().Stats().kv_blocks_used, 0);
  EXPECT_EQ(client.WaitExit(absl::Seconds(30)), 0) << client.output();
}

// A reader slower than the engine, on a channel whose stream window stays small (1 KiB lookahead, no BDP
// probing): its request is paused and resumed many times and it still gets every token and logprob, in
// order, with status OK.
TEST(BackpressureTest, SlowReaderGetsEveryTokenInOrder) {
  TestServer server;
  server::StreamFlowOptions flow;
  flow.max_buffered_outputs = 4;
  flow.stall_timeout = absl::Seconds(30);
  server.server().generate_service().SetStreamFlowOptions(flow);
  v1::GenerateRequest request = GreedyRequest({9, 8, 7, 6}, 200);
  request.set_logprobs(5);
  auto stub = server.stub();
  const GenerateResult expected = RunGenerate(stub.get(), request);
  ASSERT_TRUE(expected.status.ok()) << expected.status.error_message();
  ASSERT_EQ(expected.tokens.size(), 200u);
  const int64_t pauses_before = server.executor().Stats().pauses_total;

  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  auto slow_stub = v1::StepServe::NewStub(
      grpc::CreateCustomChannel(server.target(), grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(120)));
  auto reader = slow_stub->Generate(&context, request);
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    tokens.insert(tokens.end(), response.token_ids().begin(), response.token_ids().end());
    for (const auto& lp : response.logprobs()) logprobs.push_back(lp.logprob());
    std::this_thread::sleep_for(std::chrono::milliseconds(8));
  }
  const grpc::Status status = reader->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(tokens, expected.tokens);
  std::vector<float> expected_logprobs;
  for (const auto& message : expected.messages) {
    for (const auto& lp : message.logprobs()) expected_logprobs.push_back(lp.logprob());
  }
  EXPECT_EQ(logprobs, expected_logprobs);
  EXPECT_GT(server.executor().Stats().pauses_total, pauses_before) << "the slow reader was never paused";
  EXPECT_EQ(server.Metrics().Get("stepserve_streams_stalled_total{front=\"grpc\"}"), 0);
  EXPECT_EQ(server.Metrics().Get("stepserve_streams_paused{front=\"grpc\"}"), 0);
}

// The HTTP front: a client that sends a streaming chat completion and then reads nothing (a socket with a
// small receive buffer): its sequences are paused once the handler's write blocks and the bounded queue
// fills, generation stops, and after the stall timeout the write fails, the sequences are cancelled and their
// blocks come back.
TEST(BackpressureTest, HttpStreamThatIsNotReadIsPausedAndEndsAfterTheStallTimeout) {
  TestServerOptions options;
  options.http = true;
  options.text = true;
  options.stream_flow.max_buffered_outputs = 8;
  options.stream_flow.stall_timeout = absl::Seconds(3);
  TestServer server(options);
  Executor& ex = server.executor();
  const int64_t tokens_before = ex.Stats().generation_tokens_total;

  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  const int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));  // before connect: the window stays small
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(server.http_port()));
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  // 8 choices of some 4000 tokens with 20 top logprobs each (kilobytes per token): far more than the socket
  // buffers on both sides (up to 4 MiB on Linux loopback) can take.
  constexpr int kChoices = 8;
  const int64_t max_tokens = ex.max_context() - 64;
  const std::string body = absl::StrCat(
      R"({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": )", max_tokens,
      R"(, "n": )", kChoices, R"(, "ignore_eos": true, "logprobs": true, "top_logprobs": 20, "stream": true})");
  const std::string http = absl::StrCat(
      "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ",
      body.size(), "\r\n\r\n", body);
  ASSERT_EQ(send(fd, http.data(), http.size(), 0), static_cast<ssize_t>(http.size()));

  // The handler writes until the socket buffers are full; then its queue fills and the sequence stays paused.
  // (The kernel may still take a little now and then as it grows the server's send buffer: each time the
  // handler's write returns, it takes the queued outputs and the sequences run until the queue is full again.)
  ASSERT_TRUE(WaitForStablePause(ex, kChoices, absl::Seconds(60))) << Describe(ex.Stats());
  EXPECT_TRUE(WaitFor([&] { return server.Metrics().Get("stepserve_streams_paused{front=\"http\"}") == 1; },
                      absl::Seconds(10)));

  ASSERT_TRUE(WaitFor([&] {
    const ExecutorStats s = ex.Stats();
    return s.num_paused + s.num_running + s.num_waiting == 0;
  }, absl::Seconds(30))) << Describe(ex.Stats());
  EXPECT_EQ(ex.Stats().kv_blocks_used, 0);
  const int64_t generated = ex.Stats().generation_tokens_total - tokens_before;
  EXPECT_LT(generated, kChoices * max_tokens / 4) << "generation must stop long before max_tokens";
  PrometheusText m = server.Metrics();
  EXPECT_EQ(m.Get("stepserve_streams_stalled_total{front=\"http\"}"), 1);
  EXPECT_EQ(m.Get("stepserve_streams_paused{front=\"http\"}"), 0);
  close(fd);
}

}  // namespace
}  // namespace stepserve::testing
