#include "text/jinja/json_value.h"

#include <limits>

namespace stepserve::text::jinja {
namespace {

template <typename J>
Value Convert(const J& j, int depth) {
  if (depth > 512) throw JinjaError("JSON input nested too deeply");
  switch (j.type()) {
    case nlohmann::json::value_t::null:
      return Value::None();
    case nlohmann::json::value_t::boolean:
      return Value::Bool(j.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value::Int(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      uint64_t u = j.template get<uint64_t>();
      if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return Value::Int(static_cast<int64_t>(u));
      return Value::Float(static_cast<double>(u));
    }
    case nlohmann::json::value_t::number_float:
      return Value::Float(j.template get<double>());
    case nlohmann::json::value_t::string:
      return Value::String(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& item : j) items.push_back(Convert(item, depth + 1));
      return Value::List(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      Value d = Value::NewDict();
      for (auto it = j.begin(); it != j.end(); ++it) d.dict->Set(it.key(), Convert(it.value(), depth + 1));
      return d;
    }
    default:
      throw JinjaError("unsupported JSON value (binary or discarded)");
  }
}

}  // namespace

Value FromJson(const nlohmann::ordered_json& j) { return Convert(j, 0); }
Value FromJson(const nlohmann::json& j) { return Convert(j, 0); }

}  // namespace stepserve::text::jinja
