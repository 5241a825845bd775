// stepbench's OpenAI front against a scripted HTTP server in the test (cpp-httplib): what it sends, how it
// times and counts a streamed answer, each way a request can fail, and the closed and open loops.
#include "client/text_load.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "subprocess.h"

namespace stepserve::client {
namespace {

using Clock = std::chrono::steady_clock;

// An OpenAI-compatible server whose answers the test scripts. Every answer streams `chunks` (SSE "data:"
// payloads) `gap_ms` apart.
class FakeOpenAi {
 public:
  FakeOpenAi() {
    const auto stream = [this](const httplib::Request& req, httplib::Response& res) {
      const int now_in_flight = ++in_flight_;
      {
        std::lock_guard<std::mutex> lock(mu_);
        bodies_.push_back(nlohmann::json::parse(req.body, nullptr, false));
        paths_.push_back(req.path);
        arrivals_.push_back(Clock::now());
        max_in_flight_ = std::max(max_in_flight_, now_in_flight);
      }
      if (status_ != 200) {
        --in_flight_;
        res.status = status_;
        res.set_content(R"({"error":{"message":"model not here","type":"invalid_request_error","param":"model"}})",
                        "application/json");
        return;
      }
      res.set_chunked_content_provider("text/event-stream", [this](size_t, httplib::DataSink& sink) {
        for (const std::string& c : chunks_) {
          std::this_thread::sleep_for(std::chrono::milliseconds(gap_ms_));
          const std::string event = "data: " + c + "\n\n";
          if (!sink.write(event.data(), event.size())) break;
        }
        --in_flight_;
        sink.done();
        return true;
      });
    };
    server_.Post("/v1/chat/completions", stream);
    server_.Post("/v1/completions", stream);
    server_.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"object":"list","data":[{"id":"step-test","object":"model"}]})", "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    // Bound and listening already: connections wait in the backlog until the accept loop runs.
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~FakeOpenAi() {
    server_.stop();
    thread_.join();
  }

  OpenAiTarget target() const { return OpenAiTarget{"127.0.0.1", port_, "step-test"}; }
  int port() const { return port_; }

  std::vector<std::string> chunks_;
  int gap_ms_ = 20;
  int status_ = 200;
  std::mutex mu_;
  std::vector<nlohmann::json> bodies_;
  std::vector<std::string> paths_;
  std::vector<Clock::time_point> arrivals_;
  int max_in_flight_ = 0;

 private:
  std::atomic<int> in_flight_{0};
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
};

std::vector<std::string> ChatAnswer() {
  return {
      R"({"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]})",  // no output
      R"({"choices":[{"index":0,"delta":{"reasoning_content":"think"}}]})",
      R"({"choices":[{"index":0,"delta":{"content":"Hel"}}]})",
      R"({"choices":[{"index":0,"delta":{"content":"lo"}}]})",
      R"({"choices":[{"index":0,"delta":{},"finish_reason":"length"}]})",  // no output
      R"({"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13,"prompt_tokens_details":{"cached_tokens":3}}})",
      "[DONE]",
  };
}

PromptEntry Chat(const std::string& text, int max_new_tokens) {
  PromptEntry e;
  e.messages = {{"system", "Be brief."}, {"user", text}};
  e.max_new_tokens = max_new_tokens;
  return e;
}

PromptEntry Plain(const std::string& text, int max_new_tokens) {
  PromptEntry e;
  e.prompt = text;
  e.max_new_tokens = max_new_tokens;
  return e;
}

LoadConfig Config(int64_t concurrency) {
  LoadConfig c;
  c.concurrency = concurrency;
  c.request_timeout_s = 30;
  return c;
}

