// server/flag_checks.h: numeric flag ranges and the one meaning of the KV cache size flags.
#include "server/flag_checks.h"

#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "absl/strings/match.h"

namespace stepserve::testing {
namespace {

using server::CheckNumericFlags;
using server::NumericFlag;
using Rule = NumericFlag::Rule;

std::string Error(const NumericFlag& f) {
  absl::Status s = CheckNumericFlags({f});
  return s.ok() ? "" : std::string(s.message());
}

TEST(FlagChecksTest, EachRule) {
  const double nan = std::nan("");
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(Error({"dist_timeout_s", -1, Rule::kPositive, false}), "--dist_timeout_s=-1: must be a finite number > 0");
  EXPECT_NE(Error({"dist_timeout_s", 0, Rule::kPositive, false}), "");
  EXPECT_NE(Error({"dist_timeout_s", inf, Rule::kPositive, false}), "");
  EXPECT_NE(Error({"dist_timeout_s", nan, Rule::kPositive, false}), "");
  EXPECT_EQ(Error({"dist_timeout_s", 0.5, Rule::kPositive, false}), "");
  EXPECT_EQ(Error({"max_num_seqs", 0, Rule::kPositive}), "--max_num_seqs=0: must be an integer >= 1");
  EXPECT_EQ(Error({"max_logprobs", 0, Rule::kNonNegative}), "");
  EXPECT_NE(Error({"max_logprobs", -1, Rule::kNonNegative}), "");
  EXPECT_NE(Error({"kv_cache_memory_fraction", 0, Rule::kFraction, false}), "");
  EXPECT_NE(Error({"kv_cache_memory_fraction", 1.5, Rule::kFraction, false}), "");
  EXPECT_EQ(Error({"kv_cache_memory_fraction", 1, Rule::kFraction, false}), "");
  EXPECT_NE(Error({"port", 65536, Rule::kPort}), "");
  EXPECT_NE(Error({"port", -1, Rule::kPort}), "");
  EXPECT_EQ(Error({"metrics_port", -1, Rule::kPortOrOff}), "");
  EXPECT_NE(Error({"metrics_port", -2, Rule::kPortOrOff}), "");
  // The first bad one is named.
  absl::Status s = CheckNumericFlags({{"a", 1, Rule::kPositive}, {"b", -3, Rule::kPositive}, {"c", -4, Rule::kPositive}});
  EXPECT_TRUE(absl::StartsWith(s.message(), "--b=-3")) << s;
}

TEST(FlagChecksTest, KvCacheSizeHasOneMeaning) {
  // GPU: the fraction by default (0.9, as --dry_run plans), or the one given, or a fixed size when asked.
  auto gpu = server::ResolveKvCacheSize(true, false, 0, false, 0);
  ASSERT_TRUE(gpu.ok());
  EXPECT_DOUBLE_EQ(gpu->fraction, 0.9);
  gpu = server::ResolveKvCacheSize(true, false, 0, true, 0.7);
  ASSERT_TRUE(gpu.ok());
  EXPECT_DOUBLE_EQ(gpu->fraction, 0.7);
  gpu = server::ResolveKvCacheSize(true, true, 1 << 30, false, 0.9);
  ASSERT_TRUE(gpu.ok());
  EXPECT_EQ(gpu->fraction, 0);
  EXPECT_EQ(gpu->bytes, 1 << 30);
  // CPU: --kv_cache_bytes (256 MiB by default); a fraction is a bad flag there.
  auto cpu = server::ResolveKvCacheSize(false, false, 0, false, 0.9);
  ASSERT_TRUE(cpu.ok());
  EXPECT_EQ(cpu->fraction, 0);
  EXPECT_EQ(cpu->bytes, 256ll << 20);
  cpu = server::ResolveKvCacheSize(false, true, 16 << 20, false, 0.9);
  ASSERT_TRUE(cpu.ok());
  EXPECT_EQ(cpu->bytes, 16 << 20);
  EXPECT_FALSE(server::ResolveKvCacheSize(false, false, 0, true, 0.5).ok());
  // Both, or bad values: bad flags.
  EXPECT_FALSE(server::ResolveKvCacheSize(true, true, 1 << 30, true, 0.5).ok());
  EXPECT_FALSE(server::ResolveKvCacheSize(true, true, 0, false, 0).ok());
  EXPECT_FALSE(server::ResolveKvCacheSize(false, true, -5, false, 0).ok());
  EXPECT_FALSE(server::ResolveKvCacheSize(true, false, 0, true, 1.5).ok());
  EXPECT_FALSE(server::ResolveKvCacheSize(true, false, 0, true, 0).ok());
}

}  // namespace
}  // namespace stepserve::testing
