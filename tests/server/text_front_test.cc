// The server's text front without a server: TextPipeline (loading, request preparation and its errors) and
// OutputStage (detokenizer -> stop strings -> chat parsers) on hand-made engine outputs, with the tiny
// preset's builtin tokenizer and Step chat template.
#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "server/proto_text.h"
#include "server/text_output.h"
#include "server/text_pipeline.h"
#include "text/jinja/chat_template.h"
#include "text/tokenizer/builtin_tokenizer.h"
#include "tests/server/server_test_util.h"

namespace stepserve::server {
namespace {

using nlohmann::ordered_json;

std::shared_ptr<TextPipeline> TinyText() {
  auto tokenizer = text::BuiltinTokenizer(300);
  auto tmpl = text::ChatTemplate::Parse(std::string(text::BuiltinStepChatTemplate()));
  EXPECT_TRUE(tokenizer.ok() && tmpl.ok());
  return std::make_shared<TextPipeline>(*tokenizer, *tmpl, "tiny");
}

std::string TempDir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / (name + "_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir.string();
}

void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TextInput Chat(ordered_json messages) {
  TextInput in;
  in.kind = TextInput::Kind::kChat;
  in.messages = std::move(messages);
  return in;
}

TEST(TextPipelineTest, PresetGetsTheBuiltinTokenizerAndTemplateAndItsName) {
  auto text = TextPipeline::Load(TextOptions(), "tiny", 300);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_TRUE((*text)->has_tokenizer());
  EXPECT_TRUE((*text)->has_chat_template());
  EXPECT_EQ((*text)->model_name(), "tiny");
  EXPECT_EQ((*text)->tokenizer()->vocab_size(), 300);
  TextOptions named;
  named.served_model_name = "step-3.5";
  EXPECT_EQ((*TextPipeline::Load(named, "small:2", 32000))->model_name(), "step-3.5");
  EXPECT_EQ((*TextPipeline::Load(TextOptions(), "small:2", 32000))->model_name(), "small:2");
}

TEST(TextPipelineTest, CheckpointWithoutTokenizerServesIdsOnlyAndNamesTheFolder) {
  const std::string dir = TempDir("ckpt_no_tok") + "/My-Model";
  std::filesystem::create_directories(dir);
  auto text = TextPipeline::Load(TextOptions(), dir + "/", 300);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_FALSE((*text)->has_tokenizer());
  EXPECT_EQ((*text)->model_name(), "My-Model");  // the base name, never the path
  TextInput prompt;
  prompt.kind = TextInput::Kind::kPrompt;
  prompt.prompt = "hello";
  auto prepared = (*text)->Prepare(prompt, PrepareOptions());
  EXPECT_EQ(prepared.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(prepared.status().message(), "--tokenizer")) << prepared.status();
  auto chat = (*text)->Prepare(Chat({{{"role", "user"}, {"content", "hi"}}}), PrepareOptions());
  EXPECT_EQ(chat.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(chat.status().message(), "--tokenizer"));
  EXPECT_EQ((*text)->Detokenize({1, 2}, false, "tokens").status().code(), absl::StatusCode::kFailedPrecondition);
  // Token ids pass through.
  TextInput ids;
  ids.token_ids = {5, 6};
  EXPECT_EQ((*text)->Prepare(ids, PrepareOptions())->ids, (std::vector<int32_t>{5, 6}));
}

TEST(TextPipelineTest, StartupErrorsNameTheFlag) {
  TextOptions missing;
  missing.tokenizer_dir = "/nonexistent/tokenizer";
  auto a = TextPipeline::Load(missing, "tiny", 300);
  ASSERT_FALSE(a.ok());
  EXPECT_TRUE(absl::StrContains(a.status().message(), "--tokenizer")) << a.status();

  // A tokenizer whose ids reach past the model's vocabulary.
  const std::string dir = TempDir("big_tok");
  WriteFile(dir + "/tokenizer.json", text::BuiltinTokenizerJson(400).dump());
  WriteFile(dir + "/tokenizer_config.json", text::BuiltinTokenizerConfigJson().dump());
  TextOptions big;
  big.tokenizer_dir = dir;
  auto b = TextPipeline::Load(big, "tiny", 300);
  ASSERT_FALSE(b.ok());
  EXPECT_TRUE(absl::StrContains(b.status().message(), "vocab")) << b.status();
  EXPECT_TRUE(TextPipeline::Load(big, "small:1", 32000).ok());  // the same tokenizer fits a larger vocabulary

  TextOptions bad_template;
  bad_template.chat_template_file = "/nonexistent/template.jinja";
  auto c = TextPipeline::Load(bad_template, "tiny", 300);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(absl::StrContains(c.status().message(), "--chat_template")) << c.status();
}

TEST(TextPipelineTest, PromptIsEncodedWithSpecialTokensAsAsked) {
  auto text = TinyText();
  TextInput in;
  in.kind = TextInput::Kind::kPrompt;
  in.prompt = "Hello world";
  auto with = text->Prepare(in, PrepareOptions());
  ASSERT_TRUE(with.ok());
  EXPECT_EQ(with->ids.front(), 1);  // BOS
  EXPECT_TRUE(with->is_text);
  EXPECT_FALSE(with->is_chat);
  in.add_special_tokens = false;
  auto without = text->Prepare(in, PrepareOptions());
  EXPECT_EQ(std::vector<int32_t>(with->ids.begin() + 1, with->ids.end()), without->ids);
  EXPECT_EQ(text->tokenizer()->Decode(without->ids, false), "Hello world");
}

TEST(TextPipelineTest, ChatIsRenderedThenEncodedWithoutSpecialTokensAndOpensReasoning) {
  auto text = TinyText();
  auto prepared = text->Prepare(Chat({{{"role", "user"}, {"content", "hi"}}}), PrepareOptions());
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  const std::string rendered = text->tokenizer()->Decode(prepared->ids, false);
  EXPECT_TRUE(absl::StrContains(rendered, "<|im_start|>user\nhi<|im_end|>")) << rendered;
  EXPECT_TRUE(absl::EndsWith(rendered, "<|im_start|>assistant\n<think>\n")) << rendered;
  EXPECT_NE(prepared->ids.front(), 1);  // no BOS added by the encoder
  EXPECT_TRUE(prepared->is_chat);
  EXPECT_TRUE(prepared->chat_output.parse_reasoning);
  EXPECT_TRUE(prepared->chat_output.starts_in_reasoning);
  EXPECT_FALSE(prepared->chat_output.parse_tool_calls);  // no tools
}

TEST(TextPipelineTest, AssistantToolCallArgumentsAsJsonStringsAreParsedInClientOrder) {
  auto text = TinyText();
  ordered_json messages = ordered_json::parse(R"([
    {"role": "user", "content": "weather?"},
    {"role": "assistant", "content": null, "tool_calls": [
      {"id": "call_1", "type": "function",
       "function": {"name": "get_weather", "arguments": "{\"zeta\": 1, \"alpha\": \"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}])");
  TextInput in = Chat(messages);
  in.tools = ordered_json::parse(
      R"([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])");
  auto prepared = text->Prepare(in, PrepareOptions());
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  const std::string rendered = text->tokenizer()->Decode(prepared->ids, false);
  const size_t zeta = rendered.find("<parameter=zeta>"), alpha = rendered.find("<parameter=alpha>");
  ASSERT_NE(zeta, std::string::npos) << rendered;
  ASSERT_NE(alpha, std::string::npos) << rendered;
  EXPECT_LT(zeta, alpha) << "arguments keep the client's key order";
  EXPECT_TRUE(prepared->chat_output.parse_tool_calls);
  EXPECT_TRUE(absl::StrContains(rendered, "get_weather"));
}

struct BadInput {
  const char* name;
  std::function<TextInput()> make;
  absl::StatusCode code;
  const char* field;  // the message starts with it
};

TEST(TextPipelineTest, BadInputsNameTheirField) {
  auto text = TinyText();
  std::vector<BadInput> cases = {
      {"invalid utf8 prompt",
       [] {
         TextInput in;
         in.kind = TextInput::Kind::kPrompt;
         in.prompt = std::string("ab\xff", 3);
         return in;
       },
       absl::StatusCode::kInvalidArgument, "prompt:"},
      {"unknown role", [] { return Chat({{{"role", "wizard"}, {"content", "x"}}}); },
       absl::StatusCode::kInvalidArgument, "messages[0].role:"},
      {"empty messages", [] { return Chat(ordered_json::array()); }, absl::StatusCode::kInvalidArgument,
       "messages:"},
      {"malformed tool",
       [] {
         TextInput in = Chat({{{"role", "user"}, {"content", "x"}}});
         in.tools = ordered_json::parse(R"([{"type": "function", "function": {"description": "no name"}}])");
         return in;
       },
       absl::StatusCode::kInvalidArgument, "tools[0].function.name:"},
      {"tool_choice names a missing tool",
       [] {
         TextInput in = Chat({{{"role", "user"}, {"content", "x"}}});
         in.tools = ordered_json::parse(R"([{"type": "function", "function": {"name": "a"}}])");
         in.tool_choice = ordered_json::parse(R"({"type": "function", "function": {"name": "b"}})");
         return in;
       },
       absl::StatusCode::kInvalidArgument, "tool_choice:"},
      {"bad tool call arguments",
       [] {
         return Chat(ordered_json::parse(R"([{"role": "assistant", "content": null, "tool_calls": [
                 {"type": "function", "function": {"name": "f", "arguments": "{not json"}}]}])"));
       },
       absl::StatusCode::kInvalidArgument, "messages[0].tool_calls[0].function.arguments:"},
  };
  for (const BadInput& c : cases) {
    auto prepared = text->Prepare(c.make(), PrepareOptions());
    ASSERT_FALSE(prepared.ok()) << c.name;
    EXPECT_EQ(prepared.status().code(), c.code) << c.name << ": " << prepared.status();
    EXPECT_TRUE(absl::StartsWith(prepared.status().message(), c.field)) << c.name << ": " << prepared.status();
  }
  // The gRPC front prefixes the chat fields.
  PrepareOptions grpc;
  grpc.chat_field_prefix = "chat.";
  auto prefixed = text->Prepare(Chat({{{"role", "wizard"}, {"content", "x"}}}), grpc);
  EXPECT_TRUE(absl::StartsWith(prefixed.status().message(), "chat.messages[0].role:")) << prefixed.status();
}

TEST(TextPipelineTest, PromptTooLongAfterTemplatingIsInvalid) {
  auto text = TinyText();
  PrepareOptions options;
  options.max_context = 64;
  auto prepared = text->Prepare(Chat({{{"role", "user"}, {"content", std::string(200, 'q') + " zz"}}}), options);
  ASSERT_EQ(prepared.status().code(), absl::StatusCode::kInvalidArgument) << prepared.status();
  EXPECT_TRUE(absl::StartsWith(prepared.status().message(), "messages:")) << prepared.status();
  EXPECT_TRUE(absl::StrContains(prepared.status().message(), "after the chat template"));
}

TEST(TextPipelineTest, TemplateThatRaisesIsInvalidArgumentWithItsMessage) {
  auto tokenizer = text::BuiltinTokenizer(300);
  auto tmpl = text::ChatTemplate::Parse(
      "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system prompts here') }}"
      "{% endif %}{{ m.content }}{% endfor %}");
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  TextPipeline text(*tokenizer, *tmpl, "tiny");
  auto prepared = text.Prepare(Chat({{{"role", "system"}, {"content", "x"}}}), PrepareOptions());
  ASSERT_EQ(prepared.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(prepared.status().message(), "no system prompts here")) << prepared.status();
  EXPECT_TRUE(absl::StartsWith(prepared.status().message(), "messages:")) << prepared.status();
}

TEST(ProtoTextTest, ExactlyOneInputAndJsonFieldsParse) {
  v1::GenerateRequest both;
  both.add_prompt_token_ids(5);
  both.set_prompt("hi");
  auto a = TextInputFromProto(both);
  ASSERT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(a.status().message(), "prompt:")) << a.status();

  v1::GenerateRequest chat;
  chat.mutable_chat()->add_messages()->set_role("user");
  chat.mutable_chat()->add_tools()->set_name("f");
  chat.mutable_chat()->mutable_tools(0)->set_parameters_json("{oops");
  auto b = TextInputFromProto(chat);
  ASSERT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(b.status().message(), "chat.tools[0].parameters_json:")) << b.status();

  chat.mutable_chat()->mutable_tools(0)->set_parameters_json(R"({"type": "object"})");
  chat.mutable_chat()->set_chat_template_kwargs_json("[1]");
  auto c = TextInputFromProto(chat);
  ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(c.status().message(), "chat.chat_template_kwargs_json:")) << c.status();

