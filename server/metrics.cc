#include "server/metrics.h"

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <exception>

#include "absl/strings/str_cat.h"
#include "server/proto_conversion.h"

namespace stepserve::server {
namespace {

using prometheus::Histogram;

// LLM-sized buckets (the ones vLLM uses, extended downwards for small CPU models).
const Histogram::BucketBoundaries kTtftBuckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25, 0.5,
                                                  0.75,  1.0,   2.5,  5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0,
                                                  640.0, 2560.0};
const Histogram::BucketBoundaries kItlBuckets = {0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1,  0.15, 0.2, 0.3,
                                                 0.4,   0.5,   0.75, 1.0,   2.5,  5.0,   7.5,  10.0, 20.0, 40.0,
                                                 80.0};
const Histogram::BucketBoundaries kRequestBuckets = {0.01, 0.05, 0.1,  0.3,  0.5,  0.8,   1.0,   1.5,   2.0,
                                                     2.5,  5.0,  10.0, 15.0, 20.0, 30.0,  40.0,  50.0,  60.0,
                                                     120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
// Tokenizer calls and chat-template renders: 10 us ... 2.5 s.
const Histogram::BucketBoundaries kTextTimeBuckets = {1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3,
                                                      2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                      0.5, 1.0, 2.5};
const Histogram::BucketBoundaries kIterationTokenBuckets = {1,   8,    16,   32,   64,   128,  256,
                                                            512, 1024, 2048, 4096, 8192, 16384};

prometheus::MetricFamily OneValueFamily(const std::string& name, const std::string& help,
                                        prometheus::MetricType type, double value) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(std::move(metric));
  return family;
}

}  // namespace

// Reads the executor's gauges and counters when /metrics is scraped.
class ServerMetrics::ExecutorCollectable : public prometheus::Collectable {
 public:
  void SetSource(StatsSource source) {
    std::lock_guard<std::mutex> lock(mu_);
    source_ = std::move(source);
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    ExecutorStats stats;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (source_ && !source_(&stats)) stats = ExecutorStats();
    }
    using prometheus::MetricType;
    std::vector<prometheus::MetricFamily> out;
    out.push_back(OneValueFamily("stepserve_num_requests_running", "Requests in the running batch.",
                                 MetricType::Gauge, stats.num_running));
    out.push_back(OneValueFamily("stepserve_num_requests_waiting", "Requests waiting to be scheduled.",
                                 MetricType::Gauge, stats.num_waiting));
    out.push_back(OneValueFamily("stepserve_num_requests_paused",
                                 "Requests paused because their client stopped reading (not scheduled).",
                                 MetricType::Gauge, stats.num_paused));
    out.push_back(OneValueFamily("stepserve_kv_cache_usage_ratio",
                                 "Fraction of KV cache blocks in use (0 when no request holds blocks).",
                                 MetricType::Gauge, stats.kv_usage_ratio));
    out.push_back(OneValueFamily("stepserve_kv_cache_capacity_tokens", "KV cache capacity in tokens.",
                                 MetricType::Gauge, static_cast<double>(stats.kv_capacity_tokens)));
    out.push_back(OneValueFamily("stepserve_kv_cache_cached_blocks",
                                 "KV cache blocks held only by the prefix cache (evictable; counted free).",
                                 MetricType::Gauge, stats.kv_cached_blocks));
    out.push_back(OneValueFamily("stepserve_prompt_tokens_total",
                                 "Prompt tokens computed (including recomputation after preemption).",
                                 MetricType::Counter, static_cast<double>(stats.prompt_tokens_total)));
    out.push_back(OneValueFamily("stepserve_generation_tokens_total", "Tokens generated and delivered.",
                                 MetricType::Counter, static_cast<double>(stats.generation_tokens_total)));
    out.push_back(OneValueFamily("stepserve_num_preemptions_total", "Sequences preempted for lack of KV blocks.",
                                 MetricType::Counter, static_cast<double>(stats.num_preemptions_total)));
    out.push_back(OneValueFamily("stepserve_engine_step_failures_total",
                                 "Engine steps whose forward pass failed; their requests ended with INTERNAL.",
                                 MetricType::Counter, static_cast<double>(stats.step_failures_total)));
    out.push_back(OneValueFamily("stepserve_engine_oom_total",
                                 "Engine steps that failed with a device out-of-memory error (also in step failures).",
                                 MetricType::Counter, static_cast<double>(stats.step_oom_failures_total)));
    out.push_back(OneValueFamily("stepserve_prefix_cache_queries_total",
                                 "Prefix cache queries, in prompt tokens looked up at admission (like vLLM's "
                                 "vllm:prefix_cache_queries).",
                                 MetricType::Counter, static_cast<double>(stats.prefix_cache_queries_total)));
    out.push_back(OneValueFamily("stepserve_prefix_cache_hits_total",
                                 "Prefix cache hits, in prompt tokens found cached and not computed (like vLLM's "
                                 "vllm:prefix_cache_hits).",
                                 MetricType::Counter, static_cast<double>(stats.prefix_cache_hits_total)));
    return out;
  }

 private:
  mutable std::mutex mu_;
  StatsSource source_;
};

