// ServerMetrics on its own (no server, no executor) and the exposition parser.
#include "server/metrics.h"

#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/server/prometheus_text.h"
#include "tests/server/server_test_util.h"

namespace stepserve::testing {
namespace {

using server::ServerMetrics;

PrometheusText Parse(const std::string& text) {
  auto parsed = ParsePrometheusText(text);
  EXPECT_TRUE(parsed.ok()) << parsed.status() << "\n" << text;
  return parsed.ok() ? *parsed : PrometheusText();
}

TEST(MetricsTest, EverySeriesIsDeclaredWithItsType) {
  ServerMetrics metrics;
  PrometheusText text = Parse(metrics.RenderText());
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"stepserve_num_requests_running", "gauge"},
      {"stepserve_num_requests_waiting", "gauge"},
      {"stepserve_kv_cache_usage_ratio", "gauge"},
      {"stepserve_prompt_tokens_total", "counter"},
      {"stepserve_generation_tokens_total", "counter"},
      {"stepserve_request_success_total", "counter"},
      {"stepserve_request_failure_total", "counter"},
      {"stepserve_num_preemptions_total", "counter"},
      {"stepserve_engine_step_failures_total", "counter"},
      {"stepserve_engine_oom_total", "counter"},
      {"stepserve_prefix_cache_queries_total", "counter"},
      {"stepserve_prefix_cache_hits_total", "counter"},
      {"stepserve_kv_cache_cached_blocks", "gauge"},
      {"stepserve_time_to_first_token_seconds", "histogram"},
      {"stepserve_inter_token_latency_seconds", "histogram"},
      {"stepserve_e2e_request_latency_seconds", "histogram"},
      {"stepserve_request_queue_time_seconds", "histogram"},
      {"stepserve_iteration_tokens", "histogram"},
  };
  for (const auto& [name, type] : expected) {
    auto it = text.types.find(name);
    ASSERT_NE(it, text.types.end()) << name;
    EXPECT_EQ(it->second, type) << name;
  }
  // No executor yet: the executor gauges read 0.
  EXPECT_EQ(text.Get("stepserve_kv_cache_usage_ratio"), 0);
  EXPECT_EQ(text.Get("stepserve_num_requests_running"), 0);
  EXPECT_EQ(text.Get("stepserve_prefix_cache_queries_total"), 0);
  EXPECT_EQ(text.Get("stepserve_prefix_cache_hits_total"), 0);
  EXPECT_EQ(text.Get("stepserve_kv_cache_cached_blocks"), 0);
  EXPECT_EQ(text.Get("stepserve_request_success_total{finish_reason=\"length\"}"), 0);
  EXPECT_EQ(text.Get("stepserve_request_failure_total{code=\"CANCELLED\"}"), 0);
}

