#include "text/tokenizer/builtin_tokenizer.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "text/tokenizer/byte_level.h"
#include "text/tokenizer/pre_tokenizers.h"
#include "text/tokenizer/regex.h"

namespace stepserve::text {
namespace {

constexpr const char* kSpecialTokens[] = {
    "<unk>",        "<|begin_of_sentence|>", "<|end_of_sentence|>", "<|im_start|>", "<|im_end|>",
    "<think>",      "</think>",              "<tool_call>",         "</tool_call>",
};
constexpr int32_t kFirstByteId = 9;

// The training text: fixed, so the merges (and every id) never change.
constexpr const char kTrainingText[] = R"TEXT(
The quick brown fox jumps over the lazy dog. A language model reads text as a sequence of tokens, and a
tokenizer turns the text into those tokens and back again. The server receives a request, encodes the
prompt, schedules the sequence with other requests in a batch, runs the model one step at a time, samples
the next token from the logits, and streams the decoded text to the client as soon as it is complete.
When the user asks a question, the assistant thinks about the problem first and then answers it. It
should be helpful, honest and careful: if it does not know something, it says so; if the question is
ambiguous, it asks what the user meant. Good answers are short when the question is simple and detailed
when the problem is hard. They explain the reasoning, give examples, and check the result.
Attention lets every position of the sequence look at the positions before it. A sliding window keeps
only the most recent keys and values, while full attention layers see the whole context. The cache of
keys and values is stored in fixed-size blocks, so that sequences of different lengths share the memory
of the device without fragmentation. Mixture-of-experts layers route each token to a few of many expert
networks, which keeps the cost of a step low while the number of parameters stays large.
Numbers appear everywhere: 0 1 2 3 4 5 6 7 8 9 10 12 16 32 64 100 128 256 512 1000 1024 2048 4096 8192
2024-01-15 12:30:45, 3.14159, 2.71828, 1e-5, 0.001, 99.9%, $42.50, #1, 7x24, v1.2.3, port 50051.
This is the first sentence. This is the second sentence, and this is the third one! Is this the last?
Yes, it is. No, it is not. Maybe it will be, maybe it won't; we'll see what they've done and what you'd
do. I'm sure it's fine. Don't worry: there's time, and they're here.
#include <string>
#include <vector>

namespace example {

// Returns the sum of the values, or zero for an empty list.
int Sum(const std::vector<int>& values) {
  int total = 0;
  for (int value : values) {
    total += value;
  }
  return total;
}

class Counter {
 public:
  explicit Counter(std::string name) : name_(std::move(name)) {}
  void Increment() { ++count_; }
  int count() const { return count_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  int count_ = 0;
};

}  // namespace example

def fibonacci(n: int) -> list[int]:
    """Return the first n Fibonacci numbers."""
    result = []
    a, b = 0, 1
    for _ in range(n):
        result.append(a)
        a, b = b, a + b
    return result


if __name__ == "__main__":
    import json
    import sys

    data = {"name": "example", "values": [1, 2, 3], "enabled": True, "ratio": 0.5}
    print(json.dumps(data, indent=2))
    for i, value in enumerate(fibonacci(10)):
        print(f"{i}: {value}")
    sys.exit(0)

function render(items) {
  const list = document.createElement("ul");
  for (const item of items) {
    const entry = document.createElement("li");
    entry.textContent = `${item.id}: ${item.title}`;
    list.appendChild(entry);
  }
  return list;
}

SELECT id, name, created_at FROM users WHERE active = 1 ORDER BY created_at DESC LIMIT 10;
{"role": "user", "content": "What is the capital of France?"}
{"role": "assistant", "content": "The capital of France is Paris."}
<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}</tool_call>
)TEXT";

// Greedy BPE training: the most frequent adjacent pair (ties: the smaller pair of ids) merges next.
struct Trainer {
  std::vector<std::string> tokens;  // raw bytes of each id
  absl::flat_hash_map<std::string, int32_t> ids;
  std::vector<std::pair<int32_t, int32_t>> merges;

  int32_t AddToken(std::string raw) {
    auto it = ids.find(raw);
    if (it != ids.end()) return it->second;
    const auto id = static_cast<int32_t>(tokens.size());
    ids.emplace(raw, id);
    tokens.push_back(std::move(raw));
    return id;
  }
};

}  // namespace

