// CPU benchmarks of the `small` preset: prefill of one 512-token sequence, and one decode step at batch
// 1, 8 and 32 with 256 cached tokens per sequence. Run: build/bench/model_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "engine/forward_batch.h"
#include "engine/kv_cache.h"
#include "common/logging.h"
#include "model/model_loader.h"

namespace stepserve {
namespace {

// STEPSERVE_BENCH_DEVICE (cpu, cuda) and STEPSERVE_BENCH_DTYPE (float32, bfloat16) pick where it runs.
ModelLoadOptions BenchLoadOptions() {
  ModelLoadOptions o;
  if (const char* d = std::getenv("STEPSERVE_BENCH_DEVICE"); d != nullptr && *d != '\0') o.device = at::Device(d);
  if (const char* t = std::getenv("STEPSERVE_BENCH_DTYPE"); t != nullptr && *t != '\0') {
    auto dtype = ParseDtype(t);
    if (dtype.ok()) o.dtype = *dtype;
  }
  return o;
}

const CausalLM& SmallModel() {
  static std::unique_ptr<CausalLM> model = [] {
    SetLogQuiet(true);
    auto m = LoadModel("small", BenchLoadOptions());
    if (!m.ok()) std::abort();
    return std::move(m).value();
  }();
  return *model;
}

std::unique_ptr<PagedKvCache> MakeCache(const ModelConfig& config, int64_t seqs, int64_t tokens_per_seq) {
  KvCacheOptions o;
  o.block_size = 16;
  o.num_blocks_full = static_cast<int32_t>(seqs * ((tokens_per_seq + 15) / 16 + 1));
  o.num_blocks_sliding = static_cast<int32_t>(seqs * (config.MaxSlidingWindow() / 16 + 3));
  o.dtype = SmallModel().dtype();
  o.device = SmallModel().device();
  return std::make_unique<PagedKvCache>(config, o);
}

at::Tensor RandomTokens(int64_t n, int64_t vocab, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return at::randint(vocab, {n}, gen, at::TensorOptions().dtype(at::kLong));
}

void BM_Prefill512(benchmark::State& state) {
  const CausalLM& model = SmallModel();
  const int64_t T = 512;
  at::Tensor tokens = RandomTokens(T, model.config().vocab_size, 1);
  for (auto _ : state) {
    auto cache = MakeCache(model.config(), 1, T);
    KvSequence seq;
    ForwardBatch batch;
    batch.token_ids = tokens;
    batch.seqs.push_back({T, 0, &seq});
    auto logits = Forward(model, batch, cache.get());
    if (!logits.ok()) state.SkipWithError("forward failed");
    benchmark::DoNotOptimize(logits->data_ptr());
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(T), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Prefill512)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(5.0);

// One decode step for `batch` sequences that each hold 256 cached tokens (the context grows by one per
// iteration; 16 iterations keep it within 256..272).
void BM_DecodeStep(benchmark::State& state) {
  const CausalLM& model = SmallModel();
  const int64_t batch_size = state.range(0), context = 256, iterations = 16;
  auto cache = MakeCache(model.config(), batch_size, context + iterations + 1);
  std::vector<KvSequence> seqs(batch_size);
  for (int64_t b = 0; b < batch_size; ++b) {
    ForwardBatch prefill;
    prefill.token_ids = RandomTokens(context, model.config().vocab_size, 100 + b);
    prefill.seqs.push_back({context, 0, &seqs[b]});
    if (!Forward(model, prefill, cache.get()).ok()) state.SkipWithError("prefill failed");
  }
  at::Tensor next = RandomTokens(batch_size, model.config().vocab_size, 7);
  for (auto _ : state) {
    ForwardBatch step;
    step.token_ids = next;
    for (int64_t b = 0; b < batch_size; ++b) step.seqs.push_back({1, seqs[b].num_tokens, &seqs[b]});
    auto logits = Forward(model, step, cache.get());
    if (!logits.ok()) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(logits->data_ptr());
  }
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(batch_size), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_DecodeStep)->Arg(1)->Arg(8)->Arg(32)->Iterations(16)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace stepserve

BENCHMARK_MAIN();
