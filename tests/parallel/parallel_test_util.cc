#include "tests/parallel/parallel_test_util.h"

#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>

#include "model/loading/weight_sharding.h"
#include "model/loading/presets.h"

namespace stepserve::testing {

void RunGroup(int world, const std::function<void(int, std::shared_ptr<Communicator>)>& fn) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      C10dOptions o;
      o.rank = r;
      o.world_size = world;
      o.timeout = absl::Seconds(60);
      o.gloo_hostname = "127.0.0.1";
      absl::StatusOr<std::shared_ptr<Communicator>> comm = ConnectC10dGroup(store, o);
      ASSERT_TRUE(comm.ok()) << comm.status();
      fn(r, *comm);
    });
  }
  for (std::thread& t : threads) t.join();
}

std::unique_ptr<CausalLM> RankModel(const ModelConfig& config, const ModelWeights& full, const ParallelConfig& parallel,
                                    std::shared_ptr<Communicator> comm) {
  return std::make_unique<CausalLM>(config, ShardWeights(full, config, parallel), at::kCPU,
                                    ParallelContext{parallel, std::move(comm)});
}

ModelConfig HeadPatternConfig() {
  ModelConfig c = *PresetConfig("tiny");
  c.head_dim = 8;
  for (LayerConfig& l : c.layers) {
    const bool full = l.attention_kind == AttentionKind::kFull;
    l.num_heads = full ? 64 : 96;
    l.num_kv_heads = 8;
    l.rotary_dim = full ? 4 : 8;
  }
  c.moe_num_experts = 16;
  c.moe_top_k = 4;
  return c;
}

ModelConfig FewKvHeadsConfig() {
  ModelConfig c = *PresetConfig("tiny");
  for (LayerConfig& l : c.layers) {
    l.num_heads = 4;
    l.num_kv_heads = 2;
  }
  return c;
}

}  // namespace stepserve::testing
