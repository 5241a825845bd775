// The text clients against a live tiny server (its built-in tokenizer and Step-style chat template, the
// OpenAI-compatible HTTP front on --http_port): stepctl generate --prompt, chat (one-shot and interactive
// through stdin), tokenize, detokenize, and stepbench --prompts_file over --api=grpc and --api=openai.
// The tiny model's text is random; the checks compare paths that must agree (text vs ids, one front vs the
// other, a conversation vs a fresh start), so they fail when one of them is wrong.
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "client/metrics_scrape.h"
#include "live_server.h"
#include "subprocess.h"

namespace stepserve::testing {
namespace {

constexpr double kCommandTimeoutS = 120;

std::string Describe(const CommandResult& r) {
  return "exit " + std::to_string(r.exit_code) + (r.timed_out ? " (timed out)" : "") + "\nstdout:\n" + r.out +
         "\nstderr:\n" + r.err;
}

std::string TempPath(const std::string& tag) {
  return "/tmp/text_clients_test_" + std::to_string(::getpid()) + "_" + tag;
}

// "key=VALUE" of a summary line; -1 when absent.
long Field(const std::string& text, const std::string& key, size_t from = 0) {
  const auto pos = text.find(" " + key + "=", from);
  if (pos == std::string::npos) return -1;
  return std::atol(text.c_str() + pos + key.size() + 2);
}

// The summary lines ("finish_reason=...") of an output, in order.
std::vector<std::string> SummaryLines(const std::string& text) {
  std::vector<std::string> lines;
  for (size_t pos = text.find("finish_reason="); pos != std::string::npos;
       pos = text.find("finish_reason=", pos + 1)) {
    lines.push_back(text.substr(pos, text.find('\n', pos) - pos));
  }
  return lines;
}

// generate --prompt's output: the text, then the summary line. The text is printed with a newline added
// when it does not end in one.
struct GenerateOutput {
  std::string printed_text;  // everything before the summary line
  std::string summary;
};
GenerateOutput SplitGenerate(const std::string& out) {
  GenerateOutput g;
  const size_t pos = out.rfind("finish_reason=");
  if (pos == std::string::npos) return g;
  g.printed_text = out.substr(0, pos);
  g.summary = out.substr(pos);
  return g;
}
bool SameText(const std::string& printed, const std::string& text) {
  return printed == text || printed == text + "\n";
}

class TextServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!ServerInBuild()) return;
    http_port_ = PickFreePort();
    std::string error;
    server_ = LiveServer::Start({"--http_port=" + std::to_string(http_port_)}, &error).release();
    if (server_ == nullptr) start_error_ = new std::string(error);
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    if (!ServerInBuild()) GTEST_SKIP() << "stepserve is not built in this configuration";
    ASSERT_NE(server_, nullptr) << (start_error_ ? *start_error_ : "");
  }
  void TearDown() override {
    for (const auto& p : temp_files_) ::unlink(p.c_str());
  }

  CommandResult Stepctl(std::vector<std::string> args) {
    args.insert(args.begin(), STEPCTL_BIN);
    args.push_back("--target=" + server_->target());
    return RunCommand(args, kCommandTimeoutS);
  }
  // stepctl with `input` on its stdin (through a file: RunCommand gives the child no stdin of its own).
  CommandResult StepctlWithInput(const std::string& input, std::vector<std::string> args) {
    const std::string path = Temp("stdin.txt");
    {
      std::ofstream out(path);
      out << input;
    }
    std::vector<std::string> argv = {"/bin/sh", "-c", "f=$1; shift; exec \"$@\" < \"$f\"", "sh", path, STEPCTL_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--target=" + server_->target());
    return RunCommand(argv, kCommandTimeoutS);
  }
  CommandResult Stepbench(std::vector<std::string> args) {
    args.insert(args.begin(), STEPBENCH_BIN);
    return RunCommand(args, 300);
  }
  std::string Temp(const std::string& tag) {
    temp_files_.push_back(TempPath(tag));
    return temp_files_.back();
  }
  std::string HttpTarget() const { return "127.0.0.1:" + std::to_string(http_port_); }

  // The token ids of `tokenize TEXT` (with extra flags).
  std::vector<int> TokenIds(const std::string& text, std::vector<std::string> flags = {}) {
    flags.insert(flags.begin(), {"tokenize", text, "--json"});
    const CommandResult r = Stepctl(flags);
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    const auto j = nlohmann::json::parse(r.out, nullptr, false);
    if (j.is_discarded() || !j.contains("token_ids")) return {};
    return j["token_ids"].get<std::vector<int>>();
  }

  static LiveServer* server_;
  static std::string* start_error_;
  static int http_port_;
  std::vector<std::string> temp_files_;
};

