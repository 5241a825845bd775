// Tensor parallelism end to end: the stepserve program as a subprocess with --tensor_parallel_size=2 (rank 0
// serves gRPC and starts worker rank 1), on the CPU (Gloo). The same greedy tokens as one rank, a worker
// killed mid-stream (UNAVAILABLE, exit 1, no orphan), SIGTERM (exit 0, no orphan), flag errors (exit 2
// naming the flag) and --dry_run.
#include <dirent.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tests/server/child_process.h"
#include "tests/server/server_test_util.h"
#include "tests/test_util.h"

namespace stepserve::testing {
namespace {


// A flag that marks this test process's servers (and the workers they start, which get the same flags): a
// --max_queue value no other process uses (this pid), so that /proc can be searched for leftover ranks.
std::string UniqueTag() {
  static std::atomic<int> counter{0};
  return absl::StrCat("--max_queue=", 100000 + static_cast<int64_t>(getpid()) * 64 + counter++ % 64);
}

// The live processes whose argv holds both `tag` and `arg` (exact arguments), from /proc/*/cmdline.
// Zombies have an empty cmdline and do not count.
std::vector<pid_t> FindProcesses(const std::string& tag, const std::string& arg) {
  std::vector<pid_t> found;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return found;
  while (dirent* entry = readdir(proc)) {
    char* end = nullptr;
    const long pid = strtol(entry->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    std::ifstream file(absl::StrCat("/proc/", entry->d_name, "/cmdline"), std::ios::binary);
    std::stringstream text;
    text << file.rdbuf();
    const std::vector<std::string> args = absl::StrSplit(text.str(), '\0');
    bool has_tag = false, has_arg = false;
    for (const std::string& a : args) {
      has_tag = has_tag || a == tag;
      has_arg = has_arg || a == arg;
    }
    if (has_tag && has_arg) found.push_back(static_cast<pid_t>(pid));
  }
  closedir(proc);
  return found;
}

// True when no worker rank of the server tagged `tag` is alive within `timeout` (a worker reaped late may
// linger a moment).
bool NoWorkerLeft(const std::string& tag, absl::Duration timeout = absl::Seconds(10)) {
  return WaitFor([&] { return FindProcesses(tag, "--worker_rank=1").empty(); }, timeout);
}

// One stepserve process on 127.0.0.1 (a free port, no metrics, the CPU) with `extra` flags and a unique tag.
// On teardown it kills the process and any worker of it still alive, so that a broken shutdown fails
// the test instead of hanging it.
class Server {
 public:
  explicit Server(const std::vector<std::string>& extra) : tag_(UniqueTag()) {
    std::vector<std::string> args = {STEPSERVE_BIN, "--host=127.0.0.1", "--port=0", "--metrics_port=-1", "--http_port=0",
                                     "--device=cpu", tag_};
    args.insert(args.end(), extra.begin(), extra.end());
    child_ = std::make_unique<Child>(args);
  }
  ~Server() {
    child_->KillAndReap();
    for (pid_t pid : FindProcesses(tag_, "--worker_rank=1")) kill(pid, SIGKILL);
    child_.reset();
  }

  // Waits for the port, then for health SERVING; false (with the log in *error) when neither came.
  bool WaitServing(std::string* error) {
    if (!WaitFor([&] { return (port_ = ParsePort(child_->output())) > 0; }, absl::Seconds(60))) {
      *error = "no port in the log:\n" + child_->output();
      return false;
    }
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), grpc::InsecureChannelCredentials());
    if (!WaitFor([&] { return Health() == grpc::health::v1::HealthCheckResponse::SERVING; }, absl::Seconds(120))) {
      *error = "not SERVING:\n" + child_->output();
      return false;
    }
    return true;
  }

  grpc::health::v1::HealthCheckResponse::ServingStatus Health() {
    auto health = grpc::health::v1::Health::NewStub(channel_);
    grpc::ClientContext context;
    context.set_deadline(DeadlineIn(absl::Seconds(5)));
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    if (!health->Check(&context, request, &response).ok()) return grpc::health::v1::HealthCheckResponse::UNKNOWN;
    return response.status();
  }

  std::unique_ptr<v1::StepServe::Stub> stub() { return v1::StepServe::NewStub(channel_); }
  Child& child() { return *child_; }
  const std::string& tag() const { return tag_; }
  std::string log() { return child_->output(); }

