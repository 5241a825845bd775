#include "client/bench_report.h"

#include <gtest/gtest.h>

namespace stepserve::client {
namespace {

TEST(BenchReportTest, PercentilesInterpolateLikeNumpy) {
  const std::vector<double> v = {4, 1, 3, 2};  // unsorted on purpose
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 2.5);
  EXPECT_DOUBLE_EQ(Percentile(v, 90), 3.7);   // numpy.percentile([1,2,3,4], 90)
  EXPECT_DOUBLE_EQ(Percentile(v, 99), 3.97);
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 4);
  EXPECT_DOUBLE_EQ(Percentile({10}, 99), 10);
  EXPECT_DOUBLE_EQ(Percentile({}, 50), 0);
  const Summary s = Summarize(v);
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  EXPECT_EQ(s.count, 4);
}

RequestResult Ok(int64_t prompt, int64_t out, int64_t expected, double ttft, double e2e, std::vector<double> itl) {
  RequestResult r;
  r.ok = true;
  r.prompt_tokens = prompt;
  r.output_tokens = out;
  r.expected_tokens = expected;
  r.ttft_s = ttft;
  r.e2e_s = e2e;
  r.itl_s = std::move(itl);
  return r;
}

RequestResult Failed(const std::string& code) {
  RequestResult r;
  r.code = code;
  r.message = "why";
  r.prompt_tokens = 100;  // not counted
  return r;
}

std::vector<RequestResult> Sample() {
  return {Ok(4, 3, 3, 0.1, 0.3, {0.1, 0.1}), Ok(6, 1, 2, 0.5, 0.5, {}), Failed("RESOURCE_EXHAUSTED"),
          Failed("RESOURCE_EXHAUSTED"), Failed("DEADLINE_EXCEEDED")};
}

TEST(BenchReportTest, CountsThroughputAndLatencies) {
  const BenchReport r = BuildReport(Sample(), 2.0, Slo{});
  EXPECT_EQ(r.completed, 2);
  EXPECT_EQ(r.failed, 3);
  EXPECT_EQ(r.failures_by_code.at("RESOURCE_EXHAUSTED"), 2);
  EXPECT_EQ(r.failures_by_code.at("DEADLINE_EXCEEDED"), 1);
  EXPECT_EQ(r.first_failure, "RESOURCE_EXHAUSTED: why");
  EXPECT_EQ(r.length_mismatches, 1);
  EXPECT_EQ(r.total_input_tokens, 10);
  EXPECT_EQ(r.total_output_tokens, 4);
  EXPECT_DOUBLE_EQ(r.request_throughput, 1.0);
  EXPECT_DOUBLE_EQ(r.output_token_throughput, 2.0);
  EXPECT_DOUBLE_EQ(r.total_token_throughput, 7.0);
  // No SLO: every completed request is good.
  EXPECT_EQ(r.good_requests, 2);
  EXPECT_DOUBLE_EQ(r.goodput, 1.0);
  EXPECT_DOUBLE_EQ(r.ttft_ms.mean, 300);
  EXPECT_DOUBLE_EQ(r.ttft_ms.p50, 300);
  EXPECT_DOUBLE_EQ(r.ttft_ms.p90, 460);
  // TPOT only for the request with more than one token: (300 - 100) / 2.
  EXPECT_EQ(r.tpot_ms.count, 1);
  EXPECT_DOUBLE_EQ(r.tpot_ms.mean, 100);
  EXPECT_EQ(r.itl_ms.count, 2);
  EXPECT_DOUBLE_EQ(r.itl_ms.p99, 100);
  EXPECT_DOUBLE_EQ(r.e2e_ms.mean, 400);
}

TEST(BenchReportTest, GoodputChecksEachSlo) {
  EXPECT_EQ(BuildReport(Sample(), 2.0, Slo{200, 0}).good_requests, 1);    // the 500 ms TTFT misses
  EXPECT_EQ(BuildReport(Sample(), 2.0, Slo{600, 150}).good_requests, 2);  // both meet
  EXPECT_EQ(BuildReport(Sample(), 2.0, Slo{600, 50}).good_requests, 1);   // 100 ms TPOT misses
  EXPECT_DOUBLE_EQ(BuildReport(Sample(), 2.0, Slo{600, 50}).goodput, 0.5);
  EXPECT_EQ(BuildReport(Sample(), 2.0, Slo{50, 0}).good_requests, 0);
}

TEST(BenchReportTest, EmptyRunIsAllZeros) {
  const BenchReport r = BuildReport({}, 0, Slo{});
  EXPECT_EQ(r.completed, 0);
  EXPECT_EQ(r.request_throughput, 0);
  EXPECT_EQ(r.ttft_ms.p99, 0);
  EXPECT_NE(FormatReport(r).find("Successful requests:"), std::string::npos);
}

