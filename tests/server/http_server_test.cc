// The OpenAI-compatible HTTP front on a real server (the tiny checkpoint, its builtin tokenizer and Step
// template), with cpp-httplib's client: every route, streaming (SSE parsed) and not, errors with their status
// and error JSON, a client that disconnects mid-stream, and equality with the gRPC paths (greedy).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/client_context.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "tests/server/server_test_util.h"

namespace stepserve::testing {
namespace {

using Json = nlohmann::json;

TestServerOptions HttpServerOptions(bool text = true) {
  TestServerOptions o;
  o.text = text;
  o.http = true;
  return o;
}

struct HttpResult {
  int status = 0;
  std::string body;
  std::string content_type;
  Json json() const { return Json::parse(body); }
};

HttpResult Post(int port, const std::string& path, const std::string& body) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(120, 0);
  auto res = cli.Post(path.c_str(), body, "application/json");
  if (!res) throw std::runtime_error(absl::StrCat("POST ", path, " failed: ", httplib::to_string(res.error())));
  return {res->status, res->body, res->get_header_value("Content-Type")};
}

HttpResult Get(int port, const std::string& path) {
  httplib::Client cli("127.0.0.1", port);
  auto res = cli.Get(path.c_str());
  if (!res) throw std::runtime_error(absl::StrCat("GET ", path, " failed"));
  return {res->status, res->body, res->get_header_value("Content-Type")};
}

// The server-sent events of a stream: each data payload; "[DONE]" last.
std::vector<std::string> SseData(const std::string& body) {
  std::vector<std::string> data;
  for (absl::string_view event : absl::StrSplit(body, "\n\n", absl::SkipEmpty())) {
    for (absl::string_view line : absl::StrSplit(event, '\n')) {
      if (absl::StartsWith(line, "data: ")) data.emplace_back(line.substr(6));
    }
  }
  return data;
}

void ExpectError(const HttpResult& r, int status, const std::string& param) {
  EXPECT_EQ(r.status, status) << r.body;
  Json j = Json::parse(r.body, nullptr, false);
  ASSERT_TRUE(j.is_object() && j.contains("error")) << r.body;
  const Json& e = j["error"];
  EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty()) << r.body;
  EXPECT_TRUE(e["type"].is_string()) << r.body;
  EXPECT_TRUE(e.contains("code")) << r.body;
  if (param.empty()) {
    EXPECT_TRUE(e["param"].is_null()) << r.body;
  } else {
    EXPECT_EQ(e["param"], param) << r.body;
  }
}

std::vector<int32_t> GrpcTokenize(TestServer& server, const std::string& prompt) {
  grpc::ClientContext ctx;
  v1::TokenizeRequest tr;
  tr.set_prompt(prompt);
  v1::TokenizeResponse response;
  EXPECT_TRUE(server.stub()->Tokenize(&ctx, tr, &response).ok());
  return std::vector<int32_t>(response.token_ids().begin(), response.token_ids().end());
}

std::string GrpcDetokenize(TestServer& server, const std::vector<int32_t>& ids) {
  grpc::ClientContext ctx;
  v1::DetokenizeRequest request;
  request.mutable_token_ids()->Add(ids.begin(), ids.end());
  request.set_skip_special_tokens(true);
  v1::DetokenizeResponse response;
  EXPECT_TRUE(server.stub()->Detokenize(&ctx, request, &response).ok());
  return response.text();
}

const char* kChatBody = R"({"model": "tiny", "messages": [{"role": "user", "content": "Say hi"}],
  "temperature": 0, "max_tokens": 12, "ignore_eos": true)";

TEST(HttpServerTest, HealthAndModels) {
  TestServer server(HttpServerOptions());
  EXPECT_EQ(Get(server.http_port(), "/health").status, 200);
  HttpResult models = Get(server.http_port(), "/v1/models");
  ASSERT_EQ(models.status, 200);
  Json j = models.json();
  EXPECT_EQ(j["object"], "list");
  ASSERT_EQ(j["data"].size(), 1u);
  EXPECT_EQ(j["data"][0]["id"], "tiny");
  EXPECT_EQ(j["data"][0]["object"], "model");
  EXPECT_EQ(j["data"][0]["max_model_len"], server.executor().max_context());
  ExpectError(Get(server.http_port(), "/v2/nothing"), 404, "");
}