 private:
  std::string tag_;
  std::unique_ptr<Child> child_;
  int port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
};

// 16 prompts of 1..40 tokens in the tiny vocabulary (300), the same on every run.
std::vector<std::vector<int32_t>> Prompts(int n) {
  std::mt19937 rng(20240611);
  std::uniform_int_distribution<int32_t> token(0, 299);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> p(1 + (i * 7) % 40);
    for (int32_t& t : p) t = token(rng);
    prompts.push_back(std::move(p));
  }
  return prompts;
}

// Every prompt on its own thread at once (greedy, ignore_eos, max_new_tokens tokens).
std::vector<GenerateResult> GenerateConcurrently(Server& server, const std::vector<std::vector<int32_t>>& prompts,
                                                 int max_new_tokens) {
  std::vector<GenerateResult> results(prompts.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < prompts.size(); ++i) {
    threads.emplace_back([&, i] {
      auto stub = server.stub();
      results[i] = RunGenerate(stub.get(), GreedyRequest(prompts[i], max_new_tokens));
    });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

// The model given as a preset (random weights from --seed: every rank must build the same full tensors
// before slicing) and as the tiny checkpoint directory (sliced loading).
class TensorParallelGreedyTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TensorParallelGreedyTest, SameGreedyTokensAsOneRankFor16ConcurrentPrompts) {
  const std::string model = GetParam() == "checkpoint" ? TinyCheckpointDir() : GetParam();
  const std::vector<std::string> common = {"--model=" + model, "--seed=3", "--kv_cache_bytes=16777216"};
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.begin(), common.begin(), common.end());
    return extra;
  };
  // The three start side by side.
  Server one(with({"--tensor_parallel_size=1"}));
  Server tp(with({"--tensor_parallel_size=2"}));
  Server ep(with({"--tensor_parallel_size=2", "--expert_parallel"}));
  std::string error;
  ASSERT_TRUE(one.WaitServing(&error)) << error;
  ASSERT_TRUE(tp.WaitServing(&error)) << error;
  ASSERT_TRUE(ep.WaitServing(&error)) << error;
  EXPECT_TRUE(absl::StrContains(tp.log(), "tensor parallel: 2 ranks")) << tp.log();
  EXPECT_TRUE(absl::StrContains(ep.log(), "tensor parallel: 2 ranks (expert parallel)")) << ep.log();
  EXPECT_EQ(FindProcesses(tp.tag(), "--worker_rank=1").size(), 1u);
  EXPECT_EQ(FindProcesses(ep.tag(), "--worker_rank=1").size(), 1u);

  constexpr int kNewTokens = 12;
  const std::vector<std::vector<int32_t>> prompts = Prompts(16);
  const std::vector<GenerateResult> expected = GenerateConcurrently(one, prompts, kNewTokens);
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(expected[i].status.ok()) << expected[i].status.error_message() << "\n" << one.log();
    ASSERT_EQ(expected[i].tokens.size(), static_cast<size_t>(kNewTokens));
  }
  // Not a vacuous comparison: the prompts lead to different continuations.
  std::set<std::vector<int32_t>> distinct;
  for (const GenerateResult& r : expected) distinct.insert(r.tokens);
  EXPECT_GT(distinct.size(), prompts.size() / 2);
  if (GetParam() == "checkpoint") {  // the reference itself: tests/data/tiny/greedy.json
    for (size_t c = 0; c < Greedy().size(); ++c) {
      GenerateResult r = RunGenerate(tp.stub().get(), GreedyRequest(Greedy()[c].prompt, 20));
      ASSERT_TRUE(r.status.ok()) << r.status.error_message();
      EXPECT_EQ(r.tokens, Greedy()[c].greedy) << "greedy case " << c;
    }
  }
  for (Server* server : {&tp, &ep}) {
    SCOPED_TRACE(server == &tp ? "--tensor_parallel_size=2" : "--tensor_parallel_size=2 --expert_parallel");
    const std::vector<GenerateResult> got = GenerateConcurrently(*server, prompts, kNewTokens);
    for (size_t i = 0; i < prompts.size(); ++i) {
      ASSERT_TRUE(got[i].status.ok()) << got[i].status.error_message() << "\n" << server->log();
      EXPECT_EQ(got[i].tokens, expected[i].tokens) << "prompt " << i << ": " << absl::StrJoin(prompts[i], ",");
      EXPECT_EQ(got[i].messages.back().finish_reason(), v1::FINISH_REASON_LENGTH);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(TensorParallel, TensorParallelGreedyTest, ::testing::Values("tiny", "checkpoint"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// Sends `sig` to worker rank 1 while 16 streams are decoding: every stream ends with UNAVAILABLE naming the
// group failure (within a generous bound: --dist_timeout_s=5), rank 0 exits with 1, and no worker is left.
void FailTheWorkerMidStream(int sig) {
  Server server({"--model=tiny", "--tensor_parallel_size=2", "--dist_timeout_s=5"});
  std::string error;
  ASSERT_TRUE(server.WaitServing(&error)) << error;
  const std::vector<pid_t> workers = FindProcesses(server.tag(), "--worker_rank=1");
  ASSERT_EQ(workers.size(), 1u) << server.log();

  constexpr int kStreams = 16;
  const std::vector<std::vector<int32_t>> prompts = Prompts(kStreams);
  struct Stream {
    grpc::Status status;
    size_t tokens = 0;
    v1::FinishReason last_reason = v1::FINISH_REASON_UNSPECIFIED;
    absl::Time ended;
  };
  std::vector<Stream> streams(kStreams);
  std::atomic<int> started{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      auto stub = server.stub();
      grpc::ClientContext context;
      context.set_deadline(DeadlineIn(absl::Seconds(180)));
      // Thousands of tokens: still decoding when the worker dies.
      auto reader = stub->Generate(&context, LongRequest(prompts[i], 4096));
      v1::GenerateResponse response;
      bool counted = false;
      while (reader->Read(&response)) {
        streams[i].tokens += response.token_ids_size();
        if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) streams[i].last_reason = response.finish_reason();
        if (!counted) {
          counted = true;
          started++;
        }
      }
      streams[i].status = reader->Finish();
      streams[i].ended = absl::Now();
      if (!counted) started++;
    });
  }
  const bool all_started = WaitFor([&] { return started.load() == kStreams; }, absl::Seconds(120));
  const absl::Time killed = absl::Now();
  kill(workers[0], sig);
  for (std::thread& t : threads) t.join();
  ASSERT_TRUE(all_started) << server.log();

  for (int i = 0; i < kStreams; ++i) {
    SCOPED_TRACE(absl::StrCat("stream ", i, " after ", streams[i].tokens, " tokens"));
    EXPECT_GT(streams[i].tokens, 0u);
    EXPECT_EQ(streams[i].status.error_code(), grpc::StatusCode::UNAVAILABLE) << streams[i].status.error_message();
    EXPECT_TRUE(absl::StrContains(streams[i].status.error_message(), "tensor-parallel group failed"))
        << streams[i].status.error_message();
    EXPECT_NE(streams[i].last_reason, v1::FINISH_REASON_LENGTH);
    EXPECT_LT(streams[i].ended - killed, absl::Seconds(30));  // generous: --dist_timeout_s=5
  }
  EXPECT_EQ(server.child().WaitExit(absl::Seconds(60)), 1) << server.log();
  EXPECT_TRUE(NoWorkerLeft(server.tag())) << server.log();
  // Either rank 0's watcher reports the exit ("rank 1 (pid N) was killed by signal 9") or the next collective
  // fails first (a Gloo read error): which one wins is a race, and both fail the group.
  EXPECT_TRUE(absl::StrContains(server.log(), "the tensor-parallel group failed; stopping")) << server.log();
}

TEST(TensorParallelServerTest, WorkerKilledMidStreamFailsEveryStreamAndExitsWithOne) {
  FailTheWorkerMidStream(SIGKILL);
}

// A hung worker (SIGSTOP: alive, silent): the collective timeout fails the group, and rank 0 kills it.
TEST(TensorParallelServerTest, WorkerHungMidStreamFailsEveryStreamAndExitsWithOne) {
  FailTheWorkerMidStream(SIGSTOP);
}

// Rank 0 killed outright (no drain, no stop message): its worker dies with it (PR_SET_PDEATHSIG).
TEST(TensorParallelServerTest, WorkerDiesWithRankZero) {
  Server server({"--model=tiny", "--tensor_parallel_size=2", "--kv_cache_bytes=16777216"});
  std::string error;
  ASSERT_TRUE(server.WaitServing(&error)) << error;
  ASSERT_EQ(FindProcesses(server.tag(), "--worker_rank=1").size(), 1u) << server.log();
  server.child().Signal(SIGKILL);
  EXPECT_EQ(server.child().WaitExit(absl::Seconds(60)), -1);
  EXPECT_TRUE(NoWorkerLeft(server.tag())) << server.log();
}

// SIGTERM/SIGINT sent to a worker (a pkill by name, a terminal's Ctrl-C) do not stop it; SIGTERM to rank 0
// drains a request in flight over both ranks, stops the worker, and exits with 0.
TEST(TensorParallelServerTest, SigtermDrainsAndStopsTheWorkers) {
  Server server({"--model=tiny", "--tensor_parallel_size=2", "--kv_cache_bytes=16777216", "--drain_timeout_s=60"});
  std::string error;
  ASSERT_TRUE(server.WaitServing(&error)) << error;
  const std::vector<pid_t> workers = FindProcesses(server.tag(), "--worker_rank=1");
  ASSERT_EQ(workers.size(), 1u) << server.log();

  kill(workers[0], SIGTERM);
  kill(workers[0], SIGINT);
  auto stub = server.stub();
  const std::vector<std::vector<int32_t>> prompts = Prompts(2);
  GenerateResult first = RunGenerate(stub.get(), GreedyRequest(prompts[1], 8));
  ASSERT_TRUE(first.status.ok()) << first.status.error_message() << "\n" << server.log();
  EXPECT_EQ(FindProcesses(server.tag(), "--worker_rank=1"), workers);

  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(120)));
  auto reader = stub->Generate(&context, GreedyRequest(prompts[0], 300));
  v1::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response)) << server.log();
  size_t tokens = response.token_ids_size();
  server.child().Signal(SIGTERM);
  while (reader->Read(&response)) tokens += response.token_ids_size();
  grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message() << "\n" << server.log();
  EXPECT_EQ(tokens, 300u);
  EXPECT_EQ(response.finish_reason(), v1::FINISH_REASON_LENGTH);

  EXPECT_EQ(server.child().WaitExit(absl::Seconds(90)), 0) << server.log();
  EXPECT_TRUE(NoWorkerLeft(server.tag())) << server.log();
  const std::string log = server.log();
  EXPECT_TRUE(absl::StrContains(log, "received SIGTERM")) << log;
  EXPECT_TRUE(absl::StrContains(log, "stopped")) << log;
  EXPECT_FALSE(absl::StrContains(log, "worker ranks:")) << log;  // every rank exited with 0
}