TEST(BenchReportTest, JsonHasTheDocumentedKeys) {
  BenchReport r = BuildReport(Sample(), 2.0, Slo{200, 0});
  r.server = ServerCounters{2, 3, 10, 4, {{"RESOURCE_EXHAUSTED", 2}}, {}, {}};
  const nlohmann::json j = ReportToJson(r);
  for (const char* key : {"completed", "failed", "duration_s", "request_throughput", "output_token_throughput",
                          "total_token_throughput", "goodput"}) {
    ASSERT_TRUE(j.contains(key)) << key;
    EXPECT_TRUE(j[key].is_number()) << key;
  }
  for (const char* key : {"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"}) {
    ASSERT_TRUE(j.contains(key)) << key;
    for (const char* stat : {"mean", "p50", "p90", "p99"}) EXPECT_TRUE(j[key][stat].is_number()) << key << stat;
  }
  EXPECT_EQ(j["completed"], 2);
  EXPECT_EQ(j["failed"], 3);
  EXPECT_DOUBLE_EQ(j["goodput"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["ttft_ms"]["p90"].get<double>(), 460);
  EXPECT_EQ(j["failures_by_code"]["RESOURCE_EXHAUSTED"], 2);
  EXPECT_EQ(j["server"]["generation_tokens"], 4);
  const std::string text = FormatReport(r);
  for (const char* line : {"Successful requests:", "Failed requests:", "RESOURCE_EXHAUSTED:", "Goodput (req/s):",
                           "P99 TTFT (ms):", "Median TPOT (ms):", "Mean ITL (ms):", "P90 E2EL (ms):",
                           "Generation tokens:"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
  }
}

RequestResult Turn(int64_t turn, int64_t prompt, int64_t cached, double ttft) {
  RequestResult r = Ok(prompt, 2, 2, ttft, ttft + 0.1, {0.1});
  r.turn = turn;
  r.cached_prompt_tokens = cached;
  return r;
}

TEST(BenchReportTest, CachedPromptTokensAndPrefixCacheHitRate) {
  std::vector<RequestResult> results = {Turn(1, 40, 0, 0.2), Turn(1, 40, 32, 0.1), Turn(1, 40, 32, 0.1),
                                        Failed("INVALID_ARGUMENT")};
  results[3].cached_prompt_tokens = 99;  // a failed request's usage is not counted
  BenchReport r = BuildReport(results, 1.0, Slo{});
  EXPECT_EQ(r.total_cached_prompt_tokens, 64);
  EXPECT_DOUBLE_EQ(r.mean_cached_prompt_tokens, 64.0 / 3);
  EXPECT_TRUE(r.per_turn.empty()) << "single-turn runs have no per-turn section";

  // Without --metrics_url: the hit rate is unknown.
  std::string text = FormatReport(r);
  EXPECT_NE(text.find("Prefix Cache"), std::string::npos) << text;
  EXPECT_NE(text.find("Cached prompt tokens:                     64 (53.33% of input)"), std::string::npos) << text;
  EXPECT_NE(text.find("Mean cached prompt tokens per request:    21.33"), std::string::npos) << text;
  EXPECT_NE(text.find("n/a (no --metrics_url)"), std::string::npos) << text;
  nlohmann::json j = ReportToJson(r);
  EXPECT_EQ(j["total_cached_prompt_tokens"], 64);
  EXPECT_DOUBLE_EQ(j["mean_cached_prompt_tokens"].get<double>(), 64.0 / 3);
  EXPECT_TRUE(j["prefix_cache_hit_rate"].is_null());
  EXPECT_FALSE(j.contains("per_turn"));

  // A server without the prefix-cache counters (before they existed): n/a, null in JSON.
  r.server = ServerCounters{3, 1, 120, 6, {}, {}, {}};
  text = FormatReport(r);
  EXPECT_NE(text.find("n/a (no stepserve_prefix_cache_* counters on /metrics)"), std::string::npos) << text;
  j = ReportToJson(r);
  EXPECT_TRUE(j["prefix_cache_hit_rate"].is_null());
  EXPECT_TRUE(j["server"]["prefix_cache_queries"].is_null());
  EXPECT_TRUE(j["server"]["prefix_cache_hits"].is_null());

  // With the counters: hits / queries of the deltas.
  r.server->prefix_cache_queries = 120;
  r.server->prefix_cache_hits = 64;
  ASSERT_TRUE(PrefixCacheHitRate(*r.server).has_value());
  EXPECT_DOUBLE_EQ(*PrefixCacheHitRate(*r.server), 64.0 / 120);
  text = FormatReport(r);
  EXPECT_NE(text.find("Prefix cache hit rate (server):           53.33% (64 of 120 tokens)"), std::string::npos)
      << text;
  j = ReportToJson(r);
  EXPECT_DOUBLE_EQ(j["prefix_cache_hit_rate"].get<double>(), 64.0 / 120);
  EXPECT_EQ(j["server"]["prefix_cache_queries"], 120);
  EXPECT_EQ(j["server"]["prefix_cache_hits"], 64);

  // Counters present but nothing queried: no rate.
  r.server->prefix_cache_queries = 0;
  r.server->prefix_cache_hits = 0;
  EXPECT_FALSE(PrefixCacheHitRate(*r.server).has_value());
  EXPECT_NE(FormatReport(r).find("n/a (no prefix cache queries)"), std::string::npos);
  EXPECT_TRUE(ReportToJson(r)["prefix_cache_hit_rate"].is_null());
}

TEST(BenchReportTest, PrefixCacheSectionOnlyWhenRelevant) {
  BenchReport r = BuildReport(Sample(), 2.0, Slo{});
  EXPECT_EQ(FormatReport(r).find("Prefix Cache"), std::string::npos) << "nothing cached, no prefix workload";
  r.prefix_cache_section = true;  // a prefix workload: shown even when nothing was cached
  const std::string text = FormatReport(r);
  EXPECT_NE(text.find("Cached prompt tokens:                     0 (0.00% of input)"), std::string::npos) << text;
  r.prefix_cache_section = false;
  r.server = ServerCounters{};
  r.server->prefix_cache_queries = 10;
  r.server->prefix_cache_hits = 0;
  EXPECT_NE(FormatReport(r).find("0.00% (0 of 10 tokens)"), std::string::npos) << "the server counts caching";
}

TEST(BenchReportTest, PerTurnStatistics) {
  std::vector<RequestResult> results = {Turn(1, 10, 0, 0.3), Turn(2, 26, 16, 0.1), Turn(3, 42, 32, 0.05),
                                        Turn(1, 10, 0, 0.5), Turn(2, 26, 0, 0.2)};
  RequestResult skipped;
  skipped.code = kSkippedCode;
  skipped.turn = 3;
  results.push_back(skipped);
  const BenchReport r = BuildReport(results, 1.0, Slo{});
  EXPECT_EQ(r.completed, 5);
  EXPECT_EQ(r.failed, 1);
  EXPECT_EQ(r.failures_by_code.at("SKIPPED"), 1);
  ASSERT_EQ(r.per_turn.size(), 3u);
  EXPECT_EQ(r.per_turn[0].turn, 1);
  EXPECT_EQ(r.per_turn[0].completed, 2);
  EXPECT_DOUBLE_EQ(r.per_turn[0].ttft_ms.mean, 400);
  EXPECT_DOUBLE_EQ(r.per_turn[0].mean_prompt_tokens, 10);
  EXPECT_DOUBLE_EQ(r.per_turn[0].mean_cached_prompt_tokens, 0);
  EXPECT_EQ(r.per_turn[1].completed, 2);
  EXPECT_DOUBLE_EQ(r.per_turn[1].ttft_ms.p50, 150);
  EXPECT_DOUBLE_EQ(r.per_turn[1].mean_cached_prompt_tokens, 8);
  EXPECT_EQ(r.per_turn[2].completed, 1);
  EXPECT_DOUBLE_EQ(r.per_turn[2].mean_prompt_tokens, 42);
  // Overall TTFT covers every turn.
  EXPECT_EQ(r.ttft_ms.count, 5);
  const std::string text = FormatReport(r);
  EXPECT_NE(text.find("Multi-turn Conversations"), std::string::npos) << text;
  EXPECT_NE(text.find("Turn 2 mean/median TTFT (ms):             150.00 / 150.00 (2 req, prompt 26.0, cached 8.0 tok)"),
            std::string::npos)
      << text;
  const nlohmann::json j = ReportToJson(r);
  ASSERT_TRUE(j["per_turn"].is_array());
  ASSERT_EQ(j["per_turn"].size(), 3u);
  EXPECT_EQ(j["per_turn"][2]["turn"], 3);
  EXPECT_EQ(j["per_turn"][2]["completed"], 1);
  EXPECT_DOUBLE_EQ(j["per_turn"][2]["ttft_ms"]["mean"].get<double>(), 50);
  EXPECT_DOUBLE_EQ(j["per_turn"][1]["mean_cached_prompt_tokens"].get<double>(), 8);
  EXPECT_DOUBLE_EQ(j["per_turn"][0]["mean_prompt_tokens"].get<double>(), 10);
}

}  // namespace
}  // namespace stepserve::client