TEST(MetricsTest, CountersHistogramsInfoAndExecutorStats) {
  ServerMetrics metrics;
  metrics.SetModelInfo("tiny", "cpu", "float32");
  metrics.SetStatsSource([](ExecutorStats* stats) {
    stats->num_running = 3;
    stats->num_waiting = 2;
    stats->kv_usage_ratio = 0.25;
    stats->prompt_tokens_total = 100;
    stats->generation_tokens_total = 40;
    stats->num_preemptions_total = 1;
    return true;
  });
  metrics.RecordSuccess(FinishReason::kLength);
  metrics.RecordSuccess(FinishReason::kEos);
  metrics.RecordSuccess(FinishReason::kEos);
  metrics.RecordFailure(absl::StatusCode::kInvalidArgument);
  metrics.RecordFailure(absl::StatusCode::kResourceExhausted);
  metrics.ObserveTimeToFirstToken(absl::Milliseconds(30));
  metrics.ObserveE2eLatency(absl::Seconds(2));
  metrics.ObserveQueueTime(absl::Milliseconds(1));
  metrics.ObserveInterTokenLatency(absl::Milliseconds(7));
  StepInfo step;
  step.num_tokens = 100;
  metrics.ObserveStep(step);

  PrometheusText text = Parse(metrics.RenderText());
  EXPECT_EQ(text.Get("stepserve_model_info{device=\"cpu\",dtype=\"float32\",model=\"tiny\"}"), 1);
  EXPECT_EQ(text.Get("stepserve_num_requests_running"), 3);
  EXPECT_EQ(text.Get("stepserve_num_requests_waiting"), 2);
  EXPECT_DOUBLE_EQ(text.Get("stepserve_kv_cache_usage_ratio"), 0.25);
  EXPECT_EQ(text.Get("stepserve_prompt_tokens_total"), 100);
  EXPECT_EQ(text.Get("stepserve_generation_tokens_total"), 40);
  EXPECT_EQ(text.Get("stepserve_num_preemptions_total"), 1);
  EXPECT_EQ(text.Get("stepserve_request_success_total{finish_reason=\"length\"}"), 1);
  EXPECT_EQ(text.Get("stepserve_request_success_total{finish_reason=\"eos\"}"), 2);
  EXPECT_EQ(text.Get("stepserve_request_failure_total{code=\"INVALID_ARGUMENT\"}"), 1);
  EXPECT_EQ(text.Get("stepserve_request_failure_total{code=\"RESOURCE_EXHAUSTED\"}"), 1);
  EXPECT_EQ(text.Get("stepserve_time_to_first_token_seconds_count"), 1);
  EXPECT_EQ(text.Get("stepserve_time_to_first_token_seconds_bucket{le=\"0.02\"}"), 0);
  EXPECT_EQ(text.Get("stepserve_time_to_first_token_seconds_bucket{le=\"0.04\"}"), 1);
  EXPECT_EQ(text.Get("stepserve_time_to_first_token_seconds_bucket{le=\"+Inf\"}"), 1);
  EXPECT_EQ(text.Get("stepserve_e2e_request_latency_seconds_bucket{le=\"1.5\"}"), 0);
  EXPECT_EQ(text.Get("stepserve_e2e_request_latency_seconds_bucket{le=\"2\"}"), 1);
  EXPECT_EQ(text.Get("stepserve_iteration_tokens_bucket{le=\"128\"}"), 1);
  EXPECT_EQ(text.Get("stepserve_iteration_tokens_sum"), 100);
  EXPECT_EQ(text.Get("stepserve_inter_token_latency_seconds_count"), 1);
  EXPECT_EQ(text.Get("stepserve_request_queue_time_seconds_count"), 1);

  metrics.SetStatsSource(nullptr);
  EXPECT_EQ(Parse(metrics.RenderText()).Get("stepserve_num_requests_running"), 0);
}

