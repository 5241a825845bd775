// stepbench --prompts_file: JSONL prompts, ShareGPT conversations (JSONL or one JSON array), and errors
// that name the line or entry.
#include "client/prompt_file.h"

#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

namespace stepserve::client {
namespace {

std::vector<PromptEntry> ParseOk(const std::string& text, ShareGptTurns turns = ShareGptTurns::kFirst) {
  std::vector<PromptEntry> entries;
  std::string error;
  EXPECT_TRUE(ParsePrompts(text, "p.jsonl", turns, &entries, &error)) << error;
  return entries;
}

std::string ParseError(const std::string& text, ShareGptTurns turns = ShareGptTurns::kFirst) {
  std::vector<PromptEntry> entries;
  std::string error;
  EXPECT_FALSE(ParsePrompts(text, "p.jsonl", turns, &entries, &error)) << text;
  return error;
}

TEST(PromptFileTest, JsonLinesPrompts) {
  const auto entries = ParseOk(
      "{\"prompt\": \"Tell me a story\"}\n"
      "\n"
      "   \r\n"
      "{\"prompt\": \"caf\\u00e9 \\u4f60\\u597d\", \"max_new_tokens\": 7, \"other\": 1}\r\n");
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_FALSE(entries[0].is_chat());
  EXPECT_EQ(entries[0].prompt, "Tell me a story");
  EXPECT_EQ(entries[0].max_new_tokens, 0);
  EXPECT_EQ(entries[1].prompt, "caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd");
  EXPECT_EQ(entries[1].max_new_tokens, 7);
}

const char* kShareGpt =
    "{\"id\": \"a\", \"conversations\": [{\"from\": \"system\", \"value\": \"Be brief.\"},"
    " {\"from\": \"human\", \"value\": \"Hi\"}, {\"from\": \"gpt\", \"value\": \"Hello!\"},"
    " {\"from\": \"human\", \"value\": \"Weather?\"}, {\"from\": \"gpt\", \"value\": \"Sunny.\"}]}\n";

TEST(PromptFileTest, ShareGptFirstHumanTurn) {
  const auto entries = ParseOk(kShareGpt, ShareGptTurns::kFirst);
  ASSERT_EQ(entries.size(), 1u);
  ASSERT_TRUE(entries[0].is_chat());
  ASSERT_EQ(entries[0].messages.size(), 1u);
  EXPECT_EQ(entries[0].messages[0].role, "user");
  EXPECT_EQ(entries[0].messages[0].content, "Hi");
}

TEST(PromptFileTest, ShareGptAllTurnsButTheLastAnswer) {
  const auto entries = ParseOk(kShareGpt, ShareGptTurns::kAll);
  ASSERT_EQ(entries.size(), 1u);
  const auto& m = entries[0].messages;
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[0].role, "system");
  EXPECT_EQ(m[1].role, "user");
  EXPECT_EQ(m[2].role, "assistant");
  EXPECT_EQ(m[2].content, "Hello!");
  EXPECT_EQ(m[3].role, "user");
  EXPECT_EQ(m[3].content, "Weather?");
  // A conversation that ends with the user keeps every turn.
  const auto open = ParseOk(
      "{\"conversations\": [{\"from\": \"human\", \"value\": \"a\"}, {\"from\": \"gpt\", \"value\": \"b\"},"
      " {\"from\": \"user\", \"value\": \"c\"}]}",
      ShareGptTurns::kAll);
  ASSERT_EQ(open[0].messages.size(), 3u);
  EXPECT_EQ(open[0].messages[2].content, "c");
}

TEST(PromptFileTest, ShareGptJsonArray) {
  const std::string text =
      "[\n {\"conversations\": [{\"from\": \"human\", \"value\": \"one\"}]},\n"
      " {\"conversations\": [{\"from\": \"human\", \"value\": \"two\"}, {\"from\": \"gpt\", \"value\": \"x\"}],"
      " \"max_new_tokens\": 3},\n {\"prompt\": \"three\"}\n]\n";
  const auto entries = ParseOk(text);
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].messages[0].content, "one");
  EXPECT_EQ(entries[1].messages[0].content, "two");
  EXPECT_EQ(entries[1].max_new_tokens, 3);
  EXPECT_EQ(entries[2].prompt, "three");
  EXPECT_EQ(ParseError("[{\"prompt\": \"a\"}, {\"prompt\": 3}]"),
            "p.jsonl: entry 1: \"prompt\" must be a non-empty string");
  EXPECT_NE(ParseError("[{\"prompt\": \"a\"},").find("not one valid JSON array"), std::string::npos);
}

