// ChatTemplate: choosing the template (override file, tokenizer_config string or named list,
// chat_template.jinja), the render variables, and the built-in Step template's format.
#include "text/jinja/chat_template.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "absl/strings/match.h"

namespace stepserve::text {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/chat_template_test_XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  const std::string& path() const { return path_; }
  void Write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ + "/" + name) << text;
  }

 private:
  std::string path_;
};

std::string RenderOne(const ChatTemplate& t) {
  auto r = t.Render(json::array({{{"role", "user"}, {"content", "hi"}}}), json(), false, json::object(), "", "");
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : "";
}

TEST(ChatTemplateTest, LoadPicksTheTemplate) {
  TempDir dir;
  json string_config = {{"chat_template", "from-config {{ messages[0].content }}"}};
  auto t = ChatTemplate::Load(dir.path(), string_config, "");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(RenderOne(**t), "from-config hi");

  json list_config = {{"chat_template", json::array({{{"name", "default"}, {"template", "default-tpl"}},
                                                      {{"name", "tool_use"}, {"template", "tool-tpl"}}})}};
  t = ChatTemplate::Load(dir.path(), list_config, "");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(RenderOne(**t), "default-tpl");
  t = ChatTemplate::Load(dir.path(), list_config, "", "tool_use");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(RenderOne(**t), "tool-tpl");
  t = ChatTemplate::Load(dir.path(), list_config, "", "rag");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound) << t.status();

  // No chat_template in the config: chat_template.jinja in the model directory.
  t = ChatTemplate::Load(dir.path(), json::object(), "");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound) << t.status();
  dir.Write("chat_template.jinja", "from-file {{ messages | length }}\n");
  t = ChatTemplate::Load(dir.path(), json::object(), "");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(RenderOne(**t), "from-file 1");

  // --chat_template=FILE wins over everything.
  dir.Write("override.jinja", "override");
  t = ChatTemplate::Load(dir.path(), string_config, dir.path() + "/override.jinja");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(RenderOne(**t), "override");
  t = ChatTemplate::Load(dir.path(), string_config, dir.path() + "/missing.jinja");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);

  t = ChatTemplate::Load(dir.path(), json{{"chat_template", "{% if %}"}}, "");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  t = ChatTemplate::Load(dir.path(), json{{"chat_template", 5}}, "");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ChatTemplateTest, RenderVariables) {
  auto t = ChatTemplate::Parse(
      "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ tools is none }}|{{ tools | length if tools else 0 }}|"
      "{{ reasoning_effort | default('-') }}|{{ enable_thinking }}");
  ASSERT_TRUE(t.ok()) << t.status();
  json messages = json::array({{{"role", "user"}, {"content", "x"}}});
  auto r = (*t)->Render(messages, json(), true, json{{"reasoning_effort", "high"}, {"enable_thinking", false}}, "<s>",
                        "</s>");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "<s>|</s>|True|True|0|high|False");
  r = (*t)->Render(messages, json::array(), false, json::object(), "", "");  // empty tools → None
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "||False|True|0|-|");
  r = (*t)->Render(messages, json::array({{{"type", "function"}}}), false, json{{"bos_token", "B"}}, "", "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "B||False|False|1|-|");
  EXPECT_FALSE((*t)->Render(messages, json(), false, json{{"messages", 1}}, "", "").ok());
  EXPECT_FALSE((*t)->Render(json::object(), json(), false, json::object(), "", "").ok());
}

TEST(ChatTemplateTest, OrderedJsonKeepsToolKeyOrder) {
  auto t = ChatTemplate::Parse("{{ tools[0] | tojson }}");
  ASSERT_TRUE(t.ok());
  ordered_json tools = ordered_json::array({{{"z", 1}, {"a", 2}}});
  auto r = (*t)->Render(ordered_json::array(), tools, false, ordered_json::object(), "", "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "{\"z\": 1, \"a\": 2}");
  auto sorted = (*t)->Render(json::array(), json::parse("[{\"z\": 1, \"a\": 2}]"), false, json::object(), "", "");
  ASSERT_TRUE(sorted.ok());
  EXPECT_EQ(*sorted, "{\"a\": 2, \"z\": 1}");  // nlohmann::json sorts object keys
}

TEST(ChatTemplateTest, BuiltinStepTemplateFormat) {
  auto t = ChatTemplate::Parse(std::string(BuiltinStepChatTemplate()), "step");
  ASSERT_TRUE(t.ok()) << t.status();
  ordered_json tools = ordered_json::array(
      {{{"type", "function"}, {"function", {{"name", "get_weather"}, {"parameters", {{"type", "object"}}}}}}});
  ordered_json messages = ordered_json::array(
      {{{"role", "system"}, {"content", "Be brief."}},
       {{"role", "user"}, {"content", "Weather?"}},
       {{"role", "assistant"},
        {"content", ""},
        {"reasoning_content", "Need a tool."},
        {"tool_calls",
         {{{"type", "function"},
           {"function", {{"name", "get_weather"}, {"arguments", {{"city", "Paris"}, {"days", 2}}}}}}}}},
       {{"role", "tool"}, {"content", "sunny"}}});
  auto r = (*t)->Render(messages, tools, true, ordered_json::object(), "", "");
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string& out = *r;
  EXPECT_TRUE(absl::StartsWith(out, "<|im_start|>system\nBe brief.\n\n# Tools\n")) << out;
  EXPECT_TRUE(absl::StrContains(out, "<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\"")) << out;
  EXPECT_TRUE(absl::StrContains(out, "<|im_start|>user\nWeather?<|im_end|>\n")) << out;
  EXPECT_TRUE(absl::StrContains(out,
                                "<|im_start|>assistant\n<think>\nNeed a tool.\n</think>\n<tool_call>\n<function=get_weather>\n"
                                "<parameter=city>\nParis\n</parameter>\n<parameter=days>\n2\n</parameter>\n</function>\n"
                                "</tool_call><|im_end|>\n"))
      << out;
  EXPECT_TRUE(absl::StrContains(out, "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n")) << out;
  EXPECT_TRUE(absl::EndsWith(out, "<|im_start|>assistant\n<think>\n")) << out;

  auto bad_role = (*t)->Render(ordered_json::array({{{"role", "robot"}, {"content", "x"}}}), ordered_json(), false,
                               ordered_json::object(), "", "");
  ASSERT_FALSE(bad_role.ok());
  EXPECT_TRUE(absl::StrContains(bad_role.status().message(), "unexpected message role: robot")) << bad_role.status();
}

}  // namespace
}  // namespace stepserve::text
