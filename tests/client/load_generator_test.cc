// The load generator against an in-process fake StepServe: what each turn of a conversation sends, that
// a conversation holds one concurrency slot, cache_salt, Usage.cached_prompt_tokens, and skipped turns.
// The fake answers deterministically and "caches" like a token-granular prefix cache, so these tests do
// not depend on the real server's prefix caching.
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/security/server_credentials.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "client/channel.h"
#include "client/load_generator.h"
#include "stepserve/v1/stepserve.grpc.pb.h"

namespace stepserve::client {
namespace {

class FakeStepServe final : public v1::StepServe::Service {
 public:
  struct Seen {
    std::vector<int32_t> prompt;
    std::vector<int32_t> output;
    std::string salt;
  };

  // Prompts longer than this are refused with INVALID_ARGUMENT, like a prompt over the context.
  explicit FakeStepServe(size_t max_prompt) : max_prompt_(max_prompt) {}

  grpc::Status Generate(grpc::ServerContext*, const v1::GenerateRequest* req,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override {
    const std::vector<int32_t> prompt(req->prompt_token_ids().begin(), req->prompt_token_ids().end());
    if (prompt.size() > max_prompt_) return {grpc::StatusCode::INVALID_ARGUMENT, "prompt too long"};
    int32_t cached = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++in_flight_;
      max_in_flight_ = std::max(max_in_flight_, in_flight_);
      // The longest common prefix with an earlier request of the same salt.
      for (const Seen& s : seen_) {
        if (s.salt != req->cache_salt()) continue;
        const auto mismatch = std::mismatch(prompt.begin(), prompt.end(), s.prompt.begin(), s.prompt.end());
        cached = std::max(cached, static_cast<int32_t>(mismatch.first - prompt.begin()));
      }
    }
    Seen seen{prompt, {}, req->cache_salt()};
    const int32_t n = req->stopping().max_new_tokens();
    for (int32_t i = 0; i < n; ++i) {
      // A token that depends on the prompt, so each conversation's answers differ.
      const int32_t token = static_cast<int32_t>((prompt.size() * 31 + prompt.back() + i) % 1000);
      seen.output.push_back(token);
      v1::GenerateResponse msg;
      msg.add_token_ids(token);
      if (i + 1 == n) {
        msg.set_finish_reason(v1::FINISH_REASON_LENGTH);
        msg.mutable_usage()->set_prompt_tokens(static_cast<int32_t>(prompt.size()));
        msg.mutable_usage()->set_completion_tokens(n);
        msg.mutable_usage()->set_cached_prompt_tokens(cached);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      writer->Write(msg);
    }
    std::lock_guard<std::mutex> lock(mu_);
    --in_flight_;
    seen_.push_back(std::move(seen));
    return grpc::Status::OK;
  }

  std::vector<Seen> seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }
  int max_in_flight() {
    std::lock_guard<std::mutex> lock(mu_);
    return max_in_flight_;
  }

