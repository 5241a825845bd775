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

}  // namespace
}  // namespace stepserve::testing
