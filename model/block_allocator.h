// A free list of fixed-size KV blocks for one attention kind. Not thread-safe: the engine thread owns it.
#pragma once

#include <cstdint>
#include <vector>

namespace stepserve {

class BlockAllocator {
 public:
  explicit BlockAllocator(int32_t num_blocks) : num_blocks_(num_blocks) {
    free_.reserve(num_blocks);
    // Hand out low ids first (pop from the back).
    for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
  }
  int32_t num_blocks() const { return num_blocks_; }
  int32_t num_free() const { return static_cast<int32_t>(free_.size()); }
  int32_t num_used() const { return num_blocks_ - num_free(); }

  // Returns a block id, or -1 when the pool is exhausted.
  int32_t Allocate() {
    if (free_.empty()) return -1;
    int32_t b = free_.back();
    free_.pop_back();
    return b;
  }
  void Free(int32_t block) { free_.push_back(block); }

 private:
  int32_t num_blocks_;
  std::vector<int32_t> free_;
};

}  // namespace stepserve
