#include "client/chat_session.h"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace stepserve::client {
namespace {

constexpr const char* kDimOn = "\x1b[2m";
constexpr const char* kDimOff = "\x1b[0m";
constexpr const char* kReasoningPrefix = "[reasoning] ";

}  // namespace

bool ParseToolsJson(const std::string& text, std::vector<v1::Tool>* tools, std::string* error) {
  tools->clear();
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    *error = "the tools are not valid JSON";
    return false;
  }
  if (j.is_object() && j.contains("tools")) j = j["tools"];
  if (!j.is_array()) {
    *error = "the tools must be a JSON array of {\"type\": \"function\", \"function\": {...}}";
    return false;
  }
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string where = "tools[" + std::to_string(i) + "]: ";
    const nlohmann::json& t = j[i];
    if (!t.is_object()) {
      *error = where + "not an object";
      return false;
    }
    const nlohmann::json* fn = &t;
    if (t.contains("type") || t.contains("function")) {
      if (t.value("type", std::string("function")) != "function") {
        *error = where + "\"type\" must be \"function\"";
        return false;
      }
      if (!t.contains("function") || !t["function"].is_object()) {
        *error = where + "\"function\" must be an object";
        return false;
      }
      fn = &t["function"];
    }
    if (!fn->contains("name") || !(*fn)["name"].is_string() || (*fn)["name"].get_ref<const std::string&>().empty()) {
      *error = where + "the function needs a non-empty \"name\"";
      return false;
    }
    v1::Tool tool;
    tool.set_name((*fn)["name"].get<std::string>());
    if (auto d = fn->find("description"); d != fn->end() && !d->is_null()) {
      if (!d->is_string()) {
        *error = where + "\"description\" of " + tool.name() + " must be a string";
        return false;
      }
      tool.set_description(d->get<std::string>());
    }
    if (auto p = fn->find("parameters"); p != fn->end() && !p->is_null()) {
      if (!p->is_object()) {
        *error = where + "\"parameters\" of " + tool.name() + " must be a JSON schema object";
        return false;
      }
      tool.set_parameters_json(p->dump());
    }
    tools->push_back(std::move(tool));
  }
  return true;
}

bool ParseToolChoice(const std::string& text, const std::vector<v1::Tool>& tools, v1::ToolChoice* choice,
                     std::string* error) {
  choice->Clear();
  if (text == "auto" || text == "none" || text == "required") {
    choice->set_mode(text);
    return true;
  }
  const bool known = std::any_of(tools.begin(), tools.end(), [&](const v1::Tool& t) { return t.name() == text; });
  if (!known) {
    *error = "tool choice \"" + text + "\" is neither auto, none, required nor one of the tools";
    return false;
  }
  choice->set_function_name(text);
  return true;
}

bool TemplateKwargs(const std::string& kwargs_json, const std::string& reasoning_effort, std::string* out,
                    std::string* error) {
  nlohmann::json kwargs = nlohmann::json::object();
  if (!kwargs_json.empty()) {
    kwargs = nlohmann::json::parse(kwargs_json, nullptr, /*allow_exceptions=*/false);
    if (kwargs.is_discarded() || !kwargs.is_object()) {
      *error = "the chat template kwargs must be a JSON object, e.g. {\"reasoning_effort\": \"low\"}";
      return false;
    }
  }
  if (!reasoning_effort.empty()) kwargs["reasoning_effort"] = reasoning_effort;
  *out = kwargs.empty() ? "" : kwargs.dump();
  return true;
}

void TurnAccumulator::Add(const v1::GenerateResponse& msg) {
  turn_.content += msg.text();
  turn_.reasoning += msg.reasoning_text();
  for (const auto& delta : msg.tool_calls()) {
    const auto it = std::find(indexes_.begin(), indexes_.end(), delta.index());
    v1::ToolCall* call;
    if (it == indexes_.end()) {
      indexes_.push_back(delta.index());
      turn_.tool_calls.emplace_back();
      call = &turn_.tool_calls.back();
      call->set_type("function");
    } else {
      call = &turn_.tool_calls[static_cast<size_t>(it - indexes_.begin())];
    }
    if (!delta.id().empty()) call->set_id(delta.id());
    if (!delta.name().empty()) call->set_name(delta.name());
    call->mutable_arguments()->append(delta.arguments());
  }
  if (msg.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) final_ = msg;
}

void ChatSession::SetSystem(const std::string& text) {
  if (!messages_.empty() && messages_[0].role() == "system") {
    messages_[0].set_content(text);
    return;
  }
  v1::ChatMessage m;
  m.set_role("system");
  m.set_content(text);
  messages_.insert(messages_.begin(), std::move(m));
}

void ChatSession::AddUser(const std::string& text) {
  v1::ChatMessage m;
  m.set_role("user");
  m.set_content(text);
  messages_.push_back(std::move(m));
}

