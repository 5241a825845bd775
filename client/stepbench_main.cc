// stepbench: a load generator for stepserve's Generate API, reporting what vLLM's benchmark_serving
// reports (throughput, TTFT, TPOT, ITL, end-to-end latency, goodput).
//
//   stepbench --target=host:port --num_requests=200 --concurrency=16 --prompt_len=128 --output_len=64
//   stepbench --request_rate=20 --burstiness=1 --prompt_len=64:512 --output_len=16:256 --seed=1
//   stepbench --dataset=prompts.jsonl --concurrency=8 --json_out=report.json
//   stepbench --shared_prefix_len=512 --num_prefixes=4 --prompt_len=64 --metrics_url=http://host:9400/metrics
//   stepbench --turns=4 --num_requests=16 --concurrency=4 --prompt_len=32 --output_len=32
//   stepbench --prompts_file=prompts.jsonl --api=grpc --concurrency=8 --output_len=64
//   stepbench --prompts_file=sharegpt.json --api=openai --http_target=host:8000 --concurrency=8
//
// Exit codes: 0 every measured request completed, 1 an RPC error before the run or any failed request,
// 2 bad usage.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/client_context.h>

#include "client/arrivals.h"
#include "client/bench_report.h"
#include "client/channel.h"
#include "client/channel_flags.h"
#include "client/cli_flags.h"
#include "client/load_generator.h"
#include "client/metrics_scrape.h"
#include "client/prompt_file.h"
#include "client/text_load.h"
#include "client/workload.h"
#include "stepserve/v1/stepserve.grpc.pb.h"

namespace stepserve::client {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

constexpr const char* kUsage =
    "usage: stepbench [flags]\n"
    "  closed loop: --concurrency=N keeps N requests in flight (the default, N=1)\n"
    "  open loop:   --request_rate=R sends R requests/s on average (Poisson; --burstiness for gamma),\n"
    "               with --concurrency as an optional cap on requests in flight\n"
    "  prefix caching: --shared_prefix_len=N [--num_prefixes=K] starts each prompt with one of K shared\n"
    "               prefixes; --turns=T makes each of --num_requests a conversation of T turns (a turn's\n"
    "               prompt is the previous prompt + its answer + a new --prompt_len message); with\n"
    "               --turns, --concurrency and --request_rate count conversations\n"
    "  text prompts: --prompts_file=FILE (JSON lines {\"prompt\": ...} or ShareGPT {\"conversations\": ...})\n"
    "               sent as text to either front: --api=grpc (GenerateRequest.prompt / .chat at --target)\n"
    "               or --api=openai (/v1/completions, /v1/chat/completions streamed at --http_target)\n"
    "exit codes: 0 all requests completed, 1 RPC error or failed requests, 2 bad usage\n"
    "flags:\n";

struct Options {
  ChannelConfig channel;
  int64_t concurrency = 1;
  double request_rate = 0;
  double burstiness = 1;
  int64_t num_requests = 100;
  std::string prompt_len = "32";
  std::string output_len = "32";
  std::string dataset;
  int64_t seed = 0;
  int64_t warmup = 0;
  int64_t shared_prefix_len = 0;
  int64_t num_prefixes = 1;
  int64_t turns = 1;
  std::string cache_salt;
  double slo_ttft_ms = 0;
  double slo_tpot_ms = 0;
  std::string json_out;
  std::string metrics_url;
  double timeout_s = 10;
  double request_timeout_s = 600;
  bool quiet = false;
  std::string api = "grpc";                  // grpc or openai
  std::string http_target = "localhost:8000";
  std::string prompts_file;
  std::string sharegpt_turns = "first";
  bool chat = false;                         // plain prompts go as one-message chats
  std::string model;                         // openai: the requests' "model"
};

// A one-line bar redrawn in place: "[#######.............]  35/100 requests  12.3 s".
class ProgressBar {
 public:
  explicit ProgressBar(std::string label) : label_(std::move(label)), start_(std::chrono::steady_clock::now()) {}
  void Update(int64_t done, int64_t total) {
    constexpr int kWidth = 40;
    const int filled = total > 0 ? static_cast<int>(kWidth * done / total) : kWidth;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::printf("\r%s [%s%s] %lld/%lld requests %.1f s", label_.c_str(), std::string(filled, '#').c_str(),
                std::string(kWidth - filled, '.').c_str(), static_cast<long long>(done),
                static_cast<long long>(total), elapsed);
    std::fflush(stdout);
  }
  void Finish() {
    std::printf("\n");
    std::fflush(stdout);
  }

