#include "engine/step_plan_builder.h"

#include <algorithm>

namespace stepserve {

StepPlanBuilder::StepPlanBuilder(const BlockManager* blocks, int block_size) : blocks_(blocks) {
  plan_.block_size = blocks != nullptr ? blocks->block_size() : block_size;
}

void StepPlanBuilder::AddChunk(int64_t n, int64_t start_pos, const KvSequence* kv) {
  const bool cached = kv != nullptr && blocks_ != nullptr;
  plan_.chunks.push_back({n, start_pos, cached});
  const int64_t B = plan_.block_size, length = start_pos + n;
  for (int64_t i = 0; i < n; ++i) plan_.positions.push_back(start_pos + i);
  for (AttentionKind kind : {AttentionKind::kFull, AttentionKind::kSliding}) {
    const int k = static_cast<int>(kind);
    tables_[k].push_back(cached ? &kv->block_table[k] : nullptr);
    auto& slots = plan_.kinds[k].slot_mapping;
    if (!cached || !blocks_->HasKind(kind)) {
      slots.insert(slots.end(), n, -1);
      continue;
    }
    // Keys are stored where a later query can see them (the blocks AllocateSlots allocated).
    const int64_t store_from = blocks_->FirstStoredPosition(start_pos, n, kind);
    const auto& table = kv->block_table[k];
    for (int64_t p = start_pos; p < length; ++p) {
      const int64_t b = p / B;
      const bool stored = p >= store_from && b < static_cast<int64_t>(table.size()) && table[b] >= 0;
      slots.push_back(stored ? table[b] * B + p % B : -1);
    }
  }
}

StepPlan StepPlanBuilder::Build(bool all_logits) {
  plan_.all_logits = all_logits;
  const size_t S = plan_.chunks.size();
  for (int k = 0; k < kNumAttentionKinds; ++k) {
    size_t max_blocks = 1;
    for (const auto* t : tables_[k]) {
      if (t != nullptr) max_blocks = std::max(max_blocks, t->size());
    }
    auto& kt = plan_.kinds[k];
    kt.max_blocks = static_cast<int32_t>(max_blocks);
    kt.block_tables.assign(S * max_blocks, -1);
    for (size_t s = 0; s < S; ++s) {
      if (tables_[k][s] != nullptr) std::copy(tables_[k][s]->begin(), tables_[k][s]->end(), kt.block_tables.begin() + s * max_blocks);
    }
  }
  StepPlan out = std::move(plan_);
  plan_ = StepPlan();
  plan_.block_size = out.block_size;
  tables_ = {};
  return out;
}

}  // namespace stepserve
