// Minimal timestamped logging to stderr (Abseil 20220623 has no absl::log).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

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

// A client-provided string (request id, cache salt, model name, a path from a request, ...) made safe for a
// log line: quoted, with '"', '\\', control characters (newlines, ESC of ANSI sequences, DEL) and every byte
// >= 0x80 written as escapes (\n, \t, \xNN), and cut after `max_bytes` bytes of the input with
// "...(N bytes)" saying how long it was. So a client can neither forge a line nor grow the log by more than
// a few hundred bytes per line.
inline constexpr size_t kLogSafeMaxBytes = 128;
std::string LogSafe(std::string_view client_text, size_t max_bytes = kLogSafeMaxBytes);
// Abseil's string_view is its own type here (Debian's Abseil is built for C++14).
inline std::string LogSafe(absl::string_view client_text, size_t max_bytes = kLogSafeMaxBytes) {
  return LogSafe(std::string_view(client_text.data(), client_text.size()), max_bytes);
}
inline std::string LogSafe(const std::string& client_text, size_t max_bytes = kLogSafeMaxBytes) {
  return LogSafe(std::string_view(client_text), max_bytes);
}
inline std::string LogSafe(const char* client_text, size_t max_bytes = kLogSafeMaxBytes) {
  return LogSafe(std::string_view(client_text), max_bytes);
}

// At most `per_second` lines a second (refusals a client can provoke at will): Allow() is true for the lines
// to write; *suppressed is how many were dropped since the last allowed one, to say so in that line
// ("(K similar lines suppressed)"). Thread-safe.
class LogRateLimiter {
 public:
  explicit LogRateLimiter(int per_second) : per_second_(per_second) {}
  bool Allow(int64_t* suppressed);
  bool Allow(int64_t* suppressed, absl::Time now);  // for tests

 private:
  const int per_second_;
  std::mutex mu_;
  absl::Time window_start_ = absl::InfinitePast();
  int in_window_ = 0;
  int64_t suppressed_ = 0;
};

// "" or " (K similar lines suppressed)".
std::string SuppressedNote(int64_t suppressed);

}  // namespace stepserve
