#include "client/workload.h"

#include <unistd.h>

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
