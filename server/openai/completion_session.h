// One OpenAI completion request on the executor: its n sequences per prompt submitted through the text
// front's output stage, their processed outputs queued for the HTTP handler thread (which waits on them,
// streaming or not). Cancel() ends every sequence still running (a client that went away).
// Backpressure: with max_buffered_outputs > 0, a sequence with that many outputs queued and not yet taken
// by Wait is paused in the executor (Executor::Pause: not scheduled), and resumed when Wait takes them; so a
// client that stops reading (its handler thread blocked in a socket write) holds a bounded queue.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/executor.h"
#include "server/openai/openai_request.h"
#include "server/text_output.h"
#include "server/text_pipeline.h"

namespace stepserve::server::openai {

class CompletionSession : public std::enable_shared_from_this<CompletionSession> {
 public:
  struct Event {
    int choice = 0;  // prompt index * n + sequence index
    TextOutput output;
  };

  // Submits prompts.size() * request.n sequences, named id_base + "-" + choice. On an error (queue full,
  // a value the executor refuses, a bad stop string) the sequences already submitted are cancelled. The
  // status names the engine's field (api_error.h translates it).
  static absl::StatusOr<std::shared_ptr<CompletionSession>> Start(Executor* executor, const TextPipeline& text,
                                                                  const CompletionRequest& request,
                                                                  const std::vector<PreparedPrompt>& prompts,
                                                                  const RequestDefaults& defaults,
                                                                  const std::string& id_base,
                                                                  int max_buffered_outputs = 0,
                                                                  ServerMetrics* metrics = nullptr);

  // The outputs that arrived (oldest first), waiting up to `timeout` for at least one.
  std::vector<Event> Wait(absl::Duration timeout);
  // Every sequence has delivered its last output (queued or taken).
  bool all_finished() const;
  int num_choices() const { return static_cast<int>(ids_.size()); }
  // Cancels the sequences that have not finished (their KV blocks are freed before the next step).
  void Cancel();

  ~CompletionSession();

 private:
  CompletionSession(Executor* executor) : executor_(executor) {}
  void Push(int choice, TextOutput&& output);
  // The request metrics the gRPC front keeps too (success/failure by reason, TTFT, ITL, e2e, queue time);
  // engine thread.
  void Observe(int choice, const TextOutput& output);
  std::vector<absl::Time> last_output_time_;  // per choice, engine thread

  Executor* const executor_;
  int max_buffered_ = 0;                // 0: unbounded
  ServerMetrics* metrics_ = nullptr;    // stepserve_streams_paused{front="http"}; may be null
  std::vector<std::string> ids_;
  std::vector<int> queued_;             // per choice: outputs in events_
  std::vector<bool> paused_;            // per choice: paused in the executor
  int num_paused_ = 0;                  // choices paused (the session counts as one paused stream)
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
  std::vector<bool> finished_;
  int num_finished_ = 0;
};

}  // namespace stepserve::server::openai
