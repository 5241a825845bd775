// Drives Generate streams against a server with gRPC's callback API: a closed loop that keeps
// `concurrency` requests in flight, or an open loop that sends at precomputed arrival times (optionally
// capped at `concurrency` in flight). Every request carries a deadline, so a run always ends.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include <grpcpp/channel.h>

#include "client/bench_report.h"
#include "client/workload.h"

namespace stepserve::client {

struct LoadConfig {
  int64_t concurrency = 1;          // requests in flight at most; 0: no cap (open loop only)
  std::vector<double> arrivals_s;   // open loop: send time of each request; empty: closed loop
  double request_timeout_s = 600;   // the deadline of each request
  bool ignore_eos = true;           // exact output lengths
  // Called about 5 times a second from the thread inside Run with (finished, total).
  std::function<void(int64_t, int64_t)> progress;
};

struct LoadResult {
  std::vector<RequestResult> requests;  // in the order of the specs
  double duration_s = 0;                // from the first send to the last completion
};

LoadResult RunLoad(const std::shared_ptr<grpc::Channel>& channel, const std::vector<RequestSpec>& specs,
                   const LoadConfig& config);

}  // namespace stepserve::client
