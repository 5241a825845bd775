// stepctl as a user runs it: the binary against a live server, an unreachable one, and bad usage.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "live_server.h"
#include "subprocess.h"

namespace stepserve::testing {
namespace {

constexpr double kCommandTimeoutS = 60;  // a bound on each run, far above what any should take

CommandResult Stepctl(std::vector<std::string> args) {
  args.insert(args.begin(), STEPCTL_BIN);
  return RunCommand(args, kCommandTimeoutS);
}

std::string Describe(const CommandResult& r) {
  return "exit " + std::to_string(r.exit_code) + (r.timed_out ? " (timed out)" : "") + "\nstdout:\n" + r.out +
         "\nstderr:\n" + r.err;
}

// The "tokens: 1,2,3" line of generate's output.
std::vector<int> TokensLine(const std::string& out) {
  const auto pos = out.find("tokens: ");
  if (pos == std::string::npos) return {};
  std::vector<int> ids;
  std::string line = out.substr(pos + 8, out.find('\n', pos) - pos - 8);
  size_t start = 0;
  while (start < line.size()) {
    size_t comma = line.find(',', start);
    if (comma == std::string::npos) comma = line.size();
    ids.push_back(std::stoi(line.substr(start, comma - start)));
    start = comma + 1;
  }
  return ids;
}

TEST(StepctlUsageTest, BadUsageExitsWithTwo) {
  const std::vector<std::vector<std::string>> cases = {
      {},                                      // no command
      {"frobnicate"},                          // unknown command
      {"health", "info"},                      // two commands
      {"health", "--bogus_flag"},              // unknown flag
      {"info", "--timeout_s=abc"},             // bad value
      {"info", "--timeout_s=0"},               // out of range
      {"generate"},                            // no tokens
      {"generate", "--tokens=1,x"},            // bad token
      {"generate", "--tokens=1", "--max_new_tokens=0"},
      {"generate", "--tokens=1", "--cache_salt=" + std::string(257, 's')},
      {"health", "--tls_cert=/tmp/c.pem"},     // cert without key
      {"health", "--tls_ca=/nonexistent/ca.pem"},
  };
  for (const auto& args : cases) {
    const CommandResult r = Stepctl(args);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_EQ(r.exit_code, 2) << joined << Describe(r);
    EXPECT_FALSE(r.err.empty()) << joined;
  }
}

TEST(StepctlUsageTest, HelpExitsWithZero) {
  const CommandResult r = Stepctl({"--help"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_NE(r.out.find("generate"), std::string::npos);
  EXPECT_NE(r.out.find("--target"), std::string::npos);
}

// Nothing listens on the port: every command fails with UNAVAILABLE and exit code 1, at once.
TEST(StepctlUnreachableTest, RefusedConnectionGivesUnavailable) {
  const std::string target = "127.0.0.1:" + std::to_string(PickFreePort());
  for (const auto& command : std::vector<std::vector<std::string>>{
           {"health"}, {"info"}, {"generate", "--tokens=1,2"}}) {
    std::vector<std::string> args = command;
    args.push_back("--target=" + target);
    args.push_back("--timeout_s=10");
    const CommandResult r = Stepctl(args);
    EXPECT_EQ(r.exit_code, 1) << command[0] << " " << Describe(r);
    EXPECT_NE(r.err.find("UNAVAILABLE"), std::string::npos) << Describe(r);
    EXPECT_NE(r.err.find(target), std::string::npos) << "the message names the target: " << r.err;
  }
}

// A peer that accepts TCP connections and never speaks HTTP/2: the deadline ends the wait.
TEST(StepctlUnreachableTest, SilentPeerHitsTheDeadline) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 16), 0);  // the kernel completes handshakes; nobody reads
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string target = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  const CommandResult r = Stepctl({"health", "--target=" + target, "--timeout_s=1"});
  ::close(fd);
  EXPECT_FALSE(r.timed_out) << Describe(r);
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_TRUE(r.err.find("DEADLINE_EXCEEDED") != std::string::npos ||
              r.err.find("UNAVAILABLE") != std::string::npos)
      << Describe(r);
}

class StepctlLiveTest : public LiveServerTest {
 protected:
  CommandResult Run(std::vector<std::string> args) {
    args.push_back("--target=" + server_->target());
    return Stepctl(args);
  }
  int VocabSize() {
    const CommandResult r = Run({"info", "--json"});
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    return nlohmann::json::parse(r.out).value("vocab_size", 0);
  }

};

TEST_F(StepctlLiveTest, HealthIsServing) {
  CommandResult r = Run({"health"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(r.out, "SERVING\n");
  r = Run({"health", "--service=stepserve.v1.StepServe"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(r.out, "SERVING\n");
  r = Run({"health", "--service=no.such.Service"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_NE(r.err.find("NOT_FOUND"), std::string::npos) << Describe(r);
}

TEST_F(StepctlLiveTest, InfoDescribesTheModel) {
  CommandResult r = Run({"info"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  for (const char* field : {"model:", "dtype:", "device:", "vocab_size:", "max_context:", "num_layers:",
                            "eos_token_ids:", "kv_capacity_tokens:", "max_num_seqs:", "prefix_caching:"}) {
    EXPECT_NE(r.out.find(field), std::string::npos) << field << "\n" << r.out;
  }
  r = Run({"info", "--json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_GT(j.value("vocab_size", 0), 0);
  EXPECT_GT(j.value("max_context", 0), 0);
  EXPECT_NE(j.value("model", ""), "");
  ASSERT_TRUE(j.contains("prefix_caching")) << r.out;
  EXPECT_TRUE(j["prefix_caching"].is_boolean()) << r.out;
}

TEST_F(StepctlLiveTest, GenerateGreedyStreamedOrNotGivesTheSameTokens) {
  CommandResult plain = Run({"generate", "--tokens=1,2,3", "--max_new_tokens=6", "--ignore_eos"});
  ASSERT_EQ(plain.exit_code, 0) << Describe(plain);
  const std::vector<int> tokens = TokensLine(plain.out);
  EXPECT_EQ(tokens.size(), 6u) << plain.out;
  EXPECT_NE(plain.out.find("finish_reason=LENGTH"), std::string::npos) << plain.out;
  EXPECT_NE(plain.out.find("prompt_tokens=3 completion_tokens=6 cached_prompt_tokens="), std::string::npos)
      << plain.out;

  CommandResult streamed = Run({"generate", "--tokens=1,2,3", "--max_new_tokens=6", "--ignore_eos", "--stream"});
  ASSERT_EQ(streamed.exit_code, 0) << Describe(streamed);
  EXPECT_EQ(TokensLine(streamed.out), tokens) << streamed.out;
  EXPECT_NE(streamed.out.find("finish_reason=LENGTH"), std::string::npos);
}

TEST_F(StepctlLiveTest, GenerateWithLogprobsAndSampling) {
  CommandResult r = Run({"generate", "--tokens=4,5", "--max_new_tokens=3", "--ignore_eos", "--logprobs=2",
                         "--stream"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  size_t lines = 0;
  for (size_t pos = r.out.find("token "); pos != std::string::npos; pos = r.out.find("\ntoken ", pos + 1)) ++lines;
  EXPECT_EQ(lines, 3u) << r.out;
  EXPECT_NE(r.out.find(" top "), std::string::npos) << r.out;

  const std::vector<std::string> sampled = {"generate",  "--tokens=4,5", "--max_new_tokens=5", "--ignore_eos",
                                            "--temperature=0.9", "--top_p=0.95", "--top_k=20", "--seed=1234"};
  CommandResult a = Run(sampled);
  CommandResult b = Run(sampled);
  ASSERT_EQ(a.exit_code, 0) << Describe(a);
  ASSERT_EQ(b.exit_code, 0) << Describe(b);
  EXPECT_EQ(TokensLine(a.out).size(), 5u);
  EXPECT_EQ(TokensLine(a.out), TokensLine(b.out)) << "a seed makes sampling reproducible";
}

// The cached_prompt_tokens=N of generate's summary line; -1 when absent.
int CachedPromptTokens(const std::string& out) {
  const auto pos = out.find(" cached_prompt_tokens=");
  if (pos == std::string::npos) return -1;
  return std::atoi(out.c_str() + pos + 22);
}

TEST_F(StepctlLiveTest, GenerateWithCacheSaltReportsCachedPromptTokens) {
  std::string prompt;  // 40 tokens: 2 full blocks of 16 and a partial one
  for (int i = 0; i < 40; ++i) prompt += (i ? "," : "") + std::to_string(3 + (i * 7) % 200);
  const std::vector<std::string> args = {"generate", "--tokens=" + prompt, "--max_new_tokens=2",
                                         "--cache_salt=stepctl-test"};
  const CommandResult first = Run(args);
  ASSERT_EQ(first.exit_code, 0) << Describe(first);
  const CommandResult second = Run(args);
  ASSERT_EQ(second.exit_code, 0) << Describe(second);
  std::vector<std::string> other_args = args;
  other_args.back() = "--cache_salt=stepctl-other";
  const CommandResult other = Run(other_args);
  ASSERT_EQ(other.exit_code, 0) << Describe(other);
  for (const auto* r : {&first, &second, &other}) EXPECT_GE(CachedPromptTokens(r->out), 0) << r->out;

  const CommandResult info = Run({"info", "--json"});
  ASSERT_EQ(info.exit_code, 0) << Describe(info);
  if (!nlohmann::json::parse(info.out).value("prefix_caching", false)) {
    EXPECT_EQ(CachedPromptTokens(second.out), 0) << second.out;
    GTEST_SKIP() << "the server has prefix caching off (or predates it): cache checks skipped";
  }
  // The same prompt and salt again: its full blocks come from the cache; another salt shares nothing.
  EXPECT_GE(CachedPromptTokens(second.out), 32) << second.out;
  EXPECT_LT(CachedPromptTokens(second.out), 40) << "a partial block is not cached";
  EXPECT_EQ(CachedPromptTokens(other.out), 0) << other.out;
}

TEST_F(StepctlLiveTest, GenerateRejectedByTheServerExitsWithOne) {
  const int vocab = VocabSize();
  ASSERT_GT(vocab, 0);
  CommandResult r = Run({"generate", "--tokens=1," + std::to_string(vocab)});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_NE(r.err.find("INVALID_ARGUMENT"), std::string::npos) << Describe(r);
  r = Run({"generate", "--tokens=1", "--top_p=1.5"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_NE(r.err.find("INVALID_ARGUMENT"), std::string::npos) << Describe(r);
  // The server keeps serving.
  EXPECT_EQ(Run({"health"}).exit_code, 0);
}

}  // namespace
}  // namespace stepserve::testing
