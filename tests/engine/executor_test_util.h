// Helpers for executor tests: collecting streamed outputs and waiting for them with a bounded timeout.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "engine/executor.h"
#include "engine/generation.h"

namespace stepserve::testing {

struct Collected {
  std::vector<int32_t> tokens;
  std::vector<TokenLogprob> logprobs;
  int num_finished = 0;  // must end at exactly 1
  FinishReason reason = FinishReason::kNone;
  GenerationOutput final_output;
};

class OutputCollector {
 public:
  OutputCallback Callback() {
    return [this](const GenerationOutput& o) {
      std::lock_guard<std::mutex> lock(mu_);
      Collected& c = results_[o.request_id];
      c.tokens.insert(c.tokens.end(), o.token_ids.begin(), o.token_ids.end());
      c.logprobs.insert(c.logprobs.end(), o.logprobs.begin(), o.logprobs.end());
      if (o.finished) {
        ++c.num_finished;
        c.reason = o.finish_reason;
        c.final_output = o;
        ++finished_;
        cv_.notify_all();
      }
    };
  }
  // Waits until `n` requests have finished; false on timeout.
  bool WaitFinished(int n, absl::Duration timeout = absl::Seconds(120)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoSeconds(timeout), [&] { return finished_ >= n; });
  }
  Collected Get(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return results_[id];
  }
  int finished() {
    std::lock_guard<std::mutex> lock(mu_);
    return finished_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Collected> results_;
  int finished_ = 0;
};

inline GenerationRequest GreedyRequest(const std::string& id, std::vector<int32_t> prompt, int max_new_tokens) {
  GenerationRequest r;
  r.id = id;
  r.prompt = std::move(prompt);
  r.stopping.max_new_tokens = max_new_tokens;
  r.stopping.ignore_eos = true;
  return r;
}

}  // namespace stepserve::testing
