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
  r.server = ServerCounters{2, 3, 10, 4, {{"RESOURCE_EXHAUSTED", 2}}};
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

}  // namespace
}  // namespace stepserve::client