 private:
  std::string label_;
  std::chrono::steady_clock::time_point start_;
};

// Scrapes the counters; retries until `want_success` requests are counted (the server may update its
// counters just after the last message left it) or two seconds have passed.
bool ScrapeSettled(const std::string& url, double timeout_s, double min_success, ServerCounters* counters,
                   std::string* error) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (true) {
    if (!ScrapeCounters(url, timeout_s, counters, error)) return false;
    if (counters->request_success >= min_success || std::chrono::steady_clock::now() > until) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

int Report(const Options& o, const LoadResult& run, bool prefix_workload, const ServerCounters& before);

// Every workload's phases: the warm-up requests when there are any (closed loop, at least one in flight),
// the server's counters before the measured run (--metrics_url), then the measured run itself (open loop at
// --request_rate or closed loop at --concurrency). `run(is_warmup, config)` sends one phase's requests.
// False (after saying why) when the counters cannot be read.
bool RunWarmupAndMeasured(const Options& o, bool tty, LoadConfig config, bool has_warmup,
                          const std::function<LoadResult(bool is_warmup, const LoadConfig&)>& run,
                          ServerCounters* before, LoadResult* measured) {
  if (has_warmup) {
    LoadConfig wc = config;
    wc.concurrency = std::max<int64_t>(1, o.concurrency);
    std::unique_ptr<ProgressBar> bar = tty ? std::make_unique<ProgressBar>("warmup ") : nullptr;
    if (bar) wc.progress = [&](int64_t d, int64_t t) { bar->Update(d, t); };
    LoadResult w = run(/*is_warmup=*/true, wc);
    if (bar) bar->Finish();
    int64_t failed = 0;
    for (const auto& r : w.requests) failed += r.ok ? 0 : 1;
    std::cout << "warmup: " << w.requests.size() - failed << " of " << w.requests.size() << " requests completed\n";
  }
  std::string err;
  if (!o.metrics_url.empty() && !ScrapeCounters(o.metrics_url, o.timeout_s, before, &err)) {
    std::cerr << "stepbench: metrics: " << err << "\n";
    return false;
  }
  if (o.request_rate > 0) {
    config.arrivals_s = ArrivalTimes(o.num_requests, o.request_rate, o.burstiness,
                                     static_cast<uint64_t>(o.seed) ^ 0x9e3779b97f4a7c15ULL);
  }
  config.concurrency = o.concurrency;
  std::unique_ptr<ProgressBar> bar = tty ? std::make_unique<ProgressBar>("benchmark") : nullptr;
  if (bar) config.progress = [&](int64_t d, int64_t t) { bar->Update(d, t); };
  *measured = run(/*is_warmup=*/false, config);
  if (bar) bar->Finish();
  return true;
}

// --prompts_file: text prompts to the gRPC front or the OpenAI-compatible HTTP front, one report.
int RunTextBench(const Options& o, LenRange output_len) {
  const auto usage_error = [&](const std::string& msg) {
    std::cerr << "stepbench: " << msg << "\n";
    return kExitUsage;
  };
  ShareGptTurns turns;
  if (!ParseShareGptTurns(o.sharegpt_turns, &turns)) return usage_error("--sharegpt_turns must be first or all");
  std::vector<PromptEntry> entries;
  std::string err;
  if (!LoadPromptFile(o.prompts_file, turns, &entries, &err)) return usage_error(err);
  std::vector<PromptEntry> specs =
      PromptWorkload(entries, o.warmup + o.num_requests, output_len, static_cast<uint64_t>(o.seed));
  bool any_chat = false;
  for (auto& e : specs) {
    if (o.chat) e = AsChat(e);
    any_chat |= e.is_chat();
  }

  std::unique_ptr<TextBackend> backend;
  std::string where;
  if (o.api == "grpc") {
    std::shared_ptr<grpc::Channel> channel;
    if (grpc::Status s = MakeChannel(o.channel, &channel); !s.ok()) return usage_error(s.error_message());
    v1::ModelInfo info;
    auto stub = v1::StepServe::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(false);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::microseconds(static_cast<int64_t>(o.timeout_s * 1e6)));
    if (grpc::Status s = stub->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info); !s.ok()) {
      std::cerr << "stepbench: GetModelInfo: " << DescribeStatus(s, o.channel.target) << "\n";
      return kExitFailed;
    }
    if (!info.tokenizer_loaded()) {
      std::cerr << "stepbench: the server at " << o.channel.target
                << " has no tokenizer (ModelInfo.tokenizer_loaded is false): text prompts cannot be served\n";
      return kExitFailed;
    }
    if (any_chat && !info.chat_template_loaded()) {
      std::cerr << "stepbench: the server at " << o.channel.target
                << " has no chat template (ModelInfo.chat_template_loaded is false): chat prompts cannot be served\n";
      return kExitFailed;
    }
    where = info.model() + " on " + info.device() + " at " + o.channel.target + " (gRPC)";
    backend = MakeGrpcTextBackend(channel);
  } else {
    OpenAiTarget target;
    if (!ParseHttpTarget(o.http_target, &target.host, &target.port, &err)) return usage_error("--http_target: " + err);
    target.model = o.model;
    if (target.model.empty() && !OpenAiFirstModel(target.host, target.port, o.timeout_s, &target.model, &err)) {
      std::cerr << "stepbench: " << err << "\n";
      return kExitFailed;
    }
    where = target.model + " at http://" + o.http_target + " (OpenAI API)";
    backend = MakeOpenAiBackend(target);
  }
  const std::vector<PromptEntry> warmup(specs.begin(), specs.begin() + o.warmup);
  const std::vector<PromptEntry> measured(specs.begin() + o.warmup, specs.end());

