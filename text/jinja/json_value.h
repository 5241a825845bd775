// Conversions between nlohmann JSON and template values.
#ifndef STEPSERVE_TEXT_JINJA_JSON_VALUE_H_
#define STEPSERVE_TEXT_JINJA_JSON_VALUE_H_

#include "nlohmann/json.hpp"
#include "text/jinja/value.h"

namespace stepserve::text::jinja {

// null → None, integers → int (unsigned beyond int64 → float), objects keep their key order.
Value FromJson(const nlohmann::ordered_json& j);
Value FromJson(const nlohmann::json& j);  // nlohmann::json objects iterate in key order

}  // namespace stepserve::text::jinja

#endif  // STEPSERVE_TEXT_JINJA_JSON_VALUE_H_
