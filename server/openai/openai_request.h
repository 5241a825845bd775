// The OpenAI request bodies of POST /v1/chat/completions and /v1/completions (with vLLM's extra
// parameters), parsed and type-checked, and turned into the executor's requests. Errors name the parameter
// (ApiError.param). Value ranges the engine checks (temperature >= 0, top_p in (0, 1], ...) are left to
// Executor::Submit, whose error names the engine field; api_error.h translates it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/generation.h"
#include "nlohmann/json.hpp"
#include "server/openai/api_error.h"
#include "server/proto_conversion.h"
#include "server/text_pipeline.h"

namespace stepserve::server::openai {

struct CompletionRequest {
  bool chat = false;
  std::string model;               // empty: the served model
  std::vector<TextInput> prompts;  // chat: one; completions: one per prompt (a list of prompts gives several)
  int n = 1;                       // sequences per prompt
  bool stream = false;
  bool include_usage = false;      // stream_options.include_usage
  std::optional<int> max_tokens;   // max_completion_tokens, else max_tokens
  // Sampling. OpenAI's default temperature is 1 (sampling), not the gRPC API's greedy.
  float temperature = 1.0f;
  std::optional<float> top_p, min_p, presence_penalty, frequency_penalty, repetition_penalty;
  std::optional<int> top_k;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  bool include_stop_str_in_output = false;
  bool skip_special_tokens = true;
  // Log-probabilities: chat logprobs (bool) + top_logprobs, completions logprobs (int).
  bool logprobs = false;
  int top_logprobs = 0;
  bool echo = false;  // completions: the prompt's text before the completion
  std::string cache_salt;
  std::string user;
};

// The body of POST /v1/chat/completions (`chat`) or /v1/completions. False and *error on a bad request.
bool ParseCompletionRequest(const nlohmann::ordered_json& body, bool chat, CompletionRequest* request,
                            ApiError* error);

// The executor's request for sequence `index` (0..n-1) of one prompt: the sampling parameters, the seed
// (a given seed + index, as vLLM seeds the n sequences of one request; unset: the executor's own), max
// tokens (unset: completions 16 as OpenAI, chat the server default, both capped to the room the prompt
// leaves), stop token ids, log-probabilities.
GenerationRequest ToEngineRequest(const CompletionRequest& request, std::vector<int32_t> prompt_ids, int index,
                                      const RequestDefaults& defaults);

}  // namespace stepserve::server::openai
