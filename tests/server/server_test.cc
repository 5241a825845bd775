// A real StepServeServer on loopback with the tiny checkpoint (fp32) and a real gRPC channel.
#include <atomic>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/client_context.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/server/server_test_util.h"

namespace stepserve::testing {
namespace {

// One Generate stream read step by step (for cancellation and drain tests).
struct Stream {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader;
  std::vector<int32_t> tokens;
  v1::GenerateResponse last;

  Stream(v1::StepServe::Stub* stub, const v1::GenerateRequest& request, absl::Duration timeout = absl::Seconds(120)) {
    context.set_deadline(DeadlineIn(timeout));
    reader = stub->Generate(&context, request);
  }
  bool Read() {
    v1::GenerateResponse response;
    if (!reader->Read(&response)) return false;
    tokens.insert(tokens.end(), response.token_ids().begin(), response.token_ids().end());
    last = response;
    return true;
  }
  grpc::Status Finish() {
    while (Read()) {
    }
    return reader->Finish();
  }
};

std::vector<int32_t> Prefix(const std::vector<int32_t>& v, size_t n) {
  return std::vector<int32_t>(v.begin(), v.begin() + std::min(n, v.size()));
}

void ExpectGolden(const GenerateResult& result, const GreedyCase& c, const std::string& what) {
  ASSERT_TRUE(result.status.ok()) << what << ": " << result.status.error_message();
  EXPECT_EQ(result.tokens, c.greedy) << what;
  ASSERT_FALSE(result.messages.empty()) << what;
  const v1::GenerateResponse& last = result.messages.back();
  EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_LENGTH) << what;
  EXPECT_EQ(last.usage().prompt_tokens(), static_cast<int>(c.prompt.size())) << what;
  EXPECT_EQ(last.usage().completion_tokens(), static_cast<int>(c.greedy.size())) << what;
  EXPECT_FALSE(last.request_id().empty()) << what;
  for (size_t i = 0; i + 1 < result.messages.size(); ++i) {
    EXPECT_EQ(result.messages[i].finish_reason(), v1::FINISH_REASON_UNSPECIFIED) << what;
    EXPECT_FALSE(result.messages[i].token_ids().empty()) << what;
  }
}

int64_t MaxContext(TestServer& server) { return server.executor().max_context(); }

TEST(ServerTest, GoldenGreedyContinuationsOneStream) {
  TestServer server;
  auto stub = server.stub();
  for (size_t i = 0; i < Greedy().size(); ++i) {
    const GreedyCase& c = Greedy()[i];
    ExpectGolden(RunGenerate(stub.get(), GreedyRequest(c.prompt, 20)), c, absl::StrCat("case ", i));
  }
}

TEST(ServerTest, GoldenGreedyContinuations64ConcurrentStreams) {
  TestServer server;
  constexpr int kStreams = 64;
  std::vector<GenerateResult> results(kStreams);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      auto stub = server.stub();  // one channel, many streams
      results[i] = RunGenerate(stub.get(), GreedyRequest(Greedy()[i % Greedy().size()].prompt, 20));
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kStreams; ++i) {
    ExpectGolden(results[i], Greedy()[i % Greedy().size()], absl::StrCat("stream ", i));
  }
  // Every request id the server assigned is distinct.
  std::set<std::string> ids;
  for (const auto& r : results) {
    if (!r.messages.empty()) ids.insert(r.messages.back().request_id());
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kStreams));
}

TEST(ServerTest, ClientRequestIdIsEchoedAndLogprobsAreReturned) {
  TestServer server;
  auto stub = server.stub();
  const GreedyCase& c = Greedy()[1];
  v1::GenerateRequest request = GreedyRequest(c.prompt, 5);
  request.set_request_id("my-request");
  request.set_logprobs(3);
  GenerateResult result = RunGenerate(stub.get(), request);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.tokens, Prefix(c.greedy, 5));
  for (const auto& m : result.messages) {
    EXPECT_EQ(m.request_id(), "my-request");
    ASSERT_EQ(m.logprobs_size(), m.token_ids_size());
    for (int i = 0; i < m.logprobs_size(); ++i) {
      const v1::TokenLogprobs& lp = m.logprobs(i);
      EXPECT_EQ(lp.token_id(), m.token_ids(i));
      EXPECT_LE(lp.logprob(), 0.0f);
      ASSERT_EQ(lp.top_logprobs_size(), 3);
      EXPECT_EQ(lp.top_logprobs(0).token_id(), lp.token_id());  // greedy picks the best
      EXPECT_GE(lp.top_logprobs(0).logprob(), lp.top_logprobs(1).logprob());
    }
  }
}

