// stepbench's statistics: per-request measurements in, the report (text and JSON) out.
//
// Definitions (those of vLLM's benchmark_serving):
//   TTFT  time from sending the request to the first message carrying tokens;
//   ITL   the gap between successive messages carrying tokens (one per engine step);
//   TPOT  (e2e - TTFT) / (output tokens - 1), per request with more than one output token;
//   e2e   time from sending the request to the end of its stream;
//   goodput  completed requests per second whose TTFT <= --slo_ttft_ms and TPOT <= --slo_tpot_ms
//            (an SLO left at 0 is not checked, so with none set goodput equals request throughput).
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
};

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
  std::optional<ServerCounters> server;  // when --metrics_url was given
};

BenchReport BuildReport(const std::vector<RequestResult>& results, double duration_s, const Slo& slo);

// The human-readable report, in the layout of vLLM's benchmark_serving.
std::string FormatReport(const BenchReport& report);

// completed, failed, failures_by_code, duration_s, request_throughput, output_token_throughput,
// total_token_throughput, goodput, good_requests, total_input_tokens, total_output_tokens, and
// ttft_ms/tpot_ms/itl_ms/e2e_ms each {mean, p50, p90, p99}; "server" with the metrics deltas if scraped.
nlohmann::json ReportToJson(const BenchReport& report);

}  // namespace stepserve::client