ServerMetrics::ServerMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      executor_collectable_(std::make_shared<ExecutorCollectable>()) {
  success_ = &prometheus::BuildCounter()
                  .Name("stepserve_request_success_total")
                  .Help("Requests that finished with a result, by finish reason.")
                  .Register(*registry_);
  failure_ = &prometheus::BuildCounter()
                  .Name("stepserve_request_failure_total")
                  .Help("Requests that ended with a non-OK gRPC status, by status code.")
                  .Register(*registry_);
  info_ = &prometheus::BuildGauge()
               .Name("stepserve_model_info")
               .Help("The served model (value 1); labels: model, device, dtype.")
               .Register(*registry_);
  auto histogram = [this](const char* name, const char* help, const Histogram::BucketBoundaries& buckets) {
    return &prometheus::BuildHistogram().Name(name).Help(help).Register(*registry_).Add({}, buckets);
  };
  ttft_ = histogram("stepserve_time_to_first_token_seconds", "Arrival to first token.", kTtftBuckets);
  itl_ = histogram("stepserve_inter_token_latency_seconds", "Time between consecutive outputs of a request.",
                   kItlBuckets);
  e2e_ = histogram("stepserve_e2e_request_latency_seconds", "Arrival to finish.", kRequestBuckets);
  queue_ = histogram("stepserve_request_queue_time_seconds", "Arrival to first scheduled.", kRequestBuckets);
  iteration_tokens_ = histogram("stepserve_iteration_tokens", "Tokens in one engine step.", kIterationTokenBuckets);
  tokenizer_time_ = histogram("stepserve_tokenizer_time_seconds",
                              "Time of one tokenizer call of the text front (encode a prompt or decode ids).",
                              kTextTimeBuckets);
  chat_template_time_ = histogram("stepserve_chat_template_time_seconds",
                                  "Time to render one chat request with the chat template.", kTextTimeBuckets);
  http_requests_ = &prometheus::BuildCounter()
                        .Name("stepserve_http_requests_total")
                        .Help("Requests to the OpenAI-compatible HTTP front, by route and HTTP status.")
                        .Register(*registry_);
  malformed_ = &prometheus::BuildCounter()
                    .Name("stepserve_malformed_requests_total")
                    .Help("gRPC calls whose request body did not parse (INVALID_ARGUMENT), by method.")
                    .Register(*registry_);
  unauthenticated_ = &prometheus::BuildCounter()
                          .Name("stepserve_unauthenticated_requests_total")
                          .Help("Calls refused for want of a valid API key, by method (gRPC) or route (HTTP).")
                          .Register(*registry_);
  streams_paused_ = &prometheus::BuildGauge()
                        .Name("stepserve_streams_paused")
                        .Help("Streams whose buffer of undelivered outputs is full (the client is not reading): "
                              "their requests are paused, by front.")
                        .Register(*registry_);
  streams_stalled_ = &prometheus::BuildCounter()
                         .Name("stepserve_streams_stalled_total")
                         .Help("Streams ended because their client did not read for the stall timeout, by front.")
                         .Register(*registry_);
  for (const char* front : {"grpc", "http"}) {
    streams_paused_->Add({{"front", front}});
    streams_stalled_->Add({{"front", front}});
  }
  // Pre-create the common label values so that dashboards see zeros rather than missing series.
  malformed_->Add({{"method", "Generate"}});
  unauthenticated_->Add({{"method", "Generate"}});
  for (FinishReason r : {FinishReason::kStopToken, FinishReason::kEos, FinishReason::kLength}) {
    success_->Add({{"finish_reason", FinishReasonName(ToProto(r))}});
  }
  for (absl::StatusCode code : {absl::StatusCode::kInvalidArgument, absl::StatusCode::kResourceExhausted,
                                absl::StatusCode::kUnavailable, absl::StatusCode::kCancelled,
                                absl::StatusCode::kDeadlineExceeded}) {
    failure_->Add({{"code", absl::StatusCodeToString(code)}});
  }
}