// The prefix cache's counters (prompt tokens, like vLLM's prefix_cache_queries / prefix_cache_hits) and its
// gauge mirror Executor::Stats() at every scrape, like the other executor counters; the HTTP exposition
// carries the same values.
TEST(MetricsTest, PrefixCacheCountersAndCachedBlocksMirrorExecutorStats) {
  ServerMetrics metrics;
  ExecutorStats current;
  std::mutex mu;
  metrics.SetStatsSource([&](ExecutorStats* stats) {
    std::lock_guard<std::mutex> lock(mu);
    *stats = current;
    return true;
  });
  auto set = [&](int64_t queries, int64_t hits, int32_t cached_blocks) {
    std::lock_guard<std::mutex> lock(mu);
    current.prefix_cache_queries_total = queries;
    current.prefix_cache_hits_total = hits;
    current.kv_cached_blocks = cached_blocks;
  };
  set(74, 36, 9);
  PrometheusText text = Parse(metrics.RenderText());
  EXPECT_EQ(text.types["stepserve_prefix_cache_queries_total"], "counter");
  EXPECT_EQ(text.types["stepserve_prefix_cache_hits_total"], "counter");
  EXPECT_EQ(text.types["stepserve_kv_cache_cached_blocks"], "gauge");
  EXPECT_EQ(text.Get("stepserve_prefix_cache_queries_total"), 74);
  EXPECT_EQ(text.Get("stepserve_prefix_cache_hits_total"), 36);
  EXPECT_EQ(text.Get("stepserve_kv_cache_cached_blocks"), 9);

  // Token counts beyond 2^31 survive (int64 stats; doubles are exact up to 2^53).
  const int64_t big = (int64_t{1} << 40) + 3;
  set(big, big - 1, 0);
  text = Parse(metrics.RenderText());
  EXPECT_EQ(text.Get("stepserve_prefix_cache_queries_total"), static_cast<double>(big));
  EXPECT_EQ(text.Get("stepserve_prefix_cache_hits_total"), static_cast<double>(big - 1));
  EXPECT_EQ(text.Get("stepserve_kv_cache_cached_blocks"), 0);

  ASSERT_TRUE(metrics.StartHttp("127.0.0.1:0").ok());
  set(120, 80, 5);
  PrometheusText http = Parse(HttpGet(metrics.http_port(), "/metrics"));
  EXPECT_EQ(http.Get("stepserve_prefix_cache_queries_total"), 120);
  EXPECT_EQ(http.Get("stepserve_prefix_cache_hits_total"), 80);
  EXPECT_EQ(http.Get("stepserve_kv_cache_cached_blocks"), 5);

  // No executor (or it is gone): zeros, not stale values.
  metrics.SetStatsSource([](ExecutorStats*) { return false; });
  text = Parse(metrics.RenderText());
  EXPECT_EQ(text.Get("stepserve_prefix_cache_queries_total"), 0);
  EXPECT_EQ(text.Get("stepserve_prefix_cache_hits_total"), 0);
  EXPECT_EQ(text.Get("stepserve_kv_cache_cached_blocks"), 0);
}

TEST(MetricsTest, ConcurrentUpdatesAndScrapesOverHttp) {
  ServerMetrics metrics;
  ASSERT_TRUE(metrics.StartHttp("127.0.0.1:0").ok());
  ASSERT_GT(metrics.http_port(), 0);
  constexpr int kThreads = 16, kPerThread = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        metrics.RecordSuccess(FinishReason::kStopToken);
        metrics.ObserveInterTokenLatency(absl::Microseconds(i));
      }
    });
  }
  for (int i = 0; i < 5; ++i) {
    auto parsed = ParsePrometheusText(HttpGet(metrics.http_port(), "/metrics"));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
  }
  for (auto& t : threads) t.join();
  PrometheusText text = Parse(HttpGet(metrics.http_port(), "/metrics"));
  EXPECT_EQ(text.Get("stepserve_request_success_total{finish_reason=\"stop_token\"}"), kThreads * kPerThread);
  EXPECT_EQ(text.Get("stepserve_inter_token_latency_seconds_count"), kThreads * kPerThread);
}

TEST(PrometheusTextTest, RejectsMalformedExpositions) {
  EXPECT_TRUE(ParsePrometheusText("# TYPE a counter\na 1\n").ok());
  EXPECT_TRUE(ParsePrometheusText("# TYPE a gauge\na{x=\"1\",y=\"q\\\"\"} NaN\n").ok());
  EXPECT_FALSE(ParsePrometheusText("a 1\n").ok());                          // no TYPE
  EXPECT_FALSE(ParsePrometheusText("# TYPE a counter\na one\n").ok());      // bad value
  EXPECT_FALSE(ParsePrometheusText("# TYPE a counter\na{x=1} 1\n").ok());   // unquoted label
  EXPECT_FALSE(ParsePrometheusText("# TYPE a counter\na 1\na 2\n").ok());   // duplicate
  EXPECT_FALSE(ParsePrometheusText("# TYPE 9a counter\n").ok());            // bad name
  EXPECT_FALSE(ParsePrometheusText("# TYPE a counter\na 1\n# TYPE a counter\n").ok());
}

}  // namespace
}  // namespace stepserve::testing
