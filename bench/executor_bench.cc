// Executor benchmarks on the `small` preset (CPU), side by side in one run:
//  1. continuous vs static batching: 64 requests, prompts U[32, 256], outputs U[16, 128] (fixed seed),
//     the same max batch; reports output tokens/s of each and the ratio.
//  2. engine overhead: the period of a pure decode step through the executor (scheduling, batching,
//     forward, sampling, delivery) against the bare model forward of the same batch.
// Usage: executor_bench [--model=small] [--requests=64] [--max_num_seqs=32] [--skip_batching]
//                       [--skip_overhead]
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "engine/executor.h"
#include "engine/forward_batch.h"
#include "common/logging.h"
#include "model/model_loader.h"

namespace stepserve {
namespace {

struct Flags {
  std::string model = "small";
  int requests = 64;
  int max_num_seqs = 32;
  bool skip_batching = false;
  bool skip_overhead = false;
};

std::vector<GenerationRequest> Workload(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> prompt_len(32, 256), output_len(16, 128), token(0, vocab - 1);
  std::vector<GenerationRequest> out;
  for (int i = 0; i < n; ++i) {
    GenerationRequest r;
    r.id = "bench-" + std::to_string(i);
    r.prompt.resize(prompt_len(rng));
    for (int32_t& t : r.prompt) t = token(rng);
    r.stopping.max_new_tokens = output_len(rng);
    r.stopping.ignore_eos = true;
    out.push_back(std::move(r));
  }
  return out;
}

struct RunResult {
  double seconds = 0;
  int64_t output_tokens = 0;
  int64_t steps = 0;
};

RunResult RunWorkload(const Flags& flags, BatchingMode mode, const std::vector<GenerationRequest>& requests) {
  auto model = LoadModel(flags.model, ModelLoadOptions{});
  ExecutorOptions options;
  options.max_num_seqs = flags.max_num_seqs;
  options.max_num_batched_tokens = 2048;
  options.kv_cache_bytes = 2ll << 30;
  options.max_queue = 100000;
  options.batching_mode = mode;
  auto ex = Executor::Create(std::move(*model), options);
  if (!ex.ok()) {
    std::fprintf(stderr, "executor: %s\n", ex.status().ToString().c_str());
    std::exit(1);
  }
  std::mutex mu;
  std::condition_variable cv;
  int finished = 0;
  std::atomic<int64_t> tokens{0};
  const absl::Time start = absl::Now();
  for (const GenerationRequest& r : requests) {
    auto st = (*ex)->Submit(r, [&](const GenerationOutput& o) {
      tokens += static_cast<int64_t>(o.token_ids.size());
      if (o.finished) {
        std::lock_guard<std::mutex> lock(mu);
        ++finished;
        cv.notify_all();
      }
    });
    if (!st.ok()) std::exit(1);
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return finished == static_cast<int>(requests.size()); });
  RunResult r;
  r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  r.output_tokens = tokens;
  r.steps = (*ex)->Stats().num_steps_total;
  return r;
}

// What the ratio could be at most if every decode step cost the same whatever its batch size: static
// batching needs, per batch, as many decode steps as its longest output; continuous batching at least
// the total output over the maximum batch. Prefill (the same work in both modes) only lowers the ratio.
std::string DecodeStepBound(const std::vector<GenerationRequest>& requests, int max_batch) {
  int64_t static_steps = 0, total = 0, batch_max = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    const int64_t out = requests[i].stopping.max_new_tokens;
    total += out;
    batch_max = std::max(batch_max, out);
    if ((i + 1) % max_batch == 0 || i + 1 == requests.size()) {
      static_steps += batch_max;
      batch_max = 0;
    }
  }
  const int64_t continuous_steps = (total + max_batch - 1) / max_batch;
  char line[256];
  std::snprintf(line, sizeof line,
                "decode-step bound for this workload: static >= %lld steps, continuous >= %lld steps, "
                "ratio <= %.2fx at equal step cost",
                static_cast<long long>(static_steps), static_cast<long long>(continuous_steps),
                static_cast<double>(static_steps) / continuous_steps);
  return line;
}

