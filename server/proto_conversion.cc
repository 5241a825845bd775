#include "server/proto_conversion.h"

#include <algorithm>
#include <cctype>

namespace stepserve::server {

GenerationRequest ToGenerationRequest(const v1::GenerateRequest& proto, const RequestDefaults& defaults) {
  GenerationRequest request;
  request.id = proto.request_id();
  request.prompt.assign(proto.prompt_token_ids().begin(), proto.prompt_token_ids().end());

  const v1::SamplingParams& s = proto.sampling();
  SamplingParams& sampling = request.sampling;
  if (s.has_temperature()) sampling.temperature = s.temperature();
  if (s.has_top_p()) sampling.top_p = s.top_p();
  if (s.has_top_k()) sampling.top_k = s.top_k();
  if (s.has_min_p()) sampling.min_p = s.min_p();
  if (s.has_presence_penalty()) sampling.presence_penalty = s.presence_penalty();
  if (s.has_frequency_penalty()) sampling.frequency_penalty = s.frequency_penalty();
  if (s.has_repetition_penalty()) sampling.repetition_penalty = s.repetition_penalty();
  if (s.has_seed()) sampling.seed = s.seed();

  const v1::StoppingCriteria& stop = proto.stopping();
  if (stop.has_max_new_tokens()) {
    request.stopping.max_new_tokens = stop.max_new_tokens();
  } else {
    const int64_t room = defaults.max_context - static_cast<int64_t>(request.prompt.size());
    const int64_t n = std::min<int64_t>({static_cast<int64_t>(defaults.default_max_new_tokens),
                                         static_cast<int64_t>(defaults.max_new_tokens_cap), room});
    request.stopping.max_new_tokens = static_cast<int>(std::max<int64_t>(n, 1));
  }
  request.stopping.stop_token_ids.assign(stop.stop_token_ids().begin(), stop.stop_token_ids().end());
  request.stopping.ignore_eos = stop.ignore_eos();

  request.logprobs = proto.logprobs();
  request.cache_salt = proto.cache_salt();  // its length is checked by Submit (RequestLimits::max_cache_salt_length)
  return request;
}

v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStopToken: return v1::FINISH_REASON_STOP_TOKEN;
    case FinishReason::kEos: return v1::FINISH_REASON_EOS;
    case FinishReason::kLength: return v1::FINISH_REASON_LENGTH;
    case FinishReason::kCancelled: return v1::FINISH_REASON_CANCELLED;
    case FinishReason::kAborted: return v1::FINISH_REASON_ABORTED;
    case FinishReason::kDeadlineExceeded: return v1::FINISH_REASON_DEADLINE_EXCEEDED;
    case FinishReason::kError: return v1::FINISH_REASON_ERROR;
    case FinishReason::kNone: break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

std::string FinishReasonName(v1::FinishReason reason) {
  static constexpr char kPrefix[] = "FINISH_REASON_";
  std::string name = v1::FinishReason_Name(reason);
  if (name.rfind(kPrefix, 0) == 0) name.erase(0, sizeof(kPrefix) - 1);
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

}  // namespace stepserve::server
