#include "text/parsers/chat_request.h"

#include <set>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace stepserve::text {
namespace {

using Json = nlohmann::json;

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

std::string TypeName(const Json& v) { return v.type_name(); }

bool ToolHasName(const Json& tool, const std::string& name) {
  if (!tool.is_object()) return false;
  auto fn = tool.find("function");
  if (fn == tool.end() || !fn->is_object()) return false;
  auto n = fn->find("name");
  return n != fn->end() && n->is_string() && n->get_ref<const std::string&>() == name;
}

// First string (value or object key) under `v` that is not valid UTF-8, as a path below `path`.
bool FindInvalidUtf8(const Json& v, const std::string& path, std::string* bad) {
  if (v.is_string()) {
    if (!IsValidUtf8(v.get_ref<const std::string&>())) {
      *bad = path;
      return true;
    }
  } else if (v.is_array()) {
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (FindInvalidUtf8(v[i], absl::StrCat(path, "[", i, "]"), bad)) return true;
    }
  } else if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!IsValidUtf8(it.key())) {
        *bad = absl::StrCat(path, " (a key)");
        return true;
      }
      if (FindInvalidUtf8(it.value(), absl::StrCat(path, ".", it.key()), bad)) return true;
    }
  }
  return false;
}

absl::Status CheckUtf8(const Json& v, const std::string& path) {
  std::string bad;
  if (FindInvalidUtf8(v, path, &bad)) return Invalid(bad, "invalid UTF-8");
  return absl::OkStatus();
}

// A content value (string, null, or text parts) as one string.
absl::StatusOr<std::string> FlattenContent(const Json& content, const std::string& path, bool null_ok) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_null()) {
    if (null_ok) return std::string();
    return Invalid(path, "must be a string or an array of text parts, not null");
  }
  if (!content.is_array()) {
    return Invalid(path, absl::StrCat("must be a string or an array of text parts, not ", TypeName(content)));
  }
  std::vector<std::string> texts;
  for (std::size_t j = 0; j < content.size(); ++j) {
    const Json& part = content[j];
    std::string part_path = absl::StrCat(path, "[", j, "]");
    if (!part.is_object()) return Invalid(part_path, "must be an object");
    auto type = part.find("type");
    if (type != part.end() && !(type->is_string() && *type == "text")) {
      if (!type->is_string()) return Invalid(part_path + ".type", "must be a string");
      return Invalid(part_path + ".type", absl::StrCat("unsupported content part type '", type->get<std::string>(),
                                                       "' (this model takes text only)"));
    }
    auto text = part.find("text");
    if (text == part.end() || !text->is_string()) return Invalid(part_path + ".text", "must be a string");
    texts.push_back(text->get<std::string>());
  }
  return absl::StrJoin(texts, "\n");
}

absl::StatusOr<Json> NormalizeToolCall(const Json& call, const std::string& path) {
  if (!call.is_object()) return Invalid(path, "must be an object");
  Json out = call;
  if (auto type = call.find("type"); type != call.end() && !(type->is_string() && *type == "function")) {
    return Invalid(path + ".type", "must be 'function'");
  }
  out["type"] = "function";
  auto fn = call.find("function");
  if (fn == call.end() || !fn->is_object()) return Invalid(path + ".function", "must be an object");
  auto name = fn->find("name");
  if (name == fn->end() || !name->is_string() || name->get_ref<const std::string&>().empty()) {
    return Invalid(path + ".function.name", "must be a non-empty string");
  }
  Json& args = out["function"]["arguments"];
  const std::string args_path = path + ".function.arguments";
  if (args.is_null()) {
    args = Json::object();
  } else if (args.is_string()) {
    const std::string& text = args.get_ref<const std::string&>();
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
      args = Json::object();
    } else {
      Json parsed = Json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (parsed.is_discarded()) return Invalid(args_path, "is not valid JSON");
      if (!parsed.is_object()) return Invalid(args_path, "must be a JSON object");
      args = std::move(parsed);
    }
  } else if (!args.is_object()) {
    return Invalid(args_path, "must be a JSON object or a string holding one");
  }
  return out;
}

