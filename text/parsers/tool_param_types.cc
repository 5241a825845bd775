#include "text/parsers/tool_param_types.h"

#include <cmath>
#include <cstdint>
#include <string>

#include "text/parsers/text_util.h"

namespace stepserve::text {
namespace {

using OrderedJson = nlohmann::ordered_json;

enum TypeBit : unsigned {
  kString = 1u << 0,
  kInteger = 1u << 1,
  kNumber = 1u << 2,
  kBoolean = 1u << 3,
  kObject = 1u << 4,
  kArray = 1u << 5,
  kNull = 1u << 6,
  kUnknown = 1u << 7,
};

unsigned TypeFromName(std::string_view raw) {
  const std::string name = AsciiLowered(StripAsciiSpace(raw));
  if (name == "string" || name == "str" || name == "text" || name == "varchar" || name == "char" ||
      name == "enum") {
    return kString;
  }
  if (name == "null") return kNull;
  if (name == "boolean" || name == "bool" || name == "binary") return kBoolean;
  if (name == "object" || StartsWith(name, "dict")) return kObject;
  if (name == "array" || name == "arr" || name == "sequence" || StartsWith(name, "list")) return kArray;
  for (const char* prefix : {"int", "uint", "long", "short", "unsigned"}) {
    if (StartsWith(name, prefix)) return kInteger;
  }
  if (StartsWith(name, "num") || StartsWith(name, "float")) return kNumber;
  return kUnknown;
}

unsigned TypeOfValue(const nlohmann::json& v) {
  switch (v.type()) {
    case nlohmann::json::value_t::string: return kString;
    case nlohmann::json::value_t::boolean: return kBoolean;
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned: return kInteger;
    case nlohmann::json::value_t::number_float: return kNumber;
    case nlohmann::json::value_t::object: return kObject;
    case nlohmann::json::value_t::array: return kArray;
    case nlohmann::json::value_t::null: return kNull;
    default: return kUnknown;
  }
}

// The set of JSON types a schema admits; 0 when it says nothing about types.
unsigned CollectTypes(const nlohmann::json& schema, int depth = 0) {
  if (!schema.is_object() || depth > 16) return 0;
  unsigned types = 0;
  if (auto it = schema.find("type"); it != schema.end()) {
    if (it->is_string()) types |= TypeFromName(it->get_ref<const std::string&>());
    if (it->is_array()) {
      for (const auto& t : *it) {
        if (t.is_string()) types |= TypeFromName(t.get_ref<const std::string&>());
      }
    }
  }
  for (const char* key : {"anyOf", "oneOf", "allOf"}) {
    if (auto it = schema.find(key); it != schema.end() && it->is_array()) {
      for (const auto& sub : *it) types |= CollectTypes(sub, depth + 1);
    }
  }
  if (auto it = schema.find("enum"); it != schema.end() && it->is_array()) {
    for (const auto& v : *it) types |= TypeOfValue(v);
  }
  if (auto it = schema.find("const"); it != schema.end()) types |= TypeOfValue(*it);
  if (types == 0) {
    if (schema.contains("properties")) types |= kObject;
    if (schema.contains("items")) types |= kArray;
    if (schema.contains("$ref")) types |= kUnknown;
  }
  return types;
}

// Parses `text` as one JSON value; discarded() on failure.
OrderedJson ParseJson(std::string_view text) {
  return OrderedJson::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
}

bool ParseInteger(std::string_view text, OrderedJson* out) {
  std::string_view t = StripAsciiSpace(text);
  if (StartsWith(t, "+")) t.remove_prefix(1);
  if (t.empty() || !((t[0] >= '0' && t[0] <= '9') || t[0] == '-')) return false;
  OrderedJson v = ParseJson(t);
  if (v.is_number_integer()) {
    *out = std::move(v);
    return true;
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.007199254740992e15) {
      *out = static_cast<std::int64_t>(d);
      return true;
    }
  }
  return false;
}

bool ParseNumber(std::string_view text, OrderedJson* out) {
  std::string_view t = StripAsciiSpace(text);
  if (StartsWith(t, "+")) t.remove_prefix(1);
  if (t.empty() || !((t[0] >= '0' && t[0] <= '9') || t[0] == '-')) return false;
  OrderedJson v = ParseJson(t);
  if (v.is_number_integer()) {
    *out = std::move(v);
    return true;
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (!std::isfinite(d)) return false;
    if (d == std::floor(d) && std::fabs(d) < 9.007199254740992e15) {
      *out = static_cast<std::int64_t>(d);
    } else {
      *out = d;
    }
    return true;
  }
  return false;
}

bool ParseBoolean(std::string_view text, OrderedJson* out) {
  const std::string t = AsciiLowered(StripAsciiSpace(text));
  if (t == "true" || t == "false") {
    *out = (t == "true");
    return true;
  }
  return false;
}

bool ParseContainer(std::string_view text, OrderedJson::value_t want, OrderedJson* out) {
  OrderedJson v = ParseJson(StripAsciiSpace(text));
  if (v.is_discarded() || v.type() != want) return false;
  *out = std::move(v);
  return true;
}

}  // namespace

const nlohmann::json* FindParameterSchema(const nlohmann::json& tools, std::string_view tool_name,
                                          std::string_view param) {
  if (!tools.is_array()) return nullptr;
  for (const auto& tool : tools) {
    if (!tool.is_object()) continue;
    auto fn = tool.find("function");
    if (fn == tool.end() || !fn->is_object()) continue;
    auto name = fn->find("name");
    if (name == fn->end() || !name->is_string() || name->get_ref<const std::string&>() != tool_name) continue;
    auto params = fn->find("parameters");
    if (params == fn->end() || !params->is_object()) return nullptr;
    const std::string key(param);
    if (auto props = params->find("properties"); props != params->end()) {
      if (!props->is_object()) return nullptr;
      auto it = props->find(key);
      return it != props->end() && it->is_object() ? &*it : nullptr;
    }
    auto it = params->find(key);
    return it != params->end() && it->is_object() ? &*it : nullptr;
  }
  return nullptr;
}

OrderedJson ConvertParameterValue(std::string_view text, const nlohmann::json* schema) {
  if (EqualsIgnoreAsciiCase(text, "null")) return nullptr;
  unsigned types = schema != nullptr ? CollectTypes(*schema) : 0;
  if (types == 0 || types == kString) return std::string(text);
  OrderedJson out;
  if ((types & kInteger) && ParseInteger(text, &out)) return out;
  if ((types & kNumber) && ParseNumber(text, &out)) return out;
  if ((types & kBoolean) && ParseBoolean(text, &out)) return out;
  if ((types & kObject) && ParseContainer(text, OrderedJson::value_t::object, &out)) return out;
  if ((types & kArray) && ParseContainer(text, OrderedJson::value_t::array, &out)) return out;
  if (types & kString) return std::string(text);
  if (types & kUnknown) {
    OrderedJson v = ParseJson(StripAsciiSpace(text));
    if (!v.is_discarded()) return v;
  }
  return std::string(text);
}

}  // namespace stepserve::text
