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

}  // namespace stepserve
