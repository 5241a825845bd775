// The text front over gRPC on a real server: the tiny checkpoint with the tiny preset's builtin tokenizer and
// Step chat template. The model's output is random text, but the path is real: greedy text requests must
// give exactly the token ids of the token-id path for the ids Tokenize returns.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/client_context.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/server/server_test_util.h"

namespace stepserve::testing {
namespace {

TestServerOptions TextServerOptions() {
  TestServerOptions o;
  o.text = true;
  return o;
}

std::string JoinText(const GenerateResult& r, bool reasoning = false) {
  std::string s;
  for (const auto& m : r.messages) s += reasoning ? m.reasoning_text() : m.text();
  return s;
}

std::vector<int32_t> Tokenize(v1::StepServe::Stub* stub, const v1::TokenizeRequest& request) {
  grpc::ClientContext ctx;
  v1::TokenizeResponse response;
  grpc::Status s = stub->Tokenize(&ctx, request, &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.count(), response.token_ids_size());
  return std::vector<int32_t>(response.token_ids().begin(), response.token_ids().end());
}

std::string Detokenize(v1::StepServe::Stub* stub, const std::vector<int32_t>& ids, std::optional<bool> skip) {
  grpc::ClientContext ctx;
  v1::DetokenizeRequest request;
  request.mutable_token_ids()->Add(ids.begin(), ids.end());
  if (skip) request.set_skip_special_tokens(*skip);
  v1::DetokenizeResponse response;
  grpc::Status s = stub->Detokenize(&ctx, request, &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return response.text();
}

v1::GenerateRequest PromptRequest(const std::string& prompt, int max_new_tokens) {
  v1::GenerateRequest r;
  r.set_prompt(prompt);
  r.mutable_stopping()->set_max_new_tokens(max_new_tokens);
  r.mutable_stopping()->set_ignore_eos(true);
  return r;
}

v1::ChatInput WeatherChat() {
  v1::ChatInput chat;
  v1::ChatMessage* sys = chat.add_messages();
  sys->set_role("system");
  sys->set_content("You are terse.");
  v1::ChatMessage* user = chat.add_messages();
  user->set_role("user");
  user->set_content("What is the weather in Paris?");
  v1::Tool* tool = chat.add_tools();
  tool->set_name("get_weather");
  tool->set_description("Current weather");
  tool->set_parameters_json(R"({"type": "object", "properties": {"city": {"type": "string"}}})");
  return chat;
}

TEST(TextServerTest, PromptGivesTheTokenIdPathsTokensAndTheirText) {
  TestServer server(TextServerOptions());
  auto stub = server.stub();
  v1::TokenizeRequest tr;
  tr.set_prompt("Hello there, how are you?");
  const std::vector<int32_t> ids = Tokenize(stub.get(), tr);
  ASSERT_GT(ids.size(), 2u);
  EXPECT_EQ(ids.front(), 1);  // BOS, as the tokenizer adds it

  GenerateResult text = RunGenerate(stub.get(), PromptRequest("Hello there, how are you?", 12));
  ASSERT_TRUE(text.status.ok()) << text.status.error_message();
  GenerateResult by_ids = RunGenerate(stub.get(), GreedyRequest(ids, 12));
  ASSERT_TRUE(by_ids.status.ok());
  EXPECT_EQ(text.tokens, by_ids.tokens);
  EXPECT_EQ(text.tokens.size(), 12u);
  EXPECT_EQ(text.messages.back().usage().prompt_tokens(), static_cast<int>(ids.size()));
  EXPECT_EQ(JoinText(text), Detokenize(stub.get(), text.tokens, true));
  for (const auto& m : by_ids.messages) EXPECT_TRUE(m.text().empty()) << "token-id requests carry no text";
}

TEST(TextServerTest, ChatWithToolsRendersTheTemplateAndParsesReasoning) {
  TestServer server(TextServerOptions());
  auto stub = server.stub();
  v1::TokenizeRequest tr;
  *tr.mutable_chat() = WeatherChat();
  const std::vector<int32_t> ids = Tokenize(stub.get(), tr);
  const std::string rendered = Detokenize(stub.get(), ids, std::nullopt);  // special tokens kept
  EXPECT_TRUE(absl::StrContains(rendered, "get_weather")) << rendered;
  EXPECT_TRUE(absl::EndsWith(rendered, "<|im_start|>assistant\n<think>\n")) << rendered;

  v1::GenerateRequest chat;
  *chat.mutable_chat() = WeatherChat();
  chat.mutable_stopping()->set_max_new_tokens(16);
  chat.mutable_stopping()->set_ignore_eos(true);
  GenerateResult r = RunGenerate(stub.get(), chat);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.tokens, RunGenerate(stub.get(), GreedyRequest(ids, 16)).tokens);
  // The generation prompt opened <think>: until the model writes </think> (id 6) the text is reasoning.
  const bool closed = std::find(r.tokens.begin(), r.tokens.end(), 6) != r.tokens.end();
  if (!closed) {
    EXPECT_EQ(JoinText(r), "");
    EXPECT_EQ(JoinText(r, true).empty(), Detokenize(stub.get(), r.tokens, true).empty());
  }
  const v1::FinishReason reason = r.messages.back().finish_reason();
  EXPECT_TRUE(reason == v1::FINISH_REASON_LENGTH || reason == v1::FINISH_REASON_TOOL_CALLS) << reason;
}

TEST(TextServerTest, StopStringAcrossTokensEndsTheRequestInTheEngine) {
  TestServer server(TextServerOptions());
  auto stub = server.stub();
  GenerateResult full = RunGenerate(stub.get(), PromptRequest("Once upon a time", 40));
  ASSERT_TRUE(full.status.ok());
  // A stop string made of the end of one token's text and the start of a later one's (whole characters).
  std::vector<std::string> deltas;
  for (const auto& m : full.messages) {
    if (!m.text().empty()) deltas.push_back(m.text());
  }
  ASSERT_GE(deltas.size(), 6u) << "the tiny model's text is too short to pick a stop string";
  auto last_char = [](const std::string& s) {
    size_t i = s.size() - 1;
    while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
    return s.substr(i);
  };
  auto first_char = [](const std::string& s) {
    size_t i = 1;
    while (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) ++i;
    return s.substr(0, i);
  };
  const std::string stop = last_char(deltas[3]) + first_char(deltas[4]);
  std::string all;
  for (const auto& d : deltas) all += d;
  const size_t at = all.find(stop);
  ASSERT_NE(at, std::string::npos);

  for (bool include : {false, true}) {
    v1::GenerateRequest request = PromptRequest("Once upon a time", 40);
    request.add_stop("never-in-this-text\x01");
    request.add_stop(stop);
    request.set_include_stop_str_in_output(include);
    GenerateResult r = RunGenerate(stub.get(), request);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    const v1::GenerateResponse& last = r.messages.back();
    EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_STOP_STRING);
    EXPECT_EQ(last.matched_stop(), stop);
    EXPECT_EQ(JoinText(r), all.substr(0, at + (include ? stop.size() : 0)));
    EXPECT_LT(last.usage().completion_tokens(), 40);
    EXPECT_EQ(last.usage().completion_tokens(), static_cast<int>(r.tokens.size()));
    // The tokens up to the match are the unstopped run's.
    EXPECT_EQ(r.tokens, std::vector<int32_t>(full.tokens.begin(), full.tokens.begin() + r.tokens.size()));
  }
  // Ended in the engine: nothing left running or waiting, and the success is counted as stop_string.
  EXPECT_TRUE(WaitFor([&] {
    ExecutorStats s = server.executor().Stats();
    return s.num_running == 0 && s.num_waiting == 0;
  }));
  EXPECT_TRUE(absl::StrContains(server.ScrapeMetricsHttp(), "finish_reason=\"stop_string\"} 2"));
}

TEST(TextServerTest, DetokenizeKeepsSpecialTokensUnlessAsked) {
  TestServer server(TextServerOptions());
  auto stub = server.stub();
  EXPECT_EQ(Detokenize(stub.get(), {3, 9 + 'h', 9 + 'i', 4}, std::nullopt), "<|im_start|>hi<|im_end|>");
  EXPECT_EQ(Detokenize(stub.get(), {3, 9 + 'h', 9 + 'i', 4}, true), "hi");
  grpc::ClientContext ctx;
  v1::DetokenizeRequest bad;
  bad.add_token_ids(5);
  bad.add_token_ids(300);
  v1::DetokenizeResponse response;
  grpc::Status s = stub->Detokenize(&ctx, bad, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StartsWith(s.error_message(), "token_ids[1]:")) << s.error_message();
}

TEST(TextServerTest, ModelInfoNamesTheTokenizer) {
  TestServer server(TextServerOptions());
  auto stub = server.stub();
  grpc::ClientContext ctx;
  v1::ModelInfo info;
  ASSERT_TRUE(stub->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.model(), "tiny");
  EXPECT_TRUE(info.tokenizer_loaded());
  EXPECT_TRUE(info.chat_template_loaded());
  EXPECT_EQ(info.bos_token(), "<|begin_of_sentence|>");
  EXPECT_EQ(info.eos_token(), "<|end_of_sentence|>");
  EXPECT_NE(std::find(info.special_tokens().begin(), info.special_tokens().end(), "</think>"),
            info.special_tokens().end());
}

struct BadRequest {
  const char* name;
  std::function<void(v1::GenerateRequest*)> edit;
  grpc::StatusCode code;
  const char* prefix;  // of the message: the field
};

TEST(TextServerTest, BadTextRequestsNameTheirFieldAndTheServerServesOn) {
  TestServer server(TextServerOptions());
  auto stub = server.stub();
  const std::vector<BadRequest> cases = {
      {"ids and prompt", [](v1::GenerateRequest* r) { r->add_prompt_token_ids(5); },
       grpc::StatusCode::INVALID_ARGUMENT, "prompt:"},
      {"prompt and chat",
       [](v1::GenerateRequest* r) { r->mutable_chat()->add_messages()->set_role("user"); },
       grpc::StatusCode::INVALID_ARGUMENT, "prompt:"},
      {"unknown role",
       [](v1::GenerateRequest* r) {
         r->clear_prompt();
         v1::ChatMessage* m = r->mutable_chat()->add_messages();
         m->set_role("oracle");
         m->set_content("x");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "chat.messages[0].role:"},
      {"tool_choice names a missing tool",
       [](v1::GenerateRequest* r) {
         r->clear_prompt();
         *r->mutable_chat() = WeatherChat();
         r->mutable_chat()->mutable_tool_choice()->set_function_name("get_time");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "chat.tool_choice:"},
      {"tool parameters not JSON",
       [](v1::GenerateRequest* r) {
         r->clear_prompt();
         *r->mutable_chat() = WeatherChat();
         r->mutable_chat()->mutable_tools(0)->set_parameters_json("{");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "chat.tools[0].parameters_json:"},
      {"prompt too long after templating",
       [](v1::GenerateRequest* r) {
         r->clear_prompt();
         v1::ChatMessage* m = r->mutable_chat()->add_messages();
         m->set_role("user");
         std::string words;
         for (int i = 0; i < 3000; ++i) absl::StrAppend(&words, " w", i);
         m->set_content(words);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "chat.messages:"},
      {"max_new_tokens beyond the context", [](v1::GenerateRequest* r) { r->mutable_stopping()->set_max_new_tokens(1 << 30); },
       grpc::StatusCode::INVALID_ARGUMENT, "stopping.max_new_tokens:"},
  };
  for (const BadRequest& c : cases) {
    v1::GenerateRequest request = PromptRequest("hello", 4);
    c.edit(&request);
    GenerateResult r = RunGenerate(stub.get(), request);
    EXPECT_EQ(r.status.error_code(), c.code) << c.name << ": " << r.status.error_message();
    EXPECT_TRUE(absl::StartsWith(r.status.error_message(), c.prefix)) << c.name << ": " << r.status.error_message();
  }
  EXPECT_TRUE(RunGenerate(stub.get(), PromptRequest("still serving", 3)).status.ok());
}

TEST(TextServerTest, WithoutATokenizerTextIsFailedPreconditionNamingTheFlag) {
  TestServer server;  // the tiny checkpoint alone: no tokenizer.json
  auto stub = server.stub();
  GenerateResult prompt = RunGenerate(stub.get(), PromptRequest("hello", 4));
  EXPECT_EQ(prompt.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(absl::StrContains(prompt.status.error_message(), "--tokenizer")) << prompt.status.error_message();
  v1::GenerateRequest stop = GreedyRequest({5, 6, 7}, 4);
  stop.add_stop("x");
  GenerateResult stopped = RunGenerate(stub.get(), stop);
  EXPECT_EQ(stopped.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(absl::StrContains(stopped.status.error_message(), "--tokenizer"));
  grpc::ClientContext ctx;
  v1::TokenizeRequest tr;
  tr.set_prompt("x");
  v1::TokenizeResponse response;
  grpc::Status s = stub->Tokenize(&ctx, tr, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  grpc::ClientContext info_ctx;
  v1::ModelInfo info;
  ASSERT_TRUE(stub->GetModelInfo(&info_ctx, v1::GetModelInfoRequest(), &info).ok());
  EXPECT_FALSE(info.tokenizer_loaded());
  EXPECT_EQ(info.model(), "tiny-test");
  EXPECT_TRUE(RunGenerate(stub.get(), GreedyRequest({5, 6, 7}, 3)).status.ok());  // ids still work
}

}  // namespace
}  // namespace stepserve::testing
