// Flow control in the executor (Executor::Pause / Resume): a paused request stops being scheduled (no
// outputs, no generated tokens), keeps or gives up its KV blocks as the scheduler decides, and on resume
// continues with exactly the tokens it would have produced; cancellation and deadlines still end it.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "engine/executor.h"
#include "tests/engine/executor_test_util.h"
#include "tests/test_util.h"

namespace stepserve {
namespace {

using testing::GreedyRequest;
using testing::OutputCollector;

std::unique_ptr<Executor> MakeExecutor(ExecutorOptions options = {}) {
  auto ex = Executor::Create(testing::LoadTinyModel(), options);
  EXPECT_TRUE(ex.ok()) << ex.status();
  return std::move(ex).value();
}

bool WaitUntil(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

std::vector<int32_t> Alone(const GenerationRequest& r) {
  auto ex = MakeExecutor();
  OutputCollector c;
  EXPECT_TRUE(ex->Submit(r, c.Callback()).ok());
  EXPECT_TRUE(c.WaitFinished(1));
  return c.Get(r.id).tokens;
}

TEST(ExecutorPauseTest, PausedRequestStopsGeneratingKeepsItsBlocksAndResumesExactly) {
  const GenerationRequest r = GreedyRequest("p", {5, 17, 42, 9}, 60);
  const std::vector<int32_t> expected = Alone(r);
  ASSERT_EQ(expected.size(), 60u);

  auto ex = MakeExecutor();
  std::mutex mu;
  std::condition_variable cv;
  int outputs = 0;
  OutputCollector c;
  OutputCallback collect = c.Callback();
  Executor* raw = ex.get();
  // Paused from the callback after the 5th output, as a front whose buffer filled would.
  ASSERT_TRUE(ex->Submit(r, [&, collect](const GenerationOutput& o) {
                  collect(o);
                  std::lock_guard<std::mutex> lock(mu);
                  if (++outputs == 5) EXPECT_TRUE(raw->Pause("p"));
                  cv.notify_all();
                }).ok());
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return outputs >= 5; }));
  }
  ASSERT_TRUE(WaitUntil([&] { return ex->Stats().num_paused == 1; }, absl::Seconds(10)));
  const ExecutorStats paused = ex->Stats();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const ExecutorStats later = ex->Stats();
  EXPECT_EQ(c.Get("p").tokens.size(), 5u);  // paused in its own callback: not one more step
  EXPECT_EQ(later.generation_tokens_total, paused.generation_tokens_total);
  EXPECT_EQ(later.num_paused, 1);
  EXPECT_EQ(later.num_paused_holding_kv, 1);
  EXPECT_EQ(later.num_running, 0);
  EXPECT_GT(later.kv_blocks_used, 0);  // kept: nobody else needed them
  EXPECT_EQ(later.num_preemptions_total, 0);
  EXPECT_EQ(later.pauses_total, 1);

  EXPECT_TRUE(ex->Pause("p"));  // idempotent
  EXPECT_EQ(ex->Stats().pauses_total, 1);
  EXPECT_TRUE(ex->Resume("p"));
  ASSERT_TRUE(c.WaitFinished(1));
  EXPECT_EQ(c.Get("p").tokens, expected);
  EXPECT_EQ(c.Get("p").reason, FinishReason::kLength);
  const ExecutorStats done = ex->Stats();
  EXPECT_EQ(done.num_paused, 0);
  EXPECT_EQ(done.kv_blocks_used, 0);
  EXPECT_FALSE(ex->Pause("p"));  // finished: unknown
  EXPECT_FALSE(ex->Resume("p"));
}

