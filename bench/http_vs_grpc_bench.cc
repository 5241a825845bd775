// The OpenAI HTTP front against gRPC on the tiny preset, side by side in one run: one in-process server (the
// tiny preset, its builtin tokenizer, prefix caching off), the same text prompts sent over each front by
// --concurrency client threads (a closed loop), streamed. Median TTFT and inter-token latency per front, and
// their ratio (HTTP / gRPC). The phases alternate (gRPC, HTTP, gRPC, HTTP, ...) so that drift in the machine's
// load hits both alike.
//
// Both fronts do the same work: a text prompt (tokenized by the server), greedy, ignore_eos, max_tokens new
// tokens, logprobs 1 (so that every token is delivered on its own: an HTTP chunk per token even when a token
// completes no character). TTFT: request sent -> the first token received; ITL: the gaps between tokens as
// they are received (pooled over all requests).
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "engine/executor.h"
#include "model/model_loader.h"
#include "nlohmann/json.hpp"
#include "server/server.h"
#include "server/text_pipeline.h"
#include "stepserve/v1/stepserve.grpc.pb.h"

ABSL_FLAG(int32_t, concurrency, 32, "Client threads per phase.");
ABSL_FLAG(int32_t, requests_per_thread, 4, "Requests each thread sends in a phase.");
ABSL_FLAG(int32_t, max_tokens, 48, "New tokens per request.");
ABSL_FLAG(int32_t, rounds, 2, "gRPC + HTTP phase pairs.");
ABSL_FLAG(std::string, model, "tiny", "Preset.");

namespace {

using Clock = std::chrono::steady_clock;
using stepserve::server::StepServeServer;

struct Sample {
  double ttft_ms = 0;
  std::vector<double> gaps_ms;
  int tokens = 0;
  bool ok = false;
};

std::string Prompt(int i) {
  static const char* kWords[] = {"river", "stone", "lamp", "orbit", "quiet", "paper", "signal", "garden", "vector",
                                 "harbor", "copper", "meadow", "engine", "window", "thread", "summit"};
  std::string p = absl::StrCat("Request ", i, ":");
  for (int w = 0; w < 40; ++w) absl::StrAppend(&p, " ", kWords[(i * 7 + w * 3) % 16]);
  return p;
}

void Record(Sample& s, Clock::time_point start, Clock::time_point* last, int tokens) {
  if (tokens <= 0) return;
  const Clock::time_point now = Clock::now();
  if (s.tokens == 0) {
    s.ttft_ms = std::chrono::duration<double, std::milli>(now - start).count();
  } else {
    s.gaps_ms.push_back(std::chrono::duration<double, std::milli>(now - *last).count());
  }
  for (int t = 1; t < tokens; ++t) s.gaps_ms.push_back(0.0);  // several tokens in one read
  s.tokens += tokens;
  *last = now;
}

Sample GrpcRequest(stepserve::v1::StepServe::Stub* stub, const std::string& prompt, int max_tokens) {
  Sample s;
  stepserve::v1::GenerateRequest request;
  request.set_prompt(prompt);
  request.mutable_stopping()->set_max_new_tokens(max_tokens);
  request.mutable_stopping()->set_ignore_eos(true);
  request.set_logprobs(1);
  grpc::ClientContext ctx;
  const Clock::time_point start = Clock::now();
  Clock::time_point last = start;
  auto reader = stub->Generate(&ctx, request);
  stepserve::v1::GenerateResponse response;
  while (reader->Read(&response)) Record(s, start, &last, response.token_ids_size());
  s.ok = reader->Finish().ok() && s.tokens == max_tokens;
  return s;
}

Sample HttpRequest(httplib::Client& cli, const std::string& prompt, int max_tokens) {
  Sample s;
  const nlohmann::json body = {{"model", "tiny"},      {"prompt", prompt},   {"max_tokens", max_tokens},
                               {"temperature", 0},     {"ignore_eos", true}, {"logprobs", 1},
                               {"stream", true}};
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  std::string pending;
  bool done = false;
  const Clock::time_point start = Clock::now();
  Clock::time_point last = start;
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    pending.append(data, len);
    int tokens = 0;
    size_t end;
    while ((end = pending.find("\n\n")) != std::string::npos) {
      const std::string event = pending.substr(0, end);
      pending.erase(0, end + 2);
      if (event.rfind("data: ", 0) != 0) continue;
      if (event == "data: [DONE]") {
        done = true;
        continue;
      }
      nlohmann::json chunk = nlohmann::json::parse(event.substr(6), nullptr, false);
      if (chunk.is_discarded() || !chunk.contains("choices") || chunk["choices"].empty()) continue;
      const nlohmann::json& lp = chunk["choices"][0]["logprobs"];
      if (lp.is_object()) tokens += static_cast<int>(lp["tokens"].size());
    }
    Record(s, start, &last, tokens);
    return true;
  };
  httplib::Response res;
  httplib::Error error;
  s.ok = cli.send(req, res, error) && res.status == 200 && done && s.tokens == max_tokens;
  return s;
}

struct Summary {
  double ttft_median = 0, ttft_p90 = 0, itl_median = 0, itl_p90 = 0, tokens_per_s = 0;
  int ok = 0, total = 0;
};

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5))];
}

