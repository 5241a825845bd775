#include "tests/server/prometheus_text.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <set>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace stepserve::testing {
namespace {

bool IsNameStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':'; }
bool IsNameChar(char c) { return IsNameStart(c) || std::isdigit(static_cast<unsigned char>(c)); }

bool ValidMetricName(const std::string& name) {
  if (name.empty() || !IsNameStart(name[0])) return false;
  for (char c : name) {
    if (!IsNameChar(c)) return false;
  }
  return true;
}

bool ParseValue(const std::string& text, double* value) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "nan") {
    *value = std::nan("");
    return true;
  }
  if (lower == "+inf" || lower == "inf") {
    *value = HUGE_VAL;
    return true;
  }
  if (lower == "-inf") {
    *value = -HUGE_VAL;
    return true;
  }
  return absl::SimpleAtod(text, value);
}

// The family a sample name belongs to, given the declared types.
std::string FamilyOf(const std::string& name, const std::map<std::string, std::string>& types) {
  if (types.count(name)) return name;
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    if (absl::EndsWith(name, suffix)) {
      std::string base = name.substr(0, name.size() - std::string(suffix).size());
      auto it = types.find(base);
      if (it != types.end() && (it->second == "histogram" || it->second == "summary")) return base;
    }
  }
  return "";
}

}  // namespace

double PrometheusText::Get(const std::string& key, double missing) const {
  auto it = samples.find(key);
  return it == samples.end() ? missing : it->second;
}

absl::StatusOr<PrometheusText> ParsePrometheusText(const std::string& text) {
  PrometheusText out;
  std::set<std::string> families_with_samples;
  int line_number = 0;
  for (absl::string_view line_view : absl::StrSplit(text, '\n')) {
    ++line_number;
    const std::string line(line_view);
    auto error = [&](const std::string& what) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_number, ": ", what, ": \"", line, "\""));
    };
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(' ', 3));
      if (parts.size() >= 2 && (parts[1] == "HELP" || parts[1] == "TYPE")) {
        if (parts.size() < 3 || !ValidMetricName(parts[2])) return error("bad metric name");
        if (parts[1] == "TYPE") {
          if (parts.size() != 4) return error("TYPE without a type");
          static const std::set<std::string> kTypes = {"counter", "gauge", "histogram", "summary", "untyped"};
          if (!kTypes.count(parts[3])) return error("unknown type");
          if (out.types.count(parts[2])) return error("second TYPE line");
          if (families_with_samples.count(parts[2])) return error("TYPE after samples");
          out.types[parts[2]] = parts[3];
        }
      }
      continue;  // other comments are allowed
    }
    // name[{labels}] value [timestamp]
    size_t pos = 0;
    while (pos < line.size() && IsNameChar(line[pos])) ++pos;
    const std::string name = line.substr(0, pos);
    if (!ValidMetricName(name)) return error("bad metric name");
    std::vector<std::pair<std::string, std::string>> labels;
    if (pos < line.size() && line[pos] == '{') {
      ++pos;
      while (true) {
        if (pos < line.size() && line[pos] == '}') {
          ++pos;
          break;
        }
        size_t start = pos;
        while (pos < line.size() && IsNameChar(line[pos]) && line[pos] != ':') ++pos;
        std::string label = line.substr(start, pos - start);
        if (label.empty() || std::isdigit(static_cast<unsigned char>(label[0]))) return error("bad label name");
        if (pos + 1 >= line.size() || line[pos] != '=' || line[pos + 1] != '"') return error("bad label");
        pos += 2;
        std::string value;
        while (true) {
          if (pos >= line.size()) return error("unterminated label value");
          char c = line[pos++];
          if (c == '"') break;
          if (c == '\\') {
            if (pos >= line.size()) return error("bad escape");
            char e = line[pos++];
            if (e == 'n') {
              value += '\n';
            } else if (e == '\\' || e == '"') {
              value += e;
            } else {
              return error("bad escape");
            }
          } else {
            value += c;
          }
        }
        labels.emplace_back(label, value);
        if (pos < line.size() && line[pos] == ',') ++pos;
      }
    }
    if (pos >= line.size() || line[pos] != ' ') return error("no value");
    std::vector<std::string> rest = absl::StrSplit(line.substr(pos + 1), ' ', absl::SkipEmpty());
    if (rest.empty() || rest.size() > 2) return error("bad value/timestamp");
    double value = 0;
    if (!ParseValue(rest[0], &value)) return error("bad value");
    if (rest.size() == 2) {
      int64_t ts;
      if (!absl::SimpleAtoi(rest[1], &ts)) return error("bad timestamp");
    }
    const std::string family = FamilyOf(name, out.types);
    if (family.empty()) return error("sample of no declared family");
    families_with_samples.insert(family);
    std::sort(labels.begin(), labels.end());
    std::string key = name;
    if (!labels.empty()) {
      std::vector<std::string> parts;
      for (const auto& [k, v] : labels) parts.push_back(absl::StrCat(k, "=\"", v, "\""));
      key = absl::StrCat(name, "{", absl::StrJoin(parts, ","), "}");
    }
    if (!out.samples.emplace(key, value).second) return error("duplicate sample");
  }
  return out;
}

}  // namespace stepserve::testing