TEST(ExecutorPauseTest, CancelAndDeadlineEndPausedRequestsAndFreeTheirBlocks) {
  auto ex = MakeExecutor();
  OutputCollector c;
  OutputCallback collect = c.Callback();
  Executor* raw = ex.get();
  auto pause_after_first = [&, collect](const GenerationOutput& o) {
    collect(o);
    if (!o.finished) raw->Pause(o.request_id);
  };
  ASSERT_TRUE(ex->Submit(GreedyRequest("cancelled", {1, 2, 3}, 500), pause_after_first).ok());
  GenerationRequest late = GreedyRequest("late", {4, 5, 6}, 500);
  late.deadline = absl::Now() + absl::Milliseconds(1500);
  ASSERT_TRUE(ex->Submit(late, pause_after_first).ok());
  ASSERT_TRUE(WaitUntil([&] { return ex->Stats().num_paused == 2; }, absl::Seconds(30)));
  EXPECT_GT(ex->Stats().kv_blocks_used, 0);
  EXPECT_TRUE(ex->Cancel("cancelled"));
  ASSERT_TRUE(c.WaitFinished(2, absl::Seconds(30)));
  EXPECT_EQ(c.Get("cancelled").reason, FinishReason::kCancelled);
  EXPECT_EQ(c.Get("late").reason, FinishReason::kDeadlineExceeded);
  EXPECT_EQ(c.Get("cancelled").tokens.size(), 1u);
  EXPECT_EQ(c.Get("late").tokens.size(), 1u);
  // The deadline is seen within the idle engine's 100 ms poll.
  EXPECT_LT(c.Get("late").final_output.time - late.deadline, absl::Milliseconds(500));
  const ExecutorStats s = ex->Stats();
  EXPECT_EQ(s.num_paused, 0);
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_EQ(s.num_running + s.num_waiting, 0);
}

TEST(ExecutorPauseTest, PausedRequestsDoNotHoldSeatsOrBlocksOthersNeed) {
  const GenerationRequest long_request = GreedyRequest("long", {7, 8, 9, 10, 11}, 40);
  const std::vector<int32_t> expected_long = Alone(long_request);
  const GenerationRequest other = GreedyRequest("other", {3, 1, 4, 1, 5, 9, 2, 6}, 12);
  const std::vector<int32_t> expected_other = Alone(other);

  ExecutorOptions options;
  options.max_num_seqs = 1;  // one seat: a paused request must not keep it
  options.block_size = 4;
  auto ex = MakeExecutor(options);
  OutputCollector c;
  OutputCallback collect = c.Callback();
  Executor* raw = ex.get();
  std::atomic<int> long_outputs{0};
  ASSERT_TRUE(ex->Submit(long_request, [&, collect](const GenerationOutput& o) {
                  collect(o);
                  if (!o.finished && ++long_outputs == 3) raw->Pause("long");
                }).ok());
  ASSERT_TRUE(WaitUntil([&] { return ex->Stats().num_paused == 1; }, absl::Seconds(30)));
  ASSERT_TRUE(ex->Submit(other, c.Callback()).ok());
  ASSERT_TRUE(c.WaitFinished(1, absl::Seconds(60)));  // "other" ran to its end while "long" was paused
  EXPECT_EQ(c.Get("other").tokens, expected_other);
  EXPECT_EQ(c.Get("long").num_finished, 0);
  EXPECT_EQ(c.Get("long").tokens.size(), 3u);
  EXPECT_TRUE(ex->Resume("long"));
  ASSERT_TRUE(c.WaitFinished(2, absl::Seconds(60)));
  EXPECT_EQ(c.Get("long").tokens, expected_long);
  EXPECT_EQ(ex->Stats().kv_blocks_used, 0);
}

