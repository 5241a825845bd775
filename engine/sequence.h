// A request's life inside the executor: its tokens, cache state, sampling history and timings.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/time/time.h"
#include "engine/generation.h"
#include "engine/kv_cache.h"
#include "engine/sampler.h"
#include "engine/stop_checker.h"

namespace stepserve {

enum class SequenceState { kWaiting, kRunning, kFinished };

struct Sequence {
  GenerationRequest request;
  StopTokenSet stop_token_ids;  // request.stopping.stop_token_ids as a set (built once, at Add)
  OutputCallback callback;
  uint64_t seed = 0;
  uint64_t admission_order = 0;  // larger = admitted more recently (preemption victim order)

  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int num_prompt = 0;
  KvSequence kv;                // kv.num_tokens = tokens whose K/V are cached ("computed")
  TokenHistory history;
  SequenceState state = SequenceState::kWaiting;
  int num_preemptions = 0;
  int64_t cached_prompt_tokens = -1;  // prompt tokens the prefix cache served at the first admission

  bool cancel_requested = false;
  // Flow control (Executor::Pause): the front's buffer for this request is full, so the scheduler skips it.
  // A paused running sequence keeps its KV blocks until a step needs them; then it is preempted before any
  // sequence that is not paused.
  bool paused = false;
  absl::Time arrival;
  std::optional<absl::Time> first_scheduled;
  std::optional<absl::Time> first_token;

  int num_generated() const { return static_cast<int>(tokens.size()) - num_prompt; }
  int64_t num_computed() const { return kv.num_tokens; }
  // Tokens still to feed through the model before the next token can be sampled.
  int64_t num_uncomputed() const { return static_cast<int64_t>(tokens.size()) - kv.num_tokens; }
};

}  // namespace stepserve
