#include "text/jinja/chat_template.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace stepserve::text {
namespace {

nlohmann::ordered_json ToOrdered(const nlohmann::json& j) {
  if (j.is_object()) {
    nlohmann::ordered_json out = nlohmann::ordered_json::object();
    for (auto it = j.begin(); it != j.end(); ++it) out[it.key()] = ToOrdered(it.value());
    return out;
  }
  if (j.is_array()) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const auto& item : j) out.push_back(ToOrdered(item));
    return out;
  }
  switch (j.type()) {
    case nlohmann::json::value_t::null: return nullptr;
    case nlohmann::json::value_t::boolean: return j.get<bool>();
    case nlohmann::json::value_t::number_integer: return j.get<int64_t>();
    case nlohmann::json::value_t::number_unsigned: return j.get<uint64_t>();
    case nlohmann::json::value_t::number_float: return j.get<double>();
    case nlohmann::json::value_t::string: return j.get<std::string>();
    default: return nullptr;
  }
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open chat template file ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading chat template file ", path));
  return ss.str();
}

bool FileExists(const std::string& path) { return std::ifstream(path).good(); }

}  // namespace

absl::StatusOr<std::shared_ptr<const ChatTemplate>> ChatTemplate::Parse(std::string source, std::string name) {
  auto parsed = jinja::Template::Parse(source, std::move(name));
  if (!parsed.ok()) return parsed.status();
  std::shared_ptr<ChatTemplate> t(new ChatTemplate());
  t->source_ = std::move(source);
  t->template_ = *std::move(parsed);
  return std::shared_ptr<const ChatTemplate>(std::move(t));
}

absl::StatusOr<std::shared_ptr<const ChatTemplate>> ChatTemplate::Load(const std::string& model_dir,
                                                                       const nlohmann::json& tokenizer_config,
                                                                       const std::string& override_file,
                                                                       const std::string& name) {
  const std::string label = name.empty() ? "default" : name;
  if (!override_file.empty()) {
    auto source = ReadFile(override_file);
    if (!source.ok()) return source.status();
    return Parse(*std::move(source), override_file);
  }
  if (tokenizer_config.is_object() && tokenizer_config.contains("chat_template") &&
      !tokenizer_config["chat_template"].is_null()) {
    const nlohmann::json& ct = tokenizer_config["chat_template"];
    if (ct.is_string()) {
      if (!name.empty() && name != "default") {
        return absl::NotFoundError(absl::StrCat("tokenizer_config.json has a single chat template, not one named '",
                                                name, "'"));
      }
      return Parse(ct.get<std::string>(), "tokenizer_config.json chat_template");
    }
    if (!ct.is_array()) {
      return absl::InvalidArgumentError("tokenizer_config.json chat_template must be a string or a list");
    }
    std::vector<std::string> names;
    for (const auto& entry : ct) {
      if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string() || !entry.contains("template") ||
          !entry["template"].is_string()) {
        return absl::InvalidArgumentError(
            "tokenizer_config.json chat_template list entries must be {\"name\": string, \"template\": string}");
      }
      names.push_back(entry["name"].get<std::string>());
      if (names.back() == label) {
        return Parse(entry["template"].get<std::string>(), absl::StrCat("tokenizer_config.json chat_template '", label, "'"));
      }
    }
    return absl::NotFoundError(absl::StrCat("tokenizer_config.json has no chat template named '", label,
                                            "' (it has: ", absl::StrJoin(names, ", "), ")"));
  }
  const std::string dir = model_dir.empty() ? "." : model_dir;
  const std::string path = name.empty() || name == "default"
                               ? absl::StrCat(dir, "/chat_template.jinja")
                               : absl::StrCat(dir, "/additional_chat_templates/", name, ".jinja");
  if (FileExists(path)) {
    auto source = ReadFile(path);
    if (!source.ok()) return source.status();
    return Parse(*std::move(source), path);
  }
  return absl::NotFoundError(absl::StrCat("no chat template '", label, "': tokenizer_config.json has no chat_template and ",
                                          path, " does not exist (pass --chat_template=FILE)"));
}

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::json& messages, const nlohmann::json& tools,
                                                 bool add_generation_prompt, const nlohmann::json& chat_template_kwargs,
                                                 const std::string& bos_token, const std::string& eos_token) const {
  return Render(ToOrdered(messages), ToOrdered(tools), add_generation_prompt, ToOrdered(chat_template_kwargs),
                bos_token, eos_token);
}

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& messages,
                                                 const nlohmann::ordered_json& tools, bool add_generation_prompt,
                                                 const nlohmann::ordered_json& chat_template_kwargs,
                                                 const std::string& bos_token, const std::string& eos_token,
                                                 const RenderOptions& options) const {
  if (!messages.is_array()) return absl::InvalidArgumentError("messages must be a JSON array");
  if (!tools.is_null() && !tools.is_array()) return absl::InvalidArgumentError("tools must be a JSON array or null");
  if (!chat_template_kwargs.is_null() && !chat_template_kwargs.is_object()) {
    return absl::InvalidArgumentError("chat_template_kwargs must be a JSON object");
  }
  nlohmann::ordered_json context = nlohmann::ordered_json::object();
  context["messages"] = messages;
  // transformers renders with tools=None when no tools are given; vLLM passes None for an empty list.
  context["tools"] = tools.is_array() && !tools.empty() ? tools : nlohmann::ordered_json(nullptr);
  context["add_generation_prompt"] = add_generation_prompt;
  context["bos_token"] = bos_token;
  context["eos_token"] = eos_token;
  if (chat_template_kwargs.is_object()) {
    for (auto it = chat_template_kwargs.begin(); it != chat_template_kwargs.end(); ++it) {
      if (it.key() == "messages" || it.key() == "tools" || it.key() == "add_generation_prompt") {
        return absl::InvalidArgumentError(
            absl::StrCat("chat_template_kwargs may not set '", it.key(), "' (it is a parameter of the request)"));
      }
      context[it.key()] = it.value();
    }
  }
  return template_->Render(context, options);
}

}  // namespace stepserve::text
