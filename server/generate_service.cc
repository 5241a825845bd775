#include "server/generate_service.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <exception>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace stepserve::server {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

namespace {

// The gRPC status a stream ends with, given the executor's final output.
absl::Status FinishStatus(const GenerationOutput& out) {
  switch (out.finish_reason) {
    case FinishReason::kStopToken:
    case FinishReason::kEos:
    case FinishReason::kLength:
      return absl::OkStatus();
    case FinishReason::kCancelled:
      return absl::CancelledError("request cancelled");
    case FinishReason::kDeadlineExceeded:
      return absl::DeadlineExceededError("the request's deadline passed");
    case FinishReason::kAborted:
      return absl::UnavailableError("request aborted: the server shut down before it finished");
    case FinishReason::kError:
      // UNAVAILABLE when a tensor-parallel rank failed (retry elsewhere); INTERNAL for a failed step.
      if (out.error.code() == absl::StatusCode::kUnavailable) return out.error;
      return absl::InternalError(out.error.ok() ? std::string("the engine step carrying this request failed")
                                                : std::string(out.error.message()));
    case FinishReason::kNone:
      break;
  }
  return absl::InternalError("the executor finished the request without a finish reason");
}

absl::Time FromGrpcDeadline(std::chrono::system_clock::time_point deadline) {
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

}  // namespace

// One Generate stream. Outputs arrive on the engine thread (OnOutput) and are queued; one write is in
// flight at a time. The reactor is deleted when gRPC is done with it (OnDone) and the executor has
// delivered its finished output (or never took the request), whichever comes last.
class GenerateService::GenerateReactor final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  GenerateReactor(GenerateService* service, grpc::CallbackServerContext* context)
      : service_(service), arrival_(absl::Now()), deadline_(FromGrpcDeadline(context->deadline())) {
    service_->StreamStarted();
  }
  ~GenerateReactor() override { service_->StreamEnded(); }

  void Start(const v1::GenerateRequest& proto) {
    try {
      StartOrThrow(proto);
    } catch (const std::exception& e) {
      refs_.store(1);
      Refuse(absl::InternalError(absl::StrCat("internal error: ", e.what())));
    }
  }

 private:
  void StartOrThrow(const v1::GenerateRequest& proto) {
    Executor* executor = nullptr;
    RequestDefaults defaults;
    {
      std::lock_guard<std::mutex> lock(service_->mu_);
      executor = service_->executor_;
      defaults = service_->defaults_;
    }
    id_ = proto.request_id();
    if (service_->draining()) {
      Refuse(absl::UnavailableError("the server is draining and accepts no new requests"));
      return;
    }
    if (executor == nullptr) {
      Refuse(absl::UnavailableError("the model is still loading; not serving yet"));
      return;
    }
    // Conversion only: Submit validates (engine/request_validation.h) and its INVALID_ARGUMENT names the field.
    GenerationRequest request = ToGenerationRequest(proto, defaults);
    // The one request-id scheme: the server names a request its client left unnamed "stepserve-N" (N counts
    // from 1 per server); the executor assigns no ids of its own.
    if (request.id.empty()) {
      request.id = absl::StrCat("stepserve-", service_->next_request_number_.fetch_add(1));
    }
    id_ = request.id;
    request.deadline = deadline_;
    executor_ = executor;
    refs_.store(2);  // gRPC (until OnDone) and the executor (until its finished output)
    absl::Status submitted =
        executor->Submit(std::move(request), [this](const GenerationOutput& out) { OnOutput(out); });
    if (!submitted.ok()) {
      refs_.store(1);  // the executor never calls back after a failed Submit
      if (submitted.code() == absl::StatusCode::kAlreadyExists) {
        submitted = absl::InvalidArgumentError(absl::StrCat("request_id: \"", id_, "\" is already in flight"));
      }
      Refuse(submitted);
      return;
    }
  }


 public:
  // Engine thread: must return quickly.
  void OnOutput(const GenerationOutput& out) {
    auto response = std::make_unique<v1::GenerateResponse>();
    response->set_request_id(id_);
    response->mutable_token_ids()->Add(out.token_ids.begin(), out.token_ids.end());
    for (const TokenLogprob& lp : out.logprobs) {
      v1::TokenLogprobs* p = response->add_logprobs();
      p->set_token_id(lp.token);
      p->set_logprob(lp.logprob);
      for (const auto& [token, logprob] : lp.top) {
        v1::TopLogprob* top = p->add_top_logprobs();
        top->set_token_id(token);
        top->set_logprob(logprob);
      }
    }
    ServerMetrics* metrics = service_->metrics_;
    if (!out.token_ids.empty()) {
      if (has_last_output_time_) metrics->ObserveInterTokenLatency(out.time - last_output_time_);
      last_output_time_ = out.time;
      has_last_output_time_ = true;
    }
    absl::Status final_status;
    if (out.finished) {
      response->set_finish_reason(ToProto(out.finish_reason));
      response->mutable_usage()->set_prompt_tokens(out.prompt_tokens);
      response->mutable_usage()->set_completion_tokens(out.completion_tokens);
      response->mutable_usage()->set_cached_prompt_tokens(out.cached_prompt_tokens);
      response->mutable_timings()->set_queue_time_s(absl::ToDoubleSeconds(out.queue_time));
      response->mutable_timings()->set_time_to_first_token_s(absl::ToDoubleSeconds(out.time_to_first_token));
      response->mutable_timings()->set_e2e_latency_s(absl::ToDoubleSeconds(out.e2e_latency));
      final_status = FinishStatus(out);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (out.finished) {
        executor_finished_ = true;
        final_status_ = ToGrpcStatus(final_status);
        if (!outcome_recorded_) {
          outcome_recorded_ = true;
          if (final_status.ok()) {
            metrics->RecordSuccess(out.finish_reason);
            metrics->ObserveQueueTime(out.queue_time);
            if (out.completion_tokens > 0) metrics->ObserveTimeToFirstToken(out.time_to_first_token);
            metrics->ObserveE2eLatency(out.e2e_latency);
          } else {
            metrics->RecordFailure(final_status.code());
            if (out.finish_reason == FinishReason::kAborted) {
              LogWarning("request ", id_, " aborted at shutdown after ", out.completion_tokens, " tokens");
            }
          }
        }
      }
      if (!finished_) {
        queue_.push_back(std::move(response));
        MaybeWriteLocked();
      }
    }
    if (out.finished) Unref();
  }