void Accumulate(const std::vector<Sample>& samples, double seconds, std::vector<double>* ttft, std::vector<double>* gaps,
                Summary* sum, double* total_seconds, int64_t* total_tokens) {
  for (const Sample& s : samples) {
    ++sum->total;
    if (!s.ok) continue;
    ++sum->ok;
    ttft->push_back(s.ttft_ms);
    gaps->insert(gaps->end(), s.gaps_ms.begin(), s.gaps_ms.end());
    *total_tokens += s.tokens;
  }
  *total_seconds += seconds;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  stepserve::SetLogQuiet(true);
  const int concurrency = absl::GetFlag(FLAGS_concurrency);
  const int per_thread = absl::GetFlag(FLAGS_requests_per_thread);
  const int max_tokens = absl::GetFlag(FLAGS_max_tokens);

  stepserve::server::ServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.metrics_port = -1;
  options.http_port = 0;
  options.http_threads = 2 * concurrency + 16;
  auto server = StepServeServer::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "%s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  const std::string spec = absl::GetFlag(FLAGS_model);
  auto model = stepserve::LoadModel(spec, stepserve::ModelLoadOptions());
  if (!model.ok()) return 1;
  const int vocab = (*model)->config().vocab_size;
  stepserve::ExecutorOptions eo;
  eo.max_num_seqs = concurrency;
  eo.enable_prefix_caching = false;
  auto executor = stepserve::Executor::Create(std::move(model).value(), eo);
  if (!executor.ok()) return 1;
  auto text = stepserve::server::TextPipeline::Load(stepserve::server::TextOptions(), spec, vocab);
  if (!text.ok()) return 1;
  if (!(*server)->AttachExecutor(std::move(executor).value(), spec, *text).ok()) return 1;
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->port()), grpc::InsecureChannelCredentials());
  const int http_port = (*server)->http_port();

  Summary grpc_sum, http_sum;
  std::vector<double> grpc_ttft, grpc_gaps, http_ttft, http_gaps;
  double grpc_s = 0, http_s = 0;
  int64_t grpc_tokens = 0, http_tokens = 0;
  for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
    for (bool http : {false, true}) {
      std::vector<std::vector<Sample>> per(concurrency);
      const Clock::time_point start = Clock::now();
      std::vector<std::thread> threads;
      for (int t = 0; t < concurrency; ++t) {
        threads.emplace_back([&, t] {
          auto stub = stepserve::v1::StepServe::NewStub(channel);
          httplib::Client cli("127.0.0.1", http_port);
          cli.set_read_timeout(300, 0);
          for (int r = 0; r < per_thread; ++r) {
            const std::string prompt = Prompt(t * per_thread + r + round * 1000);
            per[t].push_back(http ? HttpRequest(cli, prompt, max_tokens) : GrpcRequest(stub.get(), prompt, max_tokens));
          }
        });
      }
      for (auto& th : threads) th.join();
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      std::vector<Sample> all;
      for (auto& v : per) all.insert(all.end(), v.begin(), v.end());
      if (http) {
        Accumulate(all, seconds, &http_ttft, &http_gaps, &http_sum, &http_s, &http_tokens);
      } else {
        Accumulate(all, seconds, &grpc_ttft, &grpc_gaps, &grpc_sum, &grpc_s, &grpc_tokens);
      }
      std::fprintf(stderr, "round %d %s: %.1f s\n", round, http ? "http" : "grpc", seconds);
    }
  }
  auto finish = [](Summary* s, const std::vector<double>& ttft, const std::vector<double>& gaps, double seconds,
                   int64_t tokens) {
    s->ttft_median = Percentile(ttft, 0.5);
    s->ttft_p90 = Percentile(ttft, 0.9);
    s->itl_median = Percentile(gaps, 0.5);
    s->itl_p90 = Percentile(gaps, 0.9);
    s->tokens_per_s = seconds > 0 ? tokens / seconds : 0;
  };
  finish(&grpc_sum, grpc_ttft, grpc_gaps, grpc_s, grpc_tokens);
  finish(&http_sum, http_ttft, http_gaps, http_s, http_tokens);
  std::printf("%s preset, concurrency %d, %d requests per front (%d rounds), %d new tokens each, streamed\n",
              spec.c_str(), concurrency, grpc_sum.total, absl::GetFlag(FLAGS_rounds), max_tokens);
  std::printf("%-6s %6s %14s %12s %13s %11s %12s\n", "front", "ok", "median TTFT", "p90 TTFT", "median ITL",
              "p90 ITL", "tokens/s");
  for (const auto& [name, s] : {std::pair<const char*, Summary>{"gRPC", grpc_sum}, {"HTTP", http_sum}}) {
    std::printf("%-6s %3d/%-3d %11.1f ms %9.1f ms %10.2f ms %8.2f ms %12.1f\n", name, s.ok, s.total, s.ttft_median,
                s.ttft_p90, s.itl_median, s.itl_p90, s.tokens_per_s);
  }
  std::printf("HTTP / gRPC: median TTFT %.3f, median ITL %.3f\n",
              grpc_sum.ttft_median > 0 ? http_sum.ttft_median / grpc_sum.ttft_median : 0.0,
              grpc_sum.itl_median > 0 ? http_sum.itl_median / grpc_sum.itl_median : 0.0);
  (*server)->Drain(absl::Seconds(5));
  return grpc_sum.ok == grpc_sum.total && http_sum.ok == http_sum.total ? 0 : 1;
}