LiveServer* TextServerTest::server_ = nullptr;
std::string* TextServerTest::start_error_ = nullptr;
int TextServerTest::http_port_ = 0;

std::string Join(const std::vector<int>& ids) {
  std::string s;
  for (int id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

TEST_F(TextServerTest, InfoNamesTheTokenizer) {
  const CommandResult r = Stepctl({"info"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_NE(r.out.find("tokenizer_loaded:   true"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("chat_template:      true"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("special_tokens:     "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("<|im_end|>"), std::string::npos) << "the built-in Step special tokens\n" << r.out;
}

TEST_F(TextServerTest, TokenizeAndDetokenizeRoundTrip) {
  const std::string text = "Hello, world! caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd";
  CommandResult r = Stepctl({"tokenize", text});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  ASSERT_EQ(r.out.rfind("tokens: ", 0), 0u) << r.out;
  const std::vector<int> ids = TokenIds(text);
  ASSERT_FALSE(ids.empty());
  EXPECT_NE(r.out.find("tokens: " + Join(ids) + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("count: " + std::to_string(ids.size()) + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("max_model_len: "), std::string::npos) << r.out;

  r = Stepctl({"detokenize", Join(ids), "--skip_special_tokens"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(r.out, text + "\n");
  r = Stepctl({"detokenize", Join(ids), "--json", "--skip_special_tokens"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(nlohmann::json::parse(r.out)["text"], text);

  // Without special tokens added, the ids are a suffix of the default's (BOS, when the tokenizer adds it).
  const std::vector<int> bare = TokenIds(text, {"--noadd_special_tokens"});
  ASSERT_FALSE(bare.empty());
  ASSERT_LE(bare.size(), ids.size());
  EXPECT_TRUE(std::equal(bare.rbegin(), bare.rend(), ids.rbegin()));

  // A chat renders the template around the message: more tokens, and the generation prompt adds some.
  const std::vector<int> chat = TokenIds("hello", {"--chat"});
  const std::vector<int> chat_no_gen = TokenIds("hello", {"--chat", "--noadd_generation_prompt"});
  const std::vector<int> chat_system = TokenIds("hello", {"--chat", "--system=Be brief."});
  EXPECT_GT(chat.size(), TokenIds("hello").size());
  EXPECT_GT(chat.size(), chat_no_gen.size());
  EXPECT_GT(chat_system.size(), chat.size());

  // Bad ids: usage (exit 2) or the server's refusal (exit 1).
  r = Stepctl({"detokenize", "1,x"});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  r = Stepctl({"detokenize", "1,100000000"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_NE(r.err.find("INVALID_ARGUMENT"), std::string::npos) << Describe(r);
}

TEST_F(TextServerTest, GeneratePromptGivesTheTextOfTheIds) {
  const std::string prompt = "Once upon a time";
  CommandResult text_run = Stepctl({"generate", "--prompt=" + prompt, "--max_new_tokens=12", "--ignore_eos"});
  ASSERT_EQ(text_run.exit_code, 0) << Describe(text_run);
  const GenerateOutput text_out = SplitGenerate(text_run.out);
  ASSERT_FALSE(text_out.summary.empty()) << text_run.out;
  EXPECT_NE(text_out.summary.find("finish_reason=LENGTH"), std::string::npos) << text_out.summary;
  EXPECT_EQ(Field(text_out.summary, "completion_tokens"), 12) << text_out.summary;

  // The same prompt as ids (as the server encodes it), then the ids generated, decoded: the same text.
  const std::vector<int> prompt_ids = TokenIds(prompt);
  EXPECT_EQ(Field(text_out.summary, "prompt_tokens"), static_cast<long>(prompt_ids.size())) << text_out.summary;
  CommandResult ids_run = Stepctl({"generate", "--tokens=" + Join(prompt_ids), "--max_new_tokens=12", "--ignore_eos"});
  ASSERT_EQ(ids_run.exit_code, 0) << Describe(ids_run);
  const auto tokens_pos = ids_run.out.find("tokens: ");
  ASSERT_NE(tokens_pos, std::string::npos) << ids_run.out;
  const std::string ids = ids_run.out.substr(tokens_pos + 8, ids_run.out.find('\n', tokens_pos) - tokens_pos - 8);
  CommandResult decoded = Stepctl({"detokenize", ids, "--skip_special_tokens", "--json"});
  ASSERT_EQ(decoded.exit_code, 0) << Describe(decoded);
  const std::string expected = nlohmann::json::parse(decoded.out)["text"];
  EXPECT_TRUE(SameText(text_out.printed_text, expected))
      << "generate --prompt printed\n[" << text_out.printed_text << "]\nthe ids decode to\n[" << expected << "]";

  // Streamed: the same text.
  CommandResult streamed =
      Stepctl({"generate", "--prompt=" + prompt, "--max_new_tokens=12", "--ignore_eos", "--stream"});
  ASSERT_EQ(streamed.exit_code, 0) << Describe(streamed);
  EXPECT_EQ(SplitGenerate(streamed.out).printed_text, text_out.printed_text);

  // A stop string taken from the middle of that text: the output stops before its first occurrence.
  // Take the first whole UTF-8 character after the first one that is not a comma, backslash or newline.
  size_t start = 1;
  while (start < expected.size() && (static_cast<unsigned char>(expected[start]) & 0xC0) == 0x80) ++start;
  size_t len = 1;
  while (start + len < expected.size() && (static_cast<unsigned char>(expected[start + len]) & 0xC0) == 0x80) ++len;
  if (start >= expected.size() || expected[start] == ',' || expected[start] == '\\' || expected[start] == '\n') {
    GTEST_SKIP() << "the generated text has no usable stop string: [" << expected << "]";
  }
  const std::string stop = expected.substr(start, len);
  const std::string before = expected.substr(0, expected.find(stop));
  CommandResult stopped = Stepctl({"generate", "--prompt=" + prompt, "--max_new_tokens=12", "--ignore_eos",
                                   "--stop=" + stop, "--stop=\\,never\\,"});
  ASSERT_EQ(stopped.exit_code, 0) << Describe(stopped);
  const GenerateOutput s = SplitGenerate(stopped.out);
  EXPECT_NE(s.summary.find("finish_reason=STOP_STRING"), std::string::npos) << s.summary;
  EXPECT_NE(s.summary.find("matched_stop=\"" + stop + "\""), std::string::npos) << s.summary;
  EXPECT_TRUE(before.empty() ? s.printed_text.empty() : SameText(s.printed_text, before))
      << "[" << s.printed_text << "] vs [" << before << "]";
}

TEST_F(TextServerTest, GeneratePromptUsageErrors) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"generate", "--prompt=hi", "--tokens=1,2"},
           {"generate", "--prompt=hi", "--stop=a,,b"},
           {"generate", "--prompt=hi", "--stop=\\q"},
           {"chat", "hi", "--show_reasoning=loud"},
           {"chat", "hi", "--tools=/nonexistent/tools.json"},
           {"chat", "hi", "--chat_template_kwargs=[1]"},
           {"chat", "hi", "--tool_choice=nope"},
           {"tokenize"},
           {"tokenize", "a", "b"},
           {"detokenize"},
       }) {
    const CommandResult r = Stepctl(args);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_EQ(r.exit_code, 2) << joined << Describe(r);
    EXPECT_FALSE(r.err.empty()) << joined;
  }
}

// The text of a chat printed with --show_reasoning=prefix without its reasoning lines.
std::string WithoutReasoning(const std::string& out) {
  std::string kept;
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    end = end == std::string::npos ? out.size() : end + 1;
    const std::string line = out.substr(start, end - start);
    if (line.rfind("[reasoning] ", 0) != 0) kept += line;
    start = end;
  }
  return kept;
}

TEST_F(TextServerTest, ChatOneShot) {
  const std::vector<std::string> base = {"chat", "hello there", "--max_new_tokens=16", "--ignore_eos",
                                         "--system=Be brief."};
  std::vector<std::string> prefixed_args = base;
  prefixed_args.push_back("--show_reasoning=prefix");
  const CommandResult prefixed = Stepctl(prefixed_args);
  ASSERT_EQ(prefixed.exit_code, 0) << Describe(prefixed);
  const std::vector<std::string> summaries = SummaryLines(prefixed.err);
  ASSERT_EQ(summaries.size(), 1u) << Describe(prefixed);
  EXPECT_EQ(Field(" " + summaries[0], "completion_tokens"), 16) << summaries[0];
  // The prompt is the chat template's rendering of the same conversation that tokenize --chat encodes.
  const std::vector<int> chat_ids = TokenIds("hello there", {"--chat", "--system=Be brief."});
  EXPECT_EQ(Field(summaries[0], "prompt_tokens"), static_cast<long>(chat_ids.size())) << summaries[0];
  ASSERT_FALSE(prefixed.out.empty()) << Describe(prefixed);

  std::vector<std::string> hidden_args = base;
  hidden_args.push_back("--show_reasoning=hide");
  const CommandResult hidden = Stepctl(hidden_args);
  ASSERT_EQ(hidden.exit_code, 0) << Describe(hidden);
  // Greedy: the same answer; hiding the reasoning leaves exactly the lines that were not reasoning.
  EXPECT_EQ(hidden.out, WithoutReasoning(prefixed.out)) << "prefixed:\n" << prefixed.out;
  // The generation prompt opens <think>: the answer starts as reasoning (unless the model closed it at once).
  if (prefixed.out != hidden.out) {
    EXPECT_EQ(prefixed.out.rfind("[reasoning] ", 0), 0u) << prefixed.out;
  }
  // Dimmed reasoning: ANSI faint around it, the same characters otherwise.
  std::vector<std::string> dim_args = base;
  dim_args.push_back("--show_reasoning=dim");
  const CommandResult dim = Stepctl(dim_args);
  ASSERT_EQ(dim.exit_code, 0) << Describe(dim);
  if (prefixed.out != hidden.out) {
    EXPECT_EQ(dim.out.rfind("\x1b[2m", 0), 0u) << dim.out;
  }

  // With tools and template kwargs the request is accepted and the prompt grows by the tool schema.
  const std::string tools = Temp("tools.json");
  {
    std::ofstream out(tools);
    out << R"([{"type":"function","function":{"name":"get_weather","description":"Weather in a city",)"
        << R"("parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}])";
  }
  std::vector<std::string> tool_args = base;
  tool_args.insert(tool_args.end(), {"--tools=" + tools, "--reasoning_effort=low", "--show_reasoning=prefix"});
  const CommandResult with_tools = Stepctl(tool_args);
  ASSERT_EQ(with_tools.exit_code, 0) << Describe(with_tools);
  const std::vector<std::string> tool_summary = SummaryLines(with_tools.err);
  ASSERT_EQ(tool_summary.size(), 1u) << Describe(with_tools);
  EXPECT_GT(Field(tool_summary[0], "prompt_tokens"), Field(summaries[0], "prompt_tokens")) << tool_summary[0];
  // Tool calls, if the random model made any, are printed as JSON objects.
  for (size_t pos = with_tools.out.find("[tool_call] "); pos != std::string::npos;
       pos = with_tools.out.find("[tool_call] ", pos + 1)) {
    const std::string json = with_tools.out.substr(pos + 12, with_tools.out.find('\n', pos) - pos - 12);
    EXPECT_TRUE(nlohmann::json::parse(json, nullptr, false).is_object()) << json;
  }
}

TEST_F(TextServerTest, ChatInteractiveKeepsTheConversation) {
  const std::vector<std::string> args = {"chat", "--max_new_tokens=8", "--ignore_eos", "--show_reasoning=prefix"};
  // Two turns: the second prompt holds the first exchange.
  const CommandResult two = StepctlWithInput("hello\n\nand then?\n", args);
  ASSERT_EQ(two.exit_code, 0) << Describe(two);
  const std::vector<std::string> s = SummaryLines(two.err);
  ASSERT_EQ(s.size(), 2u) << "one answer per non-empty line\n" << Describe(two);
  const long p1 = Field(s[0], "prompt_tokens"), p2 = Field(s[1], "prompt_tokens");
  const std::vector<int> and_then_alone = TokenIds("and then?", {"--chat"});
  EXPECT_GT(p2, p1) << two.err;
  EXPECT_GT(p2, static_cast<long>(and_then_alone.size())) << "the history is sent, not the last line alone";
  EXPECT_EQ(p1, static_cast<long>(TokenIds("hello", {"--chat"}).size()));

  // /reset forgets it: the same line gives the same prompt and (greedy) the same answer as the first turn.
  const CommandResult reset = StepctlWithInput("hello\n/reset\nhello\n", args);
  ASSERT_EQ(reset.exit_code, 0) << Describe(reset);
  const std::vector<std::string> r = SummaryLines(reset.err);
  ASSERT_EQ(r.size(), 2u) << Describe(reset);
  EXPECT_EQ(Field(r[0], "prompt_tokens"), Field(r[1], "prompt_tokens")) << reset.err;
  // One-shot gives the first answer too.
  const CommandResult once = Stepctl({"chat", "hello", "--max_new_tokens=8", "--ignore_eos", "--show_reasoning=prefix"});
  ASSERT_EQ(once.exit_code, 0) << Describe(once);
  ASSERT_EQ(reset.out.size(), 2 * once.out.size()) << "two identical answers\n" << reset.out << "\nvs\n" << once.out;
  EXPECT_EQ(reset.out, once.out + once.out);

  // Commands that do nothing but complain; the session goes on and exits 0 at end of input.
  const CommandResult cmds = StepctlWithInput("/tool call_0 12 C\n/bogus\n/exit\nnever sent\n", args);
  EXPECT_EQ(cmds.exit_code, 0) << Describe(cmds);
  EXPECT_NE(cmds.err.find("no pending tool call \"call_0\""), std::string::npos) << cmds.err;
  EXPECT_NE(cmds.err.find("unknown command /bogus"), std::string::npos) << cmds.err;
  EXPECT_TRUE(SummaryLines(cmds.err).empty()) << "nothing was generated, /exit came before the message";
}

TEST_F(TextServerTest, ChatAgainstNoServerFails) {
  const CommandResult r = RunCommand(
      {STEPCTL_BIN, "chat", "hi", "--target=127.0.0.1:" + std::to_string(PickFreePort()), "--timeout_s=10"}, 60);
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_NE(r.err.find("UNAVAILABLE"), std::string::npos) << Describe(r);
}

// A prompts file with plain prompts and ShareGPT conversations, max_new_tokens given or from --output_len.
std::string WritePrompts(const std::string& path) {
  std::ofstream out(path);
  out << R"({"prompt": "Tell me a story about a robot", "max_new_tokens": 6})" << "\n";
  out << R"({"prompt": "caf\u00e9 \u4f60\u597d"})" << "\n";
  out << R"({"conversations": [{"from": "human", "value": "What is 2+2?"}, {"from": "gpt", "value": "4"}]})" << "\n";
  out << R"({"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},)"
      << R"( {"from": "gpt", "value": "Hello"}, {"from": "human", "value": "Bye"}, {"from": "gpt", "value": "Bye"}]})"
      << "\n";
  return path;
}

TEST_F(TextServerTest, StepbenchPromptsFileOverGrpcAndOpenAi) {
  const std::string prompts = WritePrompts(Temp("prompts.jsonl"));
  const auto run = [&](const std::vector<std::string>& api_args, const std::string& tag) {
    const std::string json = Temp(tag + ".json");
    std::vector<std::string> args = {"--prompts_file=" + prompts, "--num_requests=8", "--concurrency=3",
                                     "--output_len=5", "--sharegpt_turns=all", "--warmup=1",
                                     "--metrics_url=" + server_->metrics_url(), "--json_out=" + json};
    args.insert(args.end(), api_args.begin(), api_args.end());
    const CommandResult r = Stepbench(args);
    EXPECT_EQ(r.exit_code, 0) << tag << " " << Describe(r) << "\nserver log:\n" << server_->log();
    EXPECT_NE(r.out.find("Serving Benchmark Result"), std::string::npos) << r.out;
    const auto j = nlohmann::json::parse(ReadFile(json), nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << Describe(r);
    return std::make_pair(r, j.is_discarded() ? nlohmann::json::object() : j);
  };
  const auto [grpc_run, grpc] = run({"--api=grpc", "--target=" + server_->target()}, "grpc");
  const auto [http_run, http] = run({"--api=openai", "--http_target=" + HttpTarget()}, "openai");
  EXPECT_NE(grpc_run.out.find("(gRPC)"), std::string::npos) << grpc_run.out;
  EXPECT_NE(http_run.out.find("(OpenAI API)"), std::string::npos) << http_run.out;
  for (const auto* j : {&grpc, &http}) {
    EXPECT_EQ((*j)["completed"], 8) << j->dump(2);
    EXPECT_EQ((*j)["failed"], 0) << j->dump(2);
    // Entries 0..3 cycled: 6, 5, 5, 5 new tokens, twice; ignore_eos makes them exact.
    EXPECT_EQ((*j)["total_output_tokens"], 2 * (6 + 5 + 5 + 5)) << j->dump(2);
    EXPECT_EQ((*j)["length_mismatches"], 0) << j->dump(2);
    EXPECT_GT((*j)["ttft_ms"]["p50"].get<double>(), 0);
    EXPECT_GT((*j)["itl_ms"]["count"].get<int>(), 0);
    // The server counted what the client counted.
    ASSERT_TRUE(j->contains("server")) << j->dump(2);
    EXPECT_EQ((*j)["server"]["request_success"], 8) << j->dump(2);
    EXPECT_EQ((*j)["server"]["generation_tokens"], (*j)["total_output_tokens"]) << j->dump(2);
    EXPECT_EQ((*j)["server"]["prompt_tokens"], (*j)["total_input_tokens"]) << j->dump(2);
  }
  // Both fronts tokenize and template the same prompts the same way.
  EXPECT_EQ(grpc["total_input_tokens"], http["total_input_tokens"]);
  EXPECT_GT(grpc["total_input_tokens"].get<int>(), 0);
}

TEST_F(TextServerTest, StepbenchOpenAiOpenLoopAndChatMode) {
  const std::string prompts = WritePrompts(Temp("prompts_open.jsonl"));
  const std::string json = Temp("open.json");
  const CommandResult r =
      Stepbench({"--prompts_file=" + prompts, "--api=openai", "--http_target=" + HttpTarget(), "--chat",
                 "--request_rate=20", "--num_requests=6", "--output_len=3", "--seed=5", "--json_out=" + json});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_NE(r.out.find("open loop at 20 req/s"), std::string::npos) << r.out;
  const auto j = nlohmann::json::parse(ReadFile(json));
  EXPECT_EQ(j["completed"], 6);
  EXPECT_EQ(j["total_output_tokens"], 6 + 3 + 3 + 3 + 6 + 3);
}

TEST_F(TextServerTest, StepbenchTextUsageAndUnreachableFront) {
  const std::string prompts = WritePrompts(Temp("prompts_usage.jsonl"));
  const std::string bad = Temp("bad.jsonl");
  {
    std::ofstream out(bad);
    out << "{\"prompt\": \"ok\"}\n{\"conversations\": [{\"from\": \"alien\", \"value\": \"x\"}]}\n";
  }
  const std::vector<std::pair<std::vector<std::string>, std::string>> usage = {
      {{"--api=openai"}, "--api=openai sends text: it needs --prompts_file"},
      {{"--api=rest", "--prompts_file=" + prompts}, "--api must be grpc or openai"},
      {{"--sharegpt_turns=all"}, "--sharegpt_turns needs --prompts_file"},
      {{"--prompts_file=" + prompts, "--prompt_len=8"}, "--prompt_len works on token-id prompts"},
      {{"--prompts_file=" + prompts, "--dataset=x.jsonl"}, "--dataset works on token-id prompts"},
      {{"--prompts_file=" + prompts, "--turns=2"}, "--turns works on token-id prompts"},
      {{"--prompts_file=" + prompts, "--sharegpt_turns=some"}, "--sharegpt_turns must be first or all"},
      {{"--prompts_file=" + bad}, bad + ":2: conversations[0]: unknown \"from\": \"alien\""},
      {{"--prompts_file=/nonexistent/p.jsonl"}, "cannot read prompts file /nonexistent/p.jsonl"},
      {{"--prompts_file=" + prompts, "--api=openai", "--http_target=nohost"}, "--http_target: bad HTTP target"},
      {{"--prompts_file=" + prompts, "--http_target=h:1"}, "--http_target and --model are for --api=openai"},
  };
  for (const auto& [args, needle] : usage) {
    std::vector<std::string> argv = args;
    argv.push_back("--target=127.0.0.1:1");
    const CommandResult r = Stepbench(argv);
    EXPECT_EQ(r.exit_code, 2) << args[0] << " " << Describe(r);
    EXPECT_NE(r.err.find(needle), std::string::npos) << args[0] << " " << Describe(r);
  }
  // Nothing listens on the HTTP port: exit 1 naming /v1/models.
  const CommandResult r = Stepbench({"--prompts_file=" + prompts, "--api=openai", "--num_requests=2",
                                     "--http_target=127.0.0.1:" + std::to_string(PickFreePort()), "--timeout_s=5"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_NE(r.err.find("/v1/models"), std::string::npos) << Describe(r);
}

}  // namespace
}  // namespace stepserve::testing
