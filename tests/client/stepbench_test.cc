// stepbench against a live server: closed and open loop, datasets and failures, each run's counts
// checked against the server's own /metrics (scraped by stepbench before and after, and by the test).
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "client/metrics_scrape.h"
#include "live_server.h"
#include "subprocess.h"

namespace stepserve::testing {
namespace {

constexpr double kCommandTimeoutS = 240;

std::string Describe(const CommandResult& r) {
  return "exit " + std::to_string(r.exit_code) + (r.timed_out ? " (timed out)" : "") + "\nstdout:\n" + r.out +
         "\nstderr:\n" + r.err;
}

std::string TempPath(const std::string& tag) {
  return "/tmp/stepbench_test_" + std::to_string(::getpid()) + "_" + tag;
}

CommandResult Stepbench(std::vector<std::string> args) {
  args.insert(args.begin(), STEPBENCH_BIN);
  return RunCommand(args, kCommandTimeoutS);
}

TEST(StepbenchUsageTest, BadUsageExitsWithTwo) {
  const std::vector<std::vector<std::string>> cases = {
      {"--num_requests=0"},
      {"--concurrency=0"},
      {"--prompt_len=0"},
      {"--output_len=9:3"},
      {"--prompt_len=abc"},
      {"--burstiness=2"},  // without --request_rate
      {"--request_rate=-1"},
      {"--request_rate=5", "--burstiness=0"},
      {"--bogus"},
      {"positional"},
      {"--dataset=x.jsonl", "--prompt_len=4"},
  };
  for (const auto& args : cases) {
    const CommandResult r = Stepbench(args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << " " << Describe(r);
  }
}

// Prefix-caching workloads: bad combinations are refused before anything is sent, naming the flag.
TEST(StepbenchUsageTest, BadPrefixWorkloadFlagsExitWithTwo) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--num_prefixes=4"}, "--num_prefixes needs --shared_prefix_len"},
      {{"--shared_prefix_len=0", "--num_prefixes=2"}, "--num_prefixes needs --shared_prefix_len"},
      {{"--shared_prefix_len=-1"}, "--shared_prefix_len must be >= 0"},
      {{"--shared_prefix_len=8", "--num_prefixes=0"}, "--num_prefixes must be >= 1"},
      {{"--shared_prefix_len=8", "--num_prefixes=-3"}, "--num_prefixes must be >= 1"},
      {{"--turns=0"}, "--turns must be >= 1"},
      {{"--turns=-2"}, "--turns must be >= 1"},
      {{"--turns=two"}, "--turns"},
      {{"--dataset=x.jsonl", "--turns=2"}, "not with --dataset"},
      {{"--dataset=x.jsonl", "--shared_prefix_len=4"}, "not with --dataset"},
      {{"--cache_salt=" + std::string(257, 'x')}, "--cache_salt is 257 bytes; at most 256"},
  };
  for (const auto& [args, needle] : cases) {
    // An unreachable target: usage errors come before any connection.
    std::vector<std::string> argv = args;
    argv.push_back("--target=127.0.0.1:1");
    const CommandResult r = Stepbench(argv);
    EXPECT_EQ(r.exit_code, 2) << args[0] << " " << Describe(r);
    EXPECT_NE(r.err.find(needle), std::string::npos) << args[0] << " " << Describe(r);
  }
}

TEST(StepbenchUsageTest, UnreachableServerExitsWithOne) {
  const CommandResult r =
      Stepbench({"--target=127.0.0.1:" + std::to_string(PickFreePort()), "--num_requests=2", "--timeout_s=5"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_NE(r.err.find("UNAVAILABLE"), std::string::npos) << Describe(r);
}

class StepbenchLiveTest : public LiveServerTest {
 protected:
  void TearDown() override {
    if (!json_path_.empty()) ::unlink(json_path_.c_str());
  }

  client::ServerCounters Scrape() {
    client::ServerCounters c;
    std::string err;
    EXPECT_TRUE(client::ScrapeCounters(server_->metrics_url(), 10, &c, &err)) << err;
    return c;
  }

  // Runs stepbench with --metrics_url and --json_out; returns the JSON report.
  nlohmann::json RunBench(std::vector<std::string> args, int expected_exit = 0) {
    json_path_ = TempPath("report.json");
    args.push_back("--target=" + server_->target());
    args.push_back("--metrics_url=" + server_->metrics_url());
    args.push_back("--json_out=" + json_path_);
    last_ = Stepbench(args);
    EXPECT_EQ(last_.exit_code, expected_exit) << Describe(last_) << "\nserver log:\n" << server_->log();
    auto j = nlohmann::json::parse(ReadFile(json_path_), nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << Describe(last_);
    return j.is_discarded() ? nlohmann::json::object() : j;
  }

  // The run's counts equal the server's counter deltas, as stepbench saw them and as the test sees them.
  void ExpectAgreesWithMetrics(const nlohmann::json& j, const client::ServerCounters& before,
                               const client::ServerCounters& after) {
    ASSERT_TRUE(j.contains("server")) << j.dump(2);
    const auto& s = j["server"];
    EXPECT_EQ(s["request_success"].get<double>(), j["completed"].get<double>()) << j.dump(2);
    EXPECT_EQ(s["generation_tokens"].get<double>(), j["total_output_tokens"].get<double>()) << j.dump(2);
    EXPECT_EQ(s["prompt_tokens"].get<double>(), j["total_input_tokens"].get<double>()) << j.dump(2);
    // The test's own scrapes bracket the whole run, warm-up included.
    EXPECT_GE(after.request_success - before.request_success, j["completed"].get<double>());
    EXPECT_GE(after.generation_tokens - before.generation_tokens, j["total_output_tokens"].get<double>());
  }

  std::string json_path_;
  CommandResult last_;
};

TEST_F(StepbenchLiveTest, ClosedLoopCountsAgreeWithServerMetrics) {
  const auto before = Scrape();
  const auto j = RunBench({"--concurrency=4", "--num_requests=12", "--prompt_len=4:12", "--output_len=3:8",
                           "--warmup=3", "--seed=7"});
  const auto after = Scrape();
  EXPECT_EQ(j["completed"], 12);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(j["length_mismatches"], 0) << "ignore_eos makes output lengths exact";
  EXPECT_GE(j["total_output_tokens"].get<int>(), 12 * 3);
  EXPECT_LE(j["total_output_tokens"].get<int>(), 12 * 8);
  ExpectAgreesWithMetrics(j, before, after);
  // The warm-up's 3 requests reached the server but not the report.
  EXPECT_EQ(after.request_success - before.request_success, 15) << "no other client uses this server";
  EXPECT_GT(j["duration_s"].get<double>(), 0);
  EXPECT_GT(j["ttft_ms"]["p50"].get<double>(), 0);
  EXPECT_GT(j["e2e_ms"]["p99"].get<double>(), 0);
  EXPECT_GE(j["e2e_ms"]["p99"].get<double>(), j["ttft_ms"]["p50"].get<double>());
  EXPECT_EQ(j["goodput"].get<double>(), j["request_throughput"].get<double>()) << "no SLO: all requests are good";
  // The text report was printed, without a progress bar (stdout is a pipe).
  EXPECT_NE(last_.out.find("Serving Benchmark Result"), std::string::npos) << last_.out;
  EXPECT_NE(last_.out.find("Server /metrics (delta)"), std::string::npos) << last_.out;
  EXPECT_EQ(last_.out.find('\r'), std::string::npos);
}

TEST_F(StepbenchLiveTest, OpenLoopCountsAgreeWithServerMetrics) {
  const auto before = Scrape();
  const auto j = RunBench({"--request_rate=25", "--burstiness=0.5", "--num_requests=16", "--prompt_len=8",
                           "--output_len=4", "--seed=3", "--slo_ttft_ms=1e9", "--slo_tpot_ms=1e9"});
  const auto after = Scrape();
  EXPECT_EQ(j["completed"], 16);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(j["total_input_tokens"], 16 * 8);
  EXPECT_EQ(j["total_output_tokens"], 16 * 4);
  EXPECT_EQ(j["good_requests"], 16) << "SLOs nobody misses";
  ExpectAgreesWithMetrics(j, before, after);
  EXPECT_EQ(after.request_success - before.request_success, 16);
  EXPECT_NE(last_.out.find("open loop"), std::string::npos) << last_.out;
}

TEST_F(StepbenchLiveTest, ImpossibleSloGivesZeroGoodput) {
  const auto j = RunBench({"--concurrency=2", "--num_requests=4", "--prompt_len=4", "--output_len=3",
                           "--slo_ttft_ms=0.000001"});
  EXPECT_EQ(j["completed"], 4);
  EXPECT_EQ(j["good_requests"], 0);
  EXPECT_EQ(j["goodput"], 0.0);
}

TEST_F(StepbenchLiveTest, SixtyFourConcurrentStreams) {
  const auto j = RunBench({"--concurrency=64", "--num_requests=128", "--prompt_len=4:16", "--output_len=4",
                           "--seed=11"});
  EXPECT_EQ(j["completed"], 128);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(j["total_output_tokens"], 128 * 4);
  EXPECT_EQ(j["server"]["request_success"], 128);
}

TEST_F(StepbenchLiveTest, DatasetRequestsAndServerRejectionsAreCounted) {
  // vocab_size and max_context decide what the server refuses.
  const CommandResult info = RunCommand({STEPCTL_BIN, "info", "--json", "--target=" + server_->target()}, 60);
  ASSERT_EQ(info.exit_code, 0) << Describe(info);
  const auto model = nlohmann::json::parse(info.out);
  const int max_context = model.value("max_context", 0);
  ASSERT_GT(max_context, 0);

  const std::string dataset = TempPath("data.jsonl");
  // The last entry is longer than the context: INVALID_ARGUMENT from the server. The second leaves
  // max_new_tokens to --output_len (2).
  {
    std::ofstream out(dataset);
    out << "{\"prompt_token_ids\": [1, 2, 3], \"max_new_tokens\": 4}\n";
    out << "{\"prompt_token_ids\": [5, 6]}\n";
    out << "\n";
    out << "{\"prompt_token_ids\": [";
    for (int i = 0; i <= max_context; ++i) out << (i ? "," : "") << 1;
    out << "], \"max_new_tokens\": 1}\n";
  }
  const auto before = Scrape();
  const auto j = RunBench({"--dataset=" + dataset, "--num_requests=6", "--output_len=2", "--concurrency=2"},
                          /*expected_exit=*/1);
  const auto after = Scrape();
  ::unlink(dataset.c_str());
  // Entries cycle: 3 entries x 2.
  EXPECT_EQ(j["completed"], 4);
  EXPECT_EQ(j["failed"], 2);
  EXPECT_EQ(j["failures_by_code"]["INVALID_ARGUMENT"], 2) << j.dump(2);
  EXPECT_EQ(j["total_input_tokens"], 2 * (3 + 2));
  EXPECT_EQ(j["total_output_tokens"], 2 * (4 + 2));
  EXPECT_EQ(after.request_success - before.request_success, 4);
  EXPECT_EQ(j["server"]["request_success"], 4);
  EXPECT_EQ(j["server"]["generation_tokens"], 12);
  EXPECT_NE(last_.out.find("INVALID_ARGUMENT:"), std::string::npos) << last_.out;
}

// Whether the server has prefix caching on (ModelInfo.prefix_caching); false for a server from before it.
bool ServerCachesPrefixes(const std::string& target) {
  const CommandResult info = RunCommand({STEPCTL_BIN, "info", "--json", "--target=" + target}, 60);
  EXPECT_EQ(info.exit_code, 0) << Describe(info);
  const auto j = nlohmann::json::parse(info.out, nullptr, false);
  return !j.is_discarded() && j.value("prefix_caching", false);
}

TEST_F(StepbenchLiveTest, SharedPrefixWorkloadReportsCachedTokensAndHitRate) {
  const auto before = Scrape();
  // One request at a time, so each prefix's first request has computed it before the next one arrives.
  const auto j = RunBench({"--shared_prefix_len=32", "--num_prefixes=2", "--prompt_len=8", "--output_len=4",
                           "--num_requests=8", "--concurrency=1", "--seed=21", "--cache_salt=stepbench-shared-prefix"});
  const auto after = Scrape();
  EXPECT_EQ(j["completed"], 8);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(j["total_input_tokens"], 8 * (32 + 8)) << "prompt = shared prefix + own suffix";
  EXPECT_EQ(j["total_output_tokens"], 8 * 4);
  ExpectAgreesWithMetrics(j, before, after);
  ASSERT_TRUE(j.contains("total_cached_prompt_tokens")) << j.dump(2);
  ASSERT_TRUE(j.contains("mean_cached_prompt_tokens")) << j.dump(2);
  ASSERT_TRUE(j.contains("prefix_cache_hit_rate")) << j.dump(2);
  ASSERT_TRUE(j["server"].contains("prefix_cache_queries")) << j.dump(2);
  EXPECT_FALSE(j.contains("per_turn")) << "single turn";
  EXPECT_NE(last_.out.find("workload: 2 shared prefixes of 32 tokens before each prompt"), std::string::npos)
      << last_.out;
  EXPECT_NE(last_.out.find("server prefix caching: "), std::string::npos) << last_.out;
  EXPECT_NE(last_.out.find("Prefix Cache"), std::string::npos) << last_.out;
  EXPECT_NE(last_.out.find("Prefix cache hit rate (server):"), std::string::npos) << last_.out;

  if (!after.prefix_cache_queries) {
    // A server without the counters: the report says so instead of printing a made-up rate.
    EXPECT_TRUE(j["prefix_cache_hit_rate"].is_null());
    EXPECT_TRUE(j["server"]["prefix_cache_queries"].is_null());
    EXPECT_NE(last_.out.find("n/a (no stepserve_prefix_cache_* counters on /metrics)"), std::string::npos)
        << last_.out;
  }
  if (!ServerCachesPrefixes(server_->target())) {
    EXPECT_EQ(j["total_cached_prompt_tokens"], 0) << "nothing is cached without prefix caching";
    GTEST_SKIP() << "the server has prefix caching off (or predates it): hit-rate checks skipped";
  }
  // Prefix caching: the 6 requests after each prefix's first find at least its 32 tokens (2 full blocks
  // of 16) cached.
  EXPECT_GE(j["total_cached_prompt_tokens"].get<int64_t>(), 6 * 32) << j.dump(2);
  EXPECT_GE(j["mean_cached_prompt_tokens"].get<double>(), 6.0 * 32 / 8) << j.dump(2);
  ASSERT_TRUE(j["prefix_cache_hit_rate"].is_number()) << "the server exports the prefix cache counters\n"
                                                        << j.dump(2);
  EXPECT_GE(j["prefix_cache_hit_rate"].get<double>(), 6.0 * 32 / (8 * 40)) << j.dump(2);
  EXPECT_LE(j["prefix_cache_hit_rate"].get<double>(), 1.0);
  // The server's hit counter and the responses' Usage.cached_prompt_tokens count the same tokens.
  EXPECT_EQ(j["server"]["prefix_cache_hits"].get<double>(), j["total_cached_prompt_tokens"].get<double>())
      << j.dump(2);
  EXPECT_LE(j["server"]["prefix_cache_queries"].get<double>(), j["total_input_tokens"].get<double>()) << j.dump(2);
}

TEST_F(StepbenchLiveTest, MultiTurnConversationsExtendTheirPrompts) {
  const auto before = Scrape();
  const auto j = RunBench({"--turns=3", "--num_requests=3", "--concurrency=2", "--prompt_len=16", "--output_len=4",
                           "--seed=22", "--cache_salt=stepbench-multi-turn"});
  const auto after = Scrape();
  EXPECT_EQ(j["completed"], 9) << "3 conversations x 3 turns";
  EXPECT_EQ(j["failed"], 0);
  // Turn prompts: 16, 16 + 4 + 16 = 36, 36 + 4 + 16 = 56.
  EXPECT_EQ(j["total_input_tokens"], 3 * (16 + 36 + 56));
  EXPECT_EQ(j["total_output_tokens"], 9 * 4);
  ExpectAgreesWithMetrics(j, before, after);
  EXPECT_EQ(after.request_success - before.request_success, 9);
  ASSERT_TRUE(j.contains("per_turn")) << j.dump(2);
  ASSERT_EQ(j["per_turn"].size(), 3u) << j.dump(2);
  const double expected_prompt[] = {16, 36, 56};
  for (int t = 0; t < 3; ++t) {
    EXPECT_EQ(j["per_turn"][t]["turn"], t + 1);
    EXPECT_EQ(j["per_turn"][t]["completed"], 3);
    EXPECT_EQ(j["per_turn"][t]["mean_prompt_tokens"].get<double>(), expected_prompt[t]) << j.dump(2);
    EXPECT_GT(j["per_turn"][t]["ttft_ms"]["mean"].get<double>(), 0);
  }
  EXPECT_EQ(j["ttft_ms"]["count"], 9) << "the overall TTFT covers every turn";
  EXPECT_NE(last_.out.find("3 conversations x 3 turns = 9 requests"), std::string::npos) << last_.out;
  EXPECT_NE(last_.out.find("Multi-turn Conversations"), std::string::npos) << last_.out;
  EXPECT_NE(last_.out.find("Turn 3 mean/median TTFT (ms):"), std::string::npos) << last_.out;

  if (!ServerCachesPrefixes(server_->target())) {
    GTEST_SKIP() << "the server has prefix caching off (or predates it): cached-token checks skipped";
  }
  // Turn 2 finds turn 1's prompt (one full block of 16) cached, turn 3 at least turn 2's first 32 tokens.
  EXPECT_GE(j["per_turn"][1]["mean_cached_prompt_tokens"].get<double>(), 16) << j.dump(2);
  EXPECT_GE(j["per_turn"][2]["mean_cached_prompt_tokens"].get<double>(), 32) << j.dump(2);
}

TEST_F(StepbenchLiveTest, PrefixWorkloadLongerThanTheContextIsRefused) {
  CommandResult r = Stepbench({"--target=" + server_->target(), "--shared_prefix_len=5000", "--num_requests=1"});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_NE(r.err.find("--shared_prefix_len + --prompt_len max + --output_len max"), std::string::npos)
      << Describe(r);
  EXPECT_NE(r.err.find("max_context"), std::string::npos) << Describe(r);
  r = Stepbench({"--target=" + server_->target(), "--turns=200", "--prompt_len=16", "--output_len=16",
                 "--num_requests=1"});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_NE(r.err.find("--turns x (--prompt_len max + --output_len max) = 6400"), std::string::npos) << Describe(r);
}

}  // namespace
}  // namespace stepserve::testing
