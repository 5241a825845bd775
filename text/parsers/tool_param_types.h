// Typing of Step-3.5-Flash tool-call parameter values by the tool's JSON schema.
//
// In the XML-like tool-call format every value is raw text ("<parameter=P>\nVALUE\n</parameter>"); the
// tool's schema (parameters.properties[P]) says what JSON value it stands for. The rules follow vLLM's
// step3p5 / qwen3coder tool parsers (SGLang's step3p5 is its Qwen3-Coder detector, same rules):
//   - "null" (any letter case) is JSON null whatever the type (vLLM checks it before the type).
//   - Unknown tool, unknown parameter, or a property schema without any type information: the text as a
//     string, verbatim (vLLM: "string").
//   - "string" (and vLLM's aliases str/text/varchar/char/enum): the text verbatim.
//   - "integer" (int*, uint*, long*, short*, unsigned*): a JSON integer (also "+5" and integral "5.0").
//   - "number" (num*, float*): a JSON number; an integral value becomes an integer (vLLM: 3.0 -> 3).
//   - "boolean" (bool, binary): "true"/"false" in any letter case. Other text falls back (below); vLLM
//     turns anything but "true" into false, which silently inverts e.g. "yes" -> we keep the text.
//   - "object" / "array" (dict*, list*, arr, sequence): the text parsed as JSON, if it is that kind of
//     value. (vLLM also takes Python literal syntax such as {'a': True} via ast.literal_eval, and any JSON
//     value for "object"; we do not: such text falls back to the string.)
//   - Type lists ("type": ["integer", "null"]), anyOf / oneOf / allOf, enum and const contribute their
//     types; the value becomes the first type it parses as, in the order integer, number, boolean,
//     object, array; then string if allowed.
//   - A type we do not know (or a bare $ref): any JSON value if the text parses as one, else the string.
//   - Text that parses as none of the allowed types: the string, verbatim (vLLM degrades to the string).
#ifndef STEPSERVE_TEXT_PARSERS_TOOL_PARAM_TYPES_H_
#define STEPSERVE_TEXT_PARSERS_TOOL_PARAM_TYPES_H_

#include <string_view>

#include <nlohmann/json.hpp>

namespace stepserve::text {

// The schema of parameter `param` of tool `tool_name` within an OpenAI `tools` array, or nullptr when the
// tool or the parameter is unknown. Looks in function.parameters.properties; like vLLM it also accepts a
// parameters object that maps names to schemas directly (no "properties").
const nlohmann::json* FindParameterSchema(const nlohmann::json& tools, std::string_view tool_name,
                                          std::string_view param);

// The JSON value that `text` (already stripped of the format's surrounding newlines) stands for, typed by
// `schema` (nullptr: unknown parameter). Rules above.
nlohmann::ordered_json ConvertParameterValue(std::string_view text, const nlohmann::json* schema);

}  // namespace stepserve::text

#endif  // STEPSERVE_TEXT_PARSERS_TOOL_PARAM_TYPES_H_