  chat.mutable_chat()->set_chat_template_kwargs_json(R"({"reasoning_effort": "low"})");
  chat.mutable_chat()->mutable_tool_choice()->set_function_name("f");
  auto d = TextInputFromProto(chat);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->kind, TextInput::Kind::kChat);
  EXPECT_EQ(d->tool_choice["function"]["name"], "f");
  EXPECT_EQ(d->messages[0]["content"], nullptr);  // unset content is null
  EXPECT_EQ(d->tools[0]["function"]["parameters"]["type"], "object");
  EXPECT_TRUE(d->add_generation_prompt);
}

// ---- OutputStage on hand-made engine outputs ----

GenerationOutput Output(std::vector<int32_t> ids, bool finished = false, FinishReason reason = FinishReason::kNone) {
  GenerationOutput out;
  out.token_ids = std::move(ids);
  out.finished = finished;
  out.finish_reason = reason;
  out.completion_tokens = 0;
  return out;
}

std::vector<int32_t> Encode(const text::Tokenizer& t, const std::string& s) { return *t.Encode(s, false); }

// Feeds `ids` one token per output (the last one finished with `reason`); returns the processed outputs.
std::vector<TextOutput> RunStage(OutputStage& stage, const std::vector<int32_t>& ids, FinishReason reason,
                                 int* cancels) {
  std::vector<TextOutput> outs;
  *cancels = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const bool last = i + 1 == ids.size();
    bool stop = false;
    auto r = stage.Process(Output({ids[i]}, last, last ? reason : FinishReason::kNone), &stop);
    if (stop && !last) ++*cancels;
    if (r) outs.push_back(*r);
    if (stop && !last) {  // the engine's last output after the cancel
      auto final_out = stage.Process(Output({}, true, FinishReason::kCancelled), &stop);
      EXPECT_TRUE(final_out.has_value());
      if (final_out) outs.push_back(*final_out);
      break;
    }
  }
  return outs;
}