TEST(ExecutorPauseTest, PausedRequestIsPreemptedFirstWhenThePoolRunsShortAndResumesExactly) {
  ExecutorOptions options;
  options.block_size = 4;
  options.enable_prefix_caching = false;  // the paused request is recomputed from its tokens, not a cache hit
  // A full-attention pool of about 20 blocks of 4 tokens (as PreemptionKeepsOutputsExact sizes it).
  const int64_t block_bytes = KvBlockBytes(testing::LoadTinyModel()->config(), AttentionKind::kFull, 4, at::kFloat);
  options.kv_cache_bytes = 2 * 20 * block_bytes;
  auto ex = MakeExecutor(options);
  const int64_t capacity = ex->kv_capacity_tokens();
  ASSERT_GE(capacity, 48);
  // "paused" holds 6 + 20 tokens (7 blocks) when it pauses; "hungry" alone needs capacity - 4 tokens: both do
  // not fit, so one of them must give its blocks up, and it must be the paused one although it is older.
  const GenerationRequest paused_request = GreedyRequest("paused", {11, 12, 13, 14, 15, 16}, 30);
  const GenerationRequest hungry =
      GreedyRequest("hungry", {21, 22, 23, 24, 25, 26, 27}, static_cast<int>(capacity - 4 - 7));
  const std::vector<int32_t> expected_paused = Alone(paused_request);
  const std::vector<int32_t> expected_hungry = Alone(hungry);

  OutputCollector c;
  OutputCallback collect = c.Callback();
  Executor* raw = ex.get();
  std::atomic<int> n{0};
  ASSERT_TRUE(ex->Submit(paused_request, [&, collect](const GenerationOutput& o) {
                  collect(o);
                  if (!o.finished && ++n == 20) raw->Pause("paused");
                }).ok());
  ASSERT_TRUE(WaitUntil([&] { return ex->Stats().num_paused == 1; }, absl::Seconds(30)));
  EXPECT_EQ(ex->Stats().num_paused_holding_kv, 1);
  ASSERT_TRUE(ex->Submit(hungry, c.Callback()).ok());
  ASSERT_TRUE(c.WaitFinished(1, absl::Seconds(60)));
  EXPECT_EQ(c.Get("hungry").tokens, expected_hungry);
  EXPECT_EQ(c.Get("hungry").reason, FinishReason::kLength);
  const ExecutorStats s = ex->Stats();
  EXPECT_EQ(s.num_paused, 1);
  EXPECT_EQ(s.num_paused_holding_kv, 0);  // it gave its blocks up
  EXPECT_GE(s.num_preemptions_total, 1);
  EXPECT_EQ(c.Get("paused").tokens.size(), 20u);
  EXPECT_TRUE(ex->Resume("paused"));
  ASSERT_TRUE(c.WaitFinished(2, absl::Seconds(60)));
  EXPECT_EQ(c.Get("paused").tokens, expected_paused);
  EXPECT_EQ(ex->Stats().kv_blocks_used, 0);
}

// A front's bounded buffer driven from two threads: the engine thread pushes outputs and pauses the request
// when the buffer is full; a slow reader pops them and resumes it below half. Every token arrives, in order,
// and the buffer never holds more than its bound.
TEST(ExecutorPauseTest, BoundedBufferWithASlowReaderGetsEveryTokenInOrder) {
  const GenerationRequest r = GreedyRequest("slow", {2, 7, 1, 8, 2, 8}, 80);
  const std::vector<int32_t> expected = Alone(r);
  auto ex = MakeExecutor();
  constexpr size_t kBound = 4;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<GenerationOutput> buffer;
  size_t max_seen = 0;
  bool paused = false;
  Executor* raw = ex.get();
  ASSERT_TRUE(ex->Submit(r, [&](const GenerationOutput& o) {
                  std::lock_guard<std::mutex> lock(mu);
                  buffer.push_back(o);
                  max_seen = std::max(max_seen, buffer.size());
                  if (!o.finished && !paused && buffer.size() >= kBound) {
                    paused = true;
                    raw->Pause(r.id);  // under the buffer's lock: ordered with the reader's Resume
                  }
                  cv.notify_all();
                }).ok());
  std::vector<int32_t> got;
  bool finished = false;
  int resumes = 0;
  bool drain = false;  // the reader reads only once the buffer is full (or the end is in it): slower than the engine
  while (!finished) {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] {
      return !buffer.empty() && (drain || paused || buffer.back().finished);
    }));
    drain = true;
    GenerationOutput o = std::move(buffer.front());
    buffer.pop_front();
    got.insert(got.end(), o.token_ids.begin(), o.token_ids.end());
    finished = o.finished;
    if (paused && buffer.size() <= kBound / 2) {
      paused = false;
      raw->Resume(r.id);
      ++resumes;
      drain = false;  // wait for it to fill again
    }
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(got, expected);
  EXPECT_LE(max_seen, kBound + 1);  // the bound, plus the final output
  EXPECT_GE(resumes, 10);  // 80 outputs, resumed at every second one after the bound of 4
  EXPECT_GT(ex->Stats().pauses_total, 0);
}

}  // namespace
}  // namespace stepserve
