// The step plan: everything one forward pass needs (the engine builds it: engine/step_plan_builder.h), on the host, with no tensors and no pointers into the
// scheduler's state. The scheduler has already allocated the blocks it names; the forward pass changes no
// allocator state. It is compact (O(tokens + sequences x blocks)) so that rank 0 can broadcast it to the
// other ranks of a tensor-parallel group.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "model/loading/config.h"

namespace stepserve {

struct PlannedChunk {
  int64_t num_tokens = 0;
  int64_t start_pos = 0;  // position of the first token; with a cache, the tokens before it are cached
  bool cached = false;    // false: no earlier key is visible and nothing is stored
};

struct StepPlan {
  std::vector<int64_t> token_ids;  // [T], chunks back to back
  std::vector<int64_t> positions;  // [T]
  std::vector<PlannedChunk> chunks;
  int block_size = 16;
  struct KindTables {
    int32_t max_blocks = 0;
    std::vector<int32_t> block_tables;  // [chunks x max_blocks], row-major; -1 = no block
    std::vector<int64_t> slot_mapping;  // [T]: the slot a token's key is stored in; -1 = not stored
  };
  std::array<KindTables, kNumAttentionKinds> kinds;
  bool all_logits = false;  // logits for every token instead of each chunk's last

  int64_t num_tokens() const { return static_cast<int64_t>(token_ids.size()); }
  int num_seqs() const { return static_cast<int>(chunks.size()); }
};


}  // namespace stepserve
