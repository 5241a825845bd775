// stepctl chat's loop against an in-process fake StepServe whose answers the test scripts: reasoning and
// tool calls printed, tool results answered with /tool, what each request carries (history with reasoning
// and tool calls, tools, kwargs, stop strings), a failed turn left out of the conversation.
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <mutex>
#include <sstream>

#include <gtest/gtest.h>

#include "client/channel.h"
#include "client/stepctl_text.h"
#include "stepserve/v1/stepserve.grpc.pb.h"

namespace stepserve::client {
namespace {

// Answers by the last message: a user message "weather?" gets reasoning and two tool calls; "fail" an
// error; anything else (a user message or the tool results) reasoning then content.
class ScriptedChat final : public v1::StepServe::Service {
 public:
  grpc::Status Generate(grpc::ServerContext*, const v1::GenerateRequest* req,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override {
    size_t number;
    {
      std::lock_guard<std::mutex> lock(mu_);
      requests_.push_back(*req);
      number = requests_.size();
    }
    const auto& last = req->chat().messages(req->chat().messages_size() - 1);
    if (last.content() == "fail") return {grpc::StatusCode::RESOURCE_EXHAUSTED, "queue full"};
    v1::GenerateResponse m;
    m.set_reasoning_text("Let me ");
    m.add_token_ids(1);
    writer->Write(m);
    m.Clear();
    m.set_reasoning_text("think.\nDone.");
    writer->Write(m);
    m.Clear();
    if (last.role() == "user" && last.content() == "weather?") {
      auto* a = m.add_tool_calls();
      a->set_index(0);
      a->set_id("call_a");
      a->set_name("get_weather");
      a->set_arguments("{\"city\": ");
      writer->Write(m);
      m.Clear();
      a = m.add_tool_calls();
      a->set_index(0);
      a->set_arguments("\"Paris\"}");
      auto* b = m.add_tool_calls();
      b->set_index(1);
      b->set_id("call_b");
      b->set_name("get_weather");
      b->set_arguments("{\"city\": \"Rome\"}");
      m.set_finish_reason(v1::FINISH_REASON_TOOL_CALLS);
    } else {
      m.set_text("It is ");
      writer->Write(m);
      m.Clear();
      m.set_text("mild.");
      m.set_finish_reason(v1::FINISH_REASON_EOS);
    }
    m.mutable_usage()->set_prompt_tokens(10 * req->chat().messages_size());
    m.mutable_usage()->set_completion_tokens(5);
    m.set_request_id("r" + std::to_string(number));
    writer->Write(m);
    return grpc::Status::OK;
  }

  std::vector<v1::GenerateRequest> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  std::mutex mu_;
  std::vector<v1::GenerateRequest> requests_;
};

class StepctlChatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    rpc_.target = "127.0.0.1:" + std::to_string(port);
    rpc_.timeout_s = 30;
    ChannelConfig config;
    config.target = rpc_.target;
    ASSERT_TRUE(MakeChannel(config, &channel_).ok());
  }
  void TearDown() override { server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5)); }

  int RunChat(const TextOptions& o, const std::string& message, const std::string& input) {
    std::istringstream in(input);
    out_.str("");
    err_.str("");
    v1::GenerateRequest base;
    base.mutable_stopping()->set_max_new_tokens(7);
    return Chat(channel_, rpc_, base, o, message, in, /*interactive_tty=*/false, /*out_tty=*/false, out_, err_);
  }

  ScriptedChat service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  RpcSettings rpc_;
  std::ostringstream out_, err_;
};

TEST_F(StepctlChatTest, OneShotPrintsReasoningContentAndSettings) {
  TextOptions o;
  o.system = "Be brief.";
  o.reasoning_effort = "high";
  o.chat_template_kwargs = R"({"enable_thinking": true})";
  o.stop = {"###,\\n\\n"};
  o.show_reasoning = "prefix";
  ASSERT_EQ(RunChat(o, "hello", ""), 0) << err_.str();
  EXPECT_EQ(out_.str(), "[reasoning] Let me think.\n[reasoning] Done.\nIt is mild.\n");
  EXPECT_NE(err_.str().find("finish_reason=EOS prompt_tokens=20 completion_tokens=5"), std::string::npos)
      << err_.str();
  const auto reqs = service_.requests();
  ASSERT_EQ(reqs.size(), 1u);
  const v1::GenerateRequest& r = reqs[0];
  ASSERT_EQ(r.chat().messages_size(), 2);
  EXPECT_EQ(r.chat().messages(0).role(), "system");
  EXPECT_EQ(r.chat().messages(1).content(), "hello");
  EXPECT_EQ(r.chat().chat_template_kwargs_json(), R"({"enable_thinking":true,"reasoning_effort":"high"})");
  EXPECT_EQ(r.chat().tools_size(), 0);
  EXPECT_FALSE(r.chat().has_tool_choice()) << "no tools: the server's default";
  ASSERT_EQ(r.stop_size(), 2);
  EXPECT_EQ(r.stop(0), "###");
  EXPECT_EQ(r.stop(1), "\n\n");
  EXPECT_EQ(r.stopping().max_new_tokens(), 7);
  EXPECT_FALSE(r.has_skip_special_tokens()) << "left to the server unless the flag is given";

  // Hidden reasoning.
  o.show_reasoning = "hide";
  ASSERT_EQ(RunChat(o, "hello", ""), 0);
  EXPECT_EQ(out_.str(), "It is mild.\n");
}

