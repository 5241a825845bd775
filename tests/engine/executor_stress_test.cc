// Many submitting threads with random cancellations (and, in one test, pauses and resumes): every request
// gets exactly one final output, the KV pool ends fully free, nothing deadlocks. Built and run under
// ThreadSanitizer in CI.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <thread>

#include <ATen/Parallel.h>

#include "model/layers/kv_pools.h"

#include "model/loading/checkpoint.h"
#include "engine/executor.h"
#include "engine/step_runner.h"
#include "tests/parallel/parallel_test_util.h"
#include "tests/engine/executor_test_util.h"
#include "tests/test_util.h"

namespace stepserve {
namespace {

ExecutorOptions StressOptions() {
  ExecutorOptions options;
  options.max_num_seqs = 16;
  options.max_num_batched_tokens = 64;
  options.max_queue = 1000;
  options.block_size = 4;
  options.heartbeat_interval = absl::Milliseconds(5);  // tensor parallel: heartbeats between steps too
  return options;
}

// 8 threads submit 50 requests each (half sharing prefixes), cancelling a third at random; checks every
// request's one final output, that prefixes were reused and that the pool ends with no block in use.
void RunStress(Executor& ex) {
  testing::OutputCollector collector;
  constexpr int kThreads = 8, kPerThread = 50;
  std::atomic<int> submitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < kPerThread; ++i) {
        const std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
        std::vector<int32_t> prompt(1 + rng() % 24);
        for (int32_t& x : prompt) x = static_cast<int32_t>(rng() % 300);
        if (rng() % 2 == 0) {
          // Half the prompts start with one of three shared prefixes (prefix caching on, the default):
          // cached blocks are shared, evicted and reused while other threads submit and cancel.
          const int which = static_cast<int>(rng() % 3);
          std::vector<int32_t> prefix(9 + 4 * which);
          for (size_t j = 0; j < prefix.size(); ++j) prefix[j] = static_cast<int32_t>((17 * which + 5 * j) % 300);
          prompt.insert(prompt.begin(), prefix.begin(), prefix.end());
        }
        auto r = testing::GreedyRequest(id, prompt, 1 + static_cast<int>(rng() % 8));
        if (rng() % 4 == 0) r.sampling.temperature = 0.7f;
        ASSERT_TRUE(ex.Submit(r, collector.Callback()).ok());
        ++submitted;
        if (rng() % 3 == 0) {
          if (rng() % 2) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
          ex.Cancel(id);
        }
        (void)ex.Stats();
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(collector.WaitFinished(kThreads * kPerThread, absl::Seconds(600)));
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      auto c = collector.Get("t" + std::to_string(t) + "-" + std::to_string(i));
      EXPECT_EQ(c.num_finished, 1);
      EXPECT_TRUE(c.reason == FinishReason::kLength || c.reason == FinishReason::kCancelled ||
                  c.reason == FinishReason::kEos);
    }
  }
  ExecutorStats s = ex.Stats();
  EXPECT_EQ(s.num_running + s.num_waiting, 0);
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_EQ(s.requests_finished_total, kThreads * kPerThread);
  EXPECT_GT(s.prefix_cache_hits_total, 0);
  ex.Shutdown(absl::Seconds(10));
}

TEST(ExecutorStressTest, EightThreadsFiftyRequestsEachWithRandomCancels) {
  at::set_num_threads(1);  // LibTorch's own thread pool is not instrumented for TSan
  auto created = Executor::Create(testing::LoadTinyModel(), StressOptions());
  ASSERT_TRUE(created.ok()) << created.status();
  RunStress(**created);
}