// Engine overhead at batch `batch`: executor step period vs bare forward, both with ~`context` cached tokens.
void EngineOverhead(const Flags& flags, int batch, int context, int steps) {
  auto loaded = LoadModel(flags.model, ModelLoadOptions{});
  std::unique_ptr<CausalLM> model = std::move(*loaded);
  const int vocab = model->config().vocab_size;

  // Bare forward: prefill `batch` sequences, then time `steps` decode steps.
  auto kv = KvCacheOptionsFromBudget(model->config(), 2ll << 30, 16, batch, batch, model->dtype(), model->device());
  PagedKvCache cache(model->config(), *kv);
  std::vector<KvSequence> seqs(batch);
  std::mt19937 rng(5);
  for (int b = 0; b < batch; ++b) {
    ForwardBatch prefill;
    std::vector<int64_t> toks(context);
    for (auto& t : toks) t = rng() % vocab;
    prefill.token_ids = at::tensor(toks, at::TensorOptions().dtype(at::kLong));
    prefill.seqs.push_back({context, 0, &seqs[b]});
    (void)Forward(*model, prefill, &cache);
  }
  std::vector<double> bare;
  for (int s = 0; s < steps; ++s) {
    ForwardBatch step;
    std::vector<int64_t> toks(batch);
    for (auto& t : toks) t = rng() % vocab;
    step.token_ids = at::tensor(toks, at::TensorOptions().dtype(at::kLong));
    for (int b = 0; b < batch; ++b) step.seqs.push_back({1, seqs[b].num_tokens, &seqs[b]});
    const absl::Time t0 = absl::Now();
    (void)Forward(*model, step, &cache);
    bare.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
  }
  for (auto& s : seqs) cache.blocks().Release(s);

  // Through the executor: `batch` requests with the same prompt length, decode steps timed end to end
  // (the interval between consecutive step completions while the batch is purely decoding).
  ExecutorOptions options;
  options.max_num_seqs = batch;
  options.max_num_batched_tokens = std::max(batch * context, 2048);
  options.kv_cache_bytes = 2ll << 30;
  auto ex = Executor::Create(std::move(model), options);
  std::mutex mu;
  std::vector<double> periods;
  absl::Time last = absl::InfinitePast();
  bool last_was_decode = false;
  (*ex)->SetStepObserver([&](const StepInfo& info) {
    std::lock_guard<std::mutex> lock(mu);
    const absl::Time now = absl::Now();
    const bool decode = info.num_prefill_tokens == 0 && info.num_seqs == batch;
    if (decode && last_was_decode) periods.push_back(absl::ToDoubleMilliseconds(now - last));
    last = now;
    last_was_decode = decode;
  });
  std::condition_variable cv;
  int finished = 0;
  for (int b = 0; b < batch; ++b) {
    GenerationRequest r;
    r.id = "overhead-" + std::to_string(b);
    r.prompt.resize(context);
    for (int32_t& t : r.prompt) t = rng() % vocab;
    r.stopping.max_new_tokens = steps + 2;
    r.stopping.ignore_eos = true;
    (void)(*ex)->Submit(r, [&](const GenerationOutput& o) {
      if (o.finished) {
        std::lock_guard<std::mutex> lock(mu);
        ++finished;
        cv.notify_all();
      }
    });
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return finished == batch; });
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
  };
  const double b = median(bare), e = median(periods);
  std::printf("engine overhead, batch %d, ~%d cached tokens: bare forward %.2f ms, executor step %.2f ms, ratio %.3f\n",
              batch, context, b, e, e / b);
}

}  // namespace
}  // namespace stepserve

int main(int argc, char** argv) {
  using namespace stepserve;
  SetLogQuiet(true);
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name) { return a.substr(std::strlen(name)); };
    if (a.rfind("--model=", 0) == 0) flags.model = value("--model=");
    else if (a.rfind("--requests=", 0) == 0) (void)absl::SimpleAtoi(value("--requests="), &flags.requests);
    else if (a.rfind("--max_num_seqs=", 0) == 0) (void)absl::SimpleAtoi(value("--max_num_seqs="), &flags.max_num_seqs);
    else if (a == "--skip_batching") flags.skip_batching = true;
    else if (a == "--skip_overhead") flags.skip_overhead = true;
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  std::printf("model %s, %d intra-op threads\n", flags.model.c_str(), at::get_num_threads());
  if (!flags.skip_batching) {
    auto model = LoadModel(flags.model, ModelLoadOptions{});
    const auto requests = Workload(flags.requests, (*model)->config().vocab_size, 2024);
    model->reset();
    RunResult cont = RunWorkload(flags, BatchingMode::kContinuous, requests);
    RunResult stat = RunWorkload(flags, BatchingMode::kStatic, requests);
    const double ct = cont.output_tokens / cont.seconds, st = stat.output_tokens / stat.seconds;
    std::printf("continuous batching: %lld output tokens in %.2f s = %.1f tok/s (%lld steps)\n",
                static_cast<long long>(cont.output_tokens), cont.seconds, ct, static_cast<long long>(cont.steps));
    std::printf("static batching:     %lld output tokens in %.2f s = %.1f tok/s (%lld steps)\n",
                static_cast<long long>(stat.output_tokens), stat.seconds, st, static_cast<long long>(stat.steps));
    std::printf("continuous / static output throughput: %.2fx\n", ct / st);
    std::printf("%s\n", DecodeStepBound(requests, flags.max_num_seqs).c_str());
  }
  if (!flags.skip_overhead) {
    for (int batch : {1, 8, 32}) EngineOverhead(flags, batch, 128, 32);
  }
  return 0;
}
