// common/logging.h: LogSafe (client strings escaped and cut in log lines) and LogRateLimiter.
#include <string>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "common/logging.h"

namespace stepserve::testing {
namespace {

TEST(LogSafeTest, EscapesControlCharactersAnsiAndNonAscii) {
  EXPECT_EQ(LogSafe("req-1"), "\"req-1\"");
  EXPECT_EQ(LogSafe("a\nb\r\tc"), "\"a\\nb\\r\\tc\"");
  EXPECT_EQ(LogSafe("\x1b[31mred\x1b[0m"), "\"\\x1b[31mred\\x1b[0m\"");
  EXPECT_EQ(LogSafe(std::string("nul\0x", 5)), "\"nul\\x00x\"");
  EXPECT_EQ(LogSafe("q\"b\\"), "\"q\\\"b\\\\\"");
  EXPECT_EQ(LogSafe("\xc2\x9b" "del\x7f"), "\"\\xc2\\x9bdel\\x7f\"");
  const std::string forged = "x\nI 2026-01-01T00:00:00.000Z stepserve] [fake] admin logged in";
  const std::string safe = LogSafe(forged);
  EXPECT_EQ(safe.find('\n'), std::string::npos);
  for (char c : safe) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << static_cast<int>(c);
}

TEST(LogSafeTest, TruncatesLongStrings) {
  const std::string huge(4 << 20, 'a');
  const std::string safe = LogSafe(huge);
  EXPECT_LT(safe.size(), 200u);
  EXPECT_TRUE(absl::EndsWith(safe, "...(4194304 bytes)")) << safe;
  EXPECT_TRUE(absl::StartsWith(safe, "\"" + std::string(128, 'a') + "\"")) << safe;
  EXPECT_EQ(LogSafe(std::string(128, 'b')), "\"" + std::string(128, 'b') + "\"");
  EXPECT_EQ(LogSafe("abcdef", 3), "\"abc\"...(6 bytes)");
}

TEST(LogRateLimiterTest, AtMostNPerSecondAndCountsTheSuppressed) {
  LogRateLimiter limiter(3);
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  int64_t suppressed = -1;
  int allowed = 0;
  for (int i = 0; i < 20; ++i) allowed += limiter.Allow(&suppressed, t0 + absl::Milliseconds(i)) ? 1 : 0;
  EXPECT_EQ(allowed, 3);
  EXPECT_EQ(suppressed, 0);
  ASSERT_TRUE(limiter.Allow(&suppressed, t0 + absl::Milliseconds(1500)));
  EXPECT_EQ(suppressed, 17);
  EXPECT_EQ(SuppressedNote(17), " (17 similar lines suppressed)");
  EXPECT_EQ(SuppressedNote(0), "");
}

}  // namespace
}  // namespace stepserve::testing