TEST(OpenAiBackendTest, SendsAStreamedChatRequestAndMeasuresIt) {
  FakeOpenAi server;
  server.chunks_ = ChatAnswer();
  server.gap_ms_ = 30;
  auto backend = MakeOpenAiBackend(server.target());
  LoadConfig config = Config(1);
  config.cache_salt = "tenant-a";
  const LoadResult run = RunTextLoad(*backend, {Chat("Hi", 4)}, config);
  ASSERT_EQ(run.requests.size(), 1u);
  const RequestResult& r = run.requests[0];
  ASSERT_TRUE(r.ok) << r.code << ": " << r.message;
  EXPECT_EQ(r.output_tokens, 4) << "from usage.completion_tokens";
  EXPECT_EQ(r.prompt_tokens, 9);
  EXPECT_EQ(r.cached_prompt_tokens, 3);
  EXPECT_EQ(r.expected_tokens, 4);
  // TTFT is the reasoning chunk, the second event: at least two gaps after sending.
  EXPECT_GE(r.ttft_s, 0.055);
  // Three output chunks: two gaps between them; the role and finish chunks are not timed.
  ASSERT_EQ(r.itl_s.size(), 2u);
  for (double itl : r.itl_s) EXPECT_GE(itl, 0.025);
  EXPECT_GE(r.e2e_s, r.ttft_s + 0.055);
  EXPECT_GT(run.duration_s, 0);

  ASSERT_EQ(server.paths_.size(), 1u);
  EXPECT_EQ(server.paths_[0], "/v1/chat/completions");
  const nlohmann::json& body = server.bodies_[0];
  EXPECT_EQ(body["model"], "step-test");
  EXPECT_EQ(body["messages"], nlohmann::json::parse(
                                  R"([{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}])"));
  EXPECT_EQ(body["max_tokens"], 4);
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
  EXPECT_EQ(body["temperature"], 0);
  EXPECT_EQ(body["ignore_eos"], true);
  EXPECT_EQ(body["cache_salt"], "tenant-a");
  EXPECT_FALSE(body.contains("prompt"));
}

TEST(OpenAiBackendTest, PlainPromptsGoToCompletionsAndCountChunksWithoutUsage) {
  FakeOpenAi server;
  server.chunks_ = {R"({"choices":[{"index":0,"text":"a"}]})", R"({"choices":[{"index":0,"text":"b"}]})",
                    R"({"choices":[{"index":0,"text":"c","finish_reason":"length"}]})", "[DONE]"};
  server.gap_ms_ = 5;
  auto backend = MakeOpenAiBackend(server.target());
  const LoadResult run = RunTextLoad(*backend, {Plain("Once upon", 3)}, Config(1));
  ASSERT_TRUE(run.requests[0].ok) << run.requests[0].message;
  EXPECT_EQ(run.requests[0].output_tokens, 3) << "no usage chunk: the output chunks are counted";
  EXPECT_EQ(run.requests[0].itl_s.size(), 2u);
  EXPECT_EQ(server.paths_[0], "/v1/completions");
  EXPECT_EQ(server.bodies_[0]["prompt"], "Once upon");
  EXPECT_FALSE(server.bodies_[0].contains("messages"));
  EXPECT_FALSE(server.bodies_[0].contains("cache_salt"));
}

TEST(OpenAiBackendTest, FailuresAreNamed) {
  FakeOpenAi server;
  server.gap_ms_ = 1;
  auto backend = MakeOpenAiBackend(server.target());

  server.status_ = 404;
  RequestResult r = RunTextLoad(*backend, {Chat("x", 2)}, Config(1)).requests[0];
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, "HTTP_404");
  EXPECT_EQ(r.message, "model not here");

  server.status_ = 200;
  server.chunks_ = {R"({"choices":[{"index":0,"delta":{"content":"a"}}]})"};  // no [DONE]
  r = RunTextLoad(*backend, {Chat("x", 2)}, Config(1)).requests[0];
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, "INCOMPLETE_STREAM");

  server.chunks_ = {R"({"choices":[{"index":0,"delta":{"content":"a"}}]})",
                    R"({"error":{"message":"engine step failed","code":500}})", "[DONE]"};
  r = RunTextLoad(*backend, {Chat("x", 2)}, Config(1)).requests[0];
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, "STREAM_ERROR");
  EXPECT_EQ(r.message, "engine step failed");

  server.chunks_ = {"not json", "[DONE]"};
  r = RunTextLoad(*backend, {Chat("x", 2)}, Config(1)).requests[0];
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, "STREAM_ERROR");

  // A good request after the failures: the failed connections were not reused.
  server.chunks_ = ChatAnswer();
  r = RunTextLoad(*backend, {Chat("x", 4)}, Config(1)).requests[0];
  EXPECT_TRUE(r.ok) << r.code << ": " << r.message;

  // Nobody listens.
  auto nowhere = MakeOpenAiBackend(OpenAiTarget{"127.0.0.1", testing::PickFreePort(), "m"});
  r = RunTextLoad(*nowhere, {Chat("x", 2)}, Config(1)).requests[0];
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, "HTTP_CONNECTION") << r.message;
  EXPECT_NE(r.message.find("127.0.0.1"), std::string::npos) << r.message;
}