std::string Joined(const std::vector<TextOutput>& outs, bool reasoning = false) {
  std::string s;
  for (const auto& o : outs) s += reasoning ? o.reasoning : o.text;
  return s;
}

TEST(OutputStageTest, StopStringAcrossTokenBoundariesEndsAndCancelsOnce) {
  auto text = TinyText();
  const auto& tok = text->tokenizer();
  const std::string body = "The quick brown fox jumps over the lazy dog";
  const std::vector<int32_t> ids = Encode(*tok, body);
  ASSERT_GT(ids.size(), 4u);
  for (bool include : {false, true}) {
    PreparedPrompt prompt;
    prompt.is_text = true;
    auto options = MakeOutputStageOptions(*text, prompt, {"own fox", "zzz"}, include, true, "stop");
    ASSERT_TRUE(options.ok());
    OutputStage stage(tok, *options);
    int cancels = 0;
    auto outs = RunStage(stage, ids, FinishReason::kLength, &cancels);
    EXPECT_EQ(cancels, 1);
    ASSERT_FALSE(outs.empty());
    const TextOutput& last = outs.back();
    EXPECT_TRUE(last.out.finished);
    EXPECT_EQ(last.finish, TextFinish::kStopString);
    EXPECT_EQ(last.matched_stop, "own fox");
    EXPECT_EQ(Joined(outs), include ? "The quick brown fox" : "The quick br");
    int delivered = 0;
    for (const auto& o : outs) delivered += static_cast<int>(o.out.token_ids.size());
    EXPECT_EQ(last.out.completion_tokens, delivered);
    EXPECT_LT(delivered, static_cast<int>(ids.size()));
  }
}

