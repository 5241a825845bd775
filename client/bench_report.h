// stepbench's statistics: per-request measurements in, the report (text and JSON) out.
//
// Definitions (those of vLLM's benchmark_serving):
//   TTFT  time from sending the request to the first message carrying tokens;
//   ITL   the gap between successive messages carrying tokens (one per engine step);
//   TPOT  (e2e - TTFT) / (output tokens - 1), per request with more than one output token;
//   e2e   time from sending the request to the end of its stream;
//   goodput  completed requests per second whose TTFT <= --slo_ttft_ms and TPOT <= --slo_tpot_ms
//            (an SLO left at 0 is not checked, so with none set goodput equals request throughput).
//   cached prompt tokens  Usage.cached_prompt_tokens of each completed request's final message: prompt
//            tokens the server took from its prefix cache instead of computing them;
//   prefix cache hit rate  over the run, the server's stepserve_prefix_cache_hits_total delta divided by
//            its stepserve_prefix_cache_queries_total delta (both in prompt tokens), from /metrics.
// Percentiles interpolate linearly between the closest ranks (numpy's default).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace stepserve::client {

struct RequestResult {
  bool ok = false;
  std::string code;     // gRPC status code name when !ok
  std::string message;  // status message when !ok
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;     // tokens received
  int64_t expected_tokens = 0;   // max_new_tokens asked for
  double ttft_s = 0;
  double e2e_s = 0;
  std::vector<double> itl_s;
  int64_t cached_prompt_tokens = 0;  // Usage.cached_prompt_tokens of the final message
  int64_t turn = 1;                  // 1-based turn within its conversation (1 for single requests)
};

// The code of a turn that was never sent because an earlier turn of its conversation failed.
inline constexpr const char* kSkippedCode = "SKIPPED";

struct Summary {
  double mean = 0, p50 = 0, p90 = 0, p99 = 0;
  int64_t count = 0;
};

// p in [0, 100]; linear interpolation; 0 for no values.
double Percentile(std::vector<double> values, double p);
Summary Summarize(const std::vector<double>& values);

struct Slo {
  double ttft_ms = 0;  // 0: not checked
  double tpot_ms = 0;
};

// Counters read from the server's /metrics: the difference between two scrapes.
struct ServerCounters {
  double request_success = 0;
  double request_failure = 0;
  double prompt_tokens = 0;
  double generation_tokens = 0;
  std::map<std::string, double> failures_by_code;
  // stepserve_prefix_cache_queries_total and stepserve_prefix_cache_hits_total (prompt tokens looked up
  // in / found in the prefix cache); nullopt when the server does not export them.
  std::optional<double> prefix_cache_queries;
  std::optional<double> prefix_cache_hits;
};

// hits / queries of the prefix-cache counters; nullopt when they are absent or nothing was queried.
std::optional<double> PrefixCacheHitRate(const ServerCounters& counters);

// TTFT and prompt statistics of the completed requests of one turn (multi-turn runs).
struct TurnStats {
  int64_t turn = 0;
  int64_t completed = 0;
  Summary ttft_ms;
  double mean_prompt_tokens = 0;
  double mean_cached_prompt_tokens = 0;
};

struct BenchReport {
  int64_t completed = 0;
  int64_t failed = 0;
  std::map<std::string, int64_t> failures_by_code;
  std::string first_failure;  // one example message
  int64_t length_mismatches = 0;  // completed requests whose output length differs from max_new_tokens
  double duration_s = 0;
  int64_t total_input_tokens = 0;
  int64_t total_output_tokens = 0;
  double request_throughput = 0;
  double output_token_throughput = 0;
  double total_token_throughput = 0;
  int64_t good_requests = 0;
  double goodput = 0;
  Slo slo;
  Summary ttft_ms, tpot_ms, itl_ms, e2e_ms;
  int64_t total_cached_prompt_tokens = 0;  // over completed requests
  double mean_cached_prompt_tokens = 0;     // per completed request
  bool prefix_cache_section = false;        // print the prefix-cache section even with nothing cached
  std::vector<TurnStats> per_turn;          // one per turn when some request had turn > 1
  std::optional<ServerCounters> server;     // when --metrics_url was given
};

BenchReport BuildReport(const std::vector<RequestResult>& results, double duration_s, const Slo& slo);

// The human-readable report, in the layout of vLLM's benchmark_serving.
std::string FormatReport(const BenchReport& report);

// completed, failed, failures_by_code, duration_s, request_throughput, output_token_throughput,
// total_token_throughput, goodput, good_requests, total_input_tokens, total_output_tokens, and
// ttft_ms/tpot_ms/itl_ms/e2e_ms each {mean, p50, p90, p99}, total_cached_prompt_tokens,
// mean_cached_prompt_tokens, prefix_cache_hit_rate (null when unknown), per_turn (multi-turn runs only);
// "server" with the metrics deltas if scraped (prefix_cache_queries/hits null when not exported).
nlohmann::json ReportToJson(const BenchReport& report);

}  // namespace stepserve::client
