#include "server/generate_service.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <exception>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <grpc/grpc.h>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "server/proto_text.h"

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

// A client's request_id: what the executor's validator would ask of it (engine/request_validation.h), checked
// here because the executor sees the server's id instead.
absl::Status CheckClientRequestId(const std::string& id, int max_length) {
  if (static_cast<int64_t>(id.size()) > max_length) {
    return absl::InvalidArgumentError(absl::StrCat("request_id: is ", id.size(), " bytes, longer than ", max_length));
  }
  for (size_t i = 0; i < id.size(); ++i) {
    const auto ch = static_cast<unsigned char>(id[i]);
    if (ch < 0x20 || ch > 0x7e) {
      return absl::InvalidArgumentError(absl::StrCat("request_id: byte ", i, " is 0x", absl::Hex(ch, absl::kZeroPad2),
                                                     "; only printable ASCII (0x20-0x7e) is allowed"));
    }
  }
  return absl::OkStatus();
}

absl::Time FromGrpcDeadline(std::chrono::system_clock::time_point deadline) {
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

}  // namespace

// One Generate stream. Outputs arrive on the engine thread (OnOutput) and are queued; one write is in
// flight at a time. The reactor is deleted when gRPC is done with it (OnDone) and the executor has
// delivered its finished output (or never took the request), whichever comes last.
// Backpressure (StreamFlowOptions): when the queue reaches max_buffered_outputs the request is paused in the
// executor, and resumed when the queue is down to half; the service's watchdog ends a stream whose write
// has not completed for the stall timeout (CheckStall). Lock order: this reactor's mu_, then the executor's
// (Pause/Resume are called under mu_, so that they happen in the order they were decided); the service's
// streams_mu_ is never taken under mu_.
class GenerateService::GenerateReactor final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  GenerateReactor(GenerateService* service, grpc::CallbackServerContext* context, std::string caller)
      : service_(service),
        context_(context),
        caller_(std::move(caller)),
        arrival_(absl::Now()),
        deadline_(FromGrpcDeadline(context->deadline())),
        flow_(service->stream_flow_options()) {
    service_->StreamStarted();
    service_->RegisterStream(this);
  }
  ~GenerateReactor() override {
    service_->UnregisterStream(this);
    if (claimed_client_id_) service_->ReleaseClientRequestId(caller_, id_);
    service_->StreamEnded();
  }

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
    std::shared_ptr<const TextPipeline> text;
    {
      std::lock_guard<std::mutex> lock(service_->mu_);
      executor = service_->executor_;
      defaults = service_->defaults_;
      text = service_->text_;
    }
    id_ = proto.request_id();
    if (!id_.empty()) {
      // The client's id is echoed back only; the executor knows the request as "stepserve-N" (below), so no
      // client can take the server's ids or another client's, and the executor's ids are always valid.
      if (executor != nullptr) {
        if (absl::Status s = CheckClientRequestId(id_, executor->options().max_request_id_length); !s.ok()) {
          Refuse(s);
          return;
        }
      }
      if (!service_->ClaimClientRequestId(caller_, id_)) {
        Refuse(absl::InvalidArgumentError(absl::StrCat("request_id: \"", id_, "\" is already in flight")));
        return;
      }
      claimed_client_id_ = true;
    }
    if (service_->draining()) {
      Refuse(absl::UnavailableError("the server is draining and accepts no new requests"));
      return;
    }
    if (executor == nullptr) {
      Refuse(absl::UnavailableError("the model is still loading; not serving yet"));
      return;
    }
    // Conversion only: Submit validates (engine/request_validation.h) and its INVALID_ARGUMENT names the field.
    // The text front: the prompt ids (a prompt encoded, or chat rendered and encoded) and the output stage
    // (detokenizer, stop strings, chat parsers).
    auto input = TextInputFromProto(proto);
    if (!input.ok()) {
      Refuse(input.status());
      return;
    }
    PrepareOptions prepare;
    prepare.chat_field_prefix = "chat.";
    prepare.max_context = defaults.max_context;
    auto prepared = text->Prepare(*input, prepare);
    if (!prepared.ok()) {
      Refuse(prepared.status());
      return;
    }
    auto stage_options = OutputStageOptionsFromProto(proto, *prepared, *text);
    if (!stage_options.ok()) {
      Refuse(stage_options.status());
      return;
    }
    GenerationRequest request;
    if (prepared->is_text) {
      v1::GenerateRequest with_ids = proto;
      with_ids.clear_prompt();
      with_ids.clear_chat();
      with_ids.mutable_prompt_token_ids()->Assign(prepared->ids.begin(), prepared->ids.end());
      request = ToGenerationRequest(with_ids, defaults);
    } else {
      request = ToGenerationRequest(proto, defaults);
    }
    // The executor's id: "stepserve-N" (N counts from 1 per server) for every request; an unnamed request
    // is also called so in its responses.
    request.id = absl::StrCat("stepserve-", service_->next_request_number_.fetch_add(1));
    engine_id_ = request.id;
    if (id_.empty()) id_ = request.id;
    request.deadline = deadline_;
    executor_ = executor;
    refs_.store(2);  // gRPC (until OnDone) and the executor (until its finished output)
    absl::Status submitted =
        StartTextGeneration(executor, std::move(request),
                            std::make_shared<OutputStage>(text->tokenizer(), *std::move(stage_options)),
                            [this](TextOutput&& out) { OnOutput(out); });
    if (!submitted.ok()) {
      refs_.store(1);  // the executor never calls back after a failed Submit
      if (submitted.code() == absl::StatusCode::kAlreadyExists) {
        submitted = absl::InternalError(absl::StrCat("the executor already has a request ", engine_id_));
      }
      Refuse(submitted);
      return;
    }
  }


 public:
  // Engine thread: must return quickly.
  void OnOutput(const TextOutput& text_out) {
    const GenerationOutput& out = text_out.out;
    auto response = std::make_unique<v1::GenerateResponse>();
    FillTextFields(text_out, response.get());
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
      response->set_finish_reason(text_out.finish == TextFinish::kStopString  ? v1::FINISH_REASON_STOP_STRING
                                  : text_out.finish == TextFinish::kToolCalls ? v1::FINISH_REASON_TOOL_CALLS
                                                                              : ToProto(out.finish_reason));
      response->mutable_usage()->set_prompt_tokens(out.prompt_tokens);
      response->mutable_usage()->set_completion_tokens(out.completion_tokens);
      response->mutable_usage()->set_cached_prompt_tokens(out.cached_prompt_tokens);
      response->mutable_timings()->set_queue_time_s(absl::ToDoubleSeconds(out.queue_time));
      response->mutable_timings()->set_time_to_first_token_s(absl::ToDoubleSeconds(out.time_to_first_token));
      response->mutable_timings()->set_e2e_latency_s(absl::ToDoubleSeconds(out.e2e_latency));
      // A stop string or the tool calls ended it: the engine's kCancelled (our cancel) is no failure.
      final_status = text_out.finish == TextFinish::kEngine ? FinishStatus(out) : absl::OkStatus();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (out.finished) {
        executor_finished_ = true;
        final_status_ = ToGrpcStatus(final_status);
        if (!outcome_recorded_) {
          outcome_recorded_ = true;
          if (final_status.ok()) {
            metrics->RecordSuccess(response->finish_reason());
            metrics->ObserveQueueTime(out.queue_time);
            if (out.completion_tokens > 0) metrics->ObserveTimeToFirstToken(out.time_to_first_token);
            metrics->ObserveE2eLatency(out.e2e_latency);
          } else {
            metrics->RecordFailure(final_status.code());
            if (out.finish_reason == FinishReason::kAborted) {
              LogWarning("request ", LogSafe(id_), " aborted at shutdown after ", out.completion_tokens, " tokens");
            }
          }
        }
      }
      if (!finished_) {
        queue_.push_back(std::move(response));
        MaybeWriteLocked();
        // The client does not take what it is sent: stop generating for it until it does.
        if (!out.finished && !paused_ && !finished_ &&
            static_cast<int64_t>(queue_.size()) >= flow_.max_buffered_outputs) {
          paused_ = true;
          executor_->Pause(engine_id_);
          metrics->StreamPaused("grpc");
        }
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
      if (paused_ && !finished_ && static_cast<int64_t>(queue_.size()) <= flow_.max_buffered_outputs / 2) {
        paused_ = false;
        executor_->Resume(engine_id_);
        service_->metrics_->StreamResumed("grpc");
      }
    }
    if (cancel_executor) executor_->Cancel(engine_id_);
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
    if (cancel_executor) executor_->Cancel(engine_id_);
  }

  void OnDone() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;  // context_ is gone from here on
    }
    Unref();
  }

  // The stall watchdog, with the service's streams_mu_ held (so this reactor is alive): true, with a
  // reference taken for ActOnStall, when a write has not completed for the stall timeout, or when the stream
  // ended and gRPC has not been done with it for the reset grace after a stall (the stall timeout otherwise).
  bool NeedsStallAction(absl::Time now) {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_ || reset_sent_) return false;
    bool act = false;
    if (!finished_) {
      act = writing_ && now - write_started_ >= flow_.stall_timeout;
    } else {
      act = now - finish_time_ >= (stalled_ ? flow_.reset_grace : flow_.stall_timeout);
    }
    return act && TryRef();
  }

  // Ends a stalled stream with RESOURCE_EXHAUSTED: the request is cancelled (its KV blocks freed before the
  // next step) and the queued responses dropped; or, when the client has not taken even that, resets it.
  void ActOnStall(absl::Time now) {
    bool cancel_executor = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!finished_) {
        stalled_ = true;
        const size_t undelivered = queue_.size() + (writing_ ? 1 : 0);
        cancel_executor = executor_ != nullptr && !executor_finished_;
        ServerMetrics* metrics = service_->metrics_;
        if (!outcome_recorded_) {
          outcome_recorded_ = true;
          metrics->RecordFailure(absl::StatusCode::kResourceExhausted);
        }
        metrics->RecordStreamStalled("grpc");
        const std::string message = absl::StrCat(
            "the client did not read its stream for ", absl::FormatDuration(now - write_started_),
            " (stream stall timeout ", absl::FormatDuration(flow_.stall_timeout), "; ", undelivered,
            " responses undelivered, at most ", flow_.max_buffered_outputs,
            " are buffered per stream): generation stopped and the stream ended");
        int64_t suppressed = 0;
        if (service_->stall_log_.Allow(&suppressed)) {
          LogWarning("request ", LogSafe(id_), " (", engine_id_, "): ", message, SuppressedNote(suppressed));
        }
        FinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, message));
        // That status waits behind the responses the client does not read; cancelling the call with it sends
        // it at once (trailers are not flow-controlled) and makes gRPC let go of the stream.
        grpc_call_cancel_with_status(context_->c_call(), GRPC_STATUS_RESOURCE_EXHAUSTED, message.c_str(), nullptr);
      } else if (!done_ && !reset_sent_) {
        // Still not done with it (should not happen after the cancel above): reset the stream so that gRPC
        // lets go of it (under mu_: OnDone, after which context_ is gone, waits for it).
        reset_sent_ = true;
        context_->TryCancel();
      }
    }
    if (cancel_executor) executor_->Cancel(engine_id_);
    Unref();
  }

 private:
  void Refuse(const absl::Status& status) {
    service_->metrics_->RecordFailure(status.code());
    // A client can provoke refusals at will: rate-limited, and its strings escaped and cut (the message
    // may quote them too).
    int64_t suppressed = 0;
    if (service_->refusal_log().Allow(&suppressed)) {
      LogWarning("refused request", id_.empty() ? "" : " ", id_.empty() ? "" : LogSafe(id_), ": ",
                 absl::StatusCodeToString(status.code()), ": ", LogSafe(status.message(), 512),
                 SuppressedNote(suppressed));
    }
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
      write_started_ = absl::Now();
      StartWrite(in_flight_.get());
      return;
    }
    if (final_status_.has_value()) FinishLocked(*final_status_);
  }

  void FinishLocked(const grpc::Status& status) {
    if (finished_) return;
    finished_ = true;
    finish_time_ = absl::Now();
    queue_.clear();
    if (paused_) {
      // The request ends (finished, cancelled or stalled): nothing to resume.
      paused_ = false;
      service_->metrics_->StreamResumed("grpc");
    }
    Finish(status);
  }

  void Unref() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }
  // A reference unless the count already reached zero (the reactor is being deleted).
  bool TryRef() {
    int n = refs_.load();
    while (n > 0) {
      if (refs_.compare_exchange_weak(n, n + 1)) return true;
    }
    return false;
  }

  GenerateService* const service_;
  grpc::CallbackServerContext* const context_;  // valid until OnDone
  const std::string caller_;  // the request-id scope: API key hash or peer
  const absl::Time arrival_;
  const absl::Time deadline_;
  const StreamFlowOptions flow_;
  std::string id_;         // in the responses: the client's request_id, or the executor's id when it gave none
  std::string engine_id_;  // the executor's: "stepserve-N"
  bool claimed_client_id_ = false;
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
  // Backpressure.
  bool paused_ = false;       // the request is paused in the executor (the queue filled up)
  bool stalled_ = false;      // ended by the stall watchdog
  bool reset_sent_ = false;   // TryCancel after a stall the client did not take
  bool done_ = false;         // OnDone ran
  absl::Time write_started_;  // of the write in flight
  absl::Time finish_time_;    // when Finish was called
};

