// Per-step attention inputs for one attention kind (full or sliding), built once per step from the step
// plan (model/step_inputs.cc) and shared by every layer of that kind. Device tensors live on the model's
// device; the host part is O(sequences), for the loops of the ATen path.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace stepserve {

// One sequence's chunk, as the attention ops see it.
struct AttentionSeq {
  int64_t token_begin = 0;       // row of its first token in the flat batch
  int64_t num_tokens = 0;
  int64_t start_pos = 0;         // position of its first token; earlier tokens are cached
  int64_t first_cached_pos = 0;  // first cached position a query of the chunk can see; cached keys are
                                 // [first_cached_pos, start_pos) (none when the chunk has no cache)
  int64_t read_offset = 0;       // where its cached keys' slots start in read_slots
  int64_t num_cached() const { return start_pos - first_cached_pos; }
};

struct AttentionMetadata {
  std::vector<AttentionSeq> seqs;
  int block_size = 16;
  bool decode = false;      // every sequence has exactly one token
  int64_t max_cached = 0;   // largest num_cached() of the step
  int64_t total_cached = 0; // sum of num_cached()
  at::Tensor block_tables;  // int32 [seqs, max_blocks]; -1 = no block (never read for a visible key)
  at::Tensor seq_info;      // int32 [4, seqs]: query row, query position, first_cached_pos, num_cached
                            // (decode steps: the one query of each sequence)
  at::Tensor read_slots;    // int64 [total_cached]: slots of each sequence's cached keys, sequence after
                            // sequence (derived on the device from block_tables; undefined on CUDA decode
                            // steps, whose kernel reads block_tables itself)
  at::Tensor write_rows;    // int64 [W]: rows of this step's k/v that a later query can see
  at::Tensor write_slots;   // int64 [W]: the slots they are stored in
};

}  // namespace stepserve