TEST(HttpServerTest, CompletionsEqualTheGrpcTokenIdPath) {
  TestServer server(HttpServerOptions());
  const std::string prompt = "The capital of France is";
  const std::vector<int32_t> ids = GrpcTokenize(server, prompt);
  GenerateResult grpc_run = RunGenerate(server.stub().get(), GreedyRequest(ids, 10));
  ASSERT_TRUE(grpc_run.status.ok());
  const std::string expected = GrpcDetokenize(server, grpc_run.tokens);

  Json body = {{"model", "tiny"}, {"prompt", prompt}, {"temperature", 0}, {"max_tokens", 10},
               {"ignore_eos", true}, {"logprobs", 2}};
  HttpResult r = Post(server.http_port(), "/v1/completions", body.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::StartsWith(r.content_type, "application/json"));
  Json j = r.json();
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_TRUE(absl::StartsWith(j["id"].get<std::string>(), "cmpl-"));
  EXPECT_EQ(j["model"], "tiny");
  ASSERT_EQ(j["choices"].size(), 1u);
  EXPECT_EQ(j["choices"][0]["text"], expected);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], ids.size());
  EXPECT_EQ(j["usage"]["completion_tokens"], 10);
  EXPECT_EQ(j["usage"]["total_tokens"], ids.size() + 10);
  const Json& lp = j["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 10u);
  ASSERT_EQ(lp["token_logprobs"].size(), 10u);
  // Two alternatives each, keyed by their text (two that decode alike, e.g. to U+FFFD, share a key).
  for (const Json& top : lp["top_logprobs"]) EXPECT_TRUE(top.size() == 1u || top.size() == 2u) << top;

  // Token ids as the prompt give the same; so does the stream, whose events add up to the same text.
  body["prompt"] = ids;
  body.erase("logprobs");
  EXPECT_EQ(Post(server.http_port(), "/v1/completions", body.dump()).json()["choices"][0]["text"], expected);
  body["prompt"] = prompt;
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  HttpResult s = Post(server.http_port(), "/v1/completions", body.dump());
  ASSERT_EQ(s.status, 200) << s.body;
  EXPECT_TRUE(absl::StartsWith(s.content_type, "text/event-stream"));
  std::vector<std::string> events = SseData(s.body);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  std::string finish;
  for (size_t i = 0; i + 2 < events.size(); ++i) {
    Json chunk = Json::parse(events[i]);
    EXPECT_EQ(chunk["object"], "text_completion");
    EXPECT_TRUE(chunk["usage"].is_null());
    text += chunk["choices"][0]["text"].get<std::string>();
    if (!chunk["choices"][0]["finish_reason"].is_null()) finish = chunk["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(text, expected);
  EXPECT_EQ(finish, "length");
  Json usage = Json::parse(events[events.size() - 2]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 10);
}

TEST(HttpServerTest, ChatEqualsTheGrpcChatPathStreamingOrNot) {
  TestServer server(HttpServerOptions());
  v1::GenerateRequest grpc_chat;
  v1::ChatMessage* m = grpc_chat.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("Say hi");
  grpc_chat.mutable_stopping()->set_max_new_tokens(12);
  grpc_chat.mutable_stopping()->set_ignore_eos(true);
  GenerateResult g = RunGenerate(server.stub().get(), grpc_chat);
  ASSERT_TRUE(g.status.ok());
  std::string reasoning, content;
  for (const auto& msg : g.messages) {
    reasoning += msg.reasoning_text();
    content += msg.text();
  }

  HttpResult r = Post(server.http_port(), "/v1/chat/completions", kChatBody + std::string("}"));
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = r.json();
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_TRUE(absl::StartsWith(j["id"].get<std::string>(), "chatcmpl-"));
  const Json& message = j["choices"][0]["message"];
  EXPECT_EQ(message["role"], "assistant");
  EXPECT_EQ(message["content"], content);
  EXPECT_EQ(message["reasoning_content"].is_null() ? std::string() : message["reasoning_content"].get<std::string>(),
            reasoning);
  EXPECT_EQ(j["usage"]["completion_tokens"], 12);
  EXPECT_EQ(j["usage"]["prompt_tokens"], g.messages.back().usage().prompt_tokens());

  HttpResult s = Post(server.http_port(), "/v1/chat/completions",
                      kChatBody + std::string(R"(, "stream": true, "logprobs": true, "top_logprobs": 1})"));
  ASSERT_EQ(s.status, 200) << s.body;
  std::vector<std::string> events = SseData(s.body);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  Json first = Json::parse(events[0]);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  std::string sr, sc;
  int logprob_tokens = 0;
  for (size_t i = 1; i + 1 < events.size(); ++i) {
    Json chunk = Json::parse(events[i]);
    const Json& delta = chunk["choices"][0]["delta"];
    if (delta.contains("reasoning_content")) sr += delta["reasoning_content"].get<std::string>();
    if (delta.contains("content")) sc += delta["content"].get<std::string>();
    if (chunk["choices"][0]["logprobs"].is_object()) logprob_tokens += chunk["choices"][0]["logprobs"]["content"].size();
  }
  EXPECT_EQ(sr, reasoning);
  EXPECT_EQ(sc, content);
  EXPECT_EQ(logprob_tokens, 12);
  Json last = Json::parse(events[events.size() - 2]);
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
}

TEST(HttpServerTest, NSequencesSeededAsVllm) {
  TestServer server(HttpServerOptions());
  const std::string base = R"({"prompt": "Numbers:", "max_tokens": 8, "ignore_eos": true, "n": 3)";
  // Greedy: the n sequences are equal.
  Json greedy = Post(server.http_port(), "/v1/completions", base + R"(, "temperature": 0})").json();
  ASSERT_EQ(greedy["choices"].size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(greedy["choices"][i]["index"], i);
  EXPECT_EQ(greedy["choices"][1]["text"], greedy["choices"][0]["text"]);
  EXPECT_EQ(greedy["usage"]["completion_tokens"], 24);
  // Sampled with a seed: reproducible, and sequence i is seeded seed + i.
  const std::string sampled = base + R"(, "temperature": 1.0, "seed": 42})";
  Json a = Post(server.http_port(), "/v1/completions", sampled).json();
  Json b = Post(server.http_port(), "/v1/completions", sampled).json();
  EXPECT_EQ(a["choices"], b["choices"]);
  Json one = Post(server.http_port(), "/v1/completions",
                  R"({"prompt": "Numbers:", "max_tokens": 8, "ignore_eos": true, "temperature": 1.0, "seed": 43})")
                 .json();
  EXPECT_EQ(one["choices"][0]["text"], a["choices"][1]["text"]);
}

TEST(HttpServerTest, ToolsAndToolChoice) {
  TestServer server(HttpServerOptions());
  const std::string tools =
      R"("tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])";
  const std::string messages = R"("messages": [{"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}])";
  for (const std::string choice : {R"("auto")", R"("none")", R"("required")",
                                   R"({"type": "function", "function": {"name": "get_weather"}})"}) {
    HttpResult r = Post(server.http_port(), "/v1/chat/completions",
                        absl::StrCat("{", messages, ", ", tools, R"(, "tool_choice": )", choice,
                                     R"(, "max_tokens": 4, "temperature": 0})"));
    EXPECT_EQ(r.status, 200) << choice << ": " << r.body;
    const std::string finish = r.json()["choices"][0]["finish_reason"];
    EXPECT_TRUE(finish == "length" || finish == "stop" || finish == "tool_calls") << finish;
  }
  // The assistant's JSON-string arguments were parsed and rendered: /tokenize of the same messages shows them.
  HttpResult t = Post(server.http_port(), "/tokenize", absl::StrCat("{", messages, ", ", tools, "}"));
  ASSERT_EQ(t.status, 200) << t.body;
  HttpResult d = Post(server.http_port(), "/detokenize", Json({{"tokens", t.json()["tokens"]}}).dump());
  const std::string rendered = d.json()["prompt"];
  EXPECT_TRUE(absl::StrContains(rendered, "<parameter=city>\nParis\n</parameter>")) << rendered;
  ExpectError(Post(server.http_port(), "/v1/chat/completions",
                   absl::StrCat("{", messages, ", ", tools,
                                R"(, "tool_choice": {"type": "function", "function": {"name": "nope"}}})")),
              400, "tool_choice");
}

