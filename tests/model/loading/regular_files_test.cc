// Hardening of checkpoint loading (issue #18): only regular files are opened, so a FIFO, a device or a
// directory where config.json, model.safetensors, a shard or the index belongs is a clear error instead of
// a hang; and ModelLoadOptions::load_timeout bounds the whole load, even one that is stuck.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/time/clock.h"
#include "model/loading/checkpoint.h"
#include "model/loading/config.h"
#include "model/loading/safetensors.h"
#include "model/model_loader.h"
#include "tests/test_util.h"

namespace stepserve {
namespace {

namespace fs = std::filesystem;

// Runs `call` on a thread of its own and waits at most 20 s: a call that blocks (the bug: open() of a FIFO
// waits for a writer forever) fails the test instead of hanging it. `fifo`, when given, is opened for
// writing and closed on a timeout, which unblocks the stuck reader so that the test can end.
absl::Status CallWithin(const std::function<absl::Status()>& call, const std::string& fifo = "") {
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    absl::Status status;
  };
  auto state = std::make_shared<State>();
  std::thread worker([state, call] {
    absl::Status s = call();
    std::lock_guard<std::mutex> lock(state->mu);
    state->status = s;
    state->done = true;
    state->cv.notify_all();
  });
  bool finished;
  {
    std::unique_lock<std::mutex> lock(state->mu);
    finished = state->cv.wait_for(lock, std::chrono::seconds(20), [&] { return state->done; });
  }
  if (!finished && !fifo.empty()) {
    const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    if (fd >= 0) ::close(fd);
  }
  worker.join();
  if (!finished) return absl::DeadlineExceededError("the call blocked for 20 s");
  return state->status;
}

std::string CopyOfTiny() {
  const std::string dir = testing::MakeTempDir("regular");
  for (const char* f : {"config.json", "model.safetensors"}) {
    fs::copy_file(testing::TinyCheckpointDir() + "/" + f, dir + "/" + f);
  }
  return dir;
}

void ExpectNotRegular(const absl::Status& s, const std::string& path, const std::string& kind) {
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find(path), std::string::npos) << s;
  EXPECT_NE(s.message().find(kind), std::string::npos) << s;
}

TEST(RegularFilesTest, AFifoConfigIsRefusedNotWaitedFor) {
  const std::string dir = CopyOfTiny();
  const std::string config = dir + "/config.json";
  fs::remove(config);
  ASSERT_EQ(::mkfifo(config.c_str(), 0600), 0);
  ExpectNotRegular(CallWithin([&] { return LoadModelConfigFile(config).status(); }, config), config, "FIFO");
  ExpectNotRegular(CallWithin([&] { return LoadModel(dir, ModelLoadOptions()).status(); }, config), config, "FIFO");
}

TEST(RegularFilesTest, AFifoOrDirectoryOrDeviceAsWeightsIsRefused) {
  const ModelConfig config = *LoadModelConfigFile(testing::TinyCheckpointDir() + "/config.json");
  const std::string dir = CopyOfTiny();
  const std::string weights = dir + "/model.safetensors";
  fs::remove(weights);
  ASSERT_EQ(::mkfifo(weights.c_str(), 0600), 0);
  ExpectNotRegular(CallWithin([&] { return LoadCheckpointWeights(dir, config, at::kFloat).status(); }, weights),
                   weights, "FIFO");
  ExpectNotRegular(CallWithin([&] { return SafetensorsFile::Open(weights).status(); }, weights), weights, "FIFO");
  fs::remove(weights);
  fs::create_directory(weights);
  ExpectNotRegular(LoadCheckpointWeights(dir, config, at::kFloat).status(), weights, "a directory");
  fs::remove(weights);
  fs::create_symlink("/dev/null", weights);  // a character device behind a link
  ExpectNotRegular(LoadCheckpointWeights(dir, config, at::kFloat).status(), weights, "character device");
  // A link to a regular file is fine (a Hugging Face cache links its blobs).
  fs::remove(weights);
  fs::create_symlink(testing::TinyCheckpointDir() + "/model.safetensors", weights);
  EXPECT_TRUE(LoadCheckpointWeights(dir, config, at::kFloat).ok());
}

