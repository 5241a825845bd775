// The text fields of stepserve.v1 <-> the text front's types: a GenerateRequest's or TokenizeRequest's input
// as a TextInput (chat messages and tools as the OpenAI JSON shapes the chat template takes), and a
// processed output's text, reasoning and tool calls into a GenerateResponse.
#pragma once

#include "absl/status/statusor.h"
#include "server/text_output.h"
#include "server/text_pipeline.h"
#include "stepserve/v1/stepserve.pb.h"

namespace stepserve::server {

// Exactly one of prompt_token_ids, prompt, chat (INVALID_ARGUMENT naming them otherwise; none at all is
// left to the executor, which names prompt_token_ids). Chat fields that carry JSON text
// (tools[i].parameters_json, chat_template_kwargs_json, tool_calls[j].arguments) must parse: errors name
// them ("chat.tools[0].parameters_json: ...").
absl::StatusOr<TextInput> TextInputFromProto(const v1::GenerateRequest& request);
absl::StatusOr<TextInput> TextInputFromProto(const v1::TokenizeRequest& request);

// The output stage of a GenerateRequest (stop, include_stop_str_in_output, skip_special_tokens).
absl::StatusOr<OutputStageOptions> OutputStageOptionsFromProto(const v1::GenerateRequest& request,
                                                               const PreparedPrompt& prompt, const TextPipeline& text);

// text, reasoning_text, tool_calls and (on a last output) matched_stop.
void FillTextFields(const TextOutput& output, v1::GenerateResponse* response);

}  // namespace stepserve::server
