// stepbench with text prompts (--prompts_file) against either front of a server: gRPC Generate with
// GenerateRequest.prompt / .chat, or the OpenAI-compatible HTTP API (/v1/completions,
// /v1/chat/completions, streamed as server-sent events). Both fill the same RequestResult, so the report is
// the same:
//   gRPC    TTFT and ITL time the messages that carry token ids (one per engine step); output tokens are
//           the ids received; prompt and cached tokens come from the final message's Usage.
//   OpenAI  TTFT and ITL time the SSE chunks that carry output (content, reasoning or a tool call; the
//           server holds back a partial UTF-8 character or tag, so a step can send nothing); output and
//           prompt tokens come from the usage chunk (stream_options.include_usage), cached tokens from
//           usage.prompt_tokens_details.cached_tokens; a stream must end with "data: [DONE]".
// Requests are sent from threads, one blocking call each: a closed loop keeps `concurrency` threads busy, an
// open loop starts each request at its arrival time (at most `concurrency` in flight when > 0).
#pragma once

#include <memory>
#include <string>

#include <grpcpp/channel.h>
#include <nlohmann/json.hpp>

#include "client/bench_report.h"
#include "client/load_generator.h"
#include "client/prompt_file.h"

namespace stepserve::client {

// Sends one request and measures it. Send is called from several threads at once.
class TextBackend {
 public:
  virtual ~TextBackend() = default;
  virtual RequestResult Send(const PromptEntry& entry, const LoadConfig& config) = 0;
};

std::unique_ptr<TextBackend> MakeGrpcTextBackend(std::shared_ptr<grpc::Channel> channel);

// "host:port", "[v6]:port" or "http://host:port" (no path). False with a message otherwise.
bool ParseHttpTarget(const std::string& text, std::string* host, int* port, std::string* error);

struct OpenAiTarget {
  std::string host;
  int port = 8000;
  std::string model;  // the request's "model"
};

std::unique_ptr<TextBackend> MakeOpenAiBackend(const OpenAiTarget& target);

// /v1/chat/completions for a chat entry, /v1/completions for a plain prompt.
std::string OpenAiPath(const PromptEntry& entry);
// The streamed request: model, messages or prompt, max_tokens, temperature 0 (greedy, as the gRPC
// default), ignore_eos (vLLM's extension), stream, stream_options.include_usage, cache_salt when set.
nlohmann::json OpenAiRequestBody(const PromptEntry& entry, const std::string& model, const LoadConfig& config);

// GET /v1/models: the first model's id. False with a message when unreachable or malformed.
bool OpenAiFirstModel(const std::string& host, int port, double timeout_s, std::string* model, std::string* error);

// Runs every entry once (in order of their index in the result).
LoadResult RunTextLoad(TextBackend& backend, const std::vector<PromptEntry>& entries, const LoadConfig& config);

}  // namespace stepserve::client
