// Tensor parallelism on the CPU, side by side in one run: the `small` preset on 1 rank against 2 ranks
// (separate processes, Gloo over loopback, the machine's cores split evenly between the ranks). Rank 0
// drives the steps through Forward (engine/forward_batch.h), whose step runner sends each plan as the executor does; the other ranks run ServeWorkerSteps.
// Reports the median decode step and prefill latency and the time rank 0 spends inside collectives per
// step (the all-reduces after attention and the MLP, the plan broadcast): what the communication costs;
// and rank 0's lm_head GEMM of a decode step (split by vocabulary on a group).
// Usage: tensor_parallel_bench [--model=small] [--ranks=1,2] [--batches=1,16] [--context=256] [--steps=20]
// Internal (the processes it starts): --world=N --rank=R --port=P
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/subprocess.h"
#include "engine/executor.h"
#include "engine/forward_batch.h"
#include "model/model_loader.h"
#include "parallel/communicator.h"
#include "engine/step_broadcast.h"
#include "engine/step_runner.h"

namespace stepserve {
namespace {

struct Flags {
  std::string model = "small";
  std::vector<int> ranks = {1, 2};
  std::vector<int> batches = {1, 16};
  int context = 256;
  int steps = 20;
  int world = 0, rank = 0, port = 0;  // set: this process is one rank of a run
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// One rank of a `world`-rank group. Rank 0 prints one result line per batch size:
//   RESULT world batch prefill_ms decode_ms collective_ms_per_decode all_reduces_per_decode
int RunRank(const Flags& f) {
  const int threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / f.world);
  at::set_num_threads(threads);
  ModelLoadOptions load;
  load.parallel = {f.world, f.rank, false};
  c10::intrusive_ptr<c10d::Store> store;
  if (f.world > 1) {
    auto s = ConnectTcpStore("127.0.0.1", f.port, false, f.world, absl::Seconds(120));
    if (!s.ok()) {
      std::fprintf(stderr, "rank %d: %s\n", f.rank, std::string(s.status().message()).c_str());
      return 1;
    }
    store = *s;
    C10dOptions o;
    o.rank = f.rank;
    o.world_size = f.world;
    o.gloo_hostname = "127.0.0.1";
    load.connect_group = [store, o] { return ConnectC10dGroup(store, o); };
  }
  auto model = LoadModel(f.model, load);
  if (!model.ok()) {
    std::fprintf(stderr, "rank %d: %s\n", f.rank, std::string(model.status().message()).c_str());
    return 1;
  }
  ExecutorOptions sizing;
  sizing.kv_cache_bytes = 1ll << 30;
  auto kv = PlanKvCache(**model, sizing);
  if (!kv.ok()) return 1;
  PagedKvCache cache((*model)->kv_config(), *kv);
  if (f.rank != 0) return ServeWorkerSteps(**model, &cache.pools()).ok() ? 0 : 1;