absl::StatusOr<Json> NormalizeMessage(const Json& msg, std::size_t i) {
  const std::string path = absl::StrCat("messages[", i, "]");
  if (!msg.is_object()) return Invalid(path, "must be an object");
  if (auto s = CheckUtf8(msg, path); !s.ok()) return s;
  auto role_it = msg.find("role");
  if (role_it == msg.end()) return Invalid(path + ".role", "required");
  if (!role_it->is_string()) return Invalid(path + ".role", "must be a string");
  const std::string role = role_it->get<std::string>();
  static const std::set<std::string> kRoles = {"system", "developer", "user", "assistant", "tool"};
  if (kRoles.count(role) == 0) return Invalid(path + ".role", absl::StrCat("unknown role '", role, "'"));

  Json out = msg;
  const bool assistant = role == "assistant";
  auto content = msg.find("content");
  if (content == msg.end()) {
    if (!assistant) return Invalid(path + ".content", "required");
    out["content"] = "";
  } else {
    auto flat = FlattenContent(*content, path + ".content", assistant);
    if (!flat.ok()) return flat.status();
    out["content"] = *std::move(flat);
  }

  if (auto calls = msg.find("tool_calls"); calls != msg.end()) {
    if (!assistant) return Invalid(path + ".tool_calls", "only assistant messages carry tool calls");
    if (calls->is_null()) {
      out.erase("tool_calls");
    } else {
      if (!calls->is_array()) return Invalid(path + ".tool_calls", "must be an array");
      Json normalized = Json::array();
      for (std::size_t j = 0; j < calls->size(); ++j) {
        auto call = NormalizeToolCall((*calls)[j], absl::StrCat(path, ".tool_calls[", j, "]"));
        if (!call.ok()) return call.status();
        normalized.push_back(*std::move(call));
      }
      out["tool_calls"] = std::move(normalized);
    }
  }

  for (const char* key : {"reasoning_content", "reasoning"}) {
    if (auto it = msg.find(key); it != msg.end() && !it->is_string() && !it->is_null()) {
      return Invalid(absl::StrCat(path, ".", key), "must be a string or null");
    }
  }
  const bool has_rc = msg.contains("reasoning_content") && msg["reasoning_content"].is_string();
  const bool has_r = msg.contains("reasoning") && msg["reasoning"].is_string();
  if (has_r && !has_rc) out["reasoning_content"] = msg["reasoning"];
  if (has_rc && !has_r) out["reasoning"] = msg["reasoning_content"];

  if (auto id = msg.find("tool_call_id"); id != msg.end() && !id->is_string() && !id->is_null()) {
    return Invalid(path + ".tool_call_id", "must be a string");
  }
  if (auto name = msg.find("name"); name != msg.end() && !name->is_string() && !name->is_null()) {
    return Invalid(path + ".name", "must be a string");
  }
  return out;
}

}  // namespace

bool IsValidUtf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  std::size_t n = text.size(), i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // no overlongs
      if (c == 0xED) hi = 0x9F;  // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // no overlongs
      if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
    } else {
      return false;
    }
    if (i + len > n) return false;
    if (s[i + 1] < lo || s[i + 1] > hi) return false;
    for (std::size_t k = 2; k < len; ++k) {
      if (s[i + k] < 0x80 || s[i + k] > 0xBF) return false;
    }
    i += len;
  }
  return true;
}

absl::StatusOr<Json> NormalizeMessages(const Json& messages) {
  if (!messages.is_array()) return Invalid("messages", "must be an array");
  if (messages.empty()) return Invalid("messages", "must not be empty");
  Json out = Json::array();
  for (std::size_t i = 0; i < messages.size(); ++i) {
    auto msg = NormalizeMessage(messages[i], i);
    if (!msg.ok()) return msg.status();
    out.push_back(*std::move(msg));
  }
  return out;
}