GenerateService::GenerateService(ServerMetrics* metrics) : metrics_(metrics) {
  InstallCheckedHandlers();
  watchdog_ = std::thread([this] { WatchStalls(); });
}

GenerateService::~GenerateService() {
  {
    std::lock_guard<std::mutex> lock(streams_mu_);
    stopping_ = true;
    watchdog_cv_.notify_all();
  }
  watchdog_.join();
}

void GenerateService::SetStreamFlowOptions(const StreamFlowOptions& options) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    flow_ = options;
    flow_.max_buffered_outputs = std::max(1, flow_.max_buffered_outputs);
  }
  std::lock_guard<std::mutex> lock(streams_mu_);
  watchdog_cv_.notify_all();  // the period follows the timeouts
}

StreamFlowOptions GenerateService::stream_flow_options() const {
  std::lock_guard<std::mutex> lock(mu_);
  return flow_;
}

void GenerateService::RegisterStream(GenerateReactor* reactor) {
  std::lock_guard<std::mutex> lock(streams_mu_);
  streams_.insert(reactor);
}

void GenerateService::UnregisterStream(GenerateReactor* reactor) {
  std::lock_guard<std::mutex> lock(streams_mu_);
  streams_.erase(reactor);
}

void GenerateService::WatchStalls() {
  std::unique_lock<std::mutex> lock(streams_mu_);
  while (!stopping_) {
    lock.unlock();
    const StreamFlowOptions flow = stream_flow_options();
    lock.lock();
    // A few checks per timeout: a stalled stream ends within about 1/8 of the timeout after it.
    const absl::Duration period =
        std::clamp(std::min(flow.stall_timeout, flow.reset_grace) / 8, absl::Milliseconds(5), absl::Milliseconds(500));
    watchdog_cv_.wait_for(lock, absl::ToChronoNanoseconds(period));
    if (stopping_) break;
    const absl::Time now = absl::Now();
    std::vector<GenerateReactor*> stalled;
    for (GenerateReactor* reactor : streams_) {
      if (reactor->NeedsStallAction(now)) stalled.push_back(reactor);  // each with a reference
    }
    lock.unlock();
    for (GenerateReactor* reactor : stalled) reactor->ActOnStall(now);
    lock.lock();
  }
}