// The server names a request its client left unnamed "stepserve-N" (the one request-id scheme), the same id
// in every response of the stream; a second id-less request gets another one.
TEST(ServerTest, AnIdLessRequestGetsAStepserveIdInEveryResponse) {
  TestServer server;
  auto stub = server.stub();
  std::set<std::string> ids;
  for (int i = 0; i < 2; ++i) {
    v1::GenerateRequest request = GreedyRequest(Greedy()[0].prompt, 5);
    ASSERT_TRUE(request.request_id().empty());
    GenerateResult result = RunGenerate(stub.get(), request);
    ASSERT_TRUE(result.status.ok()) << result.status.error_message();
    ASSERT_FALSE(result.messages.empty());
    const std::string id = result.messages.front().request_id();
    EXPECT_TRUE(std::regex_match(id, std::regex("stepserve-[0-9]+"))) << id;
    for (const auto& m : result.messages) EXPECT_EQ(m.request_id(), id);
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 2u);
}

TEST(ServerTest, GetModelInfoDescribesTheTinyModel) {
  TestServerOptions options;
  options.executor.max_num_seqs = 7;
  TestServer server(options);
  auto stub = server.stub();
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(30)));
  v1::ModelInfo info;
  grpc::Status s = stub->GetModelInfo(&context, v1::GetModelInfoRequest(), &info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(info.model(), "tiny-test");
  EXPECT_EQ(info.dtype(), "float32");
  EXPECT_EQ(info.device(), "cpu");
  EXPECT_EQ(info.vocab_size(), 300);
  EXPECT_EQ(info.num_layers(), 5);
  EXPECT_EQ(info.max_context(), MaxContext(server));
  EXPECT_GT(info.max_context(), 0);
  EXPECT_EQ(info.kv_capacity_tokens(), server.executor().kv_capacity_tokens());
  EXPECT_GT(info.kv_capacity_tokens(), 0);
  EXPECT_EQ(info.max_num_seqs(), 7);
  EXPECT_EQ(info.eos_token_ids_size(), static_cast<int>(server.executor().config().eos_token_ids.size()));
  EXPECT_TRUE(info.prefix_caching());  // on by default (ExecutorOptions, --enable_prefix_caching)
}

TEST(ServerTest, GetModelInfoReportsPrefixCachingOff) {
  TestServerOptions options;
  options.executor.enable_prefix_caching = false;
  TestServer server(options);
  auto stub = server.stub();
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(30)));
  v1::ModelInfo info;
  grpc::Status s = stub->GetModelInfo(&context, v1::GetModelInfoRequest(), &info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_FALSE(info.prefix_caching());
}

struct BadInput {
  std::string name;
  std::function<void(v1::GenerateRequest*)> mutate;
  std::string field;
};