  const CausalLM& m = **model;
  {
    // One untimed step first: lazy initialisation (allocator, thread pools, Gloo buffers) stays out.
    KvSequence warm;
    ForwardBatch batch;
    batch.token_ids = at::zeros({8}, at::kLong);
    batch.seqs.push_back({8, 0, &warm});
    if (!Forward(m, batch, &cache).ok()) return 1;
    cache.blocks().Release(warm);
  }
  for (int batch : f.batches) {
    std::vector<KvSequence> seqs(batch);
    ForwardBatch prefill;
    prefill.token_ids = at::randint(m.config().vocab_size, {int64_t{batch} * f.context}, at::kLong);
    for (KvSequence& s : seqs) prefill.seqs.push_back({f.context, 0, &s});
    const absl::Time p0 = absl::Now();
    if (!Forward(m, prefill, &cache).ok()) return 1;
    const double prefill_ms = absl::ToDoubleMilliseconds(absl::Now() - p0);
    std::vector<double> decode_ms;
    const CollectiveStats before = m.parallel().comm ? m.parallel().comm->stats() : CollectiveStats();
    for (int step = 0; step < f.steps; ++step) {
      ForwardBatch decode;
      decode.token_ids = at::randint(m.config().vocab_size, {batch}, at::kLong);
      for (KvSequence& s : seqs) decode.seqs.push_back({1, s.num_tokens, &s});
      const absl::Time t0 = absl::Now();
      if (!Forward(m, decode, &cache).ok()) return 1;
      decode_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
    }
    const CollectiveStats after = m.parallel().comm ? m.parallel().comm->stats() : CollectiveStats();
    for (KvSequence& s : seqs) cache.blocks().Release(s);
    // This rank's lm_head GEMM of a decode step alone (its V/N rows on a group: lm_head is vocab parallel).
    const at::Tensor lm_head = m.weights().Get(m.config().tie_word_embeddings ? "model.embed_tokens.weight"
                                                                               : "lm_head.weight");
    const at::Tensor h = at::randn({batch, m.config().hidden_size});
    std::vector<double> lm_head_ms;
    for (int i = 0; i < f.steps; ++i) {
      const absl::Time t0 = absl::Now();
      at::Tensor logits = at::matmul(h, lm_head.t());
      lm_head_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
    }
    std::printf("RESULT %d %d %.3f %.3f %.3f %.1f %.3f\n", f.world, batch, prefill_ms, Median(decode_ms),
                (after.seconds - before.seconds) * 1e3 / f.steps,
                static_cast<double>(after.all_reduces - before.all_reduces) / f.steps, Median(lm_head_ms));
    std::fflush(stdout);
  }
  StepRunner(m).Stop();
  return 0;
}

struct Result {
  int world = 0, batch = 0;
  double prefill_ms = 0, decode_ms = 0, collective_ms = 0, all_reduces = 0, lm_head_ms = 0;
};

// Starts the ranks of one run as processes of this binary; collects rank 0's result lines.
std::vector<Result> RunGroup(const Flags& f, const char* self, int world) {
  int port = 0;
  c10::intrusive_ptr<c10d::Store> store;
  if (world > 1) {
    auto s = ConnectTcpStore("127.0.0.1", 0, true, world, absl::Seconds(120), &port);
    if (!s.ok()) return {};
    store = *s;  // hosted here, for the run's lifetime
  }
  const std::string blas_threads =
      std::to_string(std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / world));
  std::vector<pid_t> pids;
  int out = -1;  // rank 0's stdout
  for (int r = 0; r < world; ++r) {
    std::vector<std::string> args = {self, "--model=" + f.model, absl::StrCat("--world=", world),
                                     absl::StrCat("--rank=", r), absl::StrCat("--port=", port),
                                     absl::StrCat("--context=", f.context), absl::StrCat("--steps=", f.steps),
                                     "--batches=" + absl::StrJoin(f.batches, ",")};
    SpawnOptions options;
    options.program = "/proc/self/exe";
    options.env = {{"OPENBLAS_NUM_THREADS", blas_threads}, {"OMP_NUM_THREADS", blas_threads}};
    if (r == 0) options.stdout_to = ChildOutput::kPipe;
    auto child = SpawnProcess(args, options);
    if (!child.ok()) {
      for (pid_t pid : pids) KillProcess(pid);
      if (out >= 0) close(out);
      return {};
    }
    if (r == 0) out = child->stdout_pipe;
    pids.push_back(child->pid);
  }
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = read(out, buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
  close(out);
  for (pid_t pid : pids) waitpid(pid, nullptr, 0);
  std::vector<Result> results;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    Result r;
    if (std::sscanf(std::string(line).c_str(), "RESULT %d %d %lf %lf %lf %lf %lf", &r.world, &r.batch,
                    &r.prefill_ms, &r.decode_ms, &r.collective_ms, &r.all_reduces, &r.lm_head_ms) == 7) {
      results.push_back(r);
    }
  }
  return results;
}

std::vector<int> ParseInts(absl::string_view text) {
  std::vector<int> v;
  for (absl::string_view p : absl::StrSplit(text, ',')) {
    int x = 0;
    if (absl::SimpleAtoi(p, &x)) v.push_back(x);
  }
  return v;
}

}  // namespace
}  // namespace stepserve

int main(int argc, char** argv) {
  using namespace stepserve;
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* name) -> const char* {
      const std::string prefix = std::string("--") + name + "=";
      return a.rfind(prefix, 0) == 0 ? argv[i] + prefix.size() : nullptr;
    };
    if (const char* v = value("model")) f.model = v;
    else if (const char* v = value("ranks")) f.ranks = ParseInts(v);
    else if (const char* v = value("batches")) f.batches = ParseInts(v);
    else if (const char* v = value("context")) f.context = std::atoi(v);
    else if (const char* v = value("steps")) f.steps = std::atoi(v);
    else if (const char* v = value("world")) f.world = std::atoi(v);
    else if (const char* v = value("rank")) f.rank = std::atoi(v);
    else if (const char* v = value("port")) f.port = std::atoi(v);
    else {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  if (f.world > 0) return RunRank(f);

  std::printf("tensor_parallel_bench: %s, context %d, %d decode steps, %u cores split between the ranks\n",
              f.model.c_str(), f.context, f.steps, std::thread::hardware_concurrency());
  std::vector<Result> all;
  for (int world : f.ranks) {
    std::vector<Result> r = RunGroup(f, argv[0], world);
    if (r.size() != f.batches.size()) {
      std::fprintf(stderr, "the %d-rank run failed\n", world);
      return 1;
    }
    all.insert(all.end(), r.begin(), r.end());
  }
  std::printf("%-6s %-6s %12s %12s %12s %16s %14s %12s\n", "ranks", "batch", "prefill ms", "decode ms",
              "decode vs 1", "collective ms", "all-reduces", "lm_head ms");
  for (const Result& r : all) {
    double base = 0;
    for (const Result& b : all) {
      if (b.world == 1 && b.batch == r.batch) base = b.decode_ms;
    }
    std::printf("%-6d %-6d %12.2f %12.2f %11.2fx %16.2f %14.1f %12.2f\n", r.world, r.batch, r.prefill_ms,
                r.decode_ms, base > 0 ? r.decode_ms / base : 0.0, r.collective_ms, r.all_reduces, r.lm_head_ms);
  }
  std::printf("(per decode step on rank 0: collective ms = time inside collectives, plan broadcast included, "
              "waiting for the slower rank too; lm_head ms = rank 0's lm_head GEMM alone, its V/N rows on 2 ranks; decode vs 1: the step's latency "
              "against one rank's)\n");
  return 0;
}
