// A step plan on the model's device: token ids, positions, the rows that get logits and, per attention
// kind, the attention metadata. Built once per step with one host-to-device copy; every layer reads it.
#pragma once

#include <array>

#include <ATen/core/Tensor.h>

#include "model/loading/config.h"
#include "model/ops/attention_metadata.h"
#include "model/layers/step_plan.h"

namespace stepserve {

struct StepInputs {
  at::Tensor token_ids;    // int64 [T]
  at::Tensor positions;    // int64 [T]
  at::Tensor logits_rows;  // int64 [seqs]: each chunk's last token (undefined when the plan wants all)
  std::array<AttentionMetadata, kNumAttentionKinds> attention;
};

// Copies `plan` to `device` (one copy of one packed int64 buffer, non-blocking from pinned memory on CUDA)
// and derives the per-kind metadata there. `window` is the widest sliding window (what the cache keeps).
// Metadata is built only for the kinds in `kinds` (the model's: ModelConfig::HasAttentionKind); a kind no
// layer has gets none (its metadata stays empty: no layer reads it, and its block tables name no block).
StepInputs UploadStepPlan(const StepPlan& plan, int window, at::Device device,
                          std::array<bool, kNumAttentionKinds> kinds = {true, true});

}  // namespace stepserve
