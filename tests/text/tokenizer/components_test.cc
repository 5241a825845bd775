// Unit tests of the tokenizer's components on small hand-written tokenizer.json documents.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "text/tokenizer/normalizers.h"
#include "text/tokenizer/pre_tokenizers.h"
#include "text/tokenizer/tokenizer.h"
#include "text/tokenizer/unicode.h"

namespace stepserve::text {
namespace {

using nlohmann::json;

std::vector<std::string> PreTokenize(const json& j, const std::string& text) {
  auto chain = PreTokenizerFromJson(j, "pre_tokenizer");
  EXPECT_TRUE(chain.ok()) << chain.status();
  std::vector<std::string> pieces;
  chain->Run(text, true, [&](std::string_view p, bool) { pieces.emplace_back(p); });
  return pieces;
}

json SplitOn(const std::string& s, const std::string& behavior, bool invert = false) {
  return {{"type", "Split"}, {"pattern", {{"String", s}}}, {"behavior", behavior}, {"invert", invert}};
}

using Pieces = std::vector<std::string>;

TEST(SplitTest, EveryBehavior) {
  const std::string text = "the-final--countdown";
  EXPECT_EQ(PreTokenize(SplitOn("-", "Removed"), text), (Pieces{"the", "final", "countdown"}));
  EXPECT_EQ(PreTokenize(SplitOn("-", "Isolated"), text), (Pieces{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(PreTokenize(SplitOn("-", "MergedWithPrevious"), text), (Pieces{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(PreTokenize(SplitOn("-", "MergedWithNext"), text), (Pieces{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(PreTokenize(SplitOn("-", "Contiguous"), text), (Pieces{"the", "-", "final", "--", "countdown"}));
}

TEST(SplitTest, Invert) {
  const std::string text = "the-final--countdown";
  EXPECT_EQ(PreTokenize(SplitOn("-", "Removed", true), text), (Pieces{"-", "-", "-"}));
  EXPECT_EQ(PreTokenize(SplitOn("-", "MergedWithPrevious", true), text),
            (Pieces{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(PreTokenize(SplitOn("-", "Isolated", true), text), (Pieces{"the", "-", "final", "-", "-", "countdown"}));
}

TEST(SplitTest, RegexPatternAndStringPatternIsLiteral) {
  const json re = {{"type", "Split"}, {"pattern", {{"Regex", "\\p{N}{1,3}"}}}, {"behavior", "Isolated"}};
  EXPECT_EQ(PreTokenize(re, "ab12345c"), (Pieces{"ab", "123", "45", "c"}));
  // A String pattern's regex characters are literal.
  EXPECT_EQ(PreTokenize(SplitOn(".*", "Removed"), "a.*b.c"), (Pieces{"a", "b.c"}));
}

TEST(PreTokenizerTest, ByteLevelGpt2Split) {
  const json bl = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  EXPECT_EQ(PreTokenize(bl, "Hello world's  end\n"), (Pieces{"Hello", " world", "'s", " ", " end", "\n"}));
  const json prefixed = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", false}};
  EXPECT_EQ(PreTokenize(prefixed, "Hi there"), (Pieces{" Hi there"}));
  EXPECT_EQ(PreTokenize(prefixed, " Hi"), (Pieces{" Hi"}));
}

TEST(PreTokenizerTest, ByteLevelMustBeLast) {
  const json seq = {{"type", "Sequence"},
                    {"pretokenizers", {{{"type", "ByteLevel"}}, {{"type", "Digits"}}}}};
  auto chain = PreTokenizerFromJson(seq, "pre_tokenizer");
  ASSERT_FALSE(chain.ok());
  EXPECT_NE(chain.status().message().find("pre_tokenizer.pretokenizers[1]"), std::string::npos) << chain.status();
}

TEST(PreTokenizerTest, Digits) {
  EXPECT_EQ(PreTokenize({{"type", "Digits"}, {"individual_digits", true}}, "abc123d"),
            (Pieces{"abc", "1", "2", "3", "d"}));
  EXPECT_EQ(PreTokenize({{"type", "Digits"}, {"individual_digits", false}}, "abc123d4"),
            (Pieces{"abc", "123", "d", "4"}));
}

TEST(PreTokenizerTest, Metaspace) {
  const json ms = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "always"}, {"split", true}};
  EXPECT_EQ(PreTokenize(ms, "Hey  friend"), (Pieces{"\xE2\x96\x81Hey", "\xE2\x96\x81", "\xE2\x96\x81" "friend"}));
}

std::string Normalize(const json& j, std::string s) {
  auto n = NormalizerFromJson(j, "normalizer");
  EXPECT_TRUE(n.ok()) << n.status();
  if (n.ok() && *n != nullptr) (*n)->Normalize(&s);
  return s;
}

TEST(NormalizerTest, UnicodeForms) {
  const std::string decomposed = "e\xCC\x81";  // e + combining acute
  const std::string composed = "\xC3\xA9";     // é
  EXPECT_EQ(Normalize({{"type", "NFC"}}, decomposed), composed);
  EXPECT_EQ(Normalize({{"type", "NFD"}}, composed), decomposed);
  const std::string ligature = "\xEF\xAC\x81";  // ﬁ
  EXPECT_EQ(Normalize({{"type", "NFC"}}, ligature), ligature);
  EXPECT_EQ(Normalize({{"type", "NFKC"}}, ligature + composed), "fi" + composed);
  EXPECT_EQ(Normalize({{"type", "NFKD"}}, ligature + composed), "fi" + decomposed);
}

TEST(NormalizerTest, LowercaseReplacePrependSequence) {
  EXPECT_EQ(Normalize({{"type", "Lowercase"}}, "AbC \xC3\x80 \xC4\xB0"), "abc \xC3\xA0 i\xCC\x87");
  EXPECT_EQ(Normalize({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "_"}}, "a b  c"), "a_b__c");
  EXPECT_EQ(Normalize({{"type", "Replace"}, {"pattern", {{"Regex", "\\s+"}}}, {"content", " "}}, "a \t\nb"), "a b");
  EXPECT_EQ(Normalize({{"type", "Prepend"}, {"prepend", "_"}}, "ab"), "_ab");
  EXPECT_EQ(Normalize({{"type", "Prepend"}, {"prepend", "_"}}, ""), "");
  const json seq = {{"type", "Sequence"},
                    {"normalizers", {{{"type", "Lowercase"}}, {{"type", "Prepend"}, {"prepend", "x"}}}}};
  EXPECT_EQ(Normalize(seq, "AB"), "xab");
}

TEST(Utf8Test, LossyDecodingAsRust) {
  auto lossy = [](const std::string& bytes) {
    std::string out;
    AppendUtf8Lossy(bytes, &out);
    return out;
  };
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(lossy("ab"), "ab");
  EXPECT_EQ(lossy("\xE2\x82" "A"), r + "A");       // a truncated sequence: one U+FFFD
  EXPECT_EQ(lossy("\xF0\x90\x80"), r);              // incomplete at the end
  EXPECT_EQ(lossy("\xE0\x80"), r + r);             // E0 80 can never start a character
  EXPECT_EQ(lossy("\xED\xA0\x80"), r + r + r);     // a surrogate
  EXPECT_EQ(lossy("\xFF" "a\xC3\xA9"), r + "a\xC3\xA9");
  EXPECT_FALSE(IsWellFormedUtf8("\xC0\xAF"));
  EXPECT_TRUE(IsWellFormedUtf8("\xF0\x9F\x98\x80"));
}

// A character-level BPE: letters, space and a few symbols; "a b" -> "ab", "ab c" -> "abc".
json CharTokenizer() {
  json vocab = json::object();
  int id = 0;
  for (const char* s : {"a", "b", "c", "d", " ", "<", ">", "x", "ab", "abc", "\xE2\x96\x81"}) vocab[s] = id++;
  return {{"model",
           {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b", "ab c"}}, {"unk_token", nullptr}}},
          {"added_tokens", json::array()},
          {"decoder", nullptr}};
}

json Added(int id, const std::string& content, bool lstrip, bool rstrip, bool single_word, bool special = true) {
  return {{"id", id},         {"content", content}, {"lstrip", lstrip}, {"rstrip", rstrip},
          {"single_word", single_word}, {"normalized", false}, {"special", special}};
}

std::vector<std::string> Tokens(const Tokenizer& t, const std::string& text) {
  auto ids = t.Encode(text, false);
  EXPECT_TRUE(ids.ok()) << ids.status();
  std::vector<std::string> tokens;
  for (int32_t id : *ids) tokens.push_back(t.IdToToken(id).value_or("?"));
  return tokens;
}

TEST(BpeTest, MergesByRank) {
  auto t = Tokenizer::FromJson(CharTokenizer(), nullptr, nullptr);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(Tokens(**t, "abcab d"), (Pieces{"abc", "ab", " ", "d"}));
  // Merges given as pairs work the same.
  json j = CharTokenizer();
  j["model"]["merges"] = json::array({json::array({"a", "b"}), json::array({"ab", "c"})});
  auto t2 = Tokenizer::FromJson(j, nullptr, nullptr);
  ASSERT_TRUE(t2.ok()) << t2.status();
  EXPECT_EQ(Tokens(**t2, "abcab d"), (Pieces{"abc", "ab", " ", "d"}));
}

TEST(BpeTest, ByteFallbackAndDecoders) {
  json j = CharTokenizer();
  int id = 100;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    j["model"]["vocab"][name] = id++;
  }
  j["model"]["byte_fallback"] = true;
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders",
                   {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
                    {{"type", "ByteFallback"}},
                    {{"type", "Fuse"}},
                    {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  auto t = Tokenizer::FromJson(j, nullptr, nullptr);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(Tokens(**t, "a\xC3\xA9"), (Pieces{"a", "<0xC3>", "<0xA9>"}));
  auto ids = (*t)->Encode("\xE2\x96\x81" "ab\xC3\xA9\xE2\x96\x81" "d", false);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ((*t)->Decode(*ids, false), "ab\xC3\xA9 d");  // leading space stripped, bytes fused
  // A lone continuation byte token: one U+FFFD per byte of an invalid run.
  const int32_t c3 = *(*t)->TokenToId("<0xC3>");
  const int32_t a = *(*t)->TokenToId("a");
  EXPECT_EQ((*t)->Decode({a, c3, c3, a}, false), "a\xEF\xBF\xBD\xEF\xBF\xBD" "a");
}

TEST(BpeTest, UnknownCharactersWithAndWithoutUnkToken) {
  json j = CharTokenizer();
  auto dropped = Tokenizer::FromJson(j, nullptr, nullptr);
  ASSERT_TRUE(dropped.ok());
  // Without unk_token the crate drops unknown characters; what is left still merges.
  EXPECT_EQ(Tokens(**dropped, "azzb"), (Pieces{"ab"}));
  j["model"]["vocab"]["<unk>"] = 50;
  j["model"]["unk_token"] = "<unk>";
  auto unk = Tokenizer::FromJson(j, nullptr, nullptr);
  ASSERT_TRUE(unk.ok());
  EXPECT_EQ(Tokens(**unk, "azzb"), (Pieces{"a", "<unk>", "<unk>", "b"}));
  j["model"]["fuse_unk"] = true;
  auto fused = Tokenizer::FromJson(j, nullptr, nullptr);
  ASSERT_TRUE(fused.ok());
  EXPECT_EQ(Tokens(**fused, "azzb"), (Pieces{"a", "<unk>", "b"}));
}

TEST(AddedTokensTest, LstripRstripSingleWord) {
  json j = CharTokenizer();
  j["added_tokens"] = {Added(20, "<x>", true, false, false), Added(21, "<y>", false, true, false),
                       Added(22, "dd", false, false, true, false)};
  auto t = Tokenizer::FromJson(j, nullptr, nullptr);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(Tokens(**t, "a  <x> b"), (Pieces{"a", "<x>", " ", "b"}));  // lstrip takes the spaces before
  EXPECT_EQ(Tokens(**t, "a <y>  b"), (Pieces{"a", " ", "<y>", "b"}));  // rstrip the spaces after
  EXPECT_EQ(Tokens(**t, "a dd b"), (Pieces{"a", " ", "dd", " ", "b"}));
  EXPECT_EQ(Tokens(**t, "add b"), (Pieces{"a", "d", "d", " ", "b"}));  // inside a word: not the token
  EXPECT_TRUE((*t)->IsSpecial(20));
  EXPECT_FALSE((*t)->IsSpecial(22));
  EXPECT_FALSE((*t)->IsSpecial(0));
  EXPECT_EQ((*t)->vocab_size(), 23);
  auto ids = (*t)->Encode("a<x>dd", false);
  ASSERT_TRUE(ids.ok());
  // No decoder: the crate joins the tokens with spaces; skip_special_tokens drops <x> only.
  EXPECT_EQ((*t)->Decode(*ids, false), "a <x> dd");
  EXPECT_EQ((*t)->Decode(*ids, true), "a dd");
}

TEST(AddedTokensTest, LongestMatchFirst) {
  json j = CharTokenizer();
  j["added_tokens"] = {Added(20, "<x", false, false, false), Added(21, "<x>", false, false, false)};
  auto t = Tokenizer::FromJson(j, nullptr, nullptr);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(Tokens(**t, "a<x>b<xb"), (Pieces{"a", "<x>", "b", "<x", "b"}));
}

TEST(TokenizerTest, InvalidUtf8IsInvalidArgument) {
  auto t = Tokenizer::FromJson(CharTokenizer(), nullptr, nullptr);
  ASSERT_TRUE(t.ok());
  auto ids = (*t)->Encode("ab\xFF", false);
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*t)->Encode("a\xE2\x82", false).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TokenizerTest, OutOfRangeIdsAreSkippedInDecode) {
  auto t = Tokenizer::FromJson(CharTokenizer(), nullptr, nullptr);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)->Decode({0, 9999, -5, 1}, false), "a b");
}

void ExpectUnsupported(const json& tj, const std::string& path, const std::string& name) {
  auto t = Tokenizer::FromJson(tj, nullptr, nullptr);
  ASSERT_FALSE(t.ok()) << path;
  EXPECT_TRUE(t.status().code() == absl::StatusCode::kUnimplemented ||
              t.status().code() == absl::StatusCode::kInvalidArgument);
  const std::string message(t.status().message());
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find(name), std::string::npos) << message;
}

TEST(TokenizerTest, UnsupportedComponentsAreErrorsNamingThem) {
  json j = CharTokenizer();
  j["model"]["type"] = "WordPiece";
  ExpectUnsupported(j, "model.type", "WordPiece");
  j = CharTokenizer();
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "Precompiled"}}}}};
  ExpectUnsupported(j, "normalizer.normalizers[1].type", "Precompiled");
  j = CharTokenizer();
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Digits"}}, {{"type", "BertPreTokenizer"}}}}};
  ExpectUnsupported(j, "pre_tokenizer.pretokenizers[1].type", "BertPreTokenizer");
  j = CharTokenizer();
  j["decoder"] = {{"type", "CTC"}};
  ExpectUnsupported(j, "decoder.type", "CTC");
  j = CharTokenizer();
  j["post_processor"] = {{"type", "Unknown"}};
  ExpectUnsupported(j, "post_processor.type", "Unknown");
  j = CharTokenizer();
  j["model"]["dropout"] = 0.1;
  ExpectUnsupported(j, "model.dropout", "dropout");
  j = CharTokenizer();
  j["pre_tokenizer"] = SplitOn("-", "Sideways");
  ExpectUnsupported(j, "pre_tokenizer.behavior", "Sideways");
}

TEST(TokenizerTest, SpecialTokensFromConfigAndGenerationConfig) {
  json j = CharTokenizer();
  j["added_tokens"] = {Added(30, "<s>", false, false, false), Added(31, "</s>", false, false, false)};
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {30}}, {"tokens", {"<s>"}}}}}}};
  const json config = {{"bos_token", {{"__type", "AddedToken"}, {"content", "<s>"}}}, {"eos_token", "</s>"}};
  auto t = Tokenizer::FromJson(j, config, json{{"eos_token_id", {31, 7, 31}}});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->special_tokens().bos_id, 30);
  EXPECT_EQ((*t)->special_tokens().eos_id, 31);
  EXPECT_EQ((*t)->special_tokens().eos_ids, (std::vector<int32_t>{31, 7}));
  EXPECT_EQ((*t)->Encode("ab", true).value(), (std::vector<int32_t>{30, 8}));
  EXPECT_EQ((*t)->Encode("ab", false).value(), (std::vector<int32_t>{8}));

  // add_bos_token/add_eos_token (LlamaTokenizerFast): the template is replaced, BOS not added twice.
  json llama = config;
  llama["tokenizer_class"] = "LlamaTokenizerFast";
  llama["add_bos_token"] = true;
  llama["add_eos_token"] = true;
  auto l = Tokenizer::FromJson(j, llama, nullptr);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ((*l)->Encode("ab", true).value(), (std::vector<int32_t>{30, 8, 31}));
  llama["add_bos_token"] = false;
  llama["add_eos_token"] = false;
  auto none = Tokenizer::FromJson(j, llama, nullptr);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ((*none)->Encode("ab", true).value(), (std::vector<int32_t>{8}));
  EXPECT_EQ((*none)->tokenizer_config()["tokenizer_class"], "LlamaTokenizerFast");
}

}  // namespace
}  // namespace stepserve::text
