// Prometheus metrics (prometheus-cpp) with the series a vLLM dashboard expects, prefix "stepserve_".
// Counters and histograms are updated by the gRPC handlers and the executor's callbacks; the executor's
// gauges and token counters are read from Executor::Stats() at scrape time.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/executor.h"
#include "engine/generation.h"

namespace stepserve::server {

class ServerMetrics {
 public:
  using StatsSource = std::function<bool(ExecutorStats*)>;  // false: no executor yet

  ServerMetrics();
  ~ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // Serves /metrics over HTTP on `address` ("host:port"; port 0 picks a free one).
  absl::Status StartHttp(const std::string& address);
  void StopHttp();
  int http_port() const { return http_port_; }  // 0 when not serving

  // Where the executor gauges and token counters come from (thread-safe; may be called at any time).
  void SetStatsSource(StatsSource source);
  void SetModelInfo(const std::string& model, const std::string& device, const std::string& dtype);

  // stepserve_request_success_total{finish_reason}: the reason's name (FinishReasonName: stop_token, ...).
  void RecordSuccess(FinishReason reason);
  void RecordFailure(absl::StatusCode code);
  void ObserveTimeToFirstToken(absl::Duration d);
  void ObserveInterTokenLatency(absl::Duration d);
  void ObserveE2eLatency(absl::Duration d);
  void ObserveQueueTime(absl::Duration d);
  void ObserveStep(const StepInfo& step);

  // The whole exposition, as /metrics serves it.
  std::string RenderText() const;

 private:
  class ExecutorCollectable;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<ExecutorCollectable> executor_collectable_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int http_port_ = 0;

  prometheus::Family<prometheus::Counter>* success_ = nullptr;
  prometheus::Family<prometheus::Counter>* failure_ = nullptr;
  prometheus::Family<prometheus::Gauge>* info_ = nullptr;
  prometheus::Histogram* ttft_ = nullptr;
  prometheus::Histogram* itl_ = nullptr;
  prometheus::Histogram* e2e_ = nullptr;
  prometheus::Histogram* queue_ = nullptr;
  prometheus::Histogram* iteration_tokens_ = nullptr;
};

}  // namespace stepserve::server
