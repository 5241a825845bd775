#include "client/arrivals.h"

#include <cmath>

#include <gtest/gtest.h>

namespace stepserve::client {
namespace {

// Mean and squared coefficient of variation of the gaps.
std::pair<double, double> GapStats(const std::vector<double>& times) {
  std::vector<double> gaps;
  for (size_t i = 1; i < times.size(); ++i) gaps.push_back(times[i] - times[i - 1]);
  double mean = 0;
  for (double g : gaps) mean += g;
  mean /= static_cast<double>(gaps.size());
  double var = 0;
  for (double g : gaps) var += (g - mean) * (g - mean);
  var /= static_cast<double>(gaps.size() - 1);
  return {mean, var / (mean * mean)};
}

TEST(ArrivalsTest, StartsAtZeroAndIncreases) {
  const auto t = ArrivalTimes(100, 10, 1, 3);
  ASSERT_EQ(t.size(), 100u);
  EXPECT_EQ(t[0], 0);
  for (size_t i = 1; i < t.size(); ++i) EXPECT_GE(t[i], t[i - 1]);
}

TEST(ArrivalsTest, SameSeedSameTimes) {
  EXPECT_EQ(ArrivalTimes(50, 4, 0.5, 11), ArrivalTimes(50, 4, 0.5, 11));
  EXPECT_NE(ArrivalTimes(50, 4, 0.5, 11), ArrivalTimes(50, 4, 0.5, 12));
}

// A gamma(k, 1/(rate k)) gap has mean 1/rate and squared CV 1/k: Poisson (k=1) has CV^2 1, bursty
// traffic more, regular traffic less. 20000 draws put the estimates well within these bounds.
TEST(ArrivalsTest, GapsHaveTheRateAndBurstiness) {
  for (double k : {0.25, 1.0, 4.0}) {
    const auto [mean, cv2] = GapStats(ArrivalTimes(20000, 20, k, 5));
    EXPECT_NEAR(mean, 1.0 / 20, 0.1 / 20) << "burstiness " << k;
    EXPECT_NEAR(cv2, 1.0 / k, 0.15 / k) << "burstiness " << k;
  }
}

}  // namespace
}  // namespace stepserve::client
