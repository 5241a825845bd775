// The engine's exception boundary: a step whose forward pass throws (an injected fault, a c10::Error, a
// device out-of-memory error) ends only that step's requests, with kError and an INTERNAL status naming
// what failed; the executor keeps serving. And the device boundary: one host copy of logits per step.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <stdexcept>
#include <thread>

#include <c10/util/Exception.h>

#include "engine/executor.h"
#include "tests/engine/executor_test_util.h"
#include "tests/test_util.h"

namespace stepserve {
namespace {

using testing::GreedyRequest;
using testing::OutputCollector;

std::unique_ptr<Executor> MakeExecutor(ExecutorOptions options) {
  options.run_warmup = false;
  auto ex = Executor::Create(testing::LoadTinyModel(), options);
  EXPECT_TRUE(ex.ok()) << ex.status();
  return std::move(ex).value();
}

TEST(ExecutorFaultTest, InjectedFailureEndsOnlyThatStepsRequestsAndTheServerServesOn) {
  ExecutorOptions options;
  options.step_fault_hook = [](int64_t step) {
    if (step == 2) throw std::runtime_error("injected fault at step 2");
  };
  auto ex = MakeExecutor(options);
  OutputCollector c;
  // Step 0: prefill "a"; step 1: a's decode; step 2 fails; "b" arrives after.
  ASSERT_TRUE(ex->Submit(GreedyRequest("a", {1, 2, 3}, 8), c.Callback()).ok());
  ASSERT_TRUE(c.WaitFinished(1, absl::Seconds(60)));
  const testing::Collected a = c.Get("a");
  EXPECT_EQ(a.num_finished, 1);
  EXPECT_EQ(a.reason, FinishReason::kError);
  EXPECT_EQ(a.final_output.error.code(), absl::StatusCode::kInternal);
  EXPECT_NE(a.final_output.error.message().find("injected fault at step 2"), std::string::npos)
      << a.final_output.error;
  EXPECT_EQ(a.tokens.size(), 2u);  // the tokens of steps 0 and 1 were delivered

  ASSERT_TRUE(ex->Submit(GreedyRequest("b", {4, 5}, 4), c.Callback()).ok());
  ASSERT_TRUE(c.WaitFinished(2, absl::Seconds(60)));
  EXPECT_EQ(c.Get("b").reason, FinishReason::kLength);
  EXPECT_EQ(c.Get("b").tokens.size(), 4u);
  const ExecutorStats s = ex->Stats();
  EXPECT_EQ(s.step_failures_total, 1);
  EXPECT_EQ(s.step_oom_failures_total, 0);
  EXPECT_EQ(s.kv_blocks_used, 0);  // the failed request's blocks were returned
}

TEST(ExecutorFaultTest, DeviceOutOfMemoryIsCountedAndReported) {
  ExecutorOptions options;
  options.step_fault_hook = [](int64_t step) {
    if (step == 0) TORCH_CHECK_WITH(OutOfMemoryError, false, "CUDA out of memory (injected)");
  };
  auto ex = MakeExecutor(options);
  OutputCollector c;
  ASSERT_TRUE(ex->Submit(GreedyRequest("oom", {7, 8}, 3), c.Callback()).ok());
  ASSERT_TRUE(c.WaitFinished(1, absl::Seconds(60)));
  EXPECT_EQ(c.Get("oom").reason, FinishReason::kError);
  EXPECT_NE(c.Get("oom").final_output.error.message().find("out of memory"), std::string::npos);
  EXPECT_EQ(ex->Stats().step_oom_failures_total, 1);
  ASSERT_TRUE(ex->Submit(GreedyRequest("after", {7, 8}, 3), c.Callback()).ok());
  ASSERT_TRUE(c.WaitFinished(2, absl::Seconds(60)));
  EXPECT_EQ(c.Get("after").reason, FinishReason::kLength);
}

// Under load from many threads, with every 5th step failing: every request ends exactly once, either
// normally or with kError; nothing is lost or hung, the blocks all come back, and each successful step
// made exactly one host copy of its logits.
TEST(ExecutorFaultTest, FailuresUnderLoadLoseNothing) {
  ExecutorOptions options;
  options.max_num_seqs = 8;
  options.max_num_batched_tokens = 64;
  options.step_fault_hook = [](int64_t step) {
    if (step % 5 == 3) throw c10::Error("injected c10 error", "");
  };
  auto ex = MakeExecutor(options);
  OutputCollector c;
  constexpr int kThreads = 8, kPerThread = 6;
  std::vector<std::thread> threads;
  std::atomic<int> submitted{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
        std::vector<int32_t> prompt(1 + (t * 7 + i) % 20, static_cast<int32_t>(10 + t));
        if (ex->Submit(GreedyRequest(id, prompt, 2 + i % 5), c.Callback()).ok()) ++submitted;
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(submitted.load(), kThreads * kPerThread);
  ASSERT_TRUE(c.WaitFinished(kThreads * kPerThread, absl::Seconds(120))) << c.finished() << " finished";
  int errors = 0, ok = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      const testing::Collected r = c.Get("t" + std::to_string(t) + "-" + std::to_string(i));
      EXPECT_EQ(r.num_finished, 1);
      if (r.reason == FinishReason::kError) {
        ++errors;
        EXPECT_EQ(r.final_output.error.code(), absl::StatusCode::kInternal);
      } else {
        ++ok;
        EXPECT_EQ(r.reason, FinishReason::kLength);
        EXPECT_EQ(static_cast<int>(r.tokens.size()), 2 + i % 5);
      }
    }
  }
  EXPECT_GT(errors, 0);
  EXPECT_GT(ok, 0);
  const ExecutorStats s = ex->Stats();
  EXPECT_GT(s.step_failures_total, 0);
  EXPECT_EQ(s.logits_host_copies_total, s.num_steps_total - s.step_failures_total);
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_EQ(s.num_running + s.num_waiting, 0);
}

}  // namespace
}  // namespace stepserve

