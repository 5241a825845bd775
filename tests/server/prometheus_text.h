// A strict parser of the Prometheus text exposition format (version 0.0.4), for the tests.
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace stepserve::testing {

struct PrometheusText {
  std::map<std::string, std::string> types;  // family name -> counter, gauge, histogram, summary, untyped
  // "name" or "name{k1=\"v1\",k2=\"v2\"}" with the labels sorted by key -> value
  std::map<std::string, double> samples;

  // The sample's value, or `missing` when absent.
  double Get(const std::string& key, double missing = -1) const;
};

// Fails (naming the line) on anything the format does not allow: bad names, labels or values, a sample
// of no declared family, a TYPE after the family's samples, duplicate samples.
absl::StatusOr<PrometheusText> ParsePrometheusText(const std::string& text);

}  // namespace stepserve::testing
