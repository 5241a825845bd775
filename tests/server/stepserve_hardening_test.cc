// The stepserve program as a subprocess (issue #18): log injection and flooding, signals during loading
// and during a drain, SIGHUP reloading the API keys, bad numbers in flags, the served model name and the
// loopback default of --metrics_host.
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/server/child_process.h"
#include "tests/server/server_test_util.h"
#include "tests/test_util.h"

namespace stepserve::testing {
namespace {

std::vector<std::string> TinyArgs(std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {STEPSERVE_BIN,      "--host=127.0.0.1",     "--port=0",
                                   "--metrics_port=-1", "--http_port=0",        "--device=cpu",
                                   "--model=" + TinyCheckpointDir(), "--kv_cache_bytes=16777216"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// Waits for the port and for health SERVING; the channel.
std::shared_ptr<grpc::Channel> WaitServing(Child& child) {
  int port = 0;
  if (!WaitFor([&] { return (port = ParsePort(child.output())) > 0; }, absl::Seconds(60))) return nullptr;
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  const bool serving = WaitFor(
      [&] {
        grpc::ClientContext context;
        context.set_deadline(DeadlineIn(absl::Seconds(5)));
        grpc::health::v1::HealthCheckRequest request;
        grpc::health::v1::HealthCheckResponse response;
        return health->Check(&context, request, &response).ok() &&
               response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
      },
      absl::Seconds(120));
  return serving ? channel : nullptr;
}

grpc::Status GetInfo(v1::StepServe::Stub* stub, const std::string& authorization, v1::ModelInfo* info = nullptr) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(10)));
  if (!authorization.empty()) context.AddMetadata("authorization", authorization);
  v1::GetModelInfoRequest request;
  v1::ModelInfo local;
  return stub->GetModelInfo(&context, request, info != nullptr ? info : &local);
}

TEST(StepserveHardeningTest, ClientStringsCannotForgeOrFloodTheLog) {
  Child child(TinyArgs());
  auto channel = WaitServing(child);
  ASSERT_NE(channel, nullptr) << child.output();
  auto stub = v1::StepServe::NewStub(channel);

  // A request id with a newline, a forged log line and ANSI escapes: refused, and logged escaped.
  v1::GenerateRequest forged = GreedyRequest(Greedy()[0].prompt, 2);
  forged.set_request_id("id\nI 2026-01-01T00:00:00.000Z stepserve] [fake] admin logged in\x1b[2K\x1b[31m");
  GenerateResult r = RunGenerate(stub.get(), forged);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << r.status.error_message();
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(child.output(), "[fake]"); }, absl::Seconds(10)))
      << child.output();
  std::string log = child.output();
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    EXPECT_FALSE(absl::StrContains(line, "] [fake]") && absl::StartsWith(line, "I 2026-01-01")) << line;
    EXPECT_FALSE(absl::StartsWith(line, "I 2026-01-01")) << line;
  }
  EXPECT_EQ(log.find('\x1b'), std::string::npos) << "an ANSI escape reached the log";

  // 20 requests with a 4 MB id grow the log by kilobytes, not megabytes (it used to be 80 MB).
  const size_t before = child.output().size();
  v1::GenerateRequest huge = GreedyRequest(Greedy()[0].prompt, 2);
  huge.set_request_id(std::string(4'000'000, 'A'));
  for (int i = 0; i < 20; ++i) {
    GenerateResult refused = RunGenerate(stub.get(), huge);
    EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << refused.status.error_message();
  }
  // Refusals are rate-limited: after a second the next one says how many were left out.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  RunGenerate(stub.get(), GreedyRequest({}, 2));
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(child.output(), "prompt_token_ids"); }, absl::Seconds(10)));
  const size_t growth = child.output().size() - before;
  EXPECT_LT(growth, 16u << 10) << growth << " bytes";
  EXPECT_TRUE(absl::StrContains(child.output(), "similar lines suppressed")) << child.output().substr(before);
  EXPECT_TRUE(absl::StrContains(child.output(), "...(4000000 bytes)")) << child.output().substr(before, 2000);
  child.Signal(SIGTERM);
  EXPECT_EQ(child.WaitExit(absl::Seconds(60)), 0) << child.output();
}