// A free TCP port on 127.0.0.1 (closed again: the rendezvous binds it a moment later).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(addr.sin_port);
}

// Two "nodes" on loopback (--nnodes=2): node 0 runs rank 0 and the server and hosts the rendezvous at
// --dist_addr, node 1 (its own process, started like on another machine) runs rank 1 and meets it there.
// The group gives the golden greedy continuations; SIGTERM on node 0 stops both with exit code 0.
TEST(TensorParallelServerTest, TwoNodesMeetAtTheRendezvousAddress) {
  setenv("GLOO_SOCKET_IFNAME", "lo", 1);  // several nodes: Gloo binds the named interface
  const int port = FreePort();
  ASSERT_GT(port, 0);
  const std::string model = "--model=" + TinyCheckpointDir();
  const std::string addr = absl::StrCat("--dist_addr=127.0.0.1:", port);
  Server node0({model, "--tensor_parallel_size=2", "--nnodes=2", "--node_rank=0", addr});
  Child node1({STEPSERVE_BIN, model, "--tensor_parallel_size=2", "--nnodes=2", "--node_rank=1", addr, "--device=cpu",
               node0.tag()});
  std::string error;
  ASSERT_TRUE(node0.WaitServing(&error)) << error << "\nnode 1:\n" << node1.output();
  EXPECT_TRUE(FindProcesses(node0.tag(), "--worker_rank=1").empty());  // node 0 started no local worker
  for (size_t c = 0; c < Greedy().size(); ++c) {
    GenerateResult r = RunGenerate(node0.stub().get(), GreedyRequest(Greedy()[c].prompt, 20));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message() << "\n" << node0.log();
    EXPECT_EQ(r.tokens, Greedy()[c].greedy) << "greedy case " << c;
  }
  node0.child().Signal(SIGTERM);
  EXPECT_EQ(node0.child().WaitExit(absl::Seconds(60)), 0) << node0.log();
  EXPECT_EQ(node1.WaitExit(absl::Seconds(60)), 0) << node1.output();
  EXPECT_TRUE(absl::StrContains(node1.output(), "rank 1: stop from rank 0")) << node1.output();
  unsetenv("GLOO_SOCKET_IFNAME");
}