  const bool tty = !o.quiet && ::isatty(STDOUT_FILENO);
  std::cout << "stepbench: " << where << ", " << o.num_requests << " requests from " << o.prompts_file << " ("
            << entries.size() << " prompt" << (entries.size() == 1 ? "" : "s") << "), ";
  if (o.request_rate > 0) {
    std::cout << "open loop at " << o.request_rate << " req/s (burstiness " << o.burstiness << ")";
    if (o.concurrency > 0) std::cout << ", at most " << o.concurrency << " in flight";
  } else {
    std::cout << "closed loop, concurrency " << o.concurrency;
  }
  std::cout << "\n";
  std::cout.flush();

  LoadConfig config;
  config.request_timeout_s = o.request_timeout_s;
  config.cache_salt = o.cache_salt;
  ServerCounters before;
  LoadResult run;
  if (!RunWarmupAndMeasured(
          o, tty, config, !warmup.empty(),
          [&](bool is_warmup, const LoadConfig& c) { return RunTextLoad(*backend, is_warmup ? warmup : measured, c); },
          &before, &run)) {
    return kExitFailed;
  }
  return Report(o, run, /*prefix_workload=*/!o.cache_salt.empty(), before);
}

int Main(int argc, char** argv) {
  Options o;
  FlagSet flags("stepbench");
  AddChannelFlags(&flags, &o.channel);
  flags.AddInt("concurrency", &o.concurrency, "requests in flight (closed loop); a cap with --request_rate, 0 none");
  flags.AddDouble("request_rate", &o.request_rate, "open loop: mean requests per second; 0 is closed loop");
  flags.AddDouble("burstiness", &o.burstiness, "open loop: gamma shape of the inter-arrival gaps; 1 is Poisson");
  flags.AddInt("num_requests", &o.num_requests, "measured requests");
  flags.AddString("prompt_len", &o.prompt_len, "random prompts: N or MIN:MAX tokens");
  flags.AddString("output_len", &o.output_len, "max_new_tokens: N or MIN:MAX (ignore_eos makes it exact)");
  flags.AddString("dataset", &o.dataset, "JSON lines {\"prompt_token_ids\":[...],\"max_new_tokens\":N}");
  flags.AddInt("seed", &o.seed, "seed for prompts, lengths and arrivals");
  flags.AddInt("warmup", &o.warmup, "requests (conversations with --turns) sent before the measured run, not counted");
  flags.AddInt("shared_prefix_len", &o.shared_prefix_len,
               "random prompts: tokens of a shared prefix before each prompt's own --prompt_len tokens; 0 none");
  flags.AddInt("num_prefixes", &o.num_prefixes, "with --shared_prefix_len: distinct prefixes, request i uses i % K");
  flags.AddInt("turns", &o.turns, "random prompts: turns per conversation, each extending the previous prompt and answer");
  flags.AddString("cache_salt", &o.cache_salt, "GenerateRequest.cache_salt of every request (<= 256 bytes)");
  flags.AddDouble("slo_ttft_ms", &o.slo_ttft_ms, "goodput: TTFT objective in ms; 0 none");
  flags.AddDouble("slo_tpot_ms", &o.slo_tpot_ms, "goodput: TPOT objective in ms; 0 none");
  flags.AddString("json_out", &o.json_out, "write the report as JSON to this file");
  flags.AddString("metrics_url", &o.metrics_url, "server /metrics URL (http://host:9400/metrics) to compare counts");
  flags.AddDouble("timeout_s", &o.timeout_s, "deadline for GetModelInfo and metrics scrapes");
  flags.AddDouble("request_timeout_s", &o.request_timeout_s, "deadline of each Generate request");
  flags.AddBool("quiet", &o.quiet, "no progress bar even on a terminal");
  flags.AddString("api", &o.api, "with --prompts_file: grpc (Generate at --target) or openai (HTTP at --http_target)");
  flags.AddString("http_target", &o.http_target, "--api=openai: the server's OpenAI-compatible HTTP front, host:port");
  flags.AddString("prompts_file", &o.prompts_file,
                  "text prompts: JSON lines {\"prompt\": ...} or ShareGPT {\"conversations\": [...]} (or one JSON array)");
  flags.AddString("sharegpt_turns", &o.sharegpt_turns,
                  "ShareGPT entries: first (the first human turn) or all (every turn before the last answer)");
  flags.AddBool("chat", &o.chat, "with --prompts_file: send plain prompts as one-message chats");
  flags.AddString("model", &o.model, "--api=openai: the requests' model; default: the first of GET /v1/models");

  std::vector<std::string> args(argv + 1, argv + argc);
  const auto usage_error = [&](const std::string& msg) {
    std::cerr << "stepbench: " << msg << "\n" << kUsage << flags.Usage();
    return kExitUsage;
  };
  if (auto err = flags.Parse(args)) return usage_error(*err);
  if (flags.help_requested()) {
    std::cout << kUsage << flags.Usage();
    return kExitOk;
  }
  if (!flags.positional().empty()) return usage_error("unexpected argument \"" + flags.positional()[0] + "\"");
  if (o.num_requests < 1) return usage_error("--num_requests must be >= 1");
  if (o.warmup < 0) return usage_error("--warmup must be >= 0");
  if (o.request_rate < 0) return usage_error("--request_rate must be >= 0");
  if (o.request_rate == 0 && o.concurrency < 1) return usage_error("--concurrency must be >= 1 in a closed loop");
  if (o.concurrency < 0) return usage_error("--concurrency must be >= 0");
  if (!(o.burstiness > 0)) return usage_error("--burstiness must be > 0");
  if (flags.IsSet("burstiness") && o.request_rate == 0) return usage_error("--burstiness needs --request_rate");
  if (!(o.timeout_s > 0) || !(o.request_timeout_s > 0)) return usage_error("timeouts must be > 0");
  if (o.slo_ttft_ms < 0 || o.slo_tpot_ms < 0) return usage_error("SLOs must be >= 0");
  if (!o.dataset.empty() && flags.IsSet("prompt_len")) return usage_error("--prompt_len and --dataset exclude each other");
  if (o.shared_prefix_len < 0) return usage_error("--shared_prefix_len must be >= 0");
  if (o.num_prefixes < 1) return usage_error("--num_prefixes must be >= 1");
  if (flags.IsSet("num_prefixes") && o.shared_prefix_len == 0) {
    return usage_error("--num_prefixes needs --shared_prefix_len >= 1");
  }
  if (o.turns < 1) return usage_error("--turns must be >= 1");
  if (!o.dataset.empty() && (o.shared_prefix_len > 0 || o.turns > 1)) {
    return usage_error("--shared_prefix_len and --turns work on random prompts, not with --dataset");
  }
  if (o.cache_salt.size() > 256) {
    return usage_error("--cache_salt is " + std::to_string(o.cache_salt.size()) + " bytes; at most 256");
  }
  LenRange prompt_len, output_len;
  std::string err;
  if (!ParseLenRange(o.prompt_len, &prompt_len, &err)) return usage_error("--prompt_len: " + err);
  if (!ParseLenRange(o.output_len, &output_len, &err)) return usage_error("--output_len: " + err);
  // Without a cap an open loop could hold every request in flight at once; the user decides.
  if (o.request_rate > 0 && !flags.IsSet("concurrency")) o.concurrency = 0;
  if (o.api != "grpc" && o.api != "openai") return usage_error("--api must be grpc or openai");
  if (o.prompts_file.empty()) {
    if (o.api == "openai") return usage_error("--api=openai sends text: it needs --prompts_file");
    for (const char* f : {"sharegpt_turns", "chat", "http_target", "model"}) {
      if (flags.IsSet(f)) return usage_error(std::string("--") + f + " needs --prompts_file");
    }
  } else {
    for (const char* f : {"dataset", "prompt_len", "shared_prefix_len", "num_prefixes", "turns"}) {
      if (flags.IsSet(f)) return usage_error(std::string("--") + f + " works on token-id prompts, not with --prompts_file");
    }
    if (o.api == "grpc" && (flags.IsSet("http_target") || flags.IsSet("model"))) {
      return usage_error("--http_target and --model are for --api=openai");
    }
    if (o.api == "openai" && (flags.IsSet("tls") || flags.IsSet("tls_ca") || flags.IsSet("tls_cert"))) {
      return usage_error("the TLS flags are for the gRPC front; --api=openai speaks plain HTTP");
    }
    return RunTextBench(o, output_len);
  }

  std::shared_ptr<grpc::Channel> channel;
  if (grpc::Status s = MakeChannel(o.channel, &channel); !s.ok()) return usage_error(s.error_message());

  // The model decides which token ids and lengths are valid.
  v1::ModelInfo info;
  {
    auto stub = v1::StepServe::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(false);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::microseconds(static_cast<int64_t>(o.timeout_s * 1e6)));
    grpc::Status s = stub->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info);
    if (!s.ok()) {
      std::cerr << "stepbench: GetModelInfo: " << DescribeStatus(s, o.channel.target) << "\n";
      return kExitFailed;
    }
  }
  if (info.vocab_size() < 1) {
    std::cerr << "stepbench: the server reports vocab_size " << info.vocab_size() << "\n";
    return kExitFailed;
  }

  const int64_t total = o.warmup + o.num_requests;
  std::vector<Conversation> specs;
  if (o.dataset.empty()) {
    ConversationOptions shape;
    shape.turns = o.turns;
    shape.shared_prefix_len = o.shared_prefix_len;
    shape.num_prefixes = o.num_prefixes;
    const int64_t longest = MaxConversationTokens(shape, prompt_len, output_len);
    if (info.max_context() > 0 && longest > info.max_context()) {
      std::string what = "--prompt_len max + --output_len max";
      if (o.turns > 1) what = "--turns x (" + what + ")";
      if (o.shared_prefix_len > 0) what = "--shared_prefix_len + " + what;
      return usage_error(what + " = " + std::to_string(longest) + " exceeds the model's max_context " +
                         std::to_string(info.max_context()));
    }
    specs = ConversationWorkload(total, shape, prompt_len, output_len, info.vocab_size(),
                                 static_cast<uint64_t>(o.seed));
  } else {
    std::vector<RequestSpec> entries;
    if (!LoadDataset(o.dataset, info.vocab_size(), &entries, &err)) return usage_error(err);
    specs = SingleTurn(DatasetWorkload(entries, total, output_len, static_cast<uint64_t>(o.seed)));
  }
  const std::vector<Conversation> warmup(specs.begin(), specs.begin() + o.warmup);
  const std::vector<Conversation> measured(specs.begin() + o.warmup, specs.end());

  const bool tty = !o.quiet && ::isatty(STDOUT_FILENO);
  std::cout << "stepbench: " << info.model() << " on " << info.device() << " at " << o.channel.target << ", ";
  if (o.turns > 1) {
    std::cout << o.num_requests << " conversations x " << o.turns << " turns = " << o.num_requests * o.turns
              << " requests, ";
  } else {
    std::cout << o.num_requests << " requests, ";
  }
  if (o.request_rate > 0) {
    std::cout << "open loop at " << o.request_rate << (o.turns > 1 ? " conversations/s" : " req/s") << " (burstiness "
              << o.burstiness << ")";
    if (o.concurrency > 0) std::cout << ", at most " << o.concurrency << " in flight";
  } else {
    std::cout << "closed loop, concurrency " << o.concurrency;
  }
  std::cout << "\n";
  const bool prefix_workload = o.shared_prefix_len > 0 || o.turns > 1 || !o.cache_salt.empty();
  if (o.shared_prefix_len > 0) {
    std::cout << "workload: " << o.num_prefixes << " shared prefix" << (o.num_prefixes == 1 ? "" : "es") << " of "
              << o.shared_prefix_len << " tokens before each " << (o.turns > 1 ? "conversation" : "prompt") << "\n";
  }
  if (prefix_workload) {
    std::cout << "server prefix caching: " << (info.prefix_caching() ? "on" : "off (ModelInfo.prefix_caching)")
              << "\n";
  }
  std::cout.flush();

  LoadConfig config;
  config.request_timeout_s = o.request_timeout_s;
  config.cache_salt = o.cache_salt;
  ServerCounters before;
  LoadResult run;
  if (!RunWarmupAndMeasured(
          o, tty, config, !warmup.empty(),
          [&](bool is_warmup, const LoadConfig& c) { return RunConversations(channel, is_warmup ? warmup : measured, c); },
          &before, &run)) {
    return kExitFailed;
  }

  return Report(o, run, prefix_workload, before);
}