void GenerateService::Attach(Executor* executor, const v1::ModelInfo& info, const RequestDefaults& defaults,
                             std::shared_ptr<const TextPipeline> text) {
  std::lock_guard<std::mutex> lock(mu_);
  executor_ = executor;
  model_info_ = info;
  defaults_ = defaults;
  text_ = std::move(text);
}

absl::Status GenerateService::Attached(std::shared_ptr<const TextPipeline>* text, Executor** executor) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (executor_ == nullptr || text_ == nullptr) return absl::UnavailableError("the model is still loading");
  *text = text_;
  if (executor != nullptr) *executor = executor_;
  return absl::OkStatus();
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
  return GenerateFor(context, request, context->peer());
}

grpc::ServerWriteReactor<v1::GenerateResponse>* GenerateService::GenerateFor(grpc::CallbackServerContext* context,
                                                                             const v1::GenerateRequest* request,
                                                                             const std::string& caller) {
  auto* reactor = new GenerateReactor(this, context, caller);
  reactor->Start(*request);  // never throws: errors become the stream's status
  return reactor;
}

bool GenerateService::ClaimClientRequestId(const std::string& caller, const std::string& id) {
  std::lock_guard<std::mutex> lock(ids_mu_);
  return client_ids_.emplace(caller, id).second;
}