namespace stepserve {
namespace {

// Issue #18: an exception in a step after a request finished (its final output queued) must not lose that
// output; it used to live in a local of the step and vanish, so the stream never ended. Here the update of
// the step where "short" finishes throws: "short" still gets its final output (kLength, both tokens), the
// other request in flight ends with kError, and the executor serves on.
TEST(ExecutorFaultTest, AnExceptionAfterAFinishStillDeliversTheFinalOutput) {
  std::mutex mu;
  std::condition_variable cv;
  bool submitted = false;
  std::atomic<int> thrown{0};
  ExecutorOptions options;
  options.step_fault_hook = [&](int64_t step) {  // the first step waits until both requests are queued
    if (step != 0) return;
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return submitted; });
  };
  options.update_fault_hook = [&](int64_t, int finished) {
    if (finished > 0 && thrown.fetch_add(1) == 0) throw std::runtime_error("injected fault after a finish");
  };
  auto ex = MakeExecutor(options);
  OutputCollector c;
  ASSERT_TRUE(ex->Submit(GreedyRequest("short", {1, 2, 3}, 2), c.Callback()).ok());
  ASSERT_TRUE(ex->Submit(GreedyRequest("long", {4, 5, 6}, 50), c.Callback()).ok());
  {
    std::lock_guard<std::mutex> lock(mu);
    submitted = true;
  }
  cv.notify_all();
  ASSERT_TRUE(c.WaitFinished(2, absl::Seconds(30))) << "a stream never ended: " << c.finished() << " of 2";
  const testing::Collected s = c.Get("short"), l = c.Get("long");
  EXPECT_EQ(thrown.load(), 1);
  EXPECT_EQ(s.num_finished, 1);
  EXPECT_EQ(s.reason, FinishReason::kLength);
  EXPECT_EQ(s.tokens.size(), 2u);
  EXPECT_EQ(l.num_finished, 1);
  EXPECT_EQ(l.reason, FinishReason::kError);
  EXPECT_NE(l.final_output.error.message().find("injected fault after a finish"), std::string::npos)
      << l.final_output.error;
  ASSERT_TRUE(ex->Submit(GreedyRequest("after", {7, 8}, 3), c.Callback()).ok());
  ASSERT_TRUE(c.WaitFinished(3, absl::Seconds(30)));
  EXPECT_EQ(c.Get("after").reason, FinishReason::kLength);
  EXPECT_EQ(c.Get("after").num_finished, 1);
  EXPECT_EQ(ex->Stats().kv_blocks_used, 0);
}

}  // namespace
}  // namespace stepserve
