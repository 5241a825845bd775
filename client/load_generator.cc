#include "client/load_generator.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>

#include <grpcpp/client_context.h>

#include "client/channel.h"
#include "stepserve/v1/stepserve.grpc.pb.h"

namespace stepserve::client {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

class Tracker;

// One Generate stream (one turn of a conversation); deletes itself after reporting to the tracker.
class GenerateCall final : public grpc::ClientReadReactor<v1::GenerateResponse> {
 public:
  GenerateCall(Tracker* tracker, size_t conversation, size_t turn, const std::vector<int32_t>& prompt,
               int32_t max_new_tokens, bool keep_tokens, const LoadConfig& config);
  void Start(v1::StepServe::Stub* stub);
  void Cancel() { ctx_.TryCancel(); }

  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  Tracker* tracker_;
  size_t conversation_;
  size_t turn_;
  bool keep_tokens_;  // the conversation goes on: remember the prompt and the output for the next turn
  grpc::ClientContext ctx_;
  v1::GenerateRequest request_;
  v1::GenerateResponse response_;
  RequestResult result_;
  std::vector<int32_t> output_;
  Clock::time_point start_;
  Clock::time_point last_token_;
  bool got_tokens_ = false;
};

// A follow-up turn ready to be sent by the dispatching thread.
struct PendingTurn {
  size_t conversation;
  size_t turn;
  std::vector<int32_t> prompt;
};

// Shared state between the dispatching thread and the gRPC callback threads.
class Tracker {
 public:
  explicit Tracker(const std::vector<Conversation>& conversations) : conversations_(conversations) {
    size_t total = 0;
    for (const auto& c : conversations) {
      offsets_.push_back(total);
      total += c.turns.size();
    }
    results_.resize(total);
  }

  size_t Index(size_t conversation, size_t turn) const { return offsets_[conversation] + turn; }
  bool HasNextTurn(size_t conversation, size_t turn) const {
    return turn + 1 < conversations_[conversation].turns.size();
  }

  void Started(GenerateCall* call) {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.insert(call);
  }

  // `next_prompt` is the next turn's prompt when the turn succeeded and the conversation goes on.
  void Finished(GenerateCall* call, size_t conversation, size_t turn, RequestResult result,
                std::vector<int32_t> next_prompt) {
    std::lock_guard<std::mutex> lock(mu_);
    const bool ok = result.ok;
    results_[Index(conversation, turn)] = std::move(result);
    calls_.erase(call);
    ++finished_;
    last_finish_ = Clock::now();
    if (HasNextTurn(conversation, turn)) {
      if (ok && !cancelled_) {
        pending_.push_back(PendingTurn{conversation, turn + 1, std::move(next_prompt)});
      } else {
        SkipFrom(conversation, turn + 1, turn + 1);
        --in_flight_;
      }
    } else {
      --in_flight_;
    }
    cv_.notify_all();
  }

  // Records turns [turn, end) of the conversation as never sent because turn `failed_turn` (0-based)
  // ended without success. Holds mu_.
  void SkipFrom(size_t conversation, size_t turn, size_t failed_turn) {
    const size_t end = conversations_[conversation].turns.size();
    for (size_t t = turn; t < end; ++t) {
      RequestResult& r = results_[Index(conversation, t)];
      r.ok = false;
      r.code = kSkippedCode;
      r.message = "not sent: turn " + std::to_string(failed_turn) + " of its conversation failed";
      r.turn = static_cast<int64_t>(t) + 1;
      r.expected_tokens = conversations_[conversation].turns[t].max_new_tokens;
      ++finished_;
    }
  }