TEST(PromptFileTest, ErrorsNameTheLine) {
  const std::string good = "{\"prompt\": \"ok\"}\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {good + "\n{\"prompt\": \"x\"\n", "p.jsonl:3: not valid JSON"},
      {good + "[1, 2]\n", "p.jsonl:2: not a JSON object"},
      {good + "{\"text\": \"x\"}\n", "p.jsonl:2: an entry needs exactly one of \"prompt\" and \"conversations\""},
      {good + "{\"prompt\": \"x\", \"conversations\": []}\n",
       "p.jsonl:2: an entry needs exactly one of \"prompt\" and \"conversations\""},
      {good + "{\"prompt\": \"\"}\n", "p.jsonl:2: \"prompt\" must be a non-empty string"},
      {good + "{\"prompt\": \"x\", \"max_new_tokens\": 0}\n", "p.jsonl:2: \"max_new_tokens\" must be an integer >= 1"},
      {good + "{\"prompt\": \"x\", \"max_new_tokens\": \"5\"}\n",
       "p.jsonl:2: \"max_new_tokens\" must be an integer >= 1"},
      {good + "{\"conversations\": []}\n",
       "p.jsonl:2: \"conversations\" must be a non-empty array of {\"from\", \"value\"} turns"},
      {good + "{\"conversations\": [{\"from\": \"human\"}]}\n",
       "p.jsonl:2: conversations[0]: a turn must be {\"from\": string, \"value\": string}"},
      {good + "{\"conversations\": [{\"from\": \"human\", \"value\": \"a\"}, {\"from\": \"robot\", \"value\": \"b\"}]}\n",
       "p.jsonl:2: conversations[1]: unknown \"from\": \"robot\" (human, gpt or system)"},
      {good + "{\"conversations\": [{\"from\": \"gpt\", \"value\": \"a\"}]}\n",
       "p.jsonl:2: the conversation has no human turn"},
  };
  for (const auto& [text, expected] : cases) EXPECT_EQ(ParseError(text), expected) << text;
  EXPECT_EQ(ParseError("\n  \n"), "p.jsonl: no prompts");
  // With all turns, a conversation of only assistant turns leaves nothing to answer.
  EXPECT_EQ(ParseError("{\"conversations\": [{\"from\": \"system\", \"value\": \"s\"}, {\"from\": \"gpt\", \"value\": \"a\"}]}",
                       ShareGptTurns::kAll),
            "p.jsonl:1: the conversation must end with a human turn once its last assistant turns are dropped");
}

TEST(PromptFileTest, LoadsAFileAndNamesAMissingOne) {
  const std::string path = "/tmp/prompt_file_test_" + std::to_string(::getpid()) + ".jsonl";
  {
    std::ofstream out(path);
    out << "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n{\"prompt\": 5}\n";
  }
  std::vector<PromptEntry> entries;
  std::string error;
  EXPECT_FALSE(LoadPromptFile(path, ShareGptTurns::kFirst, &entries, &error));
  EXPECT_EQ(error, path + ":3: \"prompt\" must be a non-empty string");
  {
    std::ofstream out(path);
    out << "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n";
  }
  ASSERT_TRUE(LoadPromptFile(path, ShareGptTurns::kFirst, &entries, &error)) << error;
  EXPECT_EQ(entries.size(), 2u);
  ::unlink(path.c_str());
  EXPECT_FALSE(LoadPromptFile(path, ShareGptTurns::kFirst, &entries, &error));
  EXPECT_EQ(error, "cannot read prompts file " + path);
}

TEST(PromptFileTest, WorkloadCyclesAndFillsOutputLengths) {
  std::vector<PromptEntry> entries(3);
  entries[0].prompt = "a";
  entries[1].prompt = "b";
  entries[1].max_new_tokens = 5;
  entries[2].messages = {{"user", "c"}};
  const auto w = PromptWorkload(entries, 7, LenRange{10, 20}, 3);
  ASSERT_EQ(w.size(), 7u);
  for (size_t i = 0; i < w.size(); ++i) {
    EXPECT_EQ(w[i].prompt, entries[i % 3].prompt);
    EXPECT_EQ(w[i].is_chat(), i % 3 == 2);
    if (i % 3 == 1) {
      EXPECT_EQ(w[i].max_new_tokens, 5);
    } else {
      EXPECT_GE(w[i].max_new_tokens, 10);
      EXPECT_LE(w[i].max_new_tokens, 20);
    }
  }
  const auto again = PromptWorkload(entries, 7, LenRange{10, 20}, 3);
  for (size_t i = 0; i < w.size(); ++i) EXPECT_EQ(again[i].max_new_tokens, w[i].max_new_tokens);
  EXPECT_EQ(PromptWorkload(entries, 2, LenRange{4, 4}, 1)[0].max_new_tokens, 4);

  const PromptEntry chat = AsChat(entries[1]);
  ASSERT_TRUE(chat.is_chat());
  EXPECT_EQ(chat.messages[0].role, "user");
  EXPECT_EQ(chat.messages[0].content, "b");
  EXPECT_EQ(chat.max_new_tokens, 5);
}

}  // namespace
}  // namespace stepserve::client