TEST(HttpServerTest, TokenizeAndDetokenizeInVllmShapes) {
  TestServer server(HttpServerOptions());
  HttpResult t = Post(server.http_port(), "/tokenize", R"({"model": "tiny", "prompt": "Hello world"})");
  ASSERT_EQ(t.status, 200) << t.body;
  Json j = t.json();
  EXPECT_EQ(j["tokens"].get<std::vector<int32_t>>(), GrpcTokenize(server, "Hello world"));
  EXPECT_EQ(j["count"], j["tokens"].size());
  EXPECT_EQ(j["max_model_len"], server.executor().max_context());
  Json no_special = Post(server.http_port(), "/tokenize", R"({"prompt": "Hello world", "add_special_tokens": false})")
                        .json();
  EXPECT_EQ(no_special["count"].get<int>(), j["count"].get<int>() - 1);  // no BOS

  Json chat = Post(server.http_port(), "/tokenize",
                   R"({"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": true})")
                  .json();
  HttpResult d = Post(server.http_port(), "/detokenize", Json({{"tokens", chat["tokens"]}}).dump());
  ASSERT_EQ(d.status, 200);
  EXPECT_EQ(d.json()["prompt"], "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n");
  ExpectError(Post(server.http_port(), "/detokenize", R"({"tokens": [5, 300]})"), 400, "tokens[1]");
  ExpectError(Post(server.http_port(), "/tokenize", R"({"model": "gpt-4", "prompt": "x"})"), 404, "model");
  ExpectError(Post(server.http_port(), "/tokenize", R"({"prompt": "x", "messages": []})"), 400, "prompt");
}

