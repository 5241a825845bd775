#include "server/proto_text.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace stepserve::server {
namespace {

using OrderedJson = nlohmann::ordered_json;

absl::StatusOr<OrderedJson> ParseJsonField(const std::string& text, const std::string& field) {
  OrderedJson parsed = OrderedJson::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(field, ": is not valid JSON"));
  return parsed;
}

absl::Status ChatFromProto(const v1::ChatInput& chat, TextInput* input) {
  input->kind = TextInput::Kind::kChat;
  input->messages = OrderedJson::array();
  for (const v1::ChatMessage& m : chat.messages()) {
    OrderedJson msg = OrderedJson::object();
    msg["role"] = m.role();
    msg["content"] = m.has_content() ? OrderedJson(m.content()) : OrderedJson(nullptr);
    if (!m.reasoning_content().empty()) msg["reasoning_content"] = m.reasoning_content();
    if (m.tool_calls_size() > 0) {
      OrderedJson calls = OrderedJson::array();
      for (const v1::ToolCall& c : m.tool_calls()) {
        OrderedJson call = OrderedJson::object();
        if (!c.id().empty()) call["id"] = c.id();
        call["type"] = c.type().empty() ? std::string("function") : c.type();
        // Arguments stay text here: the chat normalization parses them and names the field on error.
        call["function"] = {{"name", c.name()}, {"arguments", c.arguments()}};
        calls.push_back(std::move(call));
      }
      msg["tool_calls"] = std::move(calls);
    }
    if (!m.tool_call_id().empty()) msg["tool_call_id"] = m.tool_call_id();
    if (!m.name().empty()) msg["name"] = m.name();
    input->messages.push_back(std::move(msg));
  }
  input->tools = OrderedJson::array();
  for (int i = 0; i < chat.tools_size(); ++i) {
    const v1::Tool& t = chat.tools(i);
    OrderedJson fn = OrderedJson::object();
    fn["name"] = t.name();
    if (!t.description().empty()) fn["description"] = t.description();
    if (!t.parameters_json().empty()) {
      auto params = ParseJsonField(t.parameters_json(), absl::StrCat("chat.tools[", i, "].parameters_json"));
      if (!params.ok()) return params.status();
      fn["parameters"] = *std::move(params);
    }
    input->tools.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
  switch (chat.tool_choice().choice_case()) {
    case v1::ToolChoice::kMode:
      input->tool_choice = chat.tool_choice().mode().empty() ? OrderedJson(nullptr) : OrderedJson(chat.tool_choice().mode());
      break;
    case v1::ToolChoice::kFunctionName:
      input->tool_choice = {{"type", "function"}, {"function", {{"name", chat.tool_choice().function_name()}}}};
      break;
    case v1::ToolChoice::CHOICE_NOT_SET:
      input->tool_choice = nullptr;
      break;
  }
  if (!chat.chat_template_kwargs_json().empty()) {
    auto kwargs = ParseJsonField(chat.chat_template_kwargs_json(), "chat.chat_template_kwargs_json");
    if (!kwargs.ok()) return kwargs.status();
    if (!kwargs->is_object()) {
      return absl::InvalidArgumentError("chat.chat_template_kwargs_json: must be a JSON object");
    }
    input->chat_template_kwargs = *std::move(kwargs);
  }
  input->add_generation_prompt = chat.has_add_generation_prompt() ? chat.add_generation_prompt() : true;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TextInput> TextInputFromProto(const v1::GenerateRequest& request) {
  const int given = (request.prompt_token_ids_size() > 0) + (!request.prompt().empty()) + request.has_chat();
  if (given > 1) {
    return absl::InvalidArgumentError(
        "prompt: give exactly one of prompt_token_ids, prompt and chat (this request has several)");
  }
  TextInput input;
  if (request.has_chat()) {
    if (absl::Status s = ChatFromProto(request.chat(), &input); !s.ok()) return s;
  } else if (!request.prompt().empty()) {
    input.kind = TextInput::Kind::kPrompt;
    input.prompt = request.prompt();
    input.add_special_tokens = request.has_add_special_tokens() ? request.add_special_tokens() : true;
  } else {
    input.token_ids.assign(request.prompt_token_ids().begin(), request.prompt_token_ids().end());
  }
  return input;
}

absl::StatusOr<TextInput> TextInputFromProto(const v1::TokenizeRequest& request) {
  TextInput input;
  switch (request.input_case()) {
    case v1::TokenizeRequest::kPrompt:
      input.kind = TextInput::Kind::kPrompt;
      input.prompt = request.prompt();
      input.add_special_tokens = request.has_add_special_tokens() ? request.add_special_tokens() : true;
      return input;
    case v1::TokenizeRequest::kChat:
      if (absl::Status s = ChatFromProto(request.chat(), &input); !s.ok()) return s;
      return input;
    case v1::TokenizeRequest::INPUT_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("prompt: give a prompt or chat to tokenize");
}

absl::StatusOr<OutputStageOptions> OutputStageOptionsFromProto(const v1::GenerateRequest& request,
                                                               const PreparedPrompt& prompt, const TextPipeline& text) {
  return MakeOutputStageOptions(text, prompt, std::vector<std::string>(request.stop().begin(), request.stop().end()),
                                request.include_stop_str_in_output(),
                                request.has_skip_special_tokens() ? request.skip_special_tokens() : true, "stop");
}

void FillTextFields(const TextOutput& output, v1::GenerateResponse* response) {
  response->set_text(output.text);
  response->set_reasoning_text(output.reasoning);
  for (const text::ToolCallDelta& d : output.tool_calls) {
    v1::ToolCallDelta* p = response->add_tool_calls();
    p->set_index(d.index);
    p->set_id(d.id);
    if (d.name) p->set_name(*d.name);
    p->set_arguments(d.arguments);
  }
  if (output.out.finished) response->set_matched_stop(output.matched_stop);
}

}  // namespace stepserve::server
