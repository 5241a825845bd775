#include "common/logging.h"

#include <atomic>
#include <cstdio>
#include <mutex>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace stepserve {
namespace {
std::atomic<bool> g_quiet{false};
std::mutex g_mu;
}  // namespace

void SetLogQuiet(bool quiet) { g_quiet = quiet; }

void LogLine(const char* level, const std::string& message) {
  if (g_quiet && level[0] == 'I') return;
  const std::string ts = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  std::lock_guard<std::mutex> lock(g_mu);
  std::fprintf(stderr, "%s %s stepserve] %s\n", level, ts.c_str(), message.c_str());
}

std::string LogSafe(std::string_view text, size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  const std::string_view shown = text.substr(0, max_bytes);
  std::string out;
  out.reserve(shown.size() + 24);
  out.push_back('"');
  for (const char c : shown) {
    const auto byte = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      default: break;
    }
    if (byte < 0x20 || byte >= 0x7f) {
      out += "\\x";
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 0xf]);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  if (text.size() > shown.size()) absl::StrAppend(&out, "...(", text.size(), " bytes)");
  return out;
}

bool LogRateLimiter::Allow(int64_t* suppressed) { return Allow(suppressed, absl::Now()); }

bool LogRateLimiter::Allow(int64_t* suppressed, absl::Time now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (now - window_start_ >= absl::Seconds(1)) {
    window_start_ = now;
    in_window_ = 0;
  }
  if (in_window_ >= per_second_) {
    ++suppressed_;
    return false;
  }
  ++in_window_;
  *suppressed = suppressed_;
  suppressed_ = 0;
  return true;
}

std::string SuppressedNote(int64_t suppressed) {
  if (suppressed <= 0) return "";
  return absl::StrCat(" (", suppressed, " similar lines suppressed)");
}

}  // namespace stepserve
