#include "client/load_generator.h"

#include <chrono>
#include <condition_variable>
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

// One Generate stream; deletes itself after reporting to the tracker.
class GenerateCall final : public grpc::ClientReadReactor<v1::GenerateResponse> {
 public:
  GenerateCall(Tracker* tracker, size_t index, const RequestSpec& spec, const LoadConfig& config);
  void Start(v1::StepServe::Stub* stub);
  void Cancel() { ctx_.TryCancel(); }

  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  Tracker* tracker_;
  size_t index_;
  grpc::ClientContext ctx_;
  v1::GenerateRequest request_;
  v1::GenerateResponse response_;
  RequestResult result_;
  Clock::time_point start_;
  Clock::time_point last_token_;
  bool got_tokens_ = false;
};

// Shared state between the dispatching thread and the gRPC callback threads.
class Tracker {
 public:
  explicit Tracker(size_t n) : results_(n) {}

  void Started(GenerateCall* call) {
    std::lock_guard<std::mutex> lock(mu_);
    ++in_flight_;
    calls_.insert(call);
  }
  void Finished(GenerateCall* call, size_t index, RequestResult result) {
    std::lock_guard<std::mutex> lock(mu_);
    results_[index] = std::move(result);
    calls_.erase(call);
    --in_flight_;
    ++finished_;
    last_finish_ = Clock::now();
    cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<RequestResult> results_;
  std::set<GenerateCall*> calls_;
  int64_t in_flight_ = 0;
  int64_t finished_ = 0;
  Clock::time_point last_finish_;
};

GenerateCall::GenerateCall(Tracker* tracker, size_t index, const RequestSpec& spec, const LoadConfig& config)
    : tracker_(tracker), index_(index) {
  request_.mutable_prompt_token_ids()->Add(spec.prompt.begin(), spec.prompt.end());
  request_.mutable_stopping()->set_max_new_tokens(spec.max_new_tokens);
  request_.mutable_stopping()->set_ignore_eos(config.ignore_eos);
  result_.prompt_tokens = static_cast<int64_t>(spec.prompt.size());
  result_.expected_tokens = spec.max_new_tokens;
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
  }
  StartRead(&response_);
}

void GenerateCall::OnDone(const grpc::Status& status) {
  result_.e2e_s = Seconds(Clock::now() - start_);
  result_.ok = status.ok();
  if (!status.ok()) {
    result_.code = StatusCodeName(status.error_code());
    result_.message = status.error_message();
  }
  // Leave the tracker's set (so nothing cancels this call any more), then go: OnDone is the reactor's
  // last callback, and the call never touches the tracker after Finished.
  tracker_->Finished(this, index_, std::move(result_));
  delete this;
}

}  // namespace

LoadResult RunLoad(const std::shared_ptr<grpc::Channel>& channel, const std::vector<RequestSpec>& specs,
                   const LoadConfig& config) {
  auto stub = v1::StepServe::NewStub(channel);
  Tracker tracker(specs.size());
  const int64_t total = static_cast<int64_t>(specs.size());
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

  const Clock::time_point start = Clock::now();
  std::unique_lock<std::mutex> lock(tracker.mu_);
  for (size_t i = 0; i < specs.size(); ++i) {
    if (open_loop) {
      const auto due = start + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(config.arrivals_s[i]));
      while (Clock::now() < due) {
        tracker.cv_.wait_until(lock, std::min(due, Clock::now() + kTick));
        report(lock);
      }
    }
    while (tracker.in_flight_ >= cap) {
      tracker.cv_.wait_for(lock, kTick);
      report(lock);
    }
    auto* call = new GenerateCall(&tracker, i, specs[i], config);
    lock.unlock();
    call->Start(stub.get());
    lock.lock();
  }
  // Each request has a deadline, so this ends; as a second guard, cancel what is still in flight well
  // after the last deadline should have fired.
  const auto give_up = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(config.request_timeout_s + 30));
  bool cancelled = false;
  while (tracker.finished_ < total) {
    tracker.cv_.wait_for(lock, kTick);
    report(lock);
    if (!cancelled && Clock::now() > give_up) {
      for (GenerateCall* call : tracker.calls_) call->Cancel();
      cancelled = true;
    }
  }
  report(lock);
  LoadResult out;
  out.duration_s = total > 0 ? Seconds(tracker.last_finish_ - start) : 0;
  out.requests = std::move(tracker.results_);
  return out;
}

}  // namespace stepserve::client