struct BadFlags {
  std::vector<std::string> args;
  std::string message;
};

// Exit code 2 and a log line naming the flag; no worker left behind.
TEST(TensorParallelServerTest, BadFlagCombinationsExitWithTwoNamingTheFlag) {
  const std::vector<BadFlags> cases = {
      {{"--model=tiny", "--tensor_parallel_size=4"}, "--tensor_parallel_size=4 does not divide the 6 query heads of layer 1"},
      {{"--model=tiny", "--tensor_parallel_size=2", "--nnodes=3"}, "--nnodes=3 does not divide --tensor_parallel_size=2"},
      {{"--model=tiny", "--nnodes=2", "--node_rank=2", "--tensor_parallel_size=2", "--dist_addr=127.0.0.1:1234"},
       "--node_rank=2 is outside [0, --nnodes=2)"},
      {{"--model=tiny", "--nnodes=2", "--tensor_parallel_size=2"}, "--dist_addr=HOST:PORT is required with --nnodes > 1"},
      {{"--model=tiny", "--tensor_parallel_size=3", "--expert_parallel"}, "--tensor_parallel_size=3"},
      {{"--model=tiny", "--tensor_parallel_size=0"}, "--tensor_parallel_size"},
      {{"--model=tiny", "--tensor_parallel_size=2", "--dist_addr=nocolon"}, "--dist_addr"},
  };
  for (const BadFlags& c : cases) {
    SCOPED_TRACE(absl::StrJoin(c.args, " "));
    Server server(c.args);
    EXPECT_EQ(server.child().WaitExit(absl::Seconds(60)), 2) << server.log();
    EXPECT_TRUE(absl::StrContains(server.log(), c.message)) << server.log();
    EXPECT_TRUE(NoWorkerLeft(server.tag())) << server.log();
  }
}