// The report of a measured run, with the metrics deltas since `before` when --metrics_url is set; printed
// and written to --json_out. The exit code.
int Report(const Options& o, const LoadResult& run, bool prefix_workload, const ServerCounters& before) {
  std::string err;
  BenchReport report = BuildReport(run.requests, run.duration_s, Slo{o.slo_ttft_ms, o.slo_tpot_ms});
  report.prefix_cache_section = prefix_workload;
  if (!o.metrics_url.empty()) {
    ServerCounters after;
    if (!ScrapeSettled(o.metrics_url, o.timeout_s, before.request_success + static_cast<double>(report.completed),
                       &after, &err)) {
      std::cerr << "stepbench: metrics: " << err << "\n";
      return kExitFailed;
    }
    report.server = Delta(after, before);
  }
  std::cout << FormatReport(report);
  std::cout.flush();
  if (!o.json_out.empty()) {
    std::ofstream out(o.json_out);
    out << ReportToJson(report).dump(2) << "\n";
    if (!out) {
      std::cerr << "stepbench: cannot write " << o.json_out << "\n";
      return kExitFailed;
    }
  }
  return report.failed == 0 ? kExitOk : kExitFailed;
}

}  // namespace
}  // namespace stepserve::client

int main(int argc, char** argv) { return stepserve::client::Main(argc, argv); }