void GenerateService::ReleaseClientRequestId(const std::string& caller, const std::string& id) {
  std::lock_guard<std::mutex> lock(ids_mu_);
  client_ids_.erase({caller, id});
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

grpc::ServerUnaryReactor* GenerateService::Tokenize(grpc::CallbackServerContext* context,
                                                    const v1::TokenizeRequest* request,
                                                    v1::TokenizeResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  std::shared_ptr<const TextPipeline> text;
  absl::Status status = Attached(&text);
  if (status.ok()) {
    auto input = TextInputFromProto(*request);
    if (input.ok()) {
      PrepareOptions prepare;
      prepare.chat_field_prefix = "chat.";
      auto prepared = text->Prepare(*input, prepare);
      if (prepared.ok()) {
        response->mutable_token_ids()->Assign(prepared->ids.begin(), prepared->ids.end());
        response->set_count(static_cast<int32_t>(prepared->ids.size()));
        std::lock_guard<std::mutex> lock(mu_);
        response->set_max_model_len(static_cast<int32_t>(defaults_.max_context));
      }
      status = prepared.status();
    } else {
      status = input.status();
    }
  }
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* GenerateService::Detokenize(grpc::CallbackServerContext* context,
                                                      const v1::DetokenizeRequest* request,
                                                      v1::DetokenizeResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  std::shared_ptr<const TextPipeline> text;
  absl::Status status = Attached(&text);
  if (status.ok()) {
    // Special tokens are kept unless asked otherwise, as Hugging Face's decode keeps them by default.
    auto decoded = text->Detokenize(std::vector<int32_t>(request->token_ids().begin(), request->token_ids().end()),
                                    request->has_skip_special_tokens() && request->skip_special_tokens(),
                                    "token_ids");
    if (decoded.ok()) response->set_text(*std::move(decoded));
    status = decoded.status();
  }
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace stepserve::server