TEST(StepserveHardeningTest, SigtermDuringLoadingLogsAndExits143) {
  // The `small` preset takes seconds to build: the signal arrives while it loads.
  Child child({STEPSERVE_BIN, "--host=127.0.0.1", "--port=0", "--metrics_port=-1", "--http_port=0", "--device=cpu",
               "--model=small"});
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(child.output(), "loading model"); }, absl::Seconds(60)))
      << child.output();
  child.Signal(SIGTERM);
  EXPECT_EQ(child.WaitExit(absl::Seconds(30)), 143) << child.output();
  EXPECT_TRUE(absl::StrContains(child.output(), "received SIGTERM during start-up")) << child.output();
  EXPECT_FALSE(absl::StrContains(child.output(), "health SERVING")) << child.output();
}

TEST(StepserveHardeningTest, SecondSigtermEndsTheDrainAtOnce) {
  Child child(TinyArgs({"--drain_timeout_s=300"}));
  auto channel = WaitServing(child);
  ASSERT_NE(channel, nullptr) << child.output();
  auto stub = v1::StepServe::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(300)));
  v1::GenerateRequest request = GreedyRequest(Greedy()[0].prompt, 1);
  request.mutable_stopping()->set_max_new_tokens(4000);
  auto reader = stub->Generate(&context, request);
  v1::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response)) << child.output();

  child.Signal(SIGTERM);
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(child.output(), "draining"); }, absl::Seconds(30)))
      << child.output();
  const absl::Time second = absl::Now();
  child.Signal(SIGTERM);
  EXPECT_EQ(child.WaitExit(absl::Seconds(20)), 143) << child.output();
  EXPECT_LT(absl::Now() - second, absl::Seconds(10));
  EXPECT_TRUE(absl::StrContains(child.output(), "received a second SIGTERM during the drain")) << child.output();
  context.TryCancel();
}

TEST(StepserveHardeningTest, SighupIsLoggedAndReloadsTheApiKeys) {
  const std::string dir = MakeTempDir("hardening-sighup");
  const std::string keys = dir + "/keys";
  { std::ofstream(keys) << "key-a\n"; }
  Child child(TinyArgs({"--api_key_file=" + keys}));
  auto channel = WaitServing(child);  // health needs no key
  ASSERT_NE(channel, nullptr) << child.output();
  auto stub = v1::StepServe::NewStub(channel);
  EXPECT_EQ(GetInfo(stub.get(), "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(GetInfo(stub.get(), "Bearer key-a").ok()) << child.output();

  { std::ofstream(keys + ".new") << "key-b\n"; }
  std::filesystem::rename(keys + ".new", keys);
  child.Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(child.output(), "received SIGHUP"); }, absl::Seconds(10)))
      << child.output();
  EXPECT_TRUE(WaitFor([&] { return GetInfo(stub.get(), "Bearer key-b").ok(); }, absl::Seconds(10))) << child.output();
  EXPECT_EQ(GetInfo(stub.get(), "Bearer key-a").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // Still serving after SIGHUP (it used to exit 129), and no key was logged.
  EXPECT_EQ(child.WaitExit(absl::Milliseconds(100)), -1);
  EXPECT_FALSE(absl::StrContains(child.output(), "key-a")) << child.output();
  EXPECT_FALSE(absl::StrContains(child.output(), "key-b")) << child.output();
  child.Signal(SIGTERM);
  EXPECT_EQ(child.WaitExit(absl::Seconds(60)), 0) << child.output();
}

// Step3p5 configs with one attention kind only (every layer full: the parser's default without
// layer_types; every layer sliding): the golden greedy continuations through the real server, with prefix
// caching on (each prompt twice, the second served from the cache), on one rank and at tensor parallel 2.
TEST(StepserveHardeningTest, OneAttentionKindGivesTheGoldenGreedyContinuationsThroughTheServer) {
  for (const std::string kind : {"tiny-full", "tiny-sliding"}) {
    const std::string dir = std::string(STEPSERVE_TEST_DATA_DIR) + "/" + kind;
    const std::vector<GreedyCase> cases = GreedyCasesIn(dir);
    ASSERT_FALSE(cases.empty()) << dir;
    for (const std::string tp : {"1", "2"}) {
      std::vector<std::string> args = {STEPSERVE_BIN,       "--host=127.0.0.1",      "--port=0",
                                       "--metrics_port=-1", "--http_port=0",         "--device=cpu",
                                       "--model=" + dir,    "--kv_cache_bytes=16777216",
                                       "--enable_prefix_caching=true", "--tensor_parallel_size=" + tp};
      Child child(args);
      auto channel = WaitServing(child);
      ASSERT_NE(channel, nullptr) << kind << " tp " << tp << "\n" << child.output();
      auto stub = v1::StepServe::NewStub(channel);
      for (int round = 0; round < 2; ++round) {
        for (size_t i = 0; i < cases.size(); ++i) {
          GenerateResult r = RunGenerate(stub.get(), GreedyRequest(cases[i].prompt, cases[i].greedy.size()));
          ASSERT_TRUE(r.status.ok()) << kind << " tp " << tp << ": " << r.status.error_message();
          EXPECT_EQ(r.tokens, cases[i].greedy) << kind << " tp " << tp << " case " << i << " round " << round;
        }
      }
      child.Signal(SIGTERM);
      EXPECT_EQ(child.WaitExit(absl::Seconds(60)), 0) << child.output();
    }
  }
}