  void OnWriteDone(bool ok) override {
    bool cancel_executor = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      if (!ok) {
        // The client is gone; stop generating for it.
        cancelled_ = true;
        cancel_executor = !executor_finished_;
        RecordClientGoneLocked();
      }
      MaybeWriteLocked();
    }
    if (cancel_executor) executor_->Cancel(id_);
  }

  // Client cancellation, expired deadline or server shutdown.
  void OnCancel() override {
    bool cancel_executor = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
      cancel_executor = executor_ != nullptr && !executor_finished_;
      RecordClientGoneLocked();
      MaybeWriteLocked();
    }
    // Never call into the executor with our lock held: its engine thread may be waiting for it in OnOutput.
    if (cancel_executor) executor_->Cancel(id_);
  }

  void OnDone() override { Unref(); }

 private:
  void Refuse(const absl::Status& status) {
    service_->metrics_->RecordFailure(status.code());
    LogWarning("refused request", id_.empty() ? "" : " ", id_, ": ", absl::StatusCodeToString(status.code()), ": ",
               status.message());
    std::lock_guard<std::mutex> lock(mu_);
    outcome_recorded_ = true;
    FinishLocked(ToGrpcStatus(status));
  }

  void RecordClientGoneLocked() {
    if (outcome_recorded_) return;
    outcome_recorded_ = true;
    // The client cancels the call when its deadline passes, a little before the server's copy of the deadline
    // (taken from the timeout on arrival) expires; a cancel close enough to the deadline counts as one.
    bool deadline_passed = false;
    if (deadline_ != absl::InfiniteFuture()) {
      const absl::Duration tolerance =
          std::min(absl::Seconds(1), std::max(absl::Milliseconds(100), (deadline_ - arrival_) / 4));
      deadline_passed = absl::Now() + tolerance >= deadline_;
    }
    service_->metrics_->RecordFailure(deadline_passed ? absl::StatusCode::kDeadlineExceeded
                                                      : absl::StatusCode::kCancelled);
  }

  void MaybeWriteLocked() {
    if (finished_ || writing_) return;
    if (cancelled_) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "request cancelled"));
      return;
    }
    if (!queue_.empty()) {
      in_flight_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
      StartWrite(in_flight_.get());
      return;
    }
    if (final_status_.has_value()) FinishLocked(*final_status_);
  }

  void FinishLocked(const grpc::Status& status) {
    if (finished_) return;
    finished_ = true;
    queue_.clear();
    Finish(status);
  }

  void Unref() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }

  GenerateService* const service_;
  const absl::Time arrival_;
  const absl::Time deadline_;
  std::string id_;
  Executor* executor_ = nullptr;
  std::atomic<int> refs_{1};

  // Engine thread only.
  absl::Time last_output_time_;
  bool has_last_output_time_ = false;

  std::mutex mu_;
  std::deque<std::unique_ptr<v1::GenerateResponse>> queue_;
  std::unique_ptr<v1::GenerateResponse> in_flight_;  // kept until the next write or deletion
  std::optional<grpc::Status> final_status_;
  bool executor_finished_ = false;
  bool writing_ = false;
  bool cancelled_ = false;
  bool finished_ = false;
  bool outcome_recorded_ = false;
};

GenerateService::GenerateService(ServerMetrics* metrics) : metrics_(metrics) {}
GenerateService::~GenerateService() = default;

void GenerateService::Attach(Executor* executor, const v1::ModelInfo& info, const RequestDefaults& defaults) {
  std::lock_guard<std::mutex> lock(mu_);
  executor_ = executor;
  model_info_ = info;
  defaults_ = defaults;
}

void GenerateService::BeginDrain() { draining_.store(true); }

void GenerateService::StreamStarted() {
  std::lock_guard<std::mutex> lock(mu_);
  ++active_streams_;
}

void GenerateService::StreamEnded() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--active_streams_ == 0) idle_cv_.notify_all();
}

int GenerateService::active_streams() const {
  std::lock_guard<std::mutex> lock(mu_);
  return active_streams_;
}

bool GenerateService::WaitForIdle(absl::Time deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_cv_.wait_until(lock, absl::ToChronoTime(deadline), [this] { return active_streams_ == 0; });
}

grpc::ServerWriteReactor<v1::GenerateResponse>* GenerateService::Generate(grpc::CallbackServerContext* context,
                                                                          const v1::GenerateRequest* request) {
  auto* reactor = new GenerateReactor(this, context);
  reactor->Start(*request);  // never throws: errors become the stream's status
  return reactor;
}

grpc::ServerUnaryReactor* GenerateService::GetModelInfo(grpc::CallbackServerContext* context,
                                                        const v1::GetModelInfoRequest* /*request*/,
                                                        v1::ModelInfo* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  std::lock_guard<std::mutex> lock(mu_);
  if (executor_ == nullptr) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the model is still loading"));
  } else {
    *response = model_info_;
    reactor->Finish(grpc::Status::OK);
  }
  return reactor;
}

}  // namespace stepserve::server
