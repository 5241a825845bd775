#include "engine/stop_checker.h"

#include <algorithm>

namespace stepserve {

StopTokenSet MakeStopTokenSet(const StoppingCriteria& stop) {
  return StopTokenSet(stop.stop_token_ids.begin(), stop.stop_token_ids.end());
}

FinishReason CheckStop(const StoppingCriteria& stop, const StopTokenSet& stop_ids, int32_t token, int num_generated,
                       int64_t num_tokens, const StopContext& context) {
  if (stop_ids.count(token) > 0) return FinishReason::kStopToken;
  if (!stop.ignore_eos && context.eos_token_ids != nullptr) {
    // The model's EOS ids: a handful, from its config.
    const auto& eos = *context.eos_token_ids;
    if (std::find(eos.begin(), eos.end(), token) != eos.end()) return FinishReason::kEos;
  }
  if (num_generated >= stop.max_new_tokens || num_tokens >= context.max_context) return FinishReason::kLength;
  return FinishReason::kNone;
}

}  // namespace stepserve
