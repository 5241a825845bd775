#include "engine/stop_checker.h"

#include <algorithm>

namespace stepserve {

FinishReason CheckStop(const StoppingCriteria& stop, int32_t token, int num_generated, int64_t num_tokens,
                       const StopContext& context) {
  const auto& stops = stop.stop_token_ids;
  if (std::find(stops.begin(), stops.end(), token) != stops.end()) return FinishReason::kStopToken;
  if (!stop.ignore_eos && context.eos_token_ids != nullptr) {
    const auto& eos = *context.eos_token_ids;
    if (std::find(eos.begin(), eos.end(), token) != eos.end()) return FinishReason::kEos;
  }
  if (num_generated >= stop.max_new_tokens || num_tokens >= context.max_context) return FinishReason::kLength;
  return FinishReason::kNone;
}

}  // namespace stepserve
