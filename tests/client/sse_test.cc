// Server-sent events and the chunks of a streamed OpenAI answer: every way the bytes can be split gives
// the same events, and the chunk fields stepbench times and counts are read as the API defines them.
#include "client/sse.h"

#include <gtest/gtest.h>

namespace stepserve::client {
namespace {

std::vector<SseEvent> FeedWhole(const std::string& bytes) {
  SseParser parser;
  std::vector<SseEvent> events;
  parser.Feed(bytes, &events);
  return events;
}

void ExpectSame(const std::vector<SseEvent>& a, const std::vector<SseEvent>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].data, b[i].data) << what << " event " << i;
    EXPECT_EQ(a[i].event, b[i].event) << what << " event " << i;
    EXPECT_EQ(a[i].id, b[i].id) << what << " event " << i;
  }
}

TEST(SseParserTest, ParsesFieldsCommentsAndLineEnds) {
  const std::string stream =
      ": a comment, then an event\n"
      "data: {\"a\":1}\n"
      "\n"
      "event: update\r\n"
      "id: 7\r\n"
      "data:first\r\n"
      "data:  second\r\n"
      "\r\n"
      "data\rdata: x\r\r"          // "data" with no colon is an empty data line; bare CRs end lines
      "retry: 10\n\n"              // no data: not dispatched
      "data: [DONE]\n\n"
      "data: unfinished";          // no blank line yet
  SseParser parser;
  std::vector<SseEvent> events;
  parser.Feed(stream, &events);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].data, "{\"a\":1}");
  EXPECT_EQ(events[0].event, "");
  EXPECT_EQ(events[1].event, "update");
  EXPECT_EQ(events[1].id, "7");
  EXPECT_EQ(events[1].data, "first\n second");  // one space after the colon is dropped, not two
  EXPECT_EQ(events[2].data, "\nx");
  EXPECT_EQ(events[3].data, "[DONE]");
  EXPECT_TRUE(parser.pending());
  parser.Feed("\n\n", &events);
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[4].data, "unfinished");
  EXPECT_FALSE(parser.pending());
}

TEST(SseParserTest, EverySplitGivesTheSameEvents) {
  const std::string stream =
      "data: {\"choices\":[{\"delta\":{\"content\":\"caf\xc3\xa9\"}}]}\r\n\r\n"
      ": keep-alive\n\n"
      "data: line one\ndata: line two\n\n"
      "event: e\rdata: cr only\r\r"
      "data: [DONE]\r\n\r\n";
  const std::vector<SseEvent> whole = FeedWhole(stream);
  ASSERT_EQ(whole.size(), 4u);
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    for (size_t cut2 = cut; cut2 <= stream.size(); cut2 += 7) {
      SseParser parser;
      std::vector<SseEvent> events;
      parser.Feed(stream.substr(0, cut), &events);
      parser.Feed(stream.substr(cut, cut2 - cut), &events);
      parser.Feed(stream.substr(cut2), &events);
      ExpectSame(events, whole, "cuts at " + std::to_string(cut) + ", " + std::to_string(cut2));
    }
  }
  // Byte by byte.
  SseParser parser;
  std::vector<SseEvent> events;
  for (char c : stream) parser.Feed(&c, 1, &events);
  ExpectSame(events, whole, "byte by byte");
}

TEST(StreamChunkTest, ChatDeltas) {
  StreamChunk c;
  std::string err;
  ASSERT_TRUE(ParseStreamChunk(
      R"({"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]})",
      &c, &err))
      << err;
  EXPECT_FALSE(c.has_output()) << "a role-only chunk carries no output";
  EXPECT_FALSE(c.done);
  EXPECT_FALSE(c.has_usage);

  ASSERT_TRUE(ParseStreamChunk(R"({"choices":[{"index":0,"delta":{"content":"Hel"}}]})", &c, &err)) << err;
  EXPECT_EQ(c.content, "Hel");
  EXPECT_TRUE(c.has_output());

  ASSERT_TRUE(ParseStreamChunk(R"({"choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]})", &c, &err));
  EXPECT_EQ(c.reasoning, "hmm");
  EXPECT_EQ(c.content, "");
  EXPECT_TRUE(c.has_output());
  ASSERT_TRUE(ParseStreamChunk(R"({"choices":[{"index":0,"delta":{"reasoning":"alt"}}]})", &c, &err));
  EXPECT_EQ(c.reasoning, "alt");

  ASSERT_TRUE(ParseStreamChunk(
      R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"ci"}}]}}]})",
      &c, &err));
  ASSERT_EQ(c.tool_calls.size(), 1u);
  EXPECT_EQ(c.tool_calls[0].index, 1);
  EXPECT_EQ(c.tool_calls[0].id, "call_1");
  EXPECT_EQ(c.tool_calls[0].name, "get_weather");
  EXPECT_EQ(c.tool_calls[0].arguments, "{\"ci");
  EXPECT_TRUE(c.has_output());

  ASSERT_TRUE(ParseStreamChunk(R"({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]})", &c, &err));
  EXPECT_EQ(c.finish_reason, "tool_calls");
  EXPECT_FALSE(c.has_output());
}

TEST(StreamChunkTest, CompletionsUsageDoneAndErrors) {
  StreamChunk c;
  std::string err;
  ASSERT_TRUE(ParseStreamChunk(R"({"object":"text_completion","choices":[{"index":0,"text":" world","finish_reason":"length"}]})",
                               &c, &err));
  EXPECT_EQ(c.content, " world");
  EXPECT_EQ(c.finish_reason, "length");

  ASSERT_TRUE(ParseStreamChunk(
      R"({"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":8}}})",
      &c, &err));
  EXPECT_TRUE(c.has_usage);
  EXPECT_EQ(c.prompt_tokens, 12);
  EXPECT_EQ(c.completion_tokens, 5);
  EXPECT_EQ(c.cached_tokens, 8);
  EXPECT_FALSE(c.has_output());
  // "usage": null on the ordinary chunks of a stream with include_usage.
  ASSERT_TRUE(ParseStreamChunk(R"({"choices":[{"index":0,"text":"a"}],"usage":null})", &c, &err));
  EXPECT_FALSE(c.has_usage);

  ASSERT_TRUE(ParseStreamChunk("[DONE]", &c, &err));
  EXPECT_TRUE(c.done);

  ASSERT_TRUE(ParseStreamChunk(R"({"error":{"message":"queue full","type":"server_error","code":429}})", &c, &err));
  EXPECT_EQ(c.error, "queue full");
  ASSERT_TRUE(ParseStreamChunk(R"({"error":"boom"})", &c, &err));
  EXPECT_EQ(c.error, "\"boom\"");

  EXPECT_FALSE(ParseStreamChunk("{not json", &c, &err));
  EXPECT_NE(err.find("not a JSON object"), std::string::npos) << err;
  EXPECT_FALSE(ParseStreamChunk("[1,2]", &c, &err));
  EXPECT_FALSE(ParseStreamChunk(R"({"choices":{"0":1}})", &c, &err));
  EXPECT_EQ(err, "\"choices\" is not an array");
}

}  // namespace
}  // namespace stepserve::client
