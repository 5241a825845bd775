// Bad numbers validated where the parallel runtime and the engine take them (issue #18): a zero, negative or
// infinite collective timeout (--dist_timeout_s) is refused naming the flag instead of failing later with a
// misleading message; the executor refuses a non-positive heartbeat interval and a negative
// kv_cache_memory_fraction.
#include <gtest/gtest.h>

#include <torch/csrc/distributed/c10d/HashStore.hpp>

#include "engine/executor.h"
#include "parallel/communicator.h"
#include "tests/test_util.h"

namespace stepserve {
namespace {

TEST(DistTimeoutTest, NonPositiveOrInfiniteTimeoutsAreRefusedNamingTheFlag) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  for (absl::Duration bad : {absl::Seconds(-1), absl::ZeroDuration(), absl::InfiniteDuration()}) {
    C10dOptions o;
    o.world_size = 2;
    o.timeout = bad;
    absl::StatusOr<std::shared_ptr<Communicator>> comm = ConnectC10dGroup(store, o);
    ASSERT_FALSE(comm.ok());
    EXPECT_EQ(comm.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(comm.status().message().find("--dist_timeout_s"), std::string::npos) << comm.status();
    absl::StatusOr<c10::intrusive_ptr<c10d::Store>> tcp = ConnectTcpStore("127.0.0.1", 0, true, 2, bad);
    ASSERT_FALSE(tcp.ok());
    EXPECT_EQ(tcp.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(tcp.status().message().find("--dist_timeout_s"), std::string::npos) << tcp.status();
  }
}

TEST(DistTimeoutTest, ExecutorRefusesBadNumbers) {
  ExecutorOptions options;
  options.run_warmup = false;
  options.heartbeat_interval = absl::ZeroDuration();
  EXPECT_EQ(Executor::Create(testing::LoadTinyModel(), options).status().code(), absl::StatusCode::kInvalidArgument);
  options.heartbeat_interval = absl::Seconds(1);
  options.kv_cache_memory_fraction = -0.5;
  absl::StatusOr<std::unique_ptr<Executor>> ex = Executor::Create(testing::LoadTinyModel(), options);
  EXPECT_EQ(ex.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ex.status().message().find("kv_cache_memory_fraction"), std::string::npos) << ex.status();
  options.kv_cache_memory_fraction = 0;
  options.block_size = 0;
  EXPECT_EQ(Executor::Create(testing::LoadTinyModel(), options).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace stepserve
