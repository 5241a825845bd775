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
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/executor.h"
#include "engine/generation.h"
#include "server/metrics_http.h"
#include "stepserve/v1/stepserve.pb.h"

namespace stepserve::server {

class ServerMetrics {
 public:
  using StatsSource = std::function<bool(ExecutorStats*)>;  // false: no executor yet

  ServerMetrics();
  ~ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // Serves /metrics over HTTP on `address` ("host:port"; port 0 picks a free one): one thread multiplexing
  // every connection, with request timeouts and a connection cap (server/metrics_http.h).
  absl::Status StartHttp(const std::string& address, const MetricsHttpOptions& options = {});
  void StopHttp();
  int http_port() const { return http_port_; }  // 0 when not serving

  // Where the executor gauges and token counters come from (thread-safe; may be called at any time).
  void SetStatsSource(StatsSource source);
  void SetModelInfo(const std::string& model, const std::string& device, const std::string& dtype);

  // stepserve_request_success_total{finish_reason}: the reason's name (FinishReasonName: stop_token, ...).
  void RecordSuccess(FinishReason reason);
  // The same counter by the API's finish reason (the text front's stop_string and tool_calls too).
  void RecordSuccess(v1::FinishReason reason);
  void RecordFailure(absl::StatusCode code);
  void ObserveTimeToFirstToken(absl::Duration d);
  void ObserveInterTokenLatency(absl::Duration d);
  void ObserveE2eLatency(absl::Duration d);
  void ObserveQueueTime(absl::Duration d);
  void ObserveStep(const StepInfo& step);
  // The text front: stepserve_tokenizer_time_seconds (one encode or decode call),
  // stepserve_chat_template_time_seconds (one render), and the HTTP front's
  // stepserve_http_requests_total{route, status}.
  void ObserveTokenizerTime(absl::Duration d);
  void ObserveChatTemplateTime(absl::Duration d);
  void RecordHttpRequest(const std::string& route, int status);

  // Backpressure (a client that stops reading its stream): stepserve_streams_paused{front} counts the streams
  // whose buffer of undelivered outputs is full, so that their request is paused in the executor (+1 when
  // one pauses, -1 when it resumes or ends); stepserve_streams_stalled_total{front} the streams ended because
  // their client did not read for the stall timeout. front: "grpc" or "http".
  void StreamPaused(const std::string& front);
  void StreamResumed(const std::string& front);
  void RecordStreamStalled(const std::string& front);

  // stepserve_malformed_requests_total{method}: a gRPC request body that did not parse.
  void RecordMalformedRequest(const std::string& method);
  // stepserve_unauthenticated_requests_total{method}: no valid API key (a gRPC method or an HTTP route).
  void RecordUnauthenticated(const std::string& method);

  // The whole exposition, as /metrics serves it.
  std::string RenderText() const;

 private:
  class ExecutorCollectable;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<ExecutorCollectable> executor_collectable_;
  std::unique_ptr<MetricsHttpServer> http_;  // server/metrics_http.h: cannot be starved by slow clients
  int http_port_ = 0;

  prometheus::Family<prometheus::Counter>* success_ = nullptr;
  prometheus::Family<prometheus::Counter>* failure_ = nullptr;
  prometheus::Family<prometheus::Gauge>* info_ = nullptr;
  prometheus::Histogram* ttft_ = nullptr;
  prometheus::Histogram* itl_ = nullptr;
  prometheus::Histogram* e2e_ = nullptr;
  prometheus::Histogram* queue_ = nullptr;
  prometheus::Histogram* iteration_tokens_ = nullptr;
  prometheus::Histogram* tokenizer_time_ = nullptr;
  prometheus::Histogram* chat_template_time_ = nullptr;
  prometheus::Family<prometheus::Counter>* http_requests_ = nullptr;
  prometheus::Family<prometheus::Counter>* malformed_ = nullptr;
  prometheus::Family<prometheus::Counter>* unauthenticated_ = nullptr;
  prometheus::Family<prometheus::Gauge>* streams_paused_ = nullptr;
  prometheus::Family<prometheus::Counter>* streams_stalled_ = nullptr;
};

}  // namespace stepserve::server