TEST(OpenAiBackendTest, ClosedLoopKeepsConcurrencyInFlight) {
  FakeOpenAi server;
  server.chunks_ = ChatAnswer();
  server.gap_ms_ = 25;  // about 175 ms per request
  auto backend = MakeOpenAiBackend(server.target());
  std::vector<PromptEntry> entries;
  for (int i = 0; i < 12; ++i) entries.push_back(Chat("q" + std::to_string(i), 4));
  std::atomic<int64_t> last_done{0};
  LoadConfig config = Config(4);
  config.progress = [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, 12);
    EXPECT_GE(done, last_done.load());
    last_done = done;
  };
  const LoadResult run = RunTextLoad(*backend, entries, config);
  ASSERT_EQ(run.requests.size(), 12u);
  for (const auto& r : run.requests) EXPECT_TRUE(r.ok) << r.code << ": " << r.message;
  EXPECT_EQ(last_done.load(), 12) << "the last progress report counts every request";
  EXPECT_LE(server.max_in_flight_, 4);
  EXPECT_GE(server.max_in_flight_, 2) << "requests ran side by side";
  // Every entry was sent.
  for (size_t i = 0; i < 12; ++i) {
    bool found = false;
    for (const auto& body : server.bodies_) found |= body["messages"][1]["content"] == "q" + std::to_string(i);
    EXPECT_TRUE(found) << i;
  }
}

TEST(OpenAiBackendTest, OpenLoopSendsAtTheArrivalTimes) {
  FakeOpenAi server;
  server.chunks_ = ChatAnswer();
  server.gap_ms_ = 2;
  auto backend = MakeOpenAiBackend(server.target());
  LoadConfig config = Config(0);
  config.arrivals_s = {0.0, 0.15, 0.3, 0.45};
  const auto start = Clock::now();
  const LoadResult run =
      RunTextLoad(*backend, {Chat("a", 4), Chat("b", 4), Chat("c", 4), Chat("d", 4)}, config);
  for (const auto& r : run.requests) EXPECT_TRUE(r.ok) << r.code << ": " << r.message;
  ASSERT_EQ(server.arrivals_.size(), 4u);
  std::sort(server.arrivals_.begin(), server.arrivals_.end());
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_GE(std::chrono::duration<double>(server.arrivals_[i] - start).count(), config.arrivals_s[i] - 0.005) << i;
  }
  EXPECT_GE(run.duration_s, 0.45);
}

TEST(OpenAiBackendTest, FirstModelAndTargets) {
  FakeOpenAi server;
  std::string model, error;
  ASSERT_TRUE(OpenAiFirstModel("127.0.0.1", server.port(), 5, &model, &error)) << error;
  EXPECT_EQ(model, "step-test");
  EXPECT_FALSE(OpenAiFirstModel("127.0.0.1", testing::PickFreePort(), 5, &model, &error));
  EXPECT_NE(error.find("/v1/models"), std::string::npos) << error;

  std::string host;
  int port = 0;
  ASSERT_TRUE(ParseHttpTarget("localhost:8000", &host, &port, &error)) << error;
  EXPECT_EQ(host, "localhost");
  EXPECT_EQ(port, 8000);
  ASSERT_TRUE(ParseHttpTarget("http://10.0.0.2:9/", &host, &port, &error)) << error;
  EXPECT_EQ(host, "10.0.0.2");
  EXPECT_EQ(port, 9);
  ASSERT_TRUE(ParseHttpTarget("[::1]:8000", &host, &port, &error)) << error;
  EXPECT_EQ(host, "::1");
  for (const char* bad : {"", "localhost", ":80", "h:0", "h:65536", "h:x", "https://h:1", "h:1/v1"}) {
    EXPECT_FALSE(ParseHttpTarget(bad, &host, &port, &error)) << bad;
  }
}

}  // namespace
}  // namespace stepserve::client
