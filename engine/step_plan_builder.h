// Builds a StepPlan from scheduled chunks and their block tables: the engine's side of the plan, which the
// model only reads (model/layers/step_plan.h).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "engine/block_manager.h"
#include "model/layers/step_plan.h"

namespace stepserve {

class StepPlanBuilder {
 public:
  // `blocks` may be null when no chunk is cached.
  explicit StepPlanBuilder(const BlockManager* blocks, int block_size = 16);

  // Adds tokens [start_pos, start_pos + n) of a sequence. With `kv`, its blocks for them were allocated
  // (BlockManager::AllocateSlots) and start_pos == kv->num_tokens.
  template <typename Token>
  void Add(const Token* tokens, int64_t n, int64_t start_pos, const KvSequence* kv) {
    for (int64_t i = 0; i < n; ++i) plan_.token_ids.push_back(static_cast<int64_t>(tokens[i]));
    AddChunk(n, start_pos, kv);
  }
  StepPlan Build(bool all_logits = false);

 private:
  void AddChunk(int64_t n, int64_t start_pos, const KvSequence* kv);

  const BlockManager* blocks_;
  StepPlan plan_;
  std::array<std::vector<const std::vector<int32_t>*>, kNumAttentionKinds> tables_;
};

}  // namespace stepserve