TEST(OutputStageTest, StopStringSplitAcrossManyTokensInOneOutput) {
  auto text = TinyText();
  const auto& tok = text->tokenizer();
  const std::vector<int32_t> ids = Encode(*tok, "alpha beta gamma delta");
  PreparedPrompt prompt;
  prompt.is_text = true;
  OutputStage stage(tok, *MakeOutputStageOptions(*text, prompt, {"ta gam"}, false, true, "stop"));
  bool stop = false;
  auto r = stage.Process(Output(ids), &stop);  // every token in one engine output
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(stop);
  EXPECT_EQ(r->text, "alpha be");
  EXPECT_LT(r->out.token_ids.size(), ids.size());  // cut after the token that completed the match
  EXPECT_FALSE(stage.Process(Output({7}), &stop).has_value());  // generated before the cancel took effect
  auto last = stage.Process(Output({}, true, FinishReason::kCancelled), &stop);
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->finish, TextFinish::kStopString);
  EXPECT_EQ(last->out.completion_tokens, static_cast<int>(r->out.token_ids.size()));
}

TEST(OutputStageTest, EosTokenIsNotTextAndDeltasAddUpToDecode) {
  auto text = TinyText();
  const auto& tok = text->tokenizer();
  std::vector<int32_t> ids = Encode(*tok, "héllo wörld 😀");
  const std::string expected = tok->Decode(ids, true);
  ids.push_back(2);  // EOS
  PreparedPrompt prompt;
  prompt.is_text = true;
  OutputStage stage(tok, *MakeOutputStageOptions(*text, prompt, {}, false, /*skip_special_tokens=*/false, "stop"));
  int cancels = 0;
  auto outs = RunStage(stage, ids, FinishReason::kEos, &cancels);
  EXPECT_EQ(cancels, 0);
  EXPECT_EQ(Joined(outs), expected);  // EOS text left out even with skip_special_tokens false
  EXPECT_EQ(outs.back().finish, TextFinish::kEngine);
}

