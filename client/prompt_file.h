// Text prompts for stepbench (--prompts_file): plain prompts or chat conversations, sent to the gRPC front
// (GenerateRequest.prompt / .chat) or the OpenAI-compatible HTTP front (/v1/completions or
// /v1/chat/completions).
//
// The file is JSON lines, one entry per line (blank lines are skipped), each one of:
//   {"prompt": "Tell me a story", "max_new_tokens": 64}            a plain prompt
//   {"conversations": [{"from": "human", "value": "Hi"},            ShareGPT style: a chat
//                      {"from": "gpt", "value": "Hello!"}, ...]}
// or, as the ShareGPT dumps come, one JSON array of such objects (the file's first non-blank character is
// '['; errors then name the entry). ShareGPT roles: human/user, gpt/assistant/chatgpt/model/bard, system;
// a ShareGPT entry becomes either its first human turn alone (ShareGptTurns::kFirst, what vLLM's
// benchmark does) or all its turns up to, not including, its last assistant turn (kAll). "max_new_tokens"
// (>= 1) is optional in both shapes; when absent, --output_len decides. Other keys are ignored.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "client/workload.h"

namespace stepserve::client {

struct TextMessage {
  std::string role;  // system, user, assistant
  std::string content;
};

struct PromptEntry {
  std::string prompt;                 // a plain prompt; empty for a chat
  std::vector<TextMessage> messages;  // a chat; empty for a plain prompt
  int32_t max_new_tokens = 0;         // 0: not given
  bool is_chat() const { return !messages.empty(); }
};

enum class ShareGptTurns { kFirst, kAll };

// "first" or "all"; false otherwise.
bool ParseShareGptTurns(const std::string& text, ShareGptTurns* turns);

// One entry from its JSON; false with a message (without position) when it is not a valid entry.
bool ParsePromptEntry(const std::string& json_text, ShareGptTurns turns, PromptEntry* entry, std::string* error);

// The whole file's contents; `name` prefixes the errors ("FILE:LINE: ..." for JSON lines, "FILE: entry
// N: ..." for a JSON array).
bool ParsePrompts(const std::string& contents, const std::string& name, ShareGptTurns turns,
                  std::vector<PromptEntry>* entries, std::string* error);

// Reads and parses the file; an unreadable or empty file is an error.
bool LoadPromptFile(const std::string& path, ShareGptTurns turns, std::vector<PromptEntry>* entries,
                    std::string* error);

// As a chat of one user message (stepbench --chat sends plain prompts to the chat endpoint).
PromptEntry AsChat(const PromptEntry& entry);

// n requests taken from the entries in order, cycling when n exceeds them; an entry without
// max_new_tokens gets one from `output_len` (drawn as DatasetWorkload draws them for the same seed).
std::vector<PromptEntry> PromptWorkload(const std::vector<PromptEntry>& entries, int64_t n, LenRange output_len,
                                        uint64_t seed);

}  // namespace stepserve::client