  const std::vector<Conversation>& conversations_;
  std::vector<size_t> offsets_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<RequestResult> results_;
  std::set<GenerateCall*> calls_;
  std::deque<PendingTurn> pending_;
  int64_t in_flight_ = 0;  // conversations started and not yet over
  int64_t finished_ = 0;   // requests finished or skipped
  bool cancelled_ = false;
  Clock::time_point last_finish_;
};

GenerateCall::GenerateCall(Tracker* tracker, size_t conversation, size_t turn, const std::vector<int32_t>& prompt,
                           int32_t max_new_tokens, bool keep_tokens, const LoadConfig& config)
    : tracker_(tracker), conversation_(conversation), turn_(turn), keep_tokens_(keep_tokens) {
  request_.mutable_prompt_token_ids()->Add(prompt.begin(), prompt.end());
  request_.mutable_stopping()->set_max_new_tokens(max_new_tokens);
  request_.mutable_stopping()->set_ignore_eos(config.ignore_eos);
  request_.set_cache_salt(config.cache_salt);
  result_.prompt_tokens = static_cast<int64_t>(prompt.size());
  result_.expected_tokens = max_new_tokens;
  result_.turn = static_cast<int64_t>(turn) + 1;
  ctx_.set_wait_for_ready(false);
  ctx_.set_deadline(std::chrono::system_clock::now() +
                    std::chrono::microseconds(static_cast<int64_t>(config.request_timeout_s * 1e6)));
}

void GenerateCall::Start(v1::StepServe::Stub* stub) {
  tracker_->Started(this);
  stub->async()->Generate(&ctx_, &request_, this);
  StartRead(&response_);
  start_ = Clock::now();
  StartCall();
}

void GenerateCall::OnReadDone(bool ok) {
  if (!ok) return;  // the stream ended; OnDone follows
  const auto now = Clock::now();
  if (response_.token_ids_size() > 0) {
    if (!got_tokens_) {
      result_.ttft_s = Seconds(now - start_);
      got_tokens_ = true;
    } else {
      result_.itl_s.push_back(Seconds(now - last_token_));
    }
    last_token_ = now;
    result_.output_tokens += response_.token_ids_size();
    if (keep_tokens_) output_.insert(output_.end(), response_.token_ids().begin(), response_.token_ids().end());
  }
  if (response_.has_usage()) result_.cached_prompt_tokens = response_.usage().cached_prompt_tokens();
  StartRead(&response_);
}

void GenerateCall::OnDone(const grpc::Status& status) {
  result_.e2e_s = Seconds(Clock::now() - start_);
  result_.ok = status.ok();
  if (!status.ok()) {
    result_.code = StatusCodeName(status.error_code());
    result_.message = status.error_message();
  }
  std::vector<int32_t> next_prompt;
  if (status.ok() && keep_tokens_) {
    const std::vector<int32_t> prompt(request_.prompt_token_ids().begin(), request_.prompt_token_ids().end());
    next_prompt =
        NextTurnPrompt(prompt, output_, tracker_->conversations_[conversation_].turns[turn_ + 1].prompt);
  }
  // Leave the tracker's set (so nothing cancels this call any more), then go: OnDone is the reactor's
  // last callback, and the call never touches the tracker after Finished.
  tracker_->Finished(this, conversation_, turn_, std::move(result_), std::move(next_prompt));
  delete this;
}

}  // namespace

LoadResult RunConversations(const std::shared_ptr<grpc::Channel>& channel,
                            const std::vector<Conversation>& conversations, const LoadConfig& config) {
  auto stub = v1::StepServe::NewStub(channel);
  Tracker tracker(conversations);
  const int64_t total = static_cast<int64_t>(tracker.results_.size());
  const bool open_loop = !config.arrivals_s.empty();
  const int64_t cap = config.concurrency > 0 ? config.concurrency : INT64_MAX;
  constexpr auto kTick = std::chrono::milliseconds(200);
  Clock::time_point last_report;
  const auto report = [&](std::unique_lock<std::mutex>& lock) {
    if (!config.progress) return;
    const int64_t done = tracker.finished_;
    const auto now = Clock::now();
    if (done < total && now - last_report < std::chrono::milliseconds(100)) return;
    last_report = now;
    lock.unlock();
    config.progress(done, total);
    lock.lock();
  };
  const auto timeout = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(config.request_timeout_s + 30));

  const Clock::time_point start = Clock::now();
  Clock::time_point last_send = start;
  std::unique_lock<std::mutex> lock(tracker.mu_);
  const auto send = [&](size_t conversation, size_t turn, const std::vector<int32_t>& prompt) {
    const RequestSpec& spec = conversations[conversation].turns[turn];
    auto* call = new GenerateCall(&tracker, conversation, turn, prompt, spec.max_new_tokens,
                                  tracker.HasNextTurn(conversation, turn), config);
    last_send = Clock::now();
    lock.unlock();
    call->Start(stub.get());
    lock.lock();
  };
  size_t next = 0;  // the next conversation to start
  while (true) {
    // Follow-up turns go first: their conversations hold their slots already.
    while (!tracker.pending_.empty()) {
      PendingTurn p = std::move(tracker.pending_.front());
      tracker.pending_.pop_front();
      if (tracker.cancelled_) {
        tracker.SkipFrom(p.conversation, p.turn, p.turn);
        --tracker.in_flight_;
        continue;
      }
      send(p.conversation, p.turn, p.prompt);
    }
    if (next < conversations.size()) {
      if (open_loop) {
        const auto due = start + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(config.arrivals_s[next]));
        if (Clock::now() < due) {
          tracker.cv_.wait_until(lock, std::min(due, Clock::now() + kTick));
          report(lock);
          continue;
        }
      }
      if (tracker.in_flight_ >= cap) {
        tracker.cv_.wait_for(lock, kTick);
        report(lock);
        continue;
      }
      ++tracker.in_flight_;
      const size_t c = next++;
      send(c, 0, conversations[c].turns[0].prompt);
      continue;
    }
    if (tracker.finished_ >= total && tracker.pending_.empty()) break;
    tracker.cv_.wait_for(lock, kTick);
    report(lock);
    // Each request has a deadline, so this ends; as a second guard, cancel what is still in flight well
    // after the last deadline should have fired.
    if (!tracker.cancelled_ && Clock::now() > last_send + timeout) {
      for (GenerateCall* call : tracker.calls_) call->Cancel();
      tracker.cancelled_ = true;
    }
  }
  report(lock);
  LoadResult out;
  out.duration_s = total > 0 ? Seconds(tracker.last_finish_ - start) : 0;
  out.requests = std::move(tracker.results_);
  return out;
}

}  // namespace stepserve::client
