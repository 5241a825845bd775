// Server-sent events (the WHATWG event-stream format) as the OpenAI-compatible API streams them, and the
// chunks of a streamed /v1/chat/completions or /v1/completions answer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace stepserve::client {

struct SseEvent {
  std::string event;  // the "event:" field; empty for the default ("message")
  std::string data;   // the "data:" lines joined with '\n'
  std::string id;     // the "id:" field
};

// Incremental: feed bytes as they arrive, split anywhere (inside a line, between '\r' and '\n'); each
// complete event (a blank line ends it) comes out once. Lines end with "\r\n", "\n" or "\r"; lines
// starting with ':' are comments; one space after "field:" is dropped; an event without data lines is not
// dispatched (as browsers do).
class SseParser {
 public:
  // Appends the events completed by these bytes to *events.
  void Feed(const char* data, size_t size, std::vector<SseEvent>* events);
  void Feed(const std::string& data, std::vector<SseEvent>* events) { Feed(data.data(), data.size(), events); }
  // Bytes of an unfinished line or event are pending (the stream ended mid-event when true at its end).
  bool pending() const { return !line_.empty() || has_data_ || !current_.event.empty(); }

 private:
  void Line(std::vector<SseEvent>* events);

  std::string line_;
  bool after_cr_ = false;  // the last byte was '\r': a '\n' right after it ends nothing more
  bool has_data_ = false;
  SseEvent current_;
};

struct ToolCallChunk {
  int index = 0;
  std::string id;
  std::string name;
  std::string arguments;
};

// One "data:" payload of a streamed completion.
struct StreamChunk {
  bool done = false;      // "data: [DONE]"
  std::string error;      // {"error": {"message": ...}}: its message (the stream failed)
  std::string content;    // choices[0].delta.content (chat) or choices[0].text (completions)
  std::string reasoning;  // choices[0].delta.reasoning_content (or .reasoning)
  std::vector<ToolCallChunk> tool_calls;  // choices[0].delta.tool_calls
  std::string finish_reason;              // choices[0].finish_reason when not null
  bool has_usage = false;                 // a "usage" object (stream_options.include_usage)
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;  // usage.prompt_tokens_details.cached_tokens

  // The chunk carries generated output (text, reasoning or a tool call): what TTFT and ITL time.
  bool has_output() const { return !content.empty() || !reasoning.empty() || !tool_calls.empty(); }
};

// False with a message when the payload is neither "[DONE]" nor a JSON object of the chunk shape.
bool ParseStreamChunk(const std::string& data, StreamChunk* chunk, std::string* error);

}  // namespace stepserve::client
