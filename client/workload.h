// What stepbench sends: random prompts of token ids valid for the model, or a JSON-lines dataset; random
// prompts can start with shared prefixes and form multi-turn conversations (prefix caching, issue #11).
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

// Shared prefixes and multi-turn conversations (--shared_prefix_len, --num_prefixes, --turns).
struct ConversationOptions {
  int64_t turns = 1;              // requests per conversation, sent one after the other
  int64_t shared_prefix_len = 0;  // tokens of the shared prefix before each conversation's first prompt; 0: none
  int64_t num_prefixes = 1;       // distinct shared prefixes; conversation i uses prefix i % num_prefixes
};

// A conversation: turns[0].prompt is the whole first prompt (shared prefix + first user message); for
// t >= 1, turns[t].prompt is only turn t's new user message, sent after the conversation so far (see
// NextTurnPrompt). A single request is a conversation of one turn.
struct Conversation {
  std::vector<RequestSpec> turns;
};

// n conversations of `turns` turns. User messages and output lengths are those RandomWorkload(n * turns,
// ...) draws with the same seed, in conversation-major order (conversation i, turn t takes entry
// i * turns + t); the shared prefixes are drawn from their own stream of the same seed, so a seed fixes
// the whole workload and with shared_prefix_len 0 and 1 turn it is exactly RandomWorkload's.
std::vector<Conversation> ConversationWorkload(int64_t n, const ConversationOptions& options, LenRange prompt_len,
                                               LenRange output_len, int32_t vocab_size, uint64_t seed);

// The prompt of the next turn: the previous turn's prompt, the tokens generated for it, then the new
// user message.
std::vector<int32_t> NextTurnPrompt(const std::vector<int32_t>& previous_prompt,
                                    const std::vector<int32_t>& previous_output, const std::vector<int32_t>& message);

// The longest prompt + output a conversation of these lengths can need: shared_prefix_len +
// turns * (prompt max + output max).
int64_t MaxConversationTokens(const ConversationOptions& options, LenRange prompt_len, LenRange output_len);

// Single-turn conversations, one per spec.
std::vector<Conversation> SingleTurn(std::vector<RequestSpec> specs);

// Reads the dataset; ids are checked against vocab_size when it is > 0. The error names the line.
bool LoadDataset(const std::string& path, int32_t vocab_size, std::vector<RequestSpec>* entries,
                 std::string* error);

// n requests taken from the entries in order, cycling when n exceeds them; an entry without
// max_new_tokens gets one from `output_len`.
std::vector<RequestSpec> DatasetWorkload(const std::vector<RequestSpec>& entries, int64_t n,
                                         LenRange output_len, uint64_t seed);

}  // namespace stepserve::client
