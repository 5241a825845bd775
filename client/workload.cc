#include "client/workload.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>

#include <nlohmann/json.hpp>

namespace stepserve::client {
namespace {

bool ParsePositive(const std::string& text, int64_t* v) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || x < 1 || x > INT32_MAX) return false;
  *v = x;
  return true;
}

int64_t Draw(std::mt19937_64& rng, LenRange r) {
  if (r.min == r.max) return r.min;
  return std::uniform_int_distribution<int64_t>(r.min, r.max)(rng);
}

}  // namespace

bool ParseLenRange(const std::string& text, LenRange* range, std::string* error) {
  const auto colon = text.find(':');
  LenRange r;
  bool ok;
  if (colon == std::string::npos) {
    ok = ParsePositive(text, &r.min);
    r.max = r.min;
  } else {
    ok = ParsePositive(text.substr(0, colon), &r.min) && ParsePositive(text.substr(colon + 1), &r.max);
  }
  if (!ok) {
    *error = "\"" + text + "\" is not a length N or a range MIN:MAX of integers >= 1";
    return false;
  }
  if (r.min > r.max) {
    *error = "\"" + text + "\": MIN is larger than MAX";
    return false;
  }
  *range = r;
  return true;
}

std::vector<RequestSpec> RandomWorkload(int64_t n, LenRange prompt_len, LenRange output_len,
                                        int32_t vocab_size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> token(0, vocab_size - 1);
  std::vector<RequestSpec> out(n);
  for (auto& spec : out) {
    spec.prompt.resize(Draw(rng, prompt_len));
    for (auto& t : spec.prompt) t = token(rng);
    spec.max_new_tokens = static_cast<int32_t>(Draw(rng, output_len));
  }
  return out;
}

std::vector<Conversation> ConversationWorkload(int64_t n, const ConversationOptions& options, LenRange prompt_len,
                                               LenRange output_len, int32_t vocab_size, uint64_t seed) {
  const int64_t turns = std::max<int64_t>(1, options.turns);
  std::vector<RequestSpec> messages = RandomWorkload(n * turns, prompt_len, output_len, vocab_size, seed);
  std::vector<std::vector<int32_t>> prefixes;
  if (options.shared_prefix_len > 0) {
    // Its own stream, so adding prefixes leaves the messages as they were.
    std::mt19937_64 rng(seed ^ 0x5bd1e9955bd1e995ULL);
    std::uniform_int_distribution<int32_t> token(0, vocab_size - 1);
    prefixes.resize(static_cast<size_t>(std::max<int64_t>(1, options.num_prefixes)));
    for (auto& prefix : prefixes) {
      prefix.resize(static_cast<size_t>(options.shared_prefix_len));
      for (auto& t : prefix) t = token(rng);
    }
  }
  std::vector<Conversation> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    Conversation& c = out[static_cast<size_t>(i)];
    c.turns.assign(std::make_move_iterator(messages.begin() + i * turns),
                   std::make_move_iterator(messages.begin() + (i + 1) * turns));
    if (!prefixes.empty()) {
      const auto& prefix = prefixes[static_cast<size_t>(i) % prefixes.size()];
      c.turns[0].prompt.insert(c.turns[0].prompt.begin(), prefix.begin(), prefix.end());
    }
  }
  return out;
}

std::vector<int32_t> NextTurnPrompt(const std::vector<int32_t>& previous_prompt,
                                    const std::vector<int32_t>& previous_output, const std::vector<int32_t>& message) {
  std::vector<int32_t> prompt;
  prompt.reserve(previous_prompt.size() + previous_output.size() + message.size());
  prompt.insert(prompt.end(), previous_prompt.begin(), previous_prompt.end());
  prompt.insert(prompt.end(), previous_output.begin(), previous_output.end());
  prompt.insert(prompt.end(), message.begin(), message.end());
  return prompt;
}

int64_t MaxConversationTokens(const ConversationOptions& options, LenRange prompt_len, LenRange output_len) {
  return options.shared_prefix_len + std::max<int64_t>(1, options.turns) * (prompt_len.max + output_len.max);
}

std::vector<Conversation> SingleTurn(std::vector<RequestSpec> specs) {
  std::vector<Conversation> out(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) out[i].turns.push_back(std::move(specs[i]));
  return out;
}

bool LoadDataset(const std::string& path, int32_t vocab_size, std::vector<RequestSpec>* entries,
                 std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "cannot open dataset " + path;
    return false;
  }
  entries->clear();
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(lineno) + ": ";
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      *error = where + "not a JSON object";
      return false;
    }
    RequestSpec spec;
    auto ids = j.find("prompt_token_ids");
    if (ids == j.end() || !ids->is_array() || ids->empty()) {
      *error = where + "\"prompt_token_ids\" must be a non-empty array of token ids";
      return false;
    }
    for (const auto& id : *ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
          (vocab_size > 0 && id.get<int64_t>() >= vocab_size) || id.get<int64_t>() > INT32_MAX) {
        *error = where + "token id " + id.dump() + " is not in [0, " +
                 (vocab_size > 0 ? std::to_string(vocab_size) : std::string("2^31")) + ")";
        return false;
      }
      spec.prompt.push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
    if (auto m = j.find("max_new_tokens"); m != j.end() && !m->is_null()) {
      if (!m->is_number_integer() || m->get<int64_t>() < 1 || m->get<int64_t>() > INT32_MAX) {
        *error = where + "\"max_new_tokens\" must be an integer >= 1";
        return false;
      }
      spec.max_new_tokens = static_cast<int32_t>(m->get<int64_t>());
    }
    entries->push_back(std::move(spec));
  }
  if (entries->empty()) {
    *error = "dataset " + path + " has no entries";
    return false;
  }
  return true;
}

std::vector<RequestSpec> DatasetWorkload(const std::vector<RequestSpec>& entries, int64_t n,
                                         LenRange output_len, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<RequestSpec> out;
  out.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    RequestSpec spec = entries[i % entries.size()];
    if (spec.max_new_tokens == 0) spec.max_new_tokens = static_cast<int32_t>(Draw(rng, output_len));
    out.push_back(std::move(spec));
  }
  return out;
}

}  // namespace stepserve::client
