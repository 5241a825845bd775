#include "client/workload.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>

#include <gtest/gtest.h>

#include "client/token_list.h"

namespace stepserve::client {
namespace {

TEST(WorkloadTest, ParsesLengthsAndRanges) {
  LenRange r;
  std::string err;
  ASSERT_TRUE(ParseLenRange("128", &r, &err)) << err;
  EXPECT_EQ(r.min, 128);
  EXPECT_EQ(r.max, 128);
  ASSERT_TRUE(ParseLenRange("4:16", &r, &err)) << err;
  EXPECT_EQ(r.min, 4);
  EXPECT_EQ(r.max, 16);
  for (const char* bad : {"", "0", "-3", "abc", "4:", ":4", "16:4", "1.5", "4:16:32", "3:x"}) {
    EXPECT_FALSE(ParseLenRange(bad, &r, &err)) << bad;
  }
}

TEST(WorkloadTest, RandomPromptsAreValidReproducibleAndCoverTheRange) {
  const LenRange prompt{3, 9}, output{1, 4};
  const auto a = RandomWorkload(500, prompt, output, 50, 7);
  const auto b = RandomWorkload(500, prompt, output, 50, 7);
  const auto c = RandomWorkload(500, prompt, output, 50, 8);
  ASSERT_EQ(a.size(), 500u);
  std::set<size_t> lens;
  std::set<int32_t> outs;
  std::set<int32_t> ids;
  bool differs = false;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].prompt, b[i].prompt);
    EXPECT_EQ(a[i].max_new_tokens, b[i].max_new_tokens);
    differs = differs || a[i].prompt != c[i].prompt;
    lens.insert(a[i].prompt.size());
    outs.insert(a[i].max_new_tokens);
    for (int32_t t : a[i].prompt) {
      ASSERT_GE(t, 0);
      ASSERT_LT(t, 50);
      ids.insert(t);
    }
  }
  EXPECT_TRUE(differs) << "another seed should give other prompts";
  EXPECT_EQ(lens, (std::set<size_t>{3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(outs, (std::set<int32_t>{1, 2, 3, 4}));
  EXPECT_EQ(ids.size(), 50u);  // 3000 draws over 50 ids reach every one (and the last: vocab_size - 1)
}

TEST(WorkloadTest, SharedPrefixesAreSharedAndSuffixesDistinct) {
  ConversationOptions shape;
  shape.shared_prefix_len = 20;
  shape.num_prefixes = 3;
  const LenRange prompt{8, 8}, output{2, 5};
  const auto a = ConversationWorkload(12, shape, prompt, output, 300, 5);
  const auto b = ConversationWorkload(12, shape, prompt, output, 300, 5);
  const auto plain = RandomWorkload(12, prompt, output, 300, 5);
  ASSERT_EQ(a.size(), 12u);
  std::set<std::vector<int32_t>> prefixes, suffixes;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].turns.size(), 1u);
    const auto& p = a[i].turns[0].prompt;
    ASSERT_EQ(p.size(), 28u) << "shared_prefix_len + prompt_len";
    EXPECT_EQ(p, b[i].turns[0].prompt) << "the seed fixes the workload";
    const std::vector<int32_t> prefix(p.begin(), p.begin() + 20), suffix(p.begin() + 20, p.end());
    prefixes.insert(prefix);
    suffixes.insert(suffix);
    // Request i uses prefix i % 3.
    const auto& same = a[i % 3].turns[0].prompt;
    EXPECT_TRUE(std::equal(prefix.begin(), prefix.end(), same.begin())) << i;
    // The suffix is the plain random workload's prompt, and the output length too.
    EXPECT_EQ(suffix, plain[i].prompt) << i;
    EXPECT_EQ(a[i].turns[0].max_new_tokens, plain[i].max_new_tokens);
    for (int32_t t : p) {
      ASSERT_GE(t, 0);
      ASSERT_LT(t, 300);
    }
  }
  EXPECT_EQ(prefixes.size(), 3u) << "3 distinct prefixes";
  EXPECT_EQ(suffixes.size(), 12u) << "every request has its own suffix";
  // Another seed: other prefixes.
  const auto c = ConversationWorkload(12, shape, prompt, output, 300, 6);
  EXPECT_NE(std::vector<int32_t>(c[0].turns[0].prompt.begin(), c[0].turns[0].prompt.begin() + 20),
            std::vector<int32_t>(a[0].turns[0].prompt.begin(), a[0].turns[0].prompt.begin() + 20));
  // One prefix: every request shares it.
  shape.num_prefixes = 1;
  const auto one = ConversationWorkload(5, shape, prompt, output, 300, 5);
  for (const auto& conv : one) {
    EXPECT_TRUE(std::equal(conv.turns[0].prompt.begin(), conv.turns[0].prompt.begin() + 20,
                           one[0].turns[0].prompt.begin()));
  }
}

TEST(WorkloadTest, WithoutPrefixOrTurnsConversationsAreTheRandomWorkload) {
  const LenRange prompt{3, 9}, output{1, 4};
  const auto conv = ConversationWorkload(50, ConversationOptions{}, prompt, output, 50, 7);
  const auto plain = RandomWorkload(50, prompt, output, 50, 7);
  ASSERT_EQ(conv.size(), plain.size());
  for (size_t i = 0; i < conv.size(); ++i) {
    ASSERT_EQ(conv[i].turns.size(), 1u);
    EXPECT_EQ(conv[i].turns[0].prompt, plain[i].prompt);
    EXPECT_EQ(conv[i].turns[0].max_new_tokens, plain[i].max_new_tokens);
  }
  const auto single = SingleTurn(plain);
  ASSERT_EQ(single.size(), plain.size());
  EXPECT_EQ(single[3].turns[0].prompt, plain[3].prompt);
}

