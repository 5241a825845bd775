// Many submitting threads with random cancellations: every request gets exactly one final output, the
// KV pool ends fully free, nothing deadlocks. Built and run under ThreadSanitizer in CI.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#include <ATen/Parallel.h>

#include "model/executor.h"
#include "tests/executor_test_util.h"
#include "tests/test_util.h"

namespace stepserve {
namespace {

TEST(ExecutorStressTest, EightThreadsFiftyRequestsEachWithRandomCancels) {
  at::set_num_threads(1);  // LibTorch's own thread pool is not instrumented for TSan
  ExecutorOptions options;
  options.max_num_seqs = 16;
  options.max_num_batched_tokens = 64;
  options.max_queue = 1000;
  options.block_size = 4;
  auto created = Executor::Create(testing::LoadTinyModel(), options);
  ASSERT_TRUE(created.ok()) << created.status();
  Executor& ex = **created;
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
  ex.Shutdown(absl::Seconds(10));
}

}  // namespace
}  // namespace stepserve
