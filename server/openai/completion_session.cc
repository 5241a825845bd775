#include "server/openai/completion_session.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/metrics.h"
#include "server/openai/openai_response.h"
#include "server/proto_conversion.h"

namespace stepserve::server::openai {

absl::StatusOr<std::shared_ptr<CompletionSession>> CompletionSession::Start(
    Executor* executor, const TextPipeline& text, const CompletionRequest& request,
    const std::vector<PreparedPrompt>& prompts, const RequestDefaults& defaults, const std::string& id_base,
    int max_buffered_outputs, ServerMetrics* metrics) {
  std::shared_ptr<CompletionSession> session(new CompletionSession(executor));
  const int total = static_cast<int>(prompts.size()) * request.n;
  session->finished_.assign(total, false);
  session->max_buffered_ = std::max(0, max_buffered_outputs);
  session->metrics_ = metrics;
  session->queued_.assign(total, 0);
  session->paused_.assign(total, false);
  session->last_output_time_.assign(total, absl::InfinitePast());
  for (int choice = 0; choice < total; ++choice) session->ids_.push_back(absl::StrCat(id_base, "-", choice));
  // Stage options first: a bad stop string refuses the request before anything runs.
  std::vector<OutputStageOptions> stages;
  for (const PreparedPrompt& p : prompts) {
    auto options = MakeOutputStageOptions(text, p, request.stop, request.include_stop_str_in_output,
                                          request.skip_special_tokens, "stop");
    if (!options.ok()) return options.status();
    // The OpenAI API answers with text whatever the prompt was (token ids too), when there is a tokenizer.
    if (text.has_tokenizer()) options->detokenize = true;
    stages.push_back(*std::move(options));
  }
  for (int choice = 0; choice < total; ++choice) {
    const int p = choice / request.n;
    GenerationRequest g = ToEngineRequest(request, prompts[p].ids, choice % request.n, defaults);
    g.id = session->ids_[choice];  // named before any output can arrive (Push pauses by name)
    auto stage = std::make_shared<OutputStage>(text.tokenizer(), stages[p]);
    // The callback keeps the session alive until the sequence's last output.
    absl::Status submitted = StartTextGeneration(executor, g, std::move(stage),
                                                 [session, choice](TextOutput&& out) {
                                                   session->Push(choice, std::move(out));
                                                 });
    if (!submitted.ok()) {
      {
        // This one and those after it were never submitted: nothing of theirs to cancel.
        std::lock_guard<std::mutex> lock(session->mu_);
        for (int rest = choice; rest < total; ++rest) session->finished_[rest] = true;
      }
      session->Cancel();
      return submitted;
    }
  }
  return session;
}

CompletionSession::~CompletionSession() {
  if (metrics_ != nullptr && num_paused_ > 0) metrics_->StreamResumed("http");
}

void CompletionSession::Observe(int choice, const TextOutput& output) {
  if (metrics_ == nullptr) return;
  const GenerationOutput& out = output.out;
  if (!out.token_ids.empty()) {
    if (last_output_time_[choice] != absl::InfinitePast()) {
      metrics_->ObserveInterTokenLatency(out.time - last_output_time_[choice]);
    }
    last_output_time_[choice] = out.time;
  }
  if (!out.finished) return;
  if (ErrorOf(output).has_value()) {
    metrics_->RecordFailure(out.finish_reason == FinishReason::kCancelled ? absl::StatusCode::kCancelled
                            : out.finish_reason == FinishReason::kAborted ? absl::StatusCode::kUnavailable
                            : out.finish_reason == FinishReason::kDeadlineExceeded
                                ? absl::StatusCode::kDeadlineExceeded
                                : absl::StatusCode::kInternal);
    return;
  }
  metrics_->RecordSuccess(output.finish == TextFinish::kStopString  ? v1::FINISH_REASON_STOP_STRING
                          : output.finish == TextFinish::kToolCalls ? v1::FINISH_REASON_TOOL_CALLS
                                                                    : ToProto(out.finish_reason));
  metrics_->ObserveQueueTime(out.queue_time);
  if (out.completion_tokens > 0) metrics_->ObserveTimeToFirstToken(out.time_to_first_token);
  metrics_->ObserveE2eLatency(out.e2e_latency);
}

void CompletionSession::Push(int choice, TextOutput&& output) {
  Observe(choice, output);  // one sequence's outputs come in order, on the engine thread
  std::lock_guard<std::mutex> lock(mu_);
  if (output.out.finished && !finished_[choice]) {
    finished_[choice] = true;
    ++num_finished_;
  }
  const bool finished = output.out.finished;
  events_.push_back({choice, std::move(output)});
  ++queued_[choice];
  if (finished && paused_[choice]) {
    paused_[choice] = false;
    if (--num_paused_ == 0 && metrics_ != nullptr) metrics_->StreamResumed("http");
  } else if (!finished && max_buffered_ > 0 && !paused_[choice] && queued_[choice] >= max_buffered_) {
    // Under mu_, so that pauses and resumes reach the executor in the order they were decided.
    paused_[choice] = true;
    executor_->Pause(ids_[choice]);
    if (num_paused_++ == 0 && metrics_ != nullptr) metrics_->StreamPaused("http");
  }
  cv_.notify_all();
}

std::vector<CompletionSession::Event> CompletionSession::Wait(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [this] { return !events_.empty(); });
  std::vector<Event> out(std::make_move_iterator(events_.begin()), std::make_move_iterator(events_.end()));
  events_.clear();
  for (size_t c = 0; c < queued_.size(); ++c) {
    queued_[c] = 0;
    if (paused_[c]) {
      paused_[c] = false;
      executor_->Resume(ids_[c]);
      if (--num_paused_ == 0 && metrics_ != nullptr) metrics_->StreamResumed("http");
    }
  }
  return out;
}

bool CompletionSession::all_finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return num_finished_ == static_cast<int>(finished_.size());
}

void CompletionSession::Cancel() {
  std::vector<std::string> running;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < ids_.size(); ++i) {
      if (!finished_[i]) running.push_back(ids_[i]);
    }
  }
  // Outside the lock: the engine thread may be waiting for it in Push.
  for (const std::string& id : running) executor_->Cancel(id);
}

}  // namespace stepserve::server::openai
