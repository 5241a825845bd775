// Reads the server's Prometheus /metrics over plain HTTP so stepbench can print the server's own counts
// next to its measurements.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "client/bench_report.h"

namespace stepserve::client {

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Parses the Prometheus text exposition format; comment and blank lines are skipped. False with a
// message (naming the line) on a malformed sample.
bool ParsePrometheusText(const std::string& text, std::vector<Sample>* samples, std::string* error);

// The sum of a metric over all its label sets; 0 when absent.
double SumMetric(const std::vector<Sample>& samples, const std::string& name);
// Whether any sample has this name.
bool HasMetric(const std::vector<Sample>& samples, const std::string& name);

// stepserve_request_success_total, stepserve_request_failure_total (and by code),
// stepserve_prompt_tokens_total, stepserve_generation_tokens_total, and when present
// stepserve_prefix_cache_queries_total, stepserve_prefix_cache_hits_total.
ServerCounters CountersFromSamples(const std::vector<Sample>& samples);
// after - before; a prefix-cache counter missing from either scrape is missing from the delta.
ServerCounters Delta(const ServerCounters& after, const ServerCounters& before);

// GET http://host:port/path with a timeout in seconds; the body on a 200 answer.
bool HttpGet(const std::string& url, double timeout_s, std::string* body, std::string* error);

// HttpGet + parse + counters.
bool ScrapeCounters(const std::string& url, double timeout_s, ServerCounters* counters, std::string* error);

}  // namespace stepserve::client
