#include "text/parsers/tool_param_types.h"

#include <gtest/gtest.h>

namespace stepserve::text {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

ordered_json Convert(std::string_view text, const char* schema) {
  json s = json::parse(schema);
  return ConvertParameterValue(text, &s);
}

TEST(ToolParamTypesTest, Strings) {
  EXPECT_EQ(Convert(" 12 ", R"({"type": "string"})"), " 12 ");
  EXPECT_EQ(Convert("true", R"({"type": "str"})"), "true");
  EXPECT_EQ(Convert("{\"a\":1}", R"({"type": "string"})"), "{\"a\":1}");
  EXPECT_EQ(Convert("", R"({"type": "string"})"), "");
  EXPECT_EQ(Convert("x", R"({"enum": ["x", "y"]})"), "x");
}

TEST(ToolParamTypesTest, NullWhateverTheType) {
  EXPECT_TRUE(Convert("null", R"({"type": "string"})").is_null());
  EXPECT_TRUE(Convert("Null", R"({"type": "integer"})").is_null());
  EXPECT_TRUE(ConvertParameterValue("NULL", nullptr).is_null());
}

TEST(ToolParamTypesTest, Integers) {
  EXPECT_EQ(Convert("42", R"({"type": "integer"})"), 42);
  EXPECT_EQ(Convert(" -7 ", R"({"type": "int"})"), -7);
  EXPECT_EQ(Convert("+5", R"({"type": "integer"})"), 5);
  EXPECT_EQ(Convert("5.0", R"({"type": "integer"})"), 5);
  EXPECT_EQ(Convert("5.5", R"({"type": "integer"})"), "5.5");
  EXPECT_EQ(Convert("five", R"({"type": "integer"})"), "five");
  EXPECT_EQ(Convert("[1]", R"({"type": "integer"})"), "[1]");
  EXPECT_EQ(Convert("123456789012", R"({"type": "uint64"})"), 123456789012LL);
}

TEST(ToolParamTypesTest, Numbers) {
  EXPECT_EQ(Convert("2.5", R"({"type": "number"})"), 2.5);
  EXPECT_TRUE(Convert("3.0", R"({"type": "number"})").is_number_integer());
  EXPECT_EQ(Convert("3.0", R"({"type": "float"})"), 3);
  EXPECT_EQ(Convert("1e-3", R"({"type": "number"})"), 0.001);
  EXPECT_EQ(Convert("inf", R"({"type": "number"})"), "inf");
  EXPECT_EQ(Convert("1e999", R"({"type": "number"})"), "1e999");
}

TEST(ToolParamTypesTest, Booleans) {
  EXPECT_EQ(Convert("true", R"({"type": "boolean"})"), true);
  EXPECT_EQ(Convert(" FALSE ", R"({"type": "bool"})"), false);
  EXPECT_EQ(Convert("yes", R"({"type": "boolean"})"), "yes");
}

TEST(ToolParamTypesTest, ObjectsAndArrays) {
  EXPECT_EQ(Convert(R"( {"b": 1, "a": [2]} )", R"({"type": "object"})"), ordered_json::parse(R"({"b": 1, "a": [2]})"));
  EXPECT_EQ(Convert("[1, 2]", R"({"type": "array", "items": {"type": "integer"}})"), ordered_json::parse("[1, 2]"));
  EXPECT_EQ(Convert("[1, 2]", R"({"type": "object"})"), "[1, 2]");
  EXPECT_EQ(Convert("{'a': True}", R"({"type": "object"})"), "{'a': True}");
  EXPECT_EQ(Convert(R"({"x": 1})", R"({"properties": {"x": {}}})"), ordered_json::parse(R"({"x": 1})"));
}

TEST(ToolParamTypesTest, TypeListsAndUnions) {
  EXPECT_EQ(Convert("3", R"({"type": ["integer", "null"]})"), 3);
  EXPECT_EQ(Convert("3", R"({"type": ["string", "integer"]})"), 3);
  EXPECT_EQ(Convert("abc", R"({"type": ["string", "integer"]})"), "abc");
  EXPECT_EQ(Convert("true", R"({"anyOf": [{"type": "boolean"}, {"type": "array"}]})"), true);
  EXPECT_EQ(Convert("[true]", R"({"oneOf": [{"type": "boolean"}, {"type": "array"}]})"), ordered_json::parse("[true]"));
  EXPECT_EQ(Convert("2", R"({"enum": [1, 2, 3]})"), 2);
}

TEST(ToolParamTypesTest, UnknownParametersAndTypes) {
  EXPECT_EQ(ConvertParameterValue("42", nullptr), "42");  // unknown parameter: verbatim (vLLM)
  EXPECT_EQ(Convert("42", R"({"description": "no type"})"), "42");
  EXPECT_EQ(Convert("42", R"({"type": "weird"})"), 42);  // unknown type: any JSON, else string
  EXPECT_EQ(Convert("[1", R"({"type": "weird"})"), "[1");
  EXPECT_EQ(Convert(R"({"a": 1})", R"({"$ref": "#/$defs/x"})"), ordered_json::parse(R"({"a": 1})"));
}

TEST(ToolParamTypesTest, FindsSchemas) {
  json tools = json::parse(R"([
    {"type": "function", "function": {"name": "f", "parameters": {"type": "object",
      "properties": {"p": {"type": "integer"}}}}},
    {"type": "function", "function": {"name": "g", "parameters": {"q": {"type": "boolean"}}}},
    {"type": "function", "function": {"name": "h"}}
  ])");
  ASSERT_NE(FindParameterSchema(tools, "f", "p"), nullptr);
  EXPECT_EQ((*FindParameterSchema(tools, "f", "p"))["type"], "integer");
  EXPECT_EQ(FindParameterSchema(tools, "f", "q"), nullptr);
  ASSERT_NE(FindParameterSchema(tools, "g", "q"), nullptr);
  EXPECT_EQ(FindParameterSchema(tools, "h", "p"), nullptr);
  EXPECT_EQ(FindParameterSchema(tools, "nope", "p"), nullptr);
  EXPECT_EQ(FindParameterSchema(json(), "f", "p"), nullptr);
}

}  // namespace
}  // namespace stepserve::text