TEST(ServerTest, EveryBadInputGetsInvalidArgumentNamingTheFieldAndTheServerKeepsServing) {
  TestServer server;
  auto stub = server.stub();
  const int64_t max_context = MaxContext(server);
  const int cap = server.executor().options().max_new_tokens_cap;
  const int max_logprobs = server.executor().options().max_logprobs;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<BadInput> cases = {
      {"empty prompt", [](auto* r) { r->clear_prompt_token_ids(); }, "prompt_token_ids"},
      {"negative token id", [](auto* r) { r->set_prompt_token_ids(0, -1); }, "prompt_token_ids[0]"},
      {"token id == vocab", [](auto* r) { r->add_prompt_token_ids(300); }, "prompt_token_ids"},
      {"prompt + max_new_tokens beyond the context",
       [max_context, cap](auto* r) {
         const int64_t prompt_len = std::max<int64_t>(1, max_context - cap + 1);
         r->clear_prompt_token_ids();
         for (int64_t i = 0; i < prompt_len; ++i) r->add_prompt_token_ids(7);
         r->mutable_stopping()->set_max_new_tokens(static_cast<int>(std::min<int64_t>(cap, max_context)));
       },
       "max_new_tokens"},
      {"max_new_tokens 0", [](auto* r) { r->mutable_stopping()->set_max_new_tokens(0); }, "stopping.max_new_tokens"},
      {"max_new_tokens over the cap", [cap](auto* r) { r->mutable_stopping()->set_max_new_tokens(cap + 1); },
       "stopping.max_new_tokens"},
      {"temperature < 0", [](auto* r) { r->mutable_sampling()->set_temperature(-1.0f); }, "sampling.temperature"},
      {"temperature nan", [nan](auto* r) { r->mutable_sampling()->set_temperature(nan); }, "sampling.temperature"},
      {"temperature inf", [inf](auto* r) { r->mutable_sampling()->set_temperature(inf); }, "sampling.temperature"},
      {"top_p 0", [](auto* r) { r->mutable_sampling()->set_top_p(0.0f); }, "sampling.top_p"},
      {"top_p 2", [](auto* r) { r->mutable_sampling()->set_top_p(2.0f); }, "sampling.top_p"},
      {"top_k < 0", [](auto* r) { r->mutable_sampling()->set_top_k(-3); }, "sampling.top_k"},
      {"min_p < 0", [](auto* r) { r->mutable_sampling()->set_min_p(-0.5f); }, "sampling.min_p"},
      {"min_p > 1", [](auto* r) { r->mutable_sampling()->set_min_p(1.5f); }, "sampling.min_p"},
      {"presence_penalty nan", [nan](auto* r) { r->mutable_sampling()->set_presence_penalty(nan); },
       "sampling.presence_penalty"},
      {"repetition_penalty 0", [](auto* r) { r->mutable_sampling()->set_repetition_penalty(0.0f); },
       "sampling.repetition_penalty"},
      {"logprobs over the cap", [max_logprobs](auto* r) { r->set_logprobs(max_logprobs + 1); }, "logprobs"},
      {"logprobs < 0", [](auto* r) { r->set_logprobs(-1); }, "logprobs"},
      {"stop token id == vocab", [](auto* r) { r->mutable_stopping()->add_stop_token_ids(300); },
       "stopping.stop_token_ids[0]"},
      {"request_id too long", [](auto* r) { r->set_request_id(std::string(300, 'x')); }, "request_id"},
      {"cache_salt over 256 bytes", [](auto* r) { r->set_cache_salt(std::string(257, 's')); }, "cache_salt"},
  };
  for (const BadInput& c : cases) {
    v1::GenerateRequest request = GreedyRequest(Greedy()[0].prompt, 4);
    c.mutate(&request);
    GenerateResult result = RunGenerate(stub.get(), request);
    EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.name << ": " << result.status.error_message();
    EXPECT_TRUE(absl::StrContains(result.status.error_message(), c.field))
        << c.name << ": " << result.status.error_message();
    EXPECT_TRUE(result.tokens.empty()) << c.name;
  }

  // A request id already in flight.
  v1::GenerateRequest long_request = LongRequest(Greedy()[2].prompt, max_context);
  long_request.set_request_id("dup-id");
  Stream first(stub.get(), long_request);
  ASSERT_TRUE(first.Read());
  v1::GenerateRequest duplicate = GreedyRequest(Greedy()[0].prompt, 4);
  duplicate.set_request_id("dup-id");
  GenerateResult dup = RunGenerate(stub.get(), duplicate);
  EXPECT_EQ(dup.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << dup.status.error_message();
  EXPECT_TRUE(absl::StrContains(dup.status.error_message(), "request_id")) << dup.status.error_message();
  first.context.TryCancel();
  EXPECT_EQ(first.Finish().error_code(), grpc::StatusCode::CANCELLED);

  // The server keeps serving, and counted every refusal.
  ExpectGolden(RunGenerate(stub.get(), GreedyRequest(Greedy()[3].prompt, 20)), Greedy()[3], "after");
  EXPECT_TRUE(WaitFor([&] {
    return server.Metrics().Get("stepserve_request_failure_total{code=\"INVALID_ARGUMENT\"}") ==
           static_cast<double>(cases.size() + 1);
  })) << server.ScrapeMetricsHttp();
}

TEST(ServerTest, FullQueueGivesResourceExhaustedWhileAdmittedRequestsComplete) {
  TestServerOptions options;
  options.executor.max_num_seqs = 1;
  options.executor.max_queue = 2;
  TestServer server(options);
  auto stub = server.stub();
  // One long request runs; two more wait; the fourth is refused.
  Stream blocker(stub.get(), LongRequest(Greedy()[0].prompt, MaxContext(server)));
  ASSERT_TRUE(blocker.Read());
  std::vector<GenerateResult> admitted(2);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      auto s = server.stub();
      admitted[i] = RunGenerate(s.get(), GreedyRequest(Greedy()[i + 1].prompt, 20));
    });
  }
  ASSERT_TRUE(WaitFor([&] { return server.executor().Stats().num_waiting == 2; }))
      << "waiting: " << server.executor().Stats().num_waiting;
  GenerateResult refused = RunGenerate(stub.get(), GreedyRequest(Greedy()[3].prompt, 20));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.status.error_message();
  // The refusal did not disturb the running request.
  ASSERT_TRUE(blocker.Read());
  blocker.context.TryCancel();
  EXPECT_EQ(blocker.Finish().error_code(), grpc::StatusCode::CANCELLED);
  for (auto& t : threads) t.join();
  for (int i = 0; i < 2; ++i) ExpectGolden(admitted[i], Greedy()[i + 1], absl::StrCat("admitted ", i));
  EXPECT_TRUE(WaitFor([&] {
    return server.Metrics().Get("stepserve_request_failure_total{code=\"RESOURCE_EXHAUSTED\"}") == 1;
  })) << server.ScrapeMetricsHttp();
}

