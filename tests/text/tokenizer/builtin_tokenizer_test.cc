// The builtin tokenizer of the model presets: deterministic, the documented id layout, every preset's
// vocabulary size, lossless round trips; and the shared tokenizer used from several threads at once.
#include "text/tokenizer/builtin_tokenizer.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "test_corpus.h"

namespace stepserve::text {
namespace {

TEST(BuiltinTokenizerTest, DeterministicWithTheDocumentedIds) {
  EXPECT_EQ(BuiltinTokenizerJson(300), BuiltinTokenizerJson(300));
  auto t = BuiltinTokenizer(300);
  ASSERT_TRUE(t.ok()) << t.status();
  const char* specials[] = {"<unk>",  "<|begin_of_sentence|>", "<|end_of_sentence|>", "<|im_start|>", "<|im_end|>",
                            "<think>", "</think>",             "<tool_call>",         "</tool_call>"};
  for (int32_t id = 0; id < 9; ++id) {
    EXPECT_EQ((*t)->TokenToId(specials[id]), id);
    EXPECT_EQ((*t)->IsSpecial(id), true);
  }
  EXPECT_EQ((*t)->special_tokens().bos_id, 1);
  EXPECT_EQ((*t)->special_tokens().eos_id, 2);
  EXPECT_EQ((*t)->TokenToId("a"), 9 + 'a');
  EXPECT_EQ((*t)->TokenToId("\xC4\xA0"), 9 + ' ');  // byte-level symbol of the space
  EXPECT_FALSE((*t)->IsSpecial(9 + 'a'));
}

TEST(BuiltinTokenizerTest, PresetVocabularySizes) {
  for (int32_t size : {265, 300, 32000, 128896}) {
    auto t = BuiltinTokenizer(size);
    ASSERT_TRUE(t.ok()) << size << ": " << t.status();
    EXPECT_EQ((*t)->vocab_size(), size);
  }
  EXPECT_FALSE(BuiltinTokenizer(264).ok());
}

TEST(BuiltinTokenizerTest, RoundTripAndSpecialTokens) {
  auto small = BuiltinTokenizer(32000);
  ASSERT_TRUE(small.ok()) << small.status();
  const std::string text = testing::MixedText(20000, 5);
  auto ids = (*small)->Encode(text, false);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ((*small)->Decode(*ids, false), text);
  EXPECT_LT(ids->size(), text.size() * 3 / 4) << "the merges should compress (bytes alone: one token each)";
  for (int32_t id : *ids) EXPECT_LT(id, 32000);

  auto with_bos = (*small)->Encode("Hello<|im_end|>", true);
  ASSERT_TRUE(with_bos.ok());
  EXPECT_EQ(with_bos->front(), 1);
  EXPECT_EQ(with_bos->back(), 4);
  EXPECT_EQ((*small)->Decode(*with_bos, true), "Hello");
  EXPECT_EQ((*small)->Decode(*with_bos, false), "<|begin_of_sentence|>Hello<|im_end|>");

  auto tiny = BuiltinTokenizer(300);
  ASSERT_TRUE(tiny.ok());
  auto tiny_ids = (*tiny)->Encode(text, false);
  ASSERT_TRUE(tiny_ids.ok());
  EXPECT_EQ((*tiny)->Decode(*tiny_ids, false), text);
  for (int32_t id : *tiny_ids) EXPECT_LT(id, 300);
}

TEST(BuiltinTokenizerTest, SharedBetweenThreads) {
  auto t = BuiltinTokenizer(32000);
  ASSERT_TRUE(t.ok());
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> want;
  for (uint32_t i = 0; i < 4; ++i) {
    texts.push_back(testing::MixedText(30000, 100 + i));
    want.push_back((*t)->Encode(texts.back(), false).value());
  }
  auto fresh = BuiltinTokenizer(32000);  // an empty cache, filled concurrently
  ASSERT_TRUE(fresh.ok());
  std::vector<std::vector<int32_t>> got(8);
  std::vector<std::thread> threads;
  for (size_t k = 0; k < got.size(); ++k) {
    threads.emplace_back([&, k] {
      for (int rep = 0; rep < 3; ++rep) got[k] = (*fresh)->Encode(texts[k % texts.size()], false).value();
    });
  }
  for (auto& th : threads) th.join();
  for (size_t k = 0; k < got.size(); ++k) EXPECT_EQ(got[k], want[k % want.size()]) << k;
}

}  // namespace
}  // namespace stepserve::text