TEST(WorkloadTest, MultiTurnConversationsExtendThePreviousPromptAndAnswer) {
  ConversationOptions shape;
  shape.turns = 3;
  shape.shared_prefix_len = 10;
  shape.num_prefixes = 2;
  const LenRange prompt{6, 6}, output{4, 4};
  const auto convs = ConversationWorkload(4, shape, prompt, output, 300, 9);
  const auto messages = RandomWorkload(12, prompt, output, 300, 9);
  ASSERT_EQ(convs.size(), 4u);
  for (size_t i = 0; i < convs.size(); ++i) {
    ASSERT_EQ(convs[i].turns.size(), 3u);
    // The shared prefix (of conversation i % 2) starts the first turn only; later turns hold just the new
    // user message, messages taken conversation-major.
    EXPECT_EQ(convs[i].turns[0].prompt.size(), 16u);
    EXPECT_TRUE(std::equal(convs[i].turns[0].prompt.begin(), convs[i].turns[0].prompt.begin() + 10,
                           convs[i % 2].turns[0].prompt.begin()));
    for (size_t t = 1; t < 3; ++t) EXPECT_EQ(convs[i].turns[t].prompt, messages[i * 3 + t].prompt);
  }
  EXPECT_NE(convs[0].turns[1].prompt, convs[0].turns[2].prompt);

  // The prompts a conversation sends: each extends the previous prompt and its answer.
  std::vector<int32_t> prompt1 = convs[0].turns[0].prompt;
  const std::vector<int32_t> answer1 = {7, 8, 9, 10};
  const std::vector<int32_t> prompt2 = NextTurnPrompt(prompt1, answer1, convs[0].turns[1].prompt);
  ASSERT_EQ(prompt2.size(), 16u + 4u + 6u);
  EXPECT_TRUE(std::equal(prompt1.begin(), prompt1.end(), prompt2.begin()));
  EXPECT_TRUE(std::equal(answer1.begin(), answer1.end(), prompt2.begin() + 16));
  EXPECT_TRUE(std::equal(convs[0].turns[1].prompt.begin(), convs[0].turns[1].prompt.end(), prompt2.begin() + 20));

  // The longest a conversation gets: 10 + 3 x (6 + 4).
  EXPECT_EQ(MaxConversationTokens(shape, prompt, output), 40);
  EXPECT_EQ(MaxConversationTokens(ConversationOptions{}, LenRange{3, 9}, LenRange{1, 4}), 13);
}

std::string WriteTemp(const std::string& text) {
  char path[] = "/tmp/stepbench_dataset_XXXXXX";
  const int fd = ::mkstemp(path);
  EXPECT_GE(fd, 0);
  ::close(fd);
  std::ofstream(path) << text;
  return path;
}

TEST(WorkloadTest, LoadsDatasetAndCycles) {
  const std::string path = WriteTemp(
      "{\"prompt_token_ids\": [1, 2, 3], \"max_new_tokens\": 5}\n"
      "\n"
      "{\"prompt_token_ids\": [9], \"note\": \"no max_new_tokens\"}\n");
  std::vector<RequestSpec> entries;
  std::string err;
  ASSERT_TRUE(LoadDataset(path, 10, &entries, &err)) << err;
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].prompt, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(entries[0].max_new_tokens, 5);
  EXPECT_EQ(entries[1].max_new_tokens, 0);
  const auto specs = DatasetWorkload(entries, 5, LenRange{7, 7}, 1);
  ASSERT_EQ(specs.size(), 5u);
  EXPECT_EQ(specs[2].prompt, entries[0].prompt);
  EXPECT_EQ(specs[3].prompt, entries[1].prompt);
  EXPECT_EQ(specs[0].max_new_tokens, 5);
  EXPECT_EQ(specs[1].max_new_tokens, 7);
  ::unlink(path.c_str());
}

TEST(WorkloadTest, DatasetErrorsNameTheLine) {
  const std::pair<const char*, const char*> cases[] = {
      {"{\"prompt_token_ids\": [1]}\nnot json\n", ":2:"},
      {"{\"prompt_token_ids\": []}\n", ":1:"},
      {"{\"tokens\": [1]}\n", ":1:"},
      {"{\"prompt_token_ids\": [1, 10]}\n", "10"},  // vocab_size 10
      {"{\"prompt_token_ids\": [-1]}\n", "-1"},
      {"{\"prompt_token_ids\": [1], \"max_new_tokens\": 0}\n", "max_new_tokens"},
      {"\n\n", "no entries"},
  };
  for (const auto& [text, needle] : cases) {
    const std::string path = WriteTemp(text);
    std::vector<RequestSpec> entries;
    std::string err;
    EXPECT_FALSE(LoadDataset(path, 10, &entries, &err)) << text;
    EXPECT_NE(err.find(needle), std::string::npos) << err;
    ::unlink(path.c_str());
  }
  std::vector<RequestSpec> entries;
  std::string err;
  EXPECT_FALSE(LoadDataset("/nonexistent/data.jsonl", 10, &entries, &err));
}

TEST(TokenListTest, ParsesAndJoins) {
  std::vector<int32_t> tokens;
  std::string err;
  ASSERT_TRUE(ParseTokenList("1, 2,3", &tokens, &err)) << err;
  EXPECT_EQ(tokens, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(JoinTokens(tokens), "1,2,3");
  ASSERT_TRUE(ParseTokenList("", &tokens, &err));
  EXPECT_TRUE(tokens.empty());
  for (const char* bad : {"1,,2", "a", "-1", "1,", "99999999999"}) {
    EXPECT_FALSE(ParseTokenList(bad, &tokens, &err)) << bad;
  }
}

}  // namespace
}  // namespace stepserve::client