TEST(ServerTest, ClientCancellationFreesTheBlocksAndCountsAFailure) {
  TestServer server;
  auto stub = server.stub();
  Stream stream(stub.get(), LongRequest(Greedy()[0].prompt, MaxContext(server)));
  ASSERT_TRUE(stream.Read());
  EXPECT_GT(server.executor().Stats().kv_blocks_used, 0);
  EXPECT_GT(server.Metrics().Get("stepserve_kv_cache_usage_ratio"), 0);
  stream.context.TryCancel();
  EXPECT_EQ(stream.Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitFor([&] {
    PrometheusText m = server.Metrics();
    return m.Get("stepserve_kv_cache_usage_ratio") == 0 &&
           m.Get("stepserve_request_failure_total{code=\"CANCELLED\"}") == 1 &&
           m.Get("stepserve_num_requests_running") == 0;
  })) << server.ScrapeMetricsHttp();
  EXPECT_EQ(server.executor().Stats().kv_blocks_used, 0);
  // And the server goes on serving.
  ExpectGolden(RunGenerate(stub.get(), GreedyRequest(Greedy()[1].prompt, 20)), Greedy()[1], "after");
}

TEST(ServerTest, ExpiredDeadlineStopsTheRequestAndFreesTheBlocks) {
  TestServerOptions options;
  options.executor.max_num_seqs = 1;
  TestServer server(options);
  auto stub = server.stub();
  // A long request holds the only slot, so the deadline-bound one cannot finish in time whatever the speed
  // of the machine: it waits (or runs behind) until its deadline passes.
  Stream blocker(stub.get(), LongRequest(Greedy()[0].prompt, MaxContext(server)));
  ASSERT_TRUE(blocker.Read());
  GenerateResult late = RunGenerate(stub.get(), LongRequest(Greedy()[1].prompt, MaxContext(server)),
                                    absl::Seconds(2));
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << late.status.error_message();
  EXPECT_TRUE(WaitFor([&] {
    return server.Metrics().Get("stepserve_request_failure_total{code=\"DEADLINE_EXCEEDED\"}") == 1;
  })) << server.ScrapeMetricsHttp();
  blocker.context.TryCancel();
  EXPECT_EQ(blocker.Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitFor([&] {
    PrometheusText m = server.Metrics();
    return m.Get("stepserve_kv_cache_usage_ratio") == 0 && m.Get("stepserve_num_requests_waiting") == 0 &&
           m.Get("stepserve_num_requests_running") == 0;
  })) << server.ScrapeMetricsHttp();
}