struct DryRun {
  std::vector<std::string> args;
  int exit_code;
  int ranks;  // table lines expected (exit code 0 and 3)
  std::string message;
};

// --dry_run: the per-rank table and the verdict on stdout, without loading weights (flash's hundreds of
// GiB could not load here) or serving.
TEST(TensorParallelServerTest, DryRunPrintsThePerRankPlan) {
  const std::vector<DryRun> cases = {
      {{"--model=flash", "--dtype=bfloat16", "--tensor_parallel_size=4"}, 0, 4, "verdict: fits"},
      {{"--model=flash", "--dtype=bfloat16", "--tensor_parallel_size=1"}, 3, 1, "does NOT fit"},
      {{"--model=tiny", "--tensor_parallel_size=2", "--expert_parallel"}, 0, 2, "verdict: fits"},
      {{"--model=tiny", "--tensor_parallel_size=4"}, 2, 0, "--tensor_parallel_size=4 does not divide"},
  };
  static const std::regex kHeader("rank +weights +kv cache +kv tokens +longest context");
  static const std::regex kRankLine("^([0-9]+) +[0-9.]+ GiB +.*$");
  for (const DryRun& c : cases) {
    SCOPED_TRACE(absl::StrJoin(c.args, " "));
    std::vector<std::string> args = {STEPSERVE_BIN, "--host=127.0.0.1", "--port=0", "--metrics_port=-1", "--http_port=0",
                                     "--device=cpu", "--dry_run"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    Child child(args, /*capture_stdout=*/true);
    ASSERT_EQ(child.WaitExit(absl::Seconds(60)), c.exit_code) << child.output();
    const std::string out = child.output();
    EXPECT_TRUE(absl::StrContains(out, c.message)) << out;
    EXPECT_FALSE(absl::StrContains(out, "gRPC listening")) << out;
    EXPECT_FALSE(absl::StrContains(out, "worker ranks")) << out;
    if (c.exit_code == 2) continue;
    EXPECT_TRUE(std::regex_search(out, kHeader)) << out;
    std::vector<int> ranks;
    for (const std::string& line : std::vector<std::string>(absl::StrSplit(out, '\n'))) {
      std::smatch match;
      if (std::regex_match(line, match, kRankLine)) ranks.push_back(std::stoi(match[1]));
    }
    std::vector<int> expected;
    for (int r = 0; r < c.ranks; ++r) expected.push_back(r);
    EXPECT_EQ(ranks, expected) << out;
  }
}

}  // namespace
}  // namespace stepserve::testing