TEST(StepserveHardeningTest, BadNumbersInFlagsExit2NamingTheFlag) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--dist_timeout_s=-1"}, "--dist_timeout_s"},
      {{"--max_num_seqs=0"}, "--max_num_seqs"},
      {{"--block_size=-16"}, "--block_size"},
      {{"--drain_timeout_s=nan"}, "--drain_timeout_s"},
      {{"--kv_cache_memory_fraction=1.5"}, "--kv_cache_memory_fraction"},
      {{"--kv_cache_bytes=0"}, "--kv_cache_bytes"},
      {{"--kv_cache_bytes=-5"}, "--kv_cache_bytes"},
      {{"--kv_cache_memory_fraction=0.5"}, "--kv_cache_memory_fraction"},  // the CPU takes bytes
      {{"--metrics_port=70000"}, "--metrics_port"},
      {{"--load_timeout_s=-1"}, "--load_timeout_s"},
      {{"--max_stop_strings=-1"}, "--max_stop_strings"},
      {{"--max_chat_messages=0"}, "--max_chat_messages"},
      {{"--max_request_id_length=0"}, "--max_request_id_length"},
  };
  for (const auto& [flags, name] : cases) {
    std::vector<std::string> args = {STEPSERVE_BIN, "--host=127.0.0.1", "--port=0", "--metrics_port=-1",
                                     "--http_port=0", "--device=cpu", "--model=" + TinyCheckpointDir()};
    args.insert(args.end(), flags.begin(), flags.end());
    Child child(args);
    EXPECT_EQ(child.WaitExit(absl::Seconds(60)), 2) << flags[0] << "\n" << child.output();
    EXPECT_TRUE(absl::StrContains(child.output(), name)) << child.output();
    EXPECT_FALSE(absl::StrContains(child.output(), "gRPC listening")) << child.output();
  }
}

TEST(StepserveHardeningTest, ServedModelNameIsNoPathAndMetricsListenOnLoopback) {
  Child child({STEPSERVE_BIN, "--host=127.0.0.1", "--port=0", "--metrics_port=0", "--http_port=0", "--device=cpu",
               "--model=" + TinyCheckpointDir() + "/", "--kv_cache_bytes=16777216"});
  auto channel = WaitServing(child);
  ASSERT_NE(channel, nullptr) << child.output();
  std::smatch match;
  const std::string log = child.output();
  static const std::regex kMetrics("metrics on 127\\.0\\.0\\.1:([0-9]+)/metrics");
  ASSERT_TRUE(std::regex_search(log, match, kMetrics)) << log;  // loopback by default
  const int metrics_port = std::stoi(match[1]);
  auto stub = v1::StepServe::NewStub(channel);
  v1::ModelInfo info;
  ASSERT_TRUE(GetInfo(stub.get(), "", &info).ok());
  const std::string base = std::filesystem::path(TinyCheckpointDir()).filename().string();
  EXPECT_EQ(info.model(), base);
  const std::string metrics = HttpGet(metrics_port, "/metrics");
  EXPECT_TRUE(absl::StrContains(metrics, absl::StrCat("model=\"", base, "\""))) << metrics;
  EXPECT_FALSE(absl::StrContains(metrics, TinyCheckpointDir())) << metrics;
  // Reflection is off unless asked for.
  EXPECT_FALSE(absl::StrContains(log, "reflection on")) << log;
  child.Signal(SIGTERM);
  EXPECT_EQ(child.WaitExit(absl::Seconds(60)), 0) << child.output();
}

}  // namespace
}  // namespace stepserve::testing
