#include "client/arrivals.h"

#include <random>

namespace stepserve::client {

std::vector<double> ArrivalTimes(int64_t n, double rate, double burstiness, uint64_t seed) {
  std::vector<double> out;
  out.reserve(n);
  std::mt19937_64 rng(seed);
  // Mean of gamma(shape k, scale theta) is k * theta = 1 / rate.
  std::gamma_distribution<double> gap(burstiness, 1.0 / (rate * burstiness));
  double t = 0;
  for (int64_t i = 0; i < n; ++i) {
    out.push_back(t);
    t += gap(rng);
  }
  return out;
}

}  // namespace stepserve::client
