#include "engine/forward_batch.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/step_plan_builder.h"
#include "engine/step_runner.h"

namespace stepserve {

absl::StatusOr<at::Tensor> Forward(const CausalLM& model, const ForwardBatch& batch, PagedKvCache* cache,
                                   const CausalLM::LayerObserver& observer) {
  if (!batch.token_ids.defined() || batch.token_ids.dim() != 1) {
    return absl::InvalidArgumentError("token_ids must be a 1-D tensor");
  }
  at::Tensor ids = batch.token_ids.to(at::kCPU, at::kLong).contiguous();
  // Every check before any block is allocated, so a failure has no side effects.
  int64_t sum = 0;
  for (const SequenceChunk& s : batch.seqs) sum += s.num_tokens;
  if (sum != ids.numel()) {
    return absl::InvalidArgumentError(absl::StrCat("chunks cover ", sum, " tokens but the batch has ", ids.numel()));
  }
  const int64_t* tokens = ids.data_ptr<int64_t>();
  for (const SequenceChunk& s : batch.seqs) {
    RETURN_IF_ERROR(model.CheckChunk(s.start_pos, s.num_tokens, tokens));
    tokens += s.num_tokens;
    if (s.kv != nullptr) {
      if (cache == nullptr) return absl::InvalidArgumentError("a chunk has a KV handle but no cache was given");
      if (s.kv->num_tokens != s.start_pos) {
        return absl::InvalidArgumentError(absl::StrCat("chunk start_pos ", s.start_pos, " does not match the ",
                                                       s.kv->num_tokens, " tokens in its KV cache"));
      }
    }
  }
  if (cache != nullptr) {
    for (AttentionKind kind : {AttentionKind::kFull, AttentionKind::kSliding}) {
      int64_t needed = 0;
      for (const SequenceChunk& s : batch.seqs) {
        if (s.kv != nullptr) needed += std::max(0, cache->blocks().BlocksNeeded(*s.kv, s.num_tokens, kind));
      }
      if (needed > cache->blocks().NumFreeBlocks(kind)) {
        return absl::ResourceExhaustedError("KV cache has too few free blocks for this step");
      }
    }
    for (const SequenceChunk& s : batch.seqs) {
      if (s.kv != nullptr && !cache->blocks().AllocateSlots(*s.kv, s.num_tokens)) {
        return absl::InternalError("block allocation failed after the capacity check");
      }
    }
  }
  StepPlanBuilder builder(cache != nullptr ? &cache->blocks() : nullptr);
  tokens = ids.data_ptr<int64_t>();
  for (const SequenceChunk& s : batch.seqs) {
    builder.Add(tokens, s.num_tokens, s.start_pos, s.kv);
    tokens += s.num_tokens;
  }
  ASSIGN_OR_RETURN(at::Tensor logits,
                   StepRunner(model).Run(builder.Build(batch.all_logits), cache != nullptr ? &cache->pools() : nullptr, observer));
  for (const SequenceChunk& s : batch.seqs) {
    if (s.kv != nullptr) cache->blocks().CommitStep(*s.kv, s.num_tokens);
  }
  return logits;
}

}  // namespace stepserve