TEST(RegularFilesTest, AFifoShardOrIndexIsRefused) {
  const ModelConfig config = *LoadModelConfigFile(testing::TinyCheckpointDir() + "/config.json");
  const std::string dir = testing::MakeTempDir("regular-index");
  fs::copy_file(testing::TinyCheckpointDir() + "/config.json", dir + "/config.json");
  const std::string shard = dir + "/model-00001-of-00001.safetensors";
  std::ofstream(dir + "/model.safetensors.index.json")
      << R"({"weight_map": {"model.embed_tokens.weight": "model-00001-of-00001.safetensors"}})";
  ASSERT_EQ(::mkfifo(shard.c_str(), 0600), 0);
  ExpectNotRegular(CallWithin([&] { return LoadCheckpointWeights(dir, config, at::kFloat).status(); }, shard), shard,
                   "FIFO");
  const std::string index = dir + "/model.safetensors.index.json";
  fs::remove(index);
  ASSERT_EQ(::mkfifo(index.c_str(), 0600), 0);
  ExpectNotRegular(CallWithin([&] { return LoadCheckpointWeights(dir, config, at::kFloat).status(); }, index), index,
                   "FIFO");
}

TEST(RegularFilesTest, AConfigDirectoryIsRefused) {
  const std::string dir = CopyOfTiny();
  fs::remove(dir + "/config.json");
  fs::create_directory(dir + "/config.json");
  ExpectNotRegular(LoadModelConfigFile(dir + "/config.json").status(), dir + "/config.json", "a directory");
  EXPECT_EQ(LoadModelConfigFile(dir + "/nothing.json").status().code(), absl::StatusCode::kNotFound);
}

TEST(LoadTimeoutTest, ALoadPastItsTimeoutIsDeadlineExceeded) {
  ModelLoadOptions o;
  o.load_timeout = absl::Nanoseconds(1);
  absl::StatusOr<std::unique_ptr<CausalLM>> model = LoadModel(testing::TinyCheckpointDir(), o);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kDeadlineExceeded) << model.status();
  EXPECT_NE(model.status().message().find("load timeout"), std::string::npos) << model.status();

  o.load_timeout = absl::Seconds(-1);
  EXPECT_EQ(LoadModel("tiny", o).status().code(), absl::StatusCode::kInvalidArgument);
  o.load_timeout = absl::ZeroDuration();
  EXPECT_EQ(LoadModel("tiny", o).status().code(), absl::StatusCode::kInvalidArgument);
  o.load_timeout = absl::Seconds(120);
  model = LoadModel(testing::TinyCheckpointDir(), o);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->config().num_hidden_layers, 5);
}

// A load that is stuck (here: joining a tensor-parallel group that never answers) returns at its timeout;
// the stuck thread finishes on its own once unblocked.
TEST(LoadTimeoutTest, AStuckLoadReturnsAtItsTimeout) {
  struct Gate {
    std::mutex mu;
    std::condition_variable cv;
    bool entered = false, open = false, returned = false;
  };
  auto gate = std::make_shared<Gate>();
  ModelLoadOptions o;
  o.parallel = {2, 0, false};
  o.load_timeout = absl::Seconds(2);
  o.connect_group = [gate]() -> absl::StatusOr<std::shared_ptr<Collectives>> {
    std::unique_lock<std::mutex> lock(gate->mu);
    gate->entered = true;
    gate->cv.wait(lock, [&] { return gate->open; });
    gate->returned = true;
    gate->cv.notify_all();
    return absl::UnavailableError("the group never formed");
  };
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<CausalLM>> model = LoadModel(testing::TinyCheckpointDir(), o);
  const absl::Duration took = absl::Now() - start;
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kDeadlineExceeded) << model.status();
  EXPECT_NE(model.status().message().find(testing::TinyCheckpointDir()), std::string::npos) << model.status();
  EXPECT_GE(took, absl::Seconds(2) - absl::Milliseconds(50));
  EXPECT_LT(took, absl::Seconds(15));
  // Unblock the abandoned load and see it leave.
  std::unique_lock<std::mutex> lock(gate->mu);
  gate->open = true;
  gate->cv.notify_all();
  if (gate->entered) {
    EXPECT_TRUE(gate->cv.wait_for(lock, std::chrono::seconds(20), [&] { return gate->returned; }));
  }
}

}  // namespace
}  // namespace stepserve