TEST(OutputStageTest, ChatReasoningContentAndToolCalls) {
  auto text = TinyText();
  const auto& tok = text->tokenizer();
  TextInput in = Chat({{{"role", "user"}, {"content", "weather in Paris?"}}});
  in.tools = ordered_json::parse(R"([{"type": "function", "function": {"name": "get_weather",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}])");
  auto prompt = text->Prepare(in, PrepareOptions());
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  const std::string generated =
      "I should call the tool.\n</think>\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
      "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>";
  std::vector<int32_t> ids = Encode(*tok, generated);
  ids.push_back(2);  // EOS
  // The tags are special tokens of the builtin vocabulary: they reach the parsers although special tokens are
  // skipped.
  EXPECT_TRUE(tok->IsSpecial(*tok->TokenToId("</think>")));
  OutputStage stage(tok, *MakeOutputStageOptions(*text, *prompt, {}, false, true, "stop"));
  int cancels = 0;
  auto outs = RunStage(stage, ids, FinishReason::kEos, &cancels);
  EXPECT_EQ(Joined(outs, true), "I should call the tool.");
  EXPECT_EQ(Joined(outs), "");
  std::string name, arguments;
  for (const auto& o : outs) {
    for (const auto& d : o.tool_calls) {
      if (d.name) name = *d.name;
      arguments += d.arguments;
    }
  }
  EXPECT_EQ(name, "get_weather");
  EXPECT_EQ(nlohmann::json::parse(arguments), nlohmann::json::parse(R"({"city": "Paris", "days": 3})"));
  EXPECT_EQ(outs.back().finish, TextFinish::kToolCalls);
  for (const auto& o : outs) {
    EXPECT_FALSE(absl::StrContains(o.reasoning, "</think")) << "a partial tag leaked";
    EXPECT_FALSE(absl::StrContains(o.text, "<tool")) << "a partial tag leaked";
  }
}

TEST(OutputStageTest, TokenIdRequestsWithoutStopsCarryNoText) {
  auto text = TinyText();
  PreparedPrompt prompt;  // token ids
  auto options = MakeOutputStageOptions(*text, prompt, {}, false, true, "stop");
  ASSERT_TRUE(options.ok());
  EXPECT_FALSE(options->detokenize);
  auto with_stop = MakeOutputStageOptions(*text, prompt, {"x"}, false, true, "stop");
  EXPECT_TRUE(with_stop->detokenize);
  auto bad = MakeOutputStageOptions(*text, prompt, {std::string("\xc3", 1)}, false, true, "stop");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(bad.status().message(), "stop[0]:")) << bad.status();
  TextPipeline none(nullptr, nullptr, "m");
  auto no_tokenizer = MakeOutputStageOptions(none, prompt, {"x"}, false, true, "stop");
  EXPECT_EQ(no_tokenizer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(no_tokenizer.status().message(), "--tokenizer"));
}

