// Minimal timestamped logging to stderr (Abseil 20220623 has no absl::log).
#pragma once

#include <string>

#include "absl/strings/str_cat.h"

namespace stepserve {

void LogLine(const char* level, const std::string& message);

template <typename... Args>
void LogInfo(const Args&... args) {
  LogLine("I", absl::StrCat(args...));
}
template <typename... Args>
void LogWarning(const Args&... args) {
  LogLine("W", absl::StrCat(args...));
}
template <typename... Args>
void LogError(const Args&... args) {
  LogLine("E", absl::StrCat(args...));
}

// Silences info lines (tests, benchmarks).
void SetLogQuiet(bool quiet);

}  // namespace stepserve
