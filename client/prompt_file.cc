#include "client/prompt_file.h"

#include <climits>
#include <random>

#include <nlohmann/json.hpp>

#include "client/channel.h"

namespace stepserve::client {
namespace {

// ShareGPT's "from" values (and OpenAI's roles) to a chat role; empty for an unknown one.
std::string RoleOf(const std::string& from) {
  if (from == "human" || from == "user") return "user";
  if (from == "gpt" || from == "assistant" || from == "chatgpt" || from == "model" || from == "bard") {
    return "assistant";
  }
  if (from == "system") return "system";
  return "";
}

bool ParseEntry(const nlohmann::json& j, ShareGptTurns turns, PromptEntry* entry, std::string* error) {
  if (!j.is_object()) {
    *error = "not a JSON object";
    return false;
  }
  PromptEntry e;
  const auto prompt = j.find("prompt");
  const auto conversations = j.find("conversations");
  if ((prompt != j.end()) == (conversations != j.end())) {
    *error = "an entry needs exactly one of \"prompt\" and \"conversations\"";
    return false;
  }
  if (prompt != j.end()) {
    if (!prompt->is_string() || prompt->get_ref<const std::string&>().empty()) {
      *error = "\"prompt\" must be a non-empty string";
      return false;
    }
    e.prompt = prompt->get<std::string>();
  } else {
    if (!conversations->is_array() || conversations->empty()) {
      *error = "\"conversations\" must be a non-empty array of {\"from\", \"value\"} turns";
      return false;
    }
    std::vector<TextMessage> all;
    for (size_t i = 0; i < conversations->size(); ++i) {
      const auto& turn = (*conversations)[i];
      const std::string where = "conversations[" + std::to_string(i) + "]: ";
      if (!turn.is_object() || !turn.contains("from") || !turn["from"].is_string() || !turn.contains("value") ||
          !turn["value"].is_string()) {
        *error = where + "a turn must be {\"from\": string, \"value\": string}";
        return false;
      }
      const std::string from = turn["from"].get<std::string>();
      const std::string role = RoleOf(from);
      if (role.empty()) {
        *error = where + "unknown \"from\": \"" + from + "\" (human, gpt or system)";
        return false;
      }
      all.push_back(TextMessage{role, turn["value"].get<std::string>()});
    }
    if (turns == ShareGptTurns::kFirst) {
      for (const auto& m : all) {
        if (m.role == "user") {
          e.messages.push_back(m);
          break;
        }
      }
    } else {
      // Everything up to the answer that the benchmark asks the model for: drop the trailing assistant
      // turns.
      size_t end = all.size();
      while (end > 0 && all[end - 1].role == "assistant") --end;
      e.messages.assign(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(end));
    }
    if (e.messages.empty() || e.messages.back().role != "user") {
      *error = e.messages.empty() || turns == ShareGptTurns::kFirst
                   ? "the conversation has no human turn"
                   : "the conversation must end with a human turn once its last assistant turns are dropped";
      return false;
    }
  }
  if (auto m = j.find("max_new_tokens"); m != j.end() && !m->is_null()) {
    if (!m->is_number_integer() || m->get<int64_t>() < 1 || m->get<int64_t>() > INT32_MAX) {
      *error = "\"max_new_tokens\" must be an integer >= 1";
      return false;
    }
    e.max_new_tokens = static_cast<int32_t>(m->get<int64_t>());
  }
  *entry = std::move(e);
  return true;
}

}  // namespace

bool ParseShareGptTurns(const std::string& text, ShareGptTurns* turns) {
  if (text == "first") {
    *turns = ShareGptTurns::kFirst;
  } else if (text == "all") {
    *turns = ShareGptTurns::kAll;
  } else {
    return false;
  }
  return true;
}

bool ParsePromptEntry(const std::string& json_text, ShareGptTurns turns, PromptEntry* entry, std::string* error) {
  const nlohmann::json j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    *error = "not valid JSON";
    return false;
  }
  return ParseEntry(j, turns, entry, error);
}

bool ParsePrompts(const std::string& contents, const std::string& name, ShareGptTurns turns,
                  std::vector<PromptEntry>* entries, std::string* error) {
  entries->clear();
  const size_t first = contents.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && contents[first] == '[') {
    // One JSON array (the ShareGPT dumps).
    const nlohmann::json j = nlohmann::json::parse(contents, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_array()) {
      *error = name + ": starts with '[' but is not one valid JSON array";
      return false;
    }
    for (size_t i = 0; i < j.size(); ++i) {
      PromptEntry e;
      std::string why;
      if (!ParseEntry(j[i], turns, &e, &why)) {
        *error = name + ": entry " + std::to_string(i) + ": " + why;
        return false;
      }
      entries->push_back(std::move(e));
    }
  } else {
    size_t start = 0;
    for (int lineno = 1; start < contents.size(); ++lineno) {
      size_t end = contents.find('\n', start);
      if (end == std::string::npos) end = contents.size();
      const std::string line = contents.substr(start, end - start);
      start = end + 1;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      PromptEntry e;
      std::string why;
      if (!ParsePromptEntry(line, turns, &e, &why)) {
        *error = name + ":" + std::to_string(lineno) + ": " + why;
        return false;
      }
      entries->push_back(std::move(e));
    }
  }
  if (entries->empty()) {
    *error = name + ": no prompts";
    return false;
  }
  return true;
}

bool LoadPromptFile(const std::string& path, ShareGptTurns turns, std::vector<PromptEntry>* entries,
                    std::string* error) {
  std::string contents;
  if (!ReadFileToString(path, &contents)) {
    *error = "cannot read prompts file " + path;
    return false;
  }
  return ParsePrompts(contents, path, turns, entries, error);
}

PromptEntry AsChat(const PromptEntry& entry) {
  if (entry.is_chat()) return entry;
  PromptEntry out;
  out.messages.push_back(TextMessage{"user", entry.prompt});
  out.max_new_tokens = entry.max_new_tokens;
  return out;
}

std::vector<PromptEntry> PromptWorkload(const std::vector<PromptEntry>& entries, int64_t n, LenRange output_len,
                                        uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<PromptEntry> out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n && !entries.empty(); ++i) {
    PromptEntry e = entries[static_cast<size_t>(i) % entries.size()];
    if (e.max_new_tokens == 0) {
      e.max_new_tokens = output_len.min == output_len.max
                             ? static_cast<int32_t>(output_len.min)
                             : static_cast<int32_t>(
                                   std::uniform_int_distribution<int64_t>(output_len.min, output_len.max)(rng));
    }
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace stepserve::client