// A tokenizer whose EOS (generation_config.json's eos_token_id) is not the model's: text requests stop at
// it too. The tiny model's first greedy token of golden case 0 is made that EOS, so the request must end
// after one token with a stop-token finish; with ignore_eos it runs on.
TEST(OutputStageTest, TheTokenizersEosEndsTextRequestsThoughTheModelConfigLacksIt) {
  testing::TestServer server;
  const testing::GreedyCase& golden = testing::Greedy()[0];
  const int32_t first = golden.greedy[0];
  ASSERT_EQ(std::count(server.executor().config().eos_token_ids.begin(),
                       server.executor().config().eos_token_ids.end(), first), 0);
  nlohmann::json generation_config = {{"eos_token_id", nlohmann::json::array({2, first})}};
  auto tok = text::Tokenizer::FromJson(text::BuiltinTokenizerJson(300), text::BuiltinTokenizerConfigJson(),
                                       generation_config);
  ASSERT_TRUE(tok.ok()) << tok.status();
  TextPipeline text(*tok, nullptr, "tiny");
  PreparedPrompt prompt;
  prompt.ids = golden.prompt;
  prompt.is_text = true;
  for (const bool ignore_eos : {false, true}) {
    auto options = MakeOutputStageOptions(text, prompt, {}, false, true, "stop");
    ASSERT_TRUE(options.ok()) << options.status();
    auto stage = std::make_shared<OutputStage>(*tok, *options);
    const std::vector<int32_t> eos = stage->EosTokenIds();
    EXPECT_EQ(std::count(eos.begin(), eos.end(), first), 1);
    GenerationRequest request;
    request.id = ignore_eos ? "eos-ignored" : "eos";
    request.prompt = golden.prompt;
    request.stopping.max_new_tokens = 5;
    request.stopping.ignore_eos = ignore_eos;
    std::mutex mu;
    std::condition_variable cv;
    std::vector<int32_t> tokens;
    FinishReason reason = FinishReason::kNone;
    bool done = false;
    ASSERT_TRUE(StartTextGeneration(&server.executor(), request, stage, [&](TextOutput&& o) {
                  std::lock_guard<std::mutex> lock(mu);
                  tokens.insert(tokens.end(), o.out.token_ids.begin(), o.out.token_ids.end());
                  if (o.out.finished) {
                    reason = o.out.finish_reason;
                    done = true;
                    cv.notify_all();
                  }
                }).ok());
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return done; }));
    if (ignore_eos) {
      EXPECT_EQ(tokens.size(), 5u);
      EXPECT_EQ(reason, FinishReason::kLength);
    } else {
      EXPECT_EQ(tokens, std::vector<int32_t>{first});
      EXPECT_EQ(reason, FinishReason::kStopToken);
    }
  }
}

TEST(TextLimitsTest, StopStringsMessagesAndToolsPastTheirCapsNameTheField) {
  auto text = TinyText();
  TextLimits limits;
  limits.max_stop_strings = 2;
  limits.max_stop_string_bytes = 8;
  limits.max_chat_messages = 2;
  limits.max_tools = 1;
  text->set_limits(limits);
  PreparedPrompt prompt;
  EXPECT_TRUE(MakeOutputStageOptions(*text, prompt, {"a", "b"}, false, true, "stop").ok());
  auto many = MakeOutputStageOptions(*text, prompt, {"a", "b", "c"}, false, true, "stop");
  EXPECT_EQ(many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(many.status().message(), "stop: 3 stop strings")) << many.status();
  EXPECT_TRUE(absl::StrContains(many.status().message(), "--max_stop_strings=2")) << many.status();
  auto long_one = MakeOutputStageOptions(*text, prompt, {"a", "123456789"}, false, true, "stop");
  EXPECT_EQ(long_one.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(long_one.status().message(), "stop[1]: 9 bytes")) << long_one.status();

  const ordered_json turn = {{"role", "user"}, {"content", "hi"}};
  EXPECT_TRUE(text->Prepare(Chat({turn, turn}), PrepareOptions()).ok());
  PrepareOptions grpc;
  grpc.chat_field_prefix = "chat.";
  auto messages = text->Prepare(Chat({turn, turn, turn}), grpc);
  EXPECT_EQ(messages.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(messages.status().message(), "chat.messages: 3 messages")) << messages.status();
  const ordered_json tool = {{"type", "function"}, {"function", {{"name", "f"}}}};
  const ordered_json tool2 = {{"type", "function"}, {"function", {{"name", "g"}}}};
  TextInput with_tools = Chat({turn});
  with_tools.tools = ordered_json::array({tool});
  EXPECT_TRUE(text->Prepare(with_tools, PrepareOptions()).ok());
  with_tools.tools = ordered_json::array({tool, tool2});
  auto tools = text->Prepare(with_tools, PrepareOptions());
  EXPECT_EQ(tools.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(tools.status().message(), "tools: 2 tools")) << tools.status();
}

}  // namespace
}  // namespace stepserve::server
