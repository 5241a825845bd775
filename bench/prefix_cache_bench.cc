// Automatic prefix caching on the `small` preset (CPU), caching on against off, side by side in one run:
// --requests requests (default 32) share one --prefix_len-token prefix (2048) with distinct --suffix_len
// suffixes (64) and generate --new_tokens (32) each, all submitted at once (the server's default budgets:
// 32 sequences, 512 tokens per step). Reports the median and p90 time to first token, the total
// (prompt + generated) token throughput, the output throughput and the prefix cache hit rate of each run,
// and the on/off ratios.
// Usage: prefix_cache_bench [--model=small] [--requests=32] [--prefix_len=2048] [--suffix_len=64]
//                           [--new_tokens=32]
#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "engine/executor.h"
#include "common/logging.h"
#include "model/model_loader.h"

namespace stepserve {
namespace {

struct Flags {
  std::string model = "small";
  int requests = 32, prefix_len = 2048, suffix_len = 64, new_tokens = 32;
};

struct RunResult {
  double seconds = 0, ttft_median_ms = 0, ttft_p90_ms = 0;
  int64_t prompt_tokens = 0, output_tokens = 0, cached_tokens = 0;
  double hit_rate = 0;
};

double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

RunResult Run(const Flags& f, bool caching, const std::vector<GenerationRequest>& requests) {
  auto model = LoadModel(f.model, ModelLoadOptions{});
  if (!model.ok()) std::exit(1);
  ExecutorOptions options;  // the server's defaults, but a cache that holds every request at once
  options.kv_cache_bytes = 4ll << 30;
  options.enable_prefix_caching = caching;
  auto ex = Executor::Create(std::move(*model), options);
  if (!ex.ok()) {
    std::fprintf(stderr, "executor: %s\n", ex.status().ToString().c_str());
    std::exit(1);
  }
  std::mutex mu;
  std::condition_variable cv;
  std::vector<double> ttft;
  RunResult r;
  const absl::Time start = absl::Now();
  for (const GenerationRequest& req : requests) {
    auto st = (*ex)->Submit(req, [&](const GenerationOutput& o) {
      std::lock_guard<std::mutex> lock(mu);
      r.output_tokens += static_cast<int64_t>(o.token_ids.size());
      if (o.finished) {
        ttft.push_back(absl::ToDoubleMilliseconds(o.time_to_first_token));
        r.prompt_tokens += o.prompt_tokens;
        r.cached_tokens += o.cached_prompt_tokens;
        cv.notify_all();
      }
    });
    if (!st.ok()) std::exit(1);
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return ttft.size() == requests.size(); });
  r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  r.ttft_median_ms = Percentile(ttft, 0.5);
  r.ttft_p90_ms = Percentile(ttft, 0.9);
  const ExecutorStats s = (*ex)->Stats();
  r.hit_rate = s.prefix_cache_queries_total > 0
                   ? static_cast<double>(s.prefix_cache_hits_total) / static_cast<double>(s.prefix_cache_queries_total)
                   : 0.0;
  return r;
}

void Print(const char* name, const RunResult& r) {
  std::printf("caching %-3s: %.1f s, TTFT median %.0f ms p90 %.0f ms, total %.1f tok/s, output %.1f tok/s, "
              "hit rate %.1f%% (%lld of %lld prompt tokens cached)\n",
              name, r.seconds, r.ttft_median_ms, r.ttft_p90_ms,
              static_cast<double>(r.prompt_tokens + r.output_tokens) / r.seconds,
              static_cast<double>(r.output_tokens) / r.seconds, 100 * r.hit_rate,
              static_cast<long long>(r.cached_tokens), static_cast<long long>(r.prompt_tokens));
}

}  // namespace
}  // namespace stepserve

int main(int argc, char** argv) {
  using namespace stepserve;
  SetLogQuiet(true);
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto parse = [&](const char* name, int* out) {
      const size_t n = std::strlen(name);
      return a.compare(0, n, name) == 0 && absl::SimpleAtoi(a.substr(n), out);
    };
    if (a.rfind("--model=", 0) == 0) {
      f.model = a.substr(8);
    } else if (!parse("--requests=", &f.requests) && !parse("--prefix_len=", &f.prefix_len) &&
               !parse("--suffix_len=", &f.suffix_len) && !parse("--new_tokens=", &f.new_tokens)) {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  auto probe = LoadModel(f.model, ModelLoadOptions{});
  if (!probe.ok()) return 1;
  const int vocab = (*probe)->config().vocab_size;
  probe->reset();
  std::mt19937 rng(7);
  std::vector<int32_t> prefix(f.prefix_len);
  for (int32_t& t : prefix) t = static_cast<int32_t>(rng() % vocab);
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < f.requests; ++i) {
    GenerationRequest r;
    r.id = "shared-" + std::to_string(i);
    r.prompt = prefix;
    for (int j = 0; j < f.suffix_len; ++j) r.prompt.push_back(static_cast<int32_t>(rng() % vocab));
    r.stopping.max_new_tokens = f.new_tokens;
    r.stopping.ignore_eos = true;
    requests.push_back(std::move(r));
  }
  std::printf("prefix_cache_bench: %s, %d requests, %d-token shared prefix, %d-token suffixes, %d new tokens\n",
              f.model.c_str(), f.requests, f.prefix_len, f.suffix_len, f.new_tokens);
  const RunResult on = Run(f, true, requests);
  Print("on", on);
  const RunResult off = Run(f, false, requests);
  Print("off", off);
  const double total_on = static_cast<double>(on.prompt_tokens + on.output_tokens) / on.seconds;
  const double total_off = static_cast<double>(off.prompt_tokens + off.output_tokens) / off.seconds;
  std::printf("on vs off: median TTFT %.2fx lower, total throughput %.2fx higher (output %.2fx)\n",
              off.ttft_median_ms / on.ttft_median_ms, total_on / total_off,
              (static_cast<double>(on.output_tokens) / on.seconds) / (static_cast<double>(off.output_tokens) / off.seconds));
  return 0;
}