// Flow control under concurrency: 8 threads submit 40 requests each (six prompts, so every continuation is
// seen several times) and pause, resume and cancel their own and each other's requests at random; a chaos
// thread pauses and resumes random ids; some callbacks pause their own request from the engine thread. The
// pool is small, so paused sequences are preempted for others. Then everything is resumed: every request
// ends exactly once, its tokens are a prefix of its prompt's greedy continuation (kLength: all of them),
// and nothing is left paused, running or holding a block.
TEST(ExecutorStressTest, EightThreadsPausingResumingAndCancelling) {
  at::set_num_threads(1);
  ExecutorOptions options = StressOptions();
  options.kv_cache_bytes =
      2 * 60 * KvBlockBytes(testing::LoadTinyModel()->config(), AttentionKind::kFull, options.block_size, at::kFloat);
  auto created = Executor::Create(testing::LoadTinyModel(), options);
  ASSERT_TRUE(created.ok()) << created.status();
  Executor& ex = **created;
  constexpr int kThreads = 8, kPerThread = 40, kPrompts = 6;
  std::vector<std::vector<int32_t>> prompts(kPrompts);
  for (int p = 0; p < kPrompts; ++p) {
    for (int j = 0; j < 3 + 4 * p; ++j) prompts[p].push_back(static_cast<int32_t>((31 * p + 7 * j + 1) % 300));
  }
  auto id_of = [](int t, int i) { return "t" + std::to_string(t) + "-" + std::to_string(i); };
  testing::OutputCollector collector;
  std::atomic<bool> submitting{true};
  std::vector<std::thread> threads;
  std::vector<std::vector<int>> prompt_of(kThreads, std::vector<int>(kPerThread));
  std::vector<std::vector<int>> max_new_of(kThreads, std::vector<int>(kPerThread));
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(100 + t);
      for (int i = 0; i < kPerThread; ++i) {
        const std::string id = id_of(t, i);
        const int p = static_cast<int>(rng() % kPrompts);
        const int max_new = 1 + static_cast<int>(rng() % 24);
        prompt_of[t][i] = p;
        max_new_of[t][i] = max_new;
        GenerationRequest r = testing::GreedyRequest(id, prompts[p], max_new);
        OutputCallback inner = collector.Callback();
        Executor* raw = &ex;
        const bool self_pausing = rng() % 4 == 0;
        ASSERT_TRUE(ex.Submit(r, [inner, raw, self_pausing, id](const GenerationOutput& o) {
                        inner(o);
                        // A front whose buffer filled: paused from the engine thread, in the callback.
                        if (self_pausing && !o.finished) raw->Pause(id);
                      }).ok());
        if (rng() % 2 == 0) ex.Pause(id);
        for (int k = 0; k < 3; ++k) {
          const std::string other = id_of(static_cast<int>(rng() % kThreads), static_cast<int>(rng() % (i + 1)));
          switch (rng() % 4) {
            case 0: ex.Pause(other); break;
            case 1:
            case 2: ex.Resume(other); break;
            default: if (rng() % 4 == 0) ex.Cancel(other); break;
          }
        }
        if (rng() % 3 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 1500));
        (void)ex.Stats();
      }
    });
  }
  std::thread chaos([&] {
    std::mt19937 rng(7);
    while (submitting.load()) {
      const std::string id = id_of(static_cast<int>(rng() % kThreads), static_cast<int>(rng() % kPerThread));
      if (rng() % 2) ex.Pause(id); else ex.Resume(id);
      if (rng() % 8 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  for (auto& th : threads) th.join();
  submitting = false;
  chaos.join();
  // Resume everything until all have finished (self-pausing callbacks pause again after each output).
  const absl::Time deadline = absl::Now() + absl::Seconds(600);
  while (collector.finished() < kThreads * kPerThread && absl::Now() < deadline) {
    for (int t = 0; t < kThreads; ++t) {
      for (int i = 0; i < kPerThread; ++i) ex.Resume(id_of(t, i));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_EQ(collector.finished(), kThreads * kPerThread);
  // Greedy continuations per prompt: every request's tokens are a prefix of the longest one seen.
  std::vector<std::vector<int32_t>> longest(kPrompts);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      const auto c = collector.Get(id_of(t, i));
      if (c.tokens.size() > longest[prompt_of[t][i]].size()) longest[prompt_of[t][i]] = c.tokens;
    }
  }
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      const auto c = collector.Get(id_of(t, i));
      EXPECT_EQ(c.num_finished, 1) << id_of(t, i);
      EXPECT_TRUE(c.reason == FinishReason::kLength || c.reason == FinishReason::kCancelled) << id_of(t, i);
      if (c.reason == FinishReason::kLength) {
        EXPECT_EQ(static_cast<int>(c.tokens.size()), max_new_of[t][i]) << id_of(t, i);
      }
      const std::vector<int32_t>& full = longest[prompt_of[t][i]];
      ASSERT_LE(c.tokens.size(), full.size());
      EXPECT_TRUE(std::equal(c.tokens.begin(), c.tokens.end(), full.begin())) << id_of(t, i);
    }
  }
  ExecutorStats s = ex.Stats();
  EXPECT_EQ(s.num_running + s.num_waiting + s.num_paused, 0);
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_EQ(s.requests_finished_total, kThreads * kPerThread);
  EXPECT_GT(s.pauses_total, 0);
  ex.Shutdown(absl::Seconds(10));
}

// The same with the executor on rank 0 of a two-rank tensor-parallel group (Gloo over loopback): the
// engine thread's steps and heartbeats interleave with the submitting threads, and rank 1 serves them.
TEST(ExecutorStressTest, TwoRanksEightThreadsFiftyRequestsEachWithRandomCancels) {
  at::set_num_threads(1);
  const ModelConfig config = *LoadModelConfigFile(testing::TinyCheckpointDir() + "/config.json");
  testing::RunGroup(2, [&](int rank, std::shared_ptr<Communicator> comm) {
    const ParallelConfig p{2, rank, false};
    absl::StatusOr<ModelWeights> weights = LoadCheckpointWeights(testing::TinyCheckpointDir(), config, at::kFloat, p);
    ASSERT_TRUE(weights.ok()) << weights.status();
    auto model = std::make_unique<CausalLM>(config, std::move(*weights), at::kCPU, ParallelContext{p, comm});
    if (rank != 0) {
      absl::StatusOr<KvCacheOptions> kv = PlanKvCache(*model, StressOptions());
      ASSERT_TRUE(kv.ok()) << kv.status();
      KvPools pools(model->kv_config(), *kv);
      const absl::Status served = ServeWorkerSteps(*model, &pools);
      EXPECT_TRUE(served.ok()) << served;
      return;
    }
    auto created = Executor::Create(std::move(model), StressOptions());
    ASSERT_TRUE(created.ok()) << created.status();
    RunStress(**created);
    created->reset();  // stops rank 1
  });
}

}  // namespace
}  // namespace stepserve