TEST(ServerTest, ManyClientsCancellingMidStreamNeverLeakRequests) {
  TestServer server;
  constexpr int kStreams = 48;
  std::vector<std::thread> threads;
  std::atomic<int> cancelled{0};
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      auto stub = server.stub();
      Stream stream(stub.get(), LongRequest(Greedy()[i % 4].prompt, MaxContext(server)));
      for (int k = 0; k < 1 + i % 3; ++k) {
        if (!stream.Read()) break;
      }
      if (i % 2 == 0) {
        stream.context.TryCancel();  // cancel and read the rest
        if (stream.Finish().error_code() == grpc::StatusCode::CANCELLED) cancelled++;
      } else {
        cancelled++;  // just drop the stream: ClientContext's destructor cancels it
        stream.context.TryCancel();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(cancelled.load(), kStreams);
  EXPECT_TRUE(WaitFor([&] {
    ExecutorStats s = server.executor().Stats();
    return s.kv_blocks_used == 0 && s.num_running == 0 && s.num_waiting == 0 &&
           server.server().generate_service().active_streams() == 0;
  })) << server.ScrapeMetricsHttp();
  ExpectGolden(RunGenerate(server.stub().get(), GreedyRequest(Greedy()[2].prompt, 20)), Greedy()[2],
               "after");
}

TEST(ServerTest, DrainCompletesTheRequestsInFlight) {
  TestServer server;
  auto stub = server.stub();
  constexpr int kStreams = 8;
  constexpr int kTokens = 200;
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 0; i < kStreams; ++i) {
    streams.push_back(std::make_unique<Stream>(stub.get(), GreedyRequest(Greedy()[i % 4].prompt, kTokens)));
  }
  for (auto& s : streams) ASSERT_TRUE(s->Read());
  std::thread drain([&] { server.server().Drain(absl::Seconds(120)); });
  for (int i = 0; i < kStreams; ++i) {
    grpc::Status status = streams[i]->Finish();
    EXPECT_TRUE(status.ok()) << i << ": " << status.error_message();
    EXPECT_EQ(streams[i]->tokens.size(), static_cast<size_t>(kTokens)) << i;
    EXPECT_EQ(Prefix(streams[i]->tokens, 20), Greedy()[i % 4].greedy) << i;
    EXPECT_EQ(streams[i]->last.finish_reason(), v1::FINISH_REASON_LENGTH) << i;
  }
  drain.join();
  EXPECT_EQ(server.server().generate_service().active_streams(), 0);
}

TEST(ServerTest, DrainRefusesNewRequestsAndAbortsWhatOutlastsTheTimeout) {
  TestServer server;
  auto stub = server.stub();
  Stream stream(stub.get(), LongRequest(Greedy()[0].prompt, MaxContext(server)));
  ASSERT_TRUE(stream.Read());
  server.server().BeginDrain();
  GenerateResult refused = RunGenerate(stub.get(), GreedyRequest(Greedy()[1].prompt, 4));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE) << refused.status.error_message();
  ASSERT_TRUE(stream.Read());  // the admitted request goes on
  server.server().Drain(absl::Milliseconds(50));
  grpc::Status status = stream.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_EQ(stream.last.finish_reason(), v1::FINISH_REASON_ABORTED);
  EXPECT_EQ(stream.last.usage().completion_tokens(), static_cast<int>(stream.tokens.size()));
  EXPECT_EQ(Prefix(stream.tokens, 20), Prefix(Greedy()[0].greedy, stream.tokens.size()));
  PrometheusText m = server.Metrics();  // /metrics outlives the gRPC server
  EXPECT_EQ(m.Get("stepserve_request_failure_total{code=\"UNAVAILABLE\"}"), 2);
  EXPECT_EQ(m.Get("stepserve_kv_cache_usage_ratio"), 0);
}

