#include "client/bench_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

namespace stepserve::client {

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return values[lo] + (values[hi] - values[lo]) * frac;
}

Summary Summarize(const std::vector<double>& values) {
  Summary s;
  s.count = static_cast<int64_t>(values.size());
  if (values.empty()) return s;
  s.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  s.p50 = Percentile(values, 50);
  s.p90 = Percentile(values, 90);
  s.p99 = Percentile(values, 99);
  return s;
}

std::optional<double> PrefixCacheHitRate(const ServerCounters& c) {
  if (!c.prefix_cache_queries || !c.prefix_cache_hits || !(*c.prefix_cache_queries > 0)) return std::nullopt;
  return *c.prefix_cache_hits / *c.prefix_cache_queries;
}

BenchReport BuildReport(const std::vector<RequestResult>& results, double duration_s, const Slo& slo) {
  BenchReport r;
  r.duration_s = duration_s;
  r.slo = slo;
  std::vector<double> ttft, tpot, itl, e2e;
  std::map<int64_t, std::vector<const RequestResult*>> by_turn;
  bool multi_turn = false;
  for (const auto& res : results) {
    multi_turn = multi_turn || res.turn > 1;
    if (!res.ok) {
      ++r.failed;
      ++r.failures_by_code[res.code];
      if (r.first_failure.empty()) r.first_failure = res.code + ": " + res.message;
      continue;
    }
    ++r.completed;
    if (res.output_tokens != res.expected_tokens) ++r.length_mismatches;
    r.total_input_tokens += res.prompt_tokens;
    r.total_output_tokens += res.output_tokens;
    r.total_cached_prompt_tokens += res.cached_prompt_tokens;
    by_turn[res.turn].push_back(&res);
    const double ttft_ms = res.ttft_s * 1e3;
    ttft.push_back(ttft_ms);
    e2e.push_back(res.e2e_s * 1e3);
    for (double g : res.itl_s) itl.push_back(g * 1e3);
    bool good = slo.ttft_ms <= 0 || ttft_ms <= slo.ttft_ms;
    if (res.output_tokens > 1) {
      const double tpot_ms = (res.e2e_s - res.ttft_s) * 1e3 / static_cast<double>(res.output_tokens - 1);
      tpot.push_back(tpot_ms);
      if (slo.tpot_ms > 0 && tpot_ms > slo.tpot_ms) good = false;
    }
    if (good) ++r.good_requests;
  }
  if (duration_s > 0) {
    r.request_throughput = static_cast<double>(r.completed) / duration_s;
    r.output_token_throughput = static_cast<double>(r.total_output_tokens) / duration_s;
    r.total_token_throughput = static_cast<double>(r.total_input_tokens + r.total_output_tokens) / duration_s;
    r.goodput = static_cast<double>(r.good_requests) / duration_s;
  }
  if (r.completed > 0) {
    r.mean_cached_prompt_tokens = static_cast<double>(r.total_cached_prompt_tokens) / static_cast<double>(r.completed);
  }
  if (multi_turn) {
    int64_t max_turn = 1;
    for (const auto& res : results) max_turn = std::max(max_turn, res.turn);
    for (int64_t t = 1; t <= max_turn; ++t) {
      TurnStats ts;
      ts.turn = t;
      std::vector<double> turn_ttft;
      double prompt = 0, cached = 0;
      for (const RequestResult* res : by_turn[t]) {
        turn_ttft.push_back(res->ttft_s * 1e3);
        prompt += static_cast<double>(res->prompt_tokens);
        cached += static_cast<double>(res->cached_prompt_tokens);
      }
      ts.completed = static_cast<int64_t>(turn_ttft.size());
      ts.ttft_ms = Summarize(turn_ttft);
      if (ts.completed > 0) {
        ts.mean_prompt_tokens = prompt / static_cast<double>(ts.completed);
        ts.mean_cached_prompt_tokens = cached / static_cast<double>(ts.completed);
      }
      r.per_turn.push_back(ts);
    }
  }
  r.ttft_ms = Summarize(ttft);
  r.tpot_ms = Summarize(tpot);
  r.itl_ms = Summarize(itl);
  r.e2e_ms = Summarize(e2e);
  return r;
}

