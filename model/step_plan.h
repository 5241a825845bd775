// The step plan: everything one forward pass needs, on the host, with no tensors and no pointers into the
// scheduler's state. The scheduler has already allocated the blocks it names; the forward pass changes no
// allocator state. It is compact (O(tokens + sequences x blocks)) so that rank 0 can broadcast it to the
// other ranks of a tensor-parallel group.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "model/block_manager.h"
#include "model/config.h"

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