 private:
  size_t max_prompt_;
  std::mutex mu_;
  std::vector<Seen> seen_;  // in the order the requests ended
  int in_flight_ = 0;
  int max_in_flight_ = 0;
};

class LoadGeneratorTest : public ::testing::Test {
 protected:
  void Start(size_t max_prompt = 100000) {
    service_ = std::make_unique<FakeStepServe>(max_prompt);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    ChannelConfig config;
    config.target = "127.0.0.1:" + std::to_string(port);
    ASSERT_TRUE(MakeChannel(config, &channel_).ok());
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  LoadConfig Config(int64_t concurrency) {
    LoadConfig c;
    c.concurrency = concurrency;
    c.request_timeout_s = 60;
    return c;
  }

  std::unique_ptr<FakeStepServe> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(LoadGeneratorTest, EachTurnSendsThePreviousPromptItsAnswerAndANewMessage) {
  Start();
  ConversationOptions shape;
  shape.turns = 3;
  shape.shared_prefix_len = 12;
  shape.num_prefixes = 2;
  const auto convs = ConversationWorkload(4, shape, LenRange{5, 5}, LenRange{3, 3}, 1000, 1);
  LoadConfig config = Config(2);
  config.cache_salt = "tenant-a";
  const LoadResult run = RunConversations(channel_, convs, config);
  ASSERT_EQ(run.requests.size(), 12u);

  const auto seen = service_->seen();
  ASSERT_EQ(seen.size(), 12u);
  std::map<std::vector<int32_t>, FakeStepServe::Seen> by_prompt;
  for (const auto& s : seen) {
    EXPECT_EQ(s.salt, "tenant-a");
    by_prompt[s.prompt] = s;
  }
  ASSERT_EQ(by_prompt.size(), 12u) << "every request had its own prompt";
  for (size_t i = 0; i < convs.size(); ++i) {
    std::vector<int32_t> prompt = convs[i].turns[0].prompt;
    for (size_t t = 0; t < 3; ++t) {
      const RequestResult& r = run.requests[i * 3 + t];  // conversation-major
      EXPECT_TRUE(r.ok) << r.code << " " << r.message;
      EXPECT_EQ(r.turn, static_cast<int64_t>(t) + 1);
      EXPECT_EQ(r.prompt_tokens, static_cast<int64_t>(prompt.size()));
      EXPECT_EQ(r.output_tokens, 3);
      auto it = by_prompt.find(prompt);
      ASSERT_NE(it, by_prompt.end()) << "conversation " << i << " turn " << t + 1 << " sent another prompt";
      // The fake "caches" the longest common prefix with earlier prompts: at least the previous turn's
      // prompt (this prompt less the 3 answer and 5 message tokens).
      if (t > 0) {
        EXPECT_GE(r.cached_prompt_tokens, static_cast<int64_t>(prompt.size() - 8)) << i << " " << t;
      }
      if (t + 1 < 3) prompt = NextTurnPrompt(prompt, it->second.output, convs[i].turns[t + 1].prompt);
    }
  }
  // Turn lengths: 12 + 5, then + 3 + 5 each turn.
  EXPECT_EQ(run.requests[0].prompt_tokens, 17);
  EXPECT_EQ(run.requests[1].prompt_tokens, 25);
  EXPECT_EQ(run.requests[2].prompt_tokens, 33);
  EXPECT_LE(service_->max_in_flight(), 2) << "a conversation holds one slot: at most 2 requests in flight";
  const BenchReport report = BuildReport(run.requests, run.duration_s, Slo{});
  EXPECT_EQ(report.completed, 12);
  ASSERT_EQ(report.per_turn.size(), 3u);
  EXPECT_DOUBLE_EQ(report.per_turn[2].mean_prompt_tokens, 33);
  EXPECT_GT(report.total_cached_prompt_tokens, 0);
}

TEST_F(LoadGeneratorTest, OneSlotRunsConversationsOneAfterTheOther) {
  Start();
  ConversationOptions shape;
  shape.turns = 3;
  const auto convs = ConversationWorkload(2, shape, LenRange{4, 4}, LenRange{2, 2}, 1000, 2);
  const LoadResult run = RunConversations(channel_, convs, Config(1));
  const auto seen = service_->seen();
  ASSERT_EQ(seen.size(), 6u);
  EXPECT_EQ(service_->max_in_flight(), 1);
  // All of the first conversation's turns end before the second conversation starts.
  for (size_t k = 0; k < 6; ++k) {
    const auto& first_prompt = convs[k / 3].turns[0].prompt;
    EXPECT_TRUE(std::equal(first_prompt.begin(), first_prompt.end(), seen[k].prompt.begin())) << k;
    EXPECT_EQ(seen[k].prompt.size(), 4u + (k % 3) * 6u) << k;
  }
  // Without a salt the requests carry the empty one.
  EXPECT_EQ(seen[0].salt, "");
}

TEST_F(LoadGeneratorTest, AFailedTurnSkipsTheRestOfItsConversation) {
  Start(/*max_prompt=*/19);  // turn 3's prompt (4, then 4 + 4 + 4 = 12, then 12 + 4 + 4 = 20) is refused
  ConversationOptions shape;
  shape.turns = 4;
  const auto convs = ConversationWorkload(3, shape, LenRange{4, 4}, LenRange{4, 4}, 1000, 3);
  const LoadResult run = RunConversations(channel_, convs, Config(2));
  ASSERT_EQ(run.requests.size(), 12u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(run.requests[i * 4 + 0].ok);  // 4 tokens
    EXPECT_TRUE(run.requests[i * 4 + 1].ok);  // 12 tokens
    EXPECT_EQ(run.requests[i * 4 + 2].code, "INVALID_ARGUMENT");  // 20 tokens
    EXPECT_EQ(run.requests[i * 4 + 3].code, kSkippedCode);
    EXPECT_EQ(run.requests[i * 4 + 3].turn, 4);
    EXPECT_NE(run.requests[i * 4 + 3].message.find("turn 3"), std::string::npos) << run.requests[i * 4 + 3].message;
  }
  EXPECT_EQ(service_->seen().size(), 6u) << "skipped turns are never sent";
  const BenchReport report = BuildReport(run.requests, run.duration_s, Slo{});
  EXPECT_EQ(report.completed, 6);
  EXPECT_EQ(report.failed, 6);
  EXPECT_EQ(report.failures_by_code.at(kSkippedCode), 3);
}

TEST_F(LoadGeneratorTest, OpenLoopStartsConversationsAtTheArrivalTimes) {
  Start();
  ConversationOptions shape;
  shape.turns = 2;
  const auto convs = ConversationWorkload(4, shape, LenRange{3, 3}, LenRange{2, 2}, 1000, 4);
  LoadConfig config = Config(0);  // no cap
  config.arrivals_s = {0, 0.05, 0.1, 0.15};
  int64_t last_done = -1, last_total = -1;
  config.progress = [&](int64_t done, int64_t total) {
    last_done = done;
    last_total = total;
  };
  const LoadResult run = RunConversations(channel_, convs, config);
  ASSERT_EQ(run.requests.size(), 8u);
  for (const auto& r : run.requests) EXPECT_TRUE(r.ok) << r.code << " " << r.message;
  EXPECT_GE(run.duration_s, 0.15);
  EXPECT_EQ(last_done, 8);
  EXPECT_EQ(last_total, 8) << "progress counts requests, not conversations";
}

}  // namespace
}  // namespace stepserve::client