TEST(ServerTest, MetricsParseAndCountersMatchWhatWasServed) {
  TestServer server;
  auto stub = server.stub();
  PrometheusText before = server.Metrics();
  int prompt_tokens = 0, generated = 0;
  for (const GreedyCase& c : Greedy()) {
    ExpectGolden(RunGenerate(stub.get(), GreedyRequest(c.prompt, 20)), c, "metrics");
    prompt_tokens += static_cast<int>(c.prompt.size());
    generated += 20;
  }
  RunGenerate(stub.get(), GreedyRequest({}, 4));  // one refusal
  const double n = static_cast<double>(Greedy().size());
  PrometheusText after = server.Metrics();
  auto delta = [&](const std::string& key) { return after.Get(key, 0) - before.Get(key, 0); };
  EXPECT_EQ(delta("stepserve_prompt_tokens_total"), prompt_tokens);
  EXPECT_EQ(delta("stepserve_generation_tokens_total"), generated);
  EXPECT_EQ(delta("stepserve_request_success_total{finish_reason=\"length\"}"), n);
  EXPECT_EQ(delta("stepserve_request_failure_total{code=\"INVALID_ARGUMENT\"}"), 1);
  EXPECT_EQ(delta("stepserve_e2e_request_latency_seconds_count"), n);
  EXPECT_EQ(delta("stepserve_time_to_first_token_seconds_count"), n);
  EXPECT_EQ(delta("stepserve_request_queue_time_seconds_count"), n);
  EXPECT_GE(delta("stepserve_inter_token_latency_seconds_count"), 1);
  EXPECT_LE(delta("stepserve_inter_token_latency_seconds_count"), generated - n);
  // Every prompt token and every generated token but the last of each request went through a forward pass;
  // the step observer runs after the step's outputs are delivered, so wait for the last one.
  EXPECT_TRUE(WaitFor([&] {
    PrometheusText m = server.Metrics();
    return m.Get("stepserve_iteration_tokens_sum") - before.Get("stepserve_iteration_tokens_sum", 0) >=
           prompt_tokens + generated - n;
  })) << server.ScrapeMetricsHttp();
  EXPECT_GE(delta("stepserve_iteration_tokens_count"), 19);
  EXPECT_EQ(after.Get("stepserve_num_preemptions_total"), 0);
  EXPECT_EQ(after.Get("stepserve_model_info{device=\"cpu\",dtype=\"float32\",model=\"tiny-test\"}"), 1);
  EXPECT_TRUE(WaitFor([&] {
    PrometheusText m = server.Metrics();
    return m.Get("stepserve_kv_cache_usage_ratio") == 0 && m.Get("stepserve_num_requests_running") == 0 &&
           m.Get("stepserve_num_requests_waiting") == 0;
  }));
  // Histogram buckets are cumulative and end with the count.
  const double count = after.Get("stepserve_e2e_request_latency_seconds_count");
  EXPECT_EQ(after.Get("stepserve_e2e_request_latency_seconds_bucket{le=\"+Inf\"}"), count);
}

// A prompt of `n` tokens that no other test uses (the prefix cache is per server, but keep it distinct).
std::vector<int32_t> DistinctPrompt(int n, int32_t first) {
  std::vector<int32_t> prompt(n);
  for (int i = 0; i < n; ++i) prompt[i] = first + (i * 7) % 200;
  return prompt;
}

