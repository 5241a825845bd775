// What stepbench sends: random prompts of token ids valid for the model, or a JSON-lines dataset.
//
// Dataset format: one JSON object per line (blank lines are skipped):
//   {"prompt_token_ids": [1, 2, 3], "max_new_tokens": 16}
// `prompt_token_ids` is required, non-empty, each id in [0, vocab_size); `max_new_tokens` is optional
// (>= 1; when absent, --output_len decides). Other keys are ignored.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace stepserve::client {

// A length: "N" or "MIN:MAX" (inclusive, drawn uniformly).
struct LenRange {
  int64_t min = 1;
  int64_t max = 1;
};
bool ParseLenRange(const std::string& text, LenRange* range, std::string* error);

struct RequestSpec {
  std::vector<int32_t> prompt;
  int32_t max_new_tokens = 0;  // 0 in a dataset entry: not given
};

// n prompts with lengths from `prompt_len` and ids uniform in [0, vocab_size), and output lengths from
// `output_len`; the same seed gives the same workload.
std::vector<RequestSpec> RandomWorkload(int64_t n, LenRange prompt_len, LenRange output_len,
                                        int32_t vocab_size, uint64_t seed);

// Reads the dataset; ids are checked against vocab_size when it is > 0. The error names the line.
bool LoadDataset(const std::string& path, int32_t vocab_size, std::vector<RequestSpec>* entries,
                 std::string* error);

// n requests taken from the entries in order, cycling when n exceeds them; an entry without
// max_new_tokens gets one from `output_len`.
std::vector<RequestSpec> DatasetWorkload(const std::vector<RequestSpec>& entries, int64_t n,
                                         LenRange output_len, uint64_t seed);

}  // namespace stepserve::client