namespace {

void Line(std::string* out, const std::string& label, const std::string& value) {
  char buf[160];
  std::snprintf(buf, sizeof(buf), "%-42s%s\n", label.c_str(), value.c_str());
  *out += buf;
}
std::string Num(double v, int decimals = 2) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}
std::string Int(double v) { return Num(v, 0); }

void Heading(std::string* out, const std::string& title, char fill) {
  const int width = 50;
  const int pad = std::max(0, width - static_cast<int>(title.size()) - 2);
  std::string t = title.empty() ? std::string(width, fill)
                                : std::string(pad / 2, fill) + " " + title + " " +
                                      std::string(pad - pad / 2, fill);
  *out += t + "\n";
}

void Stats(std::string* out, const std::string& title, const std::string& abbrev, const Summary& s) {
  Heading(out, title, '-');
  Line(out, "Mean " + abbrev + " (ms):", Num(s.mean));
  Line(out, "Median " + abbrev + " (ms):", Num(s.p50));
  Line(out, "P90 " + abbrev + " (ms):", Num(s.p90));
  Line(out, "P99 " + abbrev + " (ms):", Num(s.p99));
}

}  // namespace

std::string FormatReport(const BenchReport& r) {
  std::string out;
  Heading(&out, "Serving Benchmark Result", '=');
  Line(&out, "Successful requests:", std::to_string(r.completed));
  Line(&out, "Failed requests:", std::to_string(r.failed));
  for (const auto& [code, n] : r.failures_by_code) Line(&out, "  " + code + ":", std::to_string(n));
  if (!r.first_failure.empty()) Line(&out, "  first failure:", r.first_failure);
  Line(&out, "Benchmark duration (s):", Num(r.duration_s));
  Line(&out, "Total input tokens:", std::to_string(r.total_input_tokens));
  Line(&out, "Total generated tokens:", std::to_string(r.total_output_tokens));
  if (r.length_mismatches > 0) {
    Line(&out, "Output length != max_new_tokens:", std::to_string(r.length_mismatches));
  }
  Line(&out, "Request throughput (req/s):", Num(r.request_throughput));
  Line(&out, "Output token throughput (tok/s):", Num(r.output_token_throughput));
  Line(&out, "Total token throughput (tok/s):", Num(r.total_token_throughput));
  std::string slo;
  if (r.slo.ttft_ms > 0) slo += "TTFT <= " + Num(r.slo.ttft_ms, 0) + " ms";
  if (r.slo.tpot_ms > 0) slo += std::string(slo.empty() ? "" : ", ") + "TPOT <= " + Num(r.slo.tpot_ms, 0) + " ms";
  Line(&out, "Goodput (req/s):", Num(r.goodput) + (slo.empty() ? " (no SLO set)" : " (" + slo + ")"));
  Stats(&out, "Time to First Token", "TTFT", r.ttft_ms);
  Stats(&out, "Time per Output Token (excl. 1st token)", "TPOT", r.tpot_ms);
  Stats(&out, "Inter-token Latency", "ITL", r.itl_ms);
  Stats(&out, "End-to-end Latency", "E2EL", r.e2e_ms);
  if (!r.per_turn.empty()) {
    Heading(&out, "Multi-turn Conversations", '-');
    for (const TurnStats& t : r.per_turn) {
      Line(&out, "Turn " + std::to_string(t.turn) + " mean/median TTFT (ms):",
           Num(t.ttft_ms.mean) + " / " + Num(t.ttft_ms.p50) + " (" + std::to_string(t.completed) + " req, prompt " +
               Num(t.mean_prompt_tokens, 1) + ", cached " + Num(t.mean_cached_prompt_tokens, 1) + " tok)");
    }
  }
  const bool server_prefix = r.server && r.server->prefix_cache_queries && r.server->prefix_cache_hits;
  if (r.prefix_cache_section || r.total_cached_prompt_tokens > 0 || server_prefix) {
    Heading(&out, "Prefix Cache", '-');
    std::string share;
    if (r.total_input_tokens > 0) {
      share = " (" +
              Num(100.0 * static_cast<double>(r.total_cached_prompt_tokens) / static_cast<double>(r.total_input_tokens)) +
              "% of input)";
    }
    Line(&out, "Cached prompt tokens:", std::to_string(r.total_cached_prompt_tokens) + share);
    Line(&out, "Mean cached prompt tokens per request:", Num(r.mean_cached_prompt_tokens));
    std::string rate;
    if (!r.server) {
      rate = "n/a (no --metrics_url)";
    } else if (!server_prefix) {
      rate = "n/a (no stepserve_prefix_cache_* counters on /metrics)";
    } else if (auto hit = PrefixCacheHitRate(*r.server)) {
      rate = Num(100.0 * *hit) + "% (" + Int(*r.server->prefix_cache_hits) + " of " +
             Int(*r.server->prefix_cache_queries) + " tokens)";
    } else {
      rate = "n/a (no prefix cache queries)";
    }
    Line(&out, "Prefix cache hit rate (server):", rate);
  }
  if (r.server) {
    const ServerCounters& s = *r.server;
    Heading(&out, "Server /metrics (delta)", '-');
    Line(&out, "Successful requests:", Int(s.request_success) + " (client: " + std::to_string(r.completed) + ")");
    Line(&out, "Failed requests:", Int(s.request_failure) + " (client: " + std::to_string(r.failed) + ")");
    Line(&out, "Prompt tokens:", Int(s.prompt_tokens) + " (client: " + std::to_string(r.total_input_tokens) + ")");
    Line(&out, "Generation tokens:",
         Int(s.generation_tokens) + " (client: " + std::to_string(r.total_output_tokens) + ")");
  }
  Heading(&out, "", '=');
  return out;
}

