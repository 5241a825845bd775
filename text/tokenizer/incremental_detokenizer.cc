#include "text/tokenizer/incremental_detokenizer.h"

#include <algorithm>
#include <utility>

#include "text/tokenizer/decoders.h"

namespace stepserve::text {
namespace {
// Enough for any decoder's cross-token state (a 4-byte character split over byte tokens).
constexpr size_t kContextIds = 4;
}  // namespace

IncrementalDetokenizer::IncrementalDetokenizer(std::shared_ptr<const Tokenizer> tokenizer, bool skip_special_tokens,
                                               absl::Span<const int32_t> prompt_ids_for_context)
    : tokenizer_(std::move(tokenizer)),
      skip_special_tokens_(skip_special_tokens),
      stream_(std::make_unique<DecodeStream>(tokenizer_->decoder_.get())) {
  const size_t n = std::min(prompt_ids_for_context.size(), kContextIds);
  for (int32_t id : prompt_ids_for_context.subspan(prompt_ids_for_context.size() - n)) {
    if (const std::string* token = tokenizer_->TokenForDecode(id, skip_special_tokens_)) stream_->PushToken(*token);
  }
  stream_->out().clear();
}

IncrementalDetokenizer::~IncrementalDetokenizer() = default;

std::string IncrementalDetokenizer::Append(int32_t id) {
  if (const std::string* token = tokenizer_->TokenForDecode(id, skip_special_tokens_)) stream_->PushToken(*token);
  std::string delta;
  delta.swap(stream_->out());
  return delta;
}

std::string IncrementalDetokenizer::Flush() {
  stream_->Finish();
  std::string rest;
  rest.swap(stream_->out());
  stream_ = std::make_unique<DecodeStream>(tokenizer_->decoder_.get());
  return rest;
}

}  // namespace stepserve::text
