// Open-loop arrival times for stepbench, like vLLM's benchmark_serving: inter-arrival gaps drawn from a
// gamma distribution with shape `burstiness` and mean 1/rate. burstiness 1 is a Poisson process
// (exponential gaps); below 1 is burstier, above 1 more regular.
#pragma once

#include <cstdint>
#include <vector>

namespace stepserve::client {

// Send times in seconds after the start for n requests: the first at 0, then cumulative gaps.
std::vector<double> ArrivalTimes(int64_t n, double rate, double burstiness, uint64_t seed);

}  // namespace stepserve::client