nlohmann::json BuiltinTokenizerJson(int32_t vocab_size) {
  vocab_size = std::max(vocab_size, kBuiltinMinVocabSize);
  Trainer tr;
  for (const char* special : kSpecialTokens) {
    tr.tokens.emplace_back(special);  // not byte strings: kept out of `ids`
  }
  for (int b = 0; b < 256; ++b) tr.AddToken(std::string(1, static_cast<char>(b)));

  // Words of the training text (GPT-2's split), with their counts.
  std::map<std::string, int> word_counts;
  auto re = Regex::Compile(kGpt2SplitPattern);
  const std::string_view text(kTrainingText);
  (*re)->ForEachMatch(text, [&](size_t b, size_t e) {
    if (e > b) ++word_counts[std::string(text.substr(b, e - b))];
  });
  std::vector<std::pair<std::vector<int32_t>, int>> words;
  for (const auto& [word, count] : word_counts) {
    std::vector<int32_t> symbols;
    for (unsigned char c : word) symbols.push_back(kFirstByteId + c);
    words.emplace_back(std::move(symbols), count);
  }

  while (static_cast<int32_t>(tr.tokens.size()) < vocab_size) {
    std::map<std::pair<int32_t, int32_t>, int> pair_counts;
    for (const auto& [symbols, count] : words) {
      for (size_t i = 0; i + 1 < symbols.size(); ++i) pair_counts[{symbols[i], symbols[i + 1]}] += count;
    }
    std::pair<int32_t, int32_t> best{-1, -1};
    int best_count = 1;  // a pair seen once is not worth a merge
    for (const auto& [pair, count] : pair_counts) {
      if (count > best_count) {
        best_count = count;
        best = pair;
      }
    }
    if (best.first < 0) break;
    const size_t before = tr.tokens.size();
    const int32_t merged = tr.AddToken(tr.tokens[best.first] + tr.tokens[best.second]);
    tr.merges.push_back(best);
    (void)before;
    for (auto& [symbols, count] : words) {
      size_t w = 0;
      for (size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && symbols[i] == best.first && symbols[i + 1] == best.second) {
          symbols[w++] = merged;
          ++i;
        } else {
          symbols[w++] = symbols[i];
        }
      }
      symbols.resize(w);
    }
  }
  // The rest: each token (in id order) extended by each byte (in byte order), when new.
  for (int32_t a = kFirstByteId; static_cast<int32_t>(tr.tokens.size()) < vocab_size; ++a) {
    for (int b = 0; b < 256 && static_cast<int32_t>(tr.tokens.size()) < vocab_size; ++b) {
      std::string raw = tr.tokens[a] + static_cast<char>(b);
      if (tr.ids.contains(raw)) continue;
      tr.AddToken(std::move(raw));
      tr.merges.emplace_back(a, kFirstByteId + b);
    }
  }

  const ByteLevelTable& table = GetByteLevelTable();
  auto byte_level = [&](int32_t id) {
    if (id < kFirstByteId) return tr.tokens[id];
    std::string s;
    for (unsigned char c : tr.tokens[id]) s.append(table.byte_to_utf8[c]);
    return s;
  };
  nlohmann::json vocab = nlohmann::json::object();
  for (int32_t id = 0; id < static_cast<int32_t>(tr.tokens.size()); ++id) vocab[byte_level(id)] = id;
  nlohmann::json merges = nlohmann::json::array();
  for (const auto& [a, b] : tr.merges) merges.push_back({byte_level(a), byte_level(b)});

  nlohmann::json added = nlohmann::json::array();
  for (int32_t id = 0; id < kFirstByteId; ++id) {
    added.push_back({{"id", id},
                     {"content", kSpecialTokens[id]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  const std::string bos = kSpecialTokens[1];
  nlohmann::json byte_level_options = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  nlohmann::json post = {
      {"type", "TemplateProcessing"},
      {"single", {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair",
       {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
      {"special_tokens", {{bos, {{"id", bos}, {"ids", {1}}, {"tokens", {bos}}}}}},
  };
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", byte_level_options},
      {"post_processor", post},
      {"decoder", byte_level_options},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", kSpecialTokens[0]},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", merges}}},
  };
}

nlohmann::json BuiltinTokenizerConfigJson() {
  return {{"bos_token", kSpecialTokens[1]},
          {"eos_token", kSpecialTokens[2]},
          {"tokenizer_class", "PreTrainedTokenizerFast"}};
}

absl::StatusOr<std::shared_ptr<const Tokenizer>> BuiltinTokenizer(int32_t vocab_size) {
  if (vocab_size < kBuiltinMinVocabSize) {
    return absl::InvalidArgumentError(absl::StrCat("the builtin tokenizer needs vocab_size >= ",
                                                   kBuiltinMinVocabSize, ", got ", vocab_size));
  }
  return Tokenizer::FromJson(BuiltinTokenizerJson(vocab_size), BuiltinTokenizerConfigJson(), nlohmann::json());
}

}  // namespace stepserve::text