// Automatic prefix caching end to end: the second of two identical requests gets its full prompt blocks
// from the cache (Usage.cached_prompt_tokens), with the same greedy continuation; another cache_salt shares
// nothing, the same salt again does; the /metrics counters count the same tokens.
TEST(ServerTest, RepeatedPromptIsServedFromThePrefixCacheAndSaltsIsolate) {
  TestServer server;
  auto stub = server.stub();
  const int block_size = server.executor().options().block_size;
  const int n = 3 * block_size + 5;  // 3 full blocks and a partial one
  const std::vector<int32_t> prompt = DistinctPrompt(n, 11);
  PrometheusText before = server.Metrics();

  auto run = [&](const std::string& salt, const std::string& what) {
    v1::GenerateRequest request = GreedyRequest(prompt, 8);
    request.set_cache_salt(salt);
    GenerateResult result = RunGenerate(stub.get(), request);
    EXPECT_TRUE(result.status.ok()) << what << ": " << result.status.error_message();
    EXPECT_FALSE(result.messages.empty()) << what;
    return result;
  };
  auto cached = [](const GenerateResult& r) {
    return r.messages.empty() ? -1 : r.messages.back().usage().cached_prompt_tokens();
  };
  GenerateResult first = run("", "first");
  GenerateResult second = run("", "second");
  const std::string salt(256, 't');  // the longest salt is accepted
  GenerateResult other_salt = run(salt, "other salt");
  GenerateResult same_salt = run(salt, "same salt again");
  ASSERT_FALSE(first.messages.empty() || second.messages.empty() || other_salt.messages.empty() ||
               same_salt.messages.empty());

  EXPECT_EQ(cached(first), 0);
  EXPECT_GT(cached(second), 0) << "the second identical request should hit the prefix cache";
  EXPECT_LT(cached(second), n);  // at least one prompt token is computed, for the logits
  EXPECT_EQ(cached(second) % block_size, 0) << cached(second);  // whole blocks only
  EXPECT_EQ(cached(other_salt), 0) << "a different cache_salt must share no blocks";
  EXPECT_GT(cached(same_salt), 0);
  for (const GenerateResult* r : {&second, &other_salt, &same_salt}) EXPECT_EQ(r->tokens, first.tokens);
  for (const GenerateResult* r : {&first, &second, &other_salt, &same_salt}) {
    EXPECT_EQ(r->messages.back().usage().prompt_tokens(), n);
    for (size_t i = 0; i + 1 < r->messages.size(); ++i) EXPECT_FALSE(r->messages[i].has_usage());
  }

  // The counters count prompt tokens per admission (no preemption here): 4 lookups of n tokens, and the
  // hits are exactly what the responses reported.
  const double hits = cached(second) + cached(same_salt);
  EXPECT_TRUE(WaitFor([&] {
    PrometheusText m = server.Metrics();
    return m.Get("stepserve_prefix_cache_hits_total") - before.Get("stepserve_prefix_cache_hits_total", 0) == hits &&
           m.Get("stepserve_prefix_cache_queries_total") - before.Get("stepserve_prefix_cache_queries_total", 0) ==
               4.0 * n &&
           m.Get("stepserve_num_requests_running") == 0;
  })) << server.ScrapeMetricsHttp();
  // Idle: no request holds a block, but the cache keeps the prompts' blocks (evictable, counted free).
  PrometheusText idle = server.Metrics();
  EXPECT_EQ(idle.Get("stepserve_kv_cache_usage_ratio"), 0);
  EXPECT_GT(idle.Get("stepserve_kv_cache_cached_blocks"), 0);
}

// With prefix caching off nothing is cached: a repeated prompt is computed again and the counters stay 0.
TEST(ServerTest, WithPrefixCachingOffARepeatedPromptIsComputedAgain) {
  TestServerOptions options;
  options.executor.enable_prefix_caching = false;
  TestServer server(options);
  auto stub = server.stub();
  const std::vector<int32_t> prompt = DistinctPrompt(3 * server.executor().options().block_size + 5, 13);
  GenerateResult first = RunGenerate(stub.get(), GreedyRequest(prompt, 8));
  GenerateResult second = RunGenerate(stub.get(), GreedyRequest(prompt, 8));
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  ASSERT_TRUE(second.status.ok()) << second.status.error_message();
  ASSERT_FALSE(second.messages.empty());
  EXPECT_EQ(second.messages.back().usage().cached_prompt_tokens(), 0);
  EXPECT_EQ(second.tokens, first.tokens);
  PrometheusText m = server.Metrics();
  EXPECT_EQ(m.Get("stepserve_prefix_cache_queries_total"), 0);
  EXPECT_EQ(m.Get("stepserve_prefix_cache_hits_total"), 0);
  EXPECT_EQ(m.Get("stepserve_kv_cache_cached_blocks"), 0);
}

// Waits for one completion-queue event for `tag`; false on timeout or failure.
bool Await(grpc::CompletionQueue* cq, void* tag) {
  void* got = nullptr;
  bool ok = false;
  auto status = cq->AsyncNext(&got, &ok, DeadlineIn(absl::Seconds(30)));
  return status == grpc::CompletionQueue::GOT_EVENT && got == tag && ok;
}