TEST(HttpServerTest, ErrorsHaveTheirStatusAndNameTheField) {
  TestServerOptions options = HttpServerOptions();
  options.http_options.max_body_bytes = 64 << 10;
  TestServer server(options);
  const int port = server.http_port();
  ExpectError(Post(port, "/v1/chat/completions", "{\"messages\": [}"), 400, "");
  ExpectError(Post(port, "/v1/chat/completions", std::string("{\"messages\": \"\xff\"}")), 400, "");
  ExpectError(Post(port, "/v1/completions", R"({"prompt": ")" + std::string(100 << 10, 'a') + "\"}"), 413, "");
  ExpectError(Post(port, "/v1/chat/completions", R"({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})"),
              404, "model");
  const std::string user = R"("messages": [{"role": "user", "content": "x"}])";
  struct Case {
    std::string body;
    std::string param;
  };
  for (const Case& c : std::vector<Case>{
           {absl::StrCat("{", user, R"(, "temperature": -1})"), "temperature"},
           {absl::StrCat("{", user, R"(, "temperature": "hot"})"), "temperature"},
           {absl::StrCat("{", user, R"(, "top_p": 0})"), "top_p"},
           {absl::StrCat("{", user, R"(, "max_tokens": 0})"), "max_tokens"},
           {absl::StrCat("{", user, R"(, "max_completion_tokens": 100000000})"), "max_completion_tokens"},
           {absl::StrCat("{", user, R"(, "n": 0})"), "n"},
           {absl::StrCat("{", user, R"(, "stop": [1]})"), "stop[0]"},
           {absl::StrCat("{", user, R"(, "stream_options": {"include_usage": true}})"), "stream_options"},
           {absl::StrCat("{", user, R"(, "top_logprobs": 3})"), "top_logprobs"},
           {absl::StrCat("{", user, R"(, "logprobs": true, "top_logprobs": 50})"), "top_logprobs"},
           {absl::StrCat("{", user, R"(, "cache_salt": ")", std::string(300, 's'), "\"}"), "cache_salt"},
           {R"({"messages": [{"role": "robot", "content": "x"}]})", "messages[0].role"},
           {R"({"messages": []})", "messages"},
           {R"({"prompt": "x"})", "messages"},
           {R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]})",
            "messages[0].content[0].type"},
       }) {
    ExpectError(Post(port, "/v1/chat/completions", c.body), 400, c.param);
  }
  ExpectError(Post(port, "/v1/completions", R"({"prompt": "x", "logprobs": 99})"), 400, "logprobs");
  ExpectError(Post(port, "/v1/completions", R"({"prompt": [1, -2]})"), 400, "prompt[1]");
  ExpectError(Post(port, "/v1/completions", R"({"prompt": [5, 400]})"), 400, "prompt");
  ExpectError(Post(port, "/v1/completions", R"({"prompt": "x", "max_tokens": 5000000})"), 400, "max_tokens");
  std::string long_prompt;
  for (int i = 0; i < 3000; ++i) absl::StrAppend(&long_prompt, " w", i);
  ExpectError(Post(port, "/v1/completions", Json({{"prompt", long_prompt}}).dump()), 400, "prompt");
  // The server serves on.
  EXPECT_EQ(Post(port, "/v1/chat/completions", absl::StrCat("{", user, R"(, "max_tokens": 2})")).status, 200);
  // The failures are counted by route and status.
  const std::string metrics = server.ScrapeMetricsHttp();
  EXPECT_TRUE(absl::StrContains(metrics, R"(stepserve_http_requests_total{route="/v1/chat/completions",status="400"})"))
      << metrics;
  EXPECT_TRUE(absl::StrContains(metrics, R"(route="/v1/completions",status="413")"));
  EXPECT_TRUE(absl::StrContains(metrics, R"(route="/v1/chat/completions",status="200"} 1)"));
  EXPECT_TRUE(absl::StrContains(metrics, "stepserve_chat_template_time_seconds_count"));
  EXPECT_FALSE(absl::StrContains(metrics, "stepserve_tokenizer_time_seconds_count 0"));
}