TEST_F(StepctlChatTest, InteractiveToolCallsAndHistory) {
  TextOptions o;
  o.show_reasoning = "prefix";
  o.tool_choice = "required";
  const std::string input =
      "weather?\n"
      "/tool call_a 18 C\n"   // one of two answered: nothing is sent yet
      "/tool call_x 1\n"      // no such call
      "/tool call_b 21 C\n"   // both answered: the assistant goes on
      "fail\n"                // an error: this turn is not kept
      "thanks\n";
  // Without --tools, --tool_choice=required names no tool list; it is still sent.
  EXPECT_EQ(RunChat(o, "", input), 1) << "a failed turn makes the exit code 1\n" << err_.str();
  const std::string out = out_.str();
  EXPECT_NE(out.find("[reasoning] Let me think.\n[reasoning] Done.\n"
                     "[tool_call] {\"arguments\":{\"city\":\"Paris\"},\"id\":\"call_a\",\"name\":\"get_weather\"}\n"
                     "[tool_call] {\"arguments\":{\"city\":\"Rome\"},\"id\":\"call_b\",\"name\":\"get_weather\"}\n"),
            std::string::npos)
      << out;
  EXPECT_NE(err_.str().find("no pending tool call \"call_x\" (pending: call_b)"), std::string::npos) << err_.str();
  EXPECT_NE(err_.str().find("RESOURCE_EXHAUSTED: queue full"), std::string::npos) << err_.str();
  EXPECT_NE(err_.str().find("finish_reason=TOOL_CALLS"), std::string::npos) << err_.str();

  const auto reqs = service_.requests();
  ASSERT_EQ(reqs.size(), 4u) << "weather?, the tool results, fail, thanks";
  EXPECT_EQ(reqs[0].chat().tool_choice().mode(), "required");
  // The second request: user, assistant (reasoning and both calls, null content), two tool results.
  const v1::ChatInput& second = reqs[1].chat();
  ASSERT_EQ(second.messages_size(), 4);
  EXPECT_EQ(second.messages(1).role(), "assistant");
  EXPECT_EQ(second.messages(1).reasoning_content(), "Let me think.\nDone.");
  EXPECT_FALSE(second.messages(1).has_content());
  ASSERT_EQ(second.messages(1).tool_calls_size(), 2);
  EXPECT_EQ(second.messages(1).tool_calls(0).arguments(), "{\"city\": \"Paris\"}");
  EXPECT_EQ(second.messages(2).role(), "tool");
  EXPECT_EQ(second.messages(2).tool_call_id(), "call_a");
  EXPECT_EQ(second.messages(2).content(), "18 C");
  EXPECT_EQ(second.messages(3).tool_call_id(), "call_b");
  // "fail" was sent after the answer to the tool results...
  ASSERT_EQ(reqs[2].chat().messages_size(), 6);
  EXPECT_EQ(reqs[2].chat().messages(4).content(), "It is mild.");
  EXPECT_EQ(reqs[2].chat().messages(4).reasoning_content(), "Let me think.\nDone.");
  // ...and left out of the conversation: "thanks" follows the answer directly.
  ASSERT_EQ(reqs[3].chat().messages_size(), 6);
  EXPECT_EQ(reqs[3].chat().messages(5).content(), "thanks");
}

TEST_F(StepctlChatTest, ResetAndUsageErrors) {
  TextOptions o;
  o.system = "S";
  ASSERT_EQ(RunChat(o, "", "a\n/reset\nb\n/exit\nc\n"), 0) << err_.str();
  const auto reqs = service_.requests();
  ASSERT_EQ(reqs.size(), 2u);
  ASSERT_EQ(reqs[1].chat().messages_size(), 2) << "the system prompt stays, the rest is gone";
  EXPECT_EQ(reqs[1].chat().messages(0).content(), "S");
  EXPECT_EQ(reqs[1].chat().messages(1).content(), "b");

  o.show_reasoning = "loud";
  EXPECT_EQ(RunChat(o, "x", ""), 2);
  o.show_reasoning = "auto";
  o.chat_template_kwargs = "not json";
  EXPECT_EQ(RunChat(o, "x", ""), 2);
  EXPECT_NE(err_.str().find("--chat_template_kwargs"), std::string::npos) << err_.str();
  o.chat_template_kwargs = "";
  o.tool_choice = "get_weather";  // not among the (no) tools
  EXPECT_EQ(RunChat(o, "x", ""), 2);
  EXPECT_EQ(service_.requests().size(), 2u) << "usage errors send nothing";
}

}  // namespace
}  // namespace stepserve::client