// An engine step that fails (test-only fault hook) ends only its own streams with INTERNAL naming the
// failure, counted in the metrics; the server keeps serving, also under 16 concurrent streams.
TEST(ServerTest, InjectedStepFailureEndsOnlyThatStepsStreamsAndTheServerServesOn) {
  TestServerOptions options;
  std::atomic<int64_t> fail_at{2};
  options.executor.step_fault_hook = [&fail_at](int64_t step) {
    if (step == fail_at.load()) throw std::runtime_error("injected engine fault");
  };
  TestServer server(options);
  auto stub = server.stub();
  // Steps count from the first request (the warm-up is not one): prefill, one decode, then the fault.
  GenerateResult failed = RunGenerate(stub.get(), GreedyRequest(Greedy()[0].prompt, 20));
  EXPECT_EQ(failed.status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_NE(failed.status.error_message().find("injected engine fault"), std::string::npos)
      << failed.status.error_message();
  ASSERT_FALSE(failed.messages.empty());
  EXPECT_EQ(failed.messages.back().finish_reason(), v1::FINISH_REASON_ERROR);
  ExpectGolden(RunGenerate(stub.get(), GreedyRequest(Greedy()[1].prompt, 20)), Greedy()[1], "after the fault");

  // Under load: the fault hits one step of 16 concurrent streams; every stream ends, each OK and golden or
  // INTERNAL, and at least one of each.
  fail_at = server.executor().Stats().num_steps_total + 3;
  constexpr int kStreams = 16;
  std::vector<GenerateResult> results(kStreams);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      auto s = server.stub();
      results[i] = RunGenerate(s.get(), GreedyRequest(Greedy()[i % Greedy().size()].prompt, 20));
    });
  }
  for (auto& t : threads) t.join();
  int internal = 0;
  for (int i = 0; i < kStreams; ++i) {
    if (results[i].status.error_code() == grpc::StatusCode::INTERNAL) {
      ++internal;
    } else {
      ExpectGolden(results[i], Greedy()[i % Greedy().size()], absl::StrCat("stream ", i));
    }
  }
  EXPECT_GE(internal, 1);
  EXPECT_TRUE(WaitFor([&] {
    PrometheusText m = server.Metrics();
    return m.Get("stepserve_engine_step_failures_total") == 2 &&
           m.Get("stepserve_request_failure_total{code=\"INTERNAL\"}") == 1 + internal &&
           m.Get("stepserve_num_requests_running") == 0;
  })) << server.ScrapeMetricsHttp();
  EXPECT_EQ(server.executor().Stats().kv_blocks_used, 0);
}

TEST(ServerTest, ReflectionListsTheServices) {
  TestServerOptions options;
  options.enable_reflection = true;  // off by default (hardening_test.cc checks that)
  TestServer server(options);
  grpc::GenericStub stub(server.channel());
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(30)));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(&context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  ASSERT_NE(call, nullptr);
  int tags[5];
  call->StartCall(&tags[0]);
  ASSERT_TRUE(Await(&cq, &tags[0]));
  const std::string list_services("\x3a\x00", 2);  // ServerReflectionRequest{list_services: ""}
  grpc::Slice slice(list_services);
  grpc::ByteBuffer request(&slice, 1);
  call->Write(request, &tags[1]);
  ASSERT_TRUE(Await(&cq, &tags[1]));
  grpc::ByteBuffer response;
  call->Read(&response, &tags[2]);
  ASSERT_TRUE(Await(&cq, &tags[2]));
  call->WritesDone(&tags[3]);
  ASSERT_TRUE(Await(&cq, &tags[3]));
  grpc::Status status;
  call->Finish(&status, &tags[4]);
  void* got;
  bool ok;
  ASSERT_EQ(cq.AsyncNext(&got, &ok, DeadlineIn(absl::Seconds(30))), grpc::CompletionQueue::GOT_EVENT);
  EXPECT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_TRUE(absl::StrContains(bytes, "stepserve.v1.StepServe"));
  EXPECT_TRUE(absl::StrContains(bytes, "grpc.health.v1.Health"));
  cq.Shutdown();
  while (cq.Next(&got, &ok)) {
  }
}

}  // namespace
}  // namespace stepserve::testing