namespace {
nlohmann::json SummaryJson(const Summary& s) {
  return {{"mean", s.mean}, {"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}, {"count", s.count}};
}
}  // namespace

nlohmann::json ReportToJson(const BenchReport& r) {
  nlohmann::json j;
  j["completed"] = r.completed;
  j["failed"] = r.failed;
  j["failures_by_code"] = r.failures_by_code;
  j["duration_s"] = r.duration_s;
  j["total_input_tokens"] = r.total_input_tokens;
  j["total_output_tokens"] = r.total_output_tokens;
  j["length_mismatches"] = r.length_mismatches;
  j["request_throughput"] = r.request_throughput;
  j["output_token_throughput"] = r.output_token_throughput;
  j["total_token_throughput"] = r.total_token_throughput;
  j["goodput"] = r.goodput;
  j["good_requests"] = r.good_requests;
  j["slo_ttft_ms"] = r.slo.ttft_ms;
  j["slo_tpot_ms"] = r.slo.tpot_ms;
  j["ttft_ms"] = SummaryJson(r.ttft_ms);
  j["tpot_ms"] = SummaryJson(r.tpot_ms);
  j["itl_ms"] = SummaryJson(r.itl_ms);
  j["e2e_ms"] = SummaryJson(r.e2e_ms);
  j["total_cached_prompt_tokens"] = r.total_cached_prompt_tokens;
  j["mean_cached_prompt_tokens"] = r.mean_cached_prompt_tokens;
  const std::optional<double> hit_rate = r.server ? PrefixCacheHitRate(*r.server) : std::nullopt;
  j["prefix_cache_hit_rate"] = hit_rate ? nlohmann::json(*hit_rate) : nlohmann::json(nullptr);
  if (!r.per_turn.empty()) {
    nlohmann::json turns = nlohmann::json::array();
    for (const TurnStats& t : r.per_turn) {
      turns.push_back({{"turn", t.turn},
                       {"completed", t.completed},
                       {"ttft_ms", SummaryJson(t.ttft_ms)},
                       {"mean_prompt_tokens", t.mean_prompt_tokens},
                       {"mean_cached_prompt_tokens", t.mean_cached_prompt_tokens}});
    }
    j["per_turn"] = turns;
  }
  if (r.server) {
    const auto optional = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
    j["server"] = {{"request_success", r.server->request_success},
                   {"request_failure", r.server->request_failure},
                   {"failures_by_code", r.server->failures_by_code},
                   {"prompt_tokens", r.server->prompt_tokens},
                   {"generation_tokens", r.server->generation_tokens},
                   {"prefix_cache_queries", optional(r.server->prefix_cache_queries)},
                   {"prefix_cache_hits", optional(r.server->prefix_cache_hits)}};
  }
  return j;
}

}  // namespace stepserve::client