TEST(HttpServerTest, QueueFullIs429AndDrainingIs503) {
  TestServerOptions options = HttpServerOptions();
  options.executor.max_num_seqs = 1;
  options.executor.max_queue = 1;
  TestServer server(options);
  // One long request takes the only running slot.
  grpc::ClientContext ctx;
  auto stub = server.stub();
  auto reader = stub->Generate(&ctx, LongRequest({5, 6, 7}, server.executor().max_context()));
  ASSERT_TRUE(WaitFor([&] { return server.executor().Stats().num_running == 1; }));
  // n = 2: the first waits (the queue holds one), the second is refused.
  HttpResult r = Post(server.http_port(), "/v1/completions", R"({"prompt": "x", "n": 2, "max_tokens": 2})");
  ExpectError(r, 429, "");
  ctx.TryCancel();
  reader->Finish();
  ASSERT_TRUE(WaitFor([&] {
    ExecutorStats s = server.executor().Stats();
    return s.num_running == 0 && s.num_waiting == 0;
  }));
  EXPECT_EQ(Post(server.http_port(), "/v1/completions", R"({"prompt": "x", "max_tokens": 2})").status, 200);
  server.server().BeginDrain();
  ExpectError(Post(server.http_port(), "/v1/completions", R"({"prompt": "x", "max_tokens": 2})"), 503, "");
  EXPECT_EQ(Get(server.http_port(), "/health").status, 503);
}

TEST(HttpServerTest, ClientGoneMidStreamCancelsTheRequest) {
  TestServer server(HttpServerOptions());
  const int port = server.http_port();
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string body = Json({{"prompt", "Tell me a long story"},
                                 {"max_tokens", server.executor().max_context() - 16},
                                 {"ignore_eos", true},
                                 {"stream", true}})
                               .dump();
  const std::string request = absl::StrCat("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                           "Content-Length: ", body.size(), "\r\n\r\n", body);
  ASSERT_EQ(send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  std::string received;
  char buffer[4096];
  while (!absl::StrContains(received, "\"text\"")) {
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    ASSERT_GT(n, 0);
    received.append(buffer, n);
  }
  EXPECT_EQ(server.executor().Stats().num_running, 1);
  close(fd);  // gone mid-stream
  EXPECT_TRUE(WaitFor([&] {
    ExecutorStats s = server.executor().Stats();
    return s.num_running == 0 && s.num_waiting == 0;
  }, absl::Seconds(20)));
  EXPECT_TRUE(WaitFor([&] { return server.server().http()->active_requests() == 0; }, absl::Seconds(20)));
  EXPECT_EQ(Post(port, "/v1/completions", R"({"prompt": "x", "max_tokens": 2})").status, 200);
}

TEST(HttpServerTest, WithoutATokenizerTextNamesTheFlagButIdsWork) {
  TestServer server(HttpServerOptions(/*text=*/false));
  HttpResult chat = Post(server.http_port(), "/v1/chat/completions", R"({"messages": [{"role": "user", "content": "x"}]})");
  ExpectError(chat, 400, "");
  EXPECT_TRUE(absl::StrContains(chat.body, "--tokenizer")) << chat.body;
  ExpectError(Post(server.http_port(), "/tokenize", R"({"prompt": "x"})"), 400, "");
  HttpResult ids = Post(server.http_port(), "/v1/completions", R"({"prompt": [5, 6, 7], "max_tokens": 3, "temperature": 0})");
  EXPECT_EQ(ids.status, 200) << ids.body;
  EXPECT_EQ(ids.json()["usage"]["completion_tokens"], 3);
  EXPECT_EQ(Get(server.http_port(), "/v1/models").json()["data"][0]["id"], "tiny-test");
}

}  // namespace
}  // namespace stepserve::testing