AssistantTurn ChatSession::AddAssistant(const AssistantTurn& turn) {
  AssistantTurn kept = turn;
  v1::ChatMessage m;
  m.set_role("assistant");
  // An assistant message that only calls tools has null content, as the OpenAI API sends it.
  if (!turn.content.empty() || turn.tool_calls.empty()) m.set_content(turn.content);
  m.set_reasoning_content(turn.reasoning);
  for (auto& call : kept.tool_calls) {
    if (call.id().empty()) call.set_id("call_" + std::to_string(next_call_id_));
    if (call.type().empty()) call.set_type("function");
    ++next_call_id_;
    *m.add_tool_calls() = call;
  }
  messages_.push_back(std::move(m));
  return kept;
}

std::vector<std::string> ChatSession::PendingToolCalls() const {
  // The tool messages after the last assistant turn answer its calls.
  std::vector<std::string> pending;
  for (auto it = messages_.rbegin(); it != messages_.rend(); ++it) {
    if (it->role() != "assistant") continue;
    for (const auto& call : it->tool_calls()) pending.push_back(call.id());
    for (auto after = it.base(); after != messages_.end(); ++after) {
      if (after->role() != "tool") continue;
      pending.erase(std::remove(pending.begin(), pending.end(), after->tool_call_id()), pending.end());
    }
    break;
  }
  return pending;
}

bool ChatSession::AddToolResult(const std::string& call_id, const std::string& content, std::string* error) {
  const std::vector<std::string> pending = PendingToolCalls();
  if (std::find(pending.begin(), pending.end(), call_id) == pending.end()) {
    std::string ids;
    for (const auto& id : pending) ids += (ids.empty() ? "" : ", ") + id;
    *error = "no pending tool call \"" + call_id + "\"" + (pending.empty() ? " (none is pending)" : " (pending: " + ids + ")");
    return false;
  }
  v1::ChatMessage m;
  m.set_role("tool");
  m.set_tool_call_id(call_id);
  m.set_content(content);
  messages_.push_back(std::move(m));
  return true;
}

void ChatSession::Reset() {
  std::vector<v1::ChatMessage> kept;
  if (!messages_.empty() && messages_[0].role() == "system") kept.push_back(messages_[0]);
  messages_ = std::move(kept);
}

v1::ChatInput ChatSession::Input() const {
  v1::ChatInput input = settings_;
  input.clear_messages();
  for (const auto& m : messages_) *input.add_messages() = m;
  return input;
}

bool ParseReasoningDisplay(const std::string& text, bool is_tty, ReasoningDisplay* display) {
  if (text == "auto") {
    *display = is_tty ? ReasoningDisplay::kDim : ReasoningDisplay::kPrefix;
  } else if (text == "dim") {
    *display = ReasoningDisplay::kDim;
  } else if (text == "prefix") {
    *display = ReasoningDisplay::kPrefix;
  } else if (text == "hide") {
    *display = ReasoningDisplay::kHide;
  } else {
    return false;
  }
  return true;
}

std::string ToolCallJson(const v1::ToolCall& call) {
  nlohmann::json j = nlohmann::json::object();
  j["id"] = call.id();
  j["name"] = call.name();
  nlohmann::json args = nlohmann::json::parse(call.arguments(), nullptr, /*allow_exceptions=*/false);
  j["arguments"] = args.is_discarded() ? nlohmann::json(call.arguments()) : args;
  return j.dump();
}

void ChatPrinter::Reasoning(const std::string& text) {
  if (text.empty() || display_ == ReasoningDisplay::kHide) return;
  if (part_ != Part::kReasoning) {
    if (!line_start_) out_ << "\n";
    line_start_ = true;
    if (display_ == ReasoningDisplay::kDim) out_ << kDimOn;
    part_ = Part::kReasoning;
  }
  if (display_ == ReasoningDisplay::kDim) {
    out_ << text;
  } else {
    for (char c : text) {
      if (line_start_) out_ << kReasoningPrefix;
      out_ << c;
      line_start_ = c == '\n';
    }
  }
  line_start_ = text.back() == '\n';
  out_.flush();
}

void ChatPrinter::LeaveReasoning() {
  if (part_ != Part::kReasoning) return;
  if (display_ == ReasoningDisplay::kDim) out_ << kDimOff;
  if (!line_start_) out_ << "\n";
  line_start_ = true;
  part_ = Part::kNone;
}

void ChatPrinter::Content(const std::string& text) {
  if (text.empty()) return;
  LeaveReasoning();
  part_ = Part::kContent;
  out_ << text;
  line_start_ = text.back() == '\n';
  out_.flush();
}

void ChatPrinter::End(const AssistantTurn& turn) {
  LeaveReasoning();
  if (!line_start_) out_ << "\n";
  line_start_ = true;
  for (const auto& call : turn.tool_calls) out_ << "[tool_call] " << ToolCallJson(call) << "\n";
  part_ = Part::kNone;
  out_.flush();
}

}  // namespace stepserve::client