absl::StatusOr<Json> NormalizeTools(const Json& tools) {
  if (tools.is_null()) return Json::array();
  if (!tools.is_array()) return Invalid("tools", "must be an array");
  Json out = Json::array();
  std::set<std::string> names;
  for (std::size_t i = 0; i < tools.size(); ++i) {
    const std::string path = absl::StrCat("tools[", i, "]");
    const Json& tool = tools[i];
    if (!tool.is_object()) return Invalid(path, "must be an object");
    if (auto s = CheckUtf8(tool, path); !s.ok()) return s;
    auto type = tool.find("type");
    if (type == tool.end() || !type->is_string() || *type != "function") {
      return Invalid(path + ".type", "must be 'function'");
    }
    auto fn = tool.find("function");
    if (fn == tool.end() || !fn->is_object()) return Invalid(path + ".function", "must be an object");
    auto name = fn->find("name");
    if (name == fn->end() || !name->is_string() || name->get_ref<const std::string&>().empty()) {
      return Invalid(path + ".function.name", "must be a non-empty string");
    }
    const std::string& n = name->get_ref<const std::string&>();
    if (n.find_first_of(" \t\r\n\f\v<>") != std::string::npos) {
      return Invalid(path + ".function.name", absl::StrCat("'", n, "' must not hold whitespace, '<' or '>'"));
    }
    if (!names.insert(n).second) {
      return Invalid(path + ".function.name", absl::StrCat("duplicate tool name '", n, "'"));
    }
    if (auto d = fn->find("description"); d != fn->end() && !d->is_string() && !d->is_null()) {
      return Invalid(path + ".function.description", "must be a string");
    }
    if (auto p = fn->find("parameters"); p != fn->end() && !p->is_object() && !p->is_null()) {
      return Invalid(path + ".function.parameters", "must be a JSON Schema object");
    }
    out.push_back(tool);
  }
  return out;
}

absl::StatusOr<ToolChoice> ParseToolChoice(const Json& tool_choice, const Json& tools) {
  const bool have_tools = tools.is_array() && !tools.empty();
  ToolChoice choice;
  if (tool_choice.is_null()) {
    choice.mode = have_tools ? ToolChoice::Mode::kAuto : ToolChoice::Mode::kNone;
    return choice;
  }
  if (tool_choice.is_string()) {
    const std::string& s = tool_choice.get_ref<const std::string&>();
    if (s == "auto") {
      choice.mode = ToolChoice::Mode::kAuto;
    } else if (s == "none") {
      choice.mode = ToolChoice::Mode::kNone;
    } else if (s == "required") {
      if (!have_tools) return Invalid("tool_choice", "'required' needs tools");
      choice.mode = ToolChoice::Mode::kRequired;
    } else {
      return Invalid("tool_choice", absl::StrCat("unknown value '", s, "' (auto, none, required or a function)"));
    }
    return choice;
  }
  if (!tool_choice.is_object()) {
    return Invalid("tool_choice", "must be 'auto', 'none', 'required' or {\"type\": \"function\", ...}");
  }
  auto type = tool_choice.find("type");
  if (type == tool_choice.end() || !type->is_string() || *type != "function") {
    return Invalid("tool_choice.type", "must be 'function'");
  }
  auto fn = tool_choice.find("function");
  if (fn == tool_choice.end() || !fn->is_object()) return Invalid("tool_choice.function", "must be an object");
  auto name = fn->find("name");
  if (name == fn->end() || !name->is_string()) return Invalid("tool_choice.function.name", "must be a string");
  const std::string& n = name->get_ref<const std::string&>();
  if (!have_tools) return Invalid("tool_choice", absl::StrCat("names tool '", n, "' but no tools are given"));
  for (const auto& tool : tools) {
    if (ToolHasName(tool, n)) {
      choice.mode = ToolChoice::Mode::kNamed;
      choice.name = n;
      return choice;
    }
  }
  return Invalid("tool_choice", absl::StrCat("no tool named '", n, "'"));
}

Json ToolsForTemplate(const Json& tools, const ToolChoice& choice) {
  Json out = Json::array();
  if (choice.mode == ToolChoice::Mode::kNone || !tools.is_array()) return out;
  for (const auto& tool : tools) {
    if (choice.mode == ToolChoice::Mode::kNamed && !ToolHasName(tool, choice.name)) continue;
    out.push_back(tool);
  }
  return out;
}

bool ShouldParseToolCalls(const Json& tools, const ToolChoice& choice) {
  return choice.mode != ToolChoice::Mode::kNone && tools.is_array() && !tools.empty();
}

}  // namespace stepserve::text