ServerMetrics::~ServerMetrics() { StopHttp(); }

absl::Status ServerMetrics::StartHttp(const std::string& address, const MetricsHttpOptions& options) {
  if (http_ != nullptr) return absl::FailedPreconditionError("metrics HTTP server already started");
  auto http = MetricsHttpServer::Start(address, [this] { return RenderText(); }, options);
  if (!http.ok()) return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", address, ": ",
                                                             http.status().message()));
  http_ = std::move(http).value();
  http_port_ = http_->port();
  return absl::OkStatus();
}

void ServerMetrics::StopHttp() {
  http_.reset();
  http_port_ = 0;
}

void ServerMetrics::SetStatsSource(StatsSource source) { executor_collectable_->SetSource(std::move(source)); }

void ServerMetrics::SetModelInfo(const std::string& model, const std::string& device, const std::string& dtype) {
  info_->Add({{"model", model}, {"device", device}, {"dtype", dtype}}).Set(1);
}

void ServerMetrics::RecordSuccess(FinishReason reason) {
  // The label is the finish reason's one name (server/proto_conversion.h): stop_token, eos, length.
  success_->Add({{"finish_reason", FinishReasonName(ToProto(reason))}}).Increment();
}

void ServerMetrics::RecordSuccess(v1::FinishReason reason) {
  success_->Add({{"finish_reason", FinishReasonName(reason)}}).Increment();
}

void ServerMetrics::RecordFailure(absl::StatusCode code) {
  failure_->Add({{"code", absl::StatusCodeToString(code)}}).Increment();
}

void ServerMetrics::ObserveTimeToFirstToken(absl::Duration d) { ttft_->Observe(absl::ToDoubleSeconds(d)); }
void ServerMetrics::ObserveInterTokenLatency(absl::Duration d) { itl_->Observe(absl::ToDoubleSeconds(d)); }
void ServerMetrics::ObserveE2eLatency(absl::Duration d) { e2e_->Observe(absl::ToDoubleSeconds(d)); }
void ServerMetrics::ObserveQueueTime(absl::Duration d) { queue_->Observe(absl::ToDoubleSeconds(d)); }
void ServerMetrics::ObserveStep(const StepInfo& step) { iteration_tokens_->Observe(step.num_tokens); }
void ServerMetrics::ObserveTokenizerTime(absl::Duration d) { tokenizer_time_->Observe(absl::ToDoubleSeconds(d)); }
void ServerMetrics::ObserveChatTemplateTime(absl::Duration d) {
  chat_template_time_->Observe(absl::ToDoubleSeconds(d));
}
void ServerMetrics::RecordHttpRequest(const std::string& route, int status) {
  http_requests_->Add({{"route", route}, {"status", std::to_string(status)}}).Increment();
}

void ServerMetrics::StreamPaused(const std::string& front) { streams_paused_->Add({{"front", front}}).Increment(); }
void ServerMetrics::StreamResumed(const std::string& front) { streams_paused_->Add({{"front", front}}).Decrement(); }
void ServerMetrics::RecordStreamStalled(const std::string& front) {
  streams_stalled_->Add({{"front", front}}).Increment();
}
void ServerMetrics::RecordMalformedRequest(const std::string& method) {
  malformed_->Add({{"method", method}}).Increment();
}
void ServerMetrics::RecordUnauthenticated(const std::string& method) {
  unauthenticated_->Add({{"method", method}}).Increment();
}

std::string ServerMetrics::RenderText() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  std::vector<prometheus::MetricFamily> executor = executor_collectable_->Collect();
  families.insert(families.end(), executor.begin(), executor.end());
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace stepserve::server
