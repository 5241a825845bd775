// The emulation itself (tests/cuda_emulation/cuda_emulation.h): warp collectives, barriers, shared memory,
// atomics and bf16 give CUDA's results, and planted bugs (divergent barriers, collectives naming exited or absent
// lanes, deadlocks) are reported as launch faults instead of hanging.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <c10/util/BFloat16.h>

#include "tests/cuda_emulation/emulation_test_util.h"
// The kernel language (threadIdx, __syncthreads, ...) after every other header.
#include "model/ops/cuda/common.cuh"

namespace stepserve::emulation_test {
namespace {

// The last fault's message mentions `needle`.
::testing::AssertionResult FaultSays(const std::string& needle) {
  const std::string& msg = cuda_emu::LastFaultMessage();
  if (msg.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "fault message \"" << msg << "\" lacks \"" << needle << "\"";
}

// Planted faults print to stderr by default; these tests check the message instead.
class QuietFaults {
 public:
  QuietFaults() : was_(cuda_emu::PrintFaults().exchange(false)) {}
  ~QuietFaults() { cuda_emu::PrintFaults().store(was_); }

 private:
  bool was_;
};

// ---- Kernels with the right results -------------------------------------------------------------------------

__global__ void WarpSumKernel(const float* in, float* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  out[i] = stepserve::cuda::detail::WarpSum(in[i]);
}

__global__ void ShuffleKernel(int* bcast, int* up, int* down, int* xor8, int* width8) {
  const int lane = threadIdx.x & 31;
  const int v = 100 + lane;
  bcast[lane] = __shfl_sync(0xffffffffu, v, 3);
  up[lane] = __shfl_up_sync(0xffffffffu, v, 1);
  down[lane] = __shfl_down_sync(0xffffffffu, v, 2);
  xor8[lane] = __shfl_xor_sync(0xffffffffu, v, 8);
  width8[lane] = __shfl_sync(0xffffffffu, v, 1, 8);  // lane 1 of each group of 8
}

__global__ void BallotKernel(unsigned* ballots, int* popcounts, int* any, int* all) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const unsigned b = __ballot_sync(0xffffffffu, lane % 3 == 0 || warp == 1);
  const int a = __any_sync(0xffffffffu, lane == 7);
  const int l = __all_sync(0xffffffffu, lane < 32);
  if (lane == 0) {
    ballots[warp] = b;
    popcounts[warp] = __popc(b);
    any[warp] = a;
    all[warp] = l;
  }
}

__global__ void HalfWarpKernel(int* out) {
  // Two independent collectives in one warp: lanes 0-15 and 16-31, disjoint masks.
  const int lane = threadIdx.x & 31;
  const unsigned mask = lane < 16 ? 0x0000ffffu : 0xffff0000u;
  int v = lane;
  for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(mask, v, o);
  __syncwarp(mask);
  out[lane] = v;
}

__global__ void AtomicKernel(int* count, float* sum, unsigned* ucount) {
  atomicAdd(count, 1);
  atomicAdd(sum, 0.5f);
  atomicAdd(ucount, 2u);
}

// Reverses each block's slice through shared memory: wrong without a working barrier.
__global__ void ReverseKernel(const int* in, int* out) {
  __shared__ int buf[256];
  const int t = threadIdx.x, n = blockDim.x, base = blockIdx.x * n;
  buf[t] = in[base + t];
  __syncthreads();
  out[base + t] = buf[n - 1 - t];
}

__global__ void BlockSumKernel(const float* in, float* out) {
  __shared__ float scratch[32];
  const float s = stepserve::cuda::detail::BlockSum(in[blockIdx.x * blockDim.x + threadIdx.x], scratch);
  if (threadIdx.x == 0) out[blockIdx.x] = s;
}

__global__ void IndexKernel(int* out) {
  const int tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const int bid = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const int threads = blockDim.x * blockDim.y * blockDim.z;
  out[bid * threads + tid] = bid * 1000 + tid;
}

__global__ void DynamicSharedKernel(float* first_read, float* out) {
  STEPSERVE_DYNAMIC_SHARED(float, smem);
  const int t = threadIdx.x;
  if (t == 0) first_read[blockIdx.x] = smem[5];  // before anything was written in this block
  __syncthreads();
  smem[t] = static_cast<float>(t * 2 + blockIdx.x);
  __syncthreads();
  out[blockIdx.x * blockDim.x + t] = smem[blockDim.x - 1 - t];
}

// ---- Kernels with planted bugs ------------------------------------------------------------------------------

__global__ void DivergentBarrierKernel(int* out) {
  if (threadIdx.x >= 32) return;  // warps 1.. leave; warp 0 waits for them forever on a GPU
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void ShuffleAfterExitKernel(float* out) {
  const int lane = threadIdx.x & 31;
  if (lane == 5) return;
  out[threadIdx.x] = stepserve::cuda::detail::WarpSum(1.0f);  // full mask, lane 5 has exited
}

__global__ void ShuffleNeverReachedKernel(int* out) {
  int v = threadIdx.x;
  if ((threadIdx.x & 31) == 0) v = __shfl_sync(0xffffffffu, v, 1);  // the other lanes never come
  __syncthreads();
  out[threadIdx.x] = v;
}

__global__ void MaskWithoutCallerKernel(int* out) {
  out[threadIdx.x] = __shfl_sync(0x0000fffeu, 1, 1);  // lane 0 is not in its own mask
}

__global__ void MaskNamesMissingLaneKernel(int* out) {
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1, 1);  // launched with 48 threads: warp 1 has 16 lanes
}

__global__ void TwoBarriersKernel(int* out) {
  if (threadIdx.x < 32) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

__global__ void FaultInBlockTwoKernel(int* out) {
  if (blockIdx.x == 2 && threadIdx.x == 0) return;
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = 1;
}

// ---- Tests --------------------------------------------------------------------------------------------------

TEST(CudaEmulationRuntime, WarpSumButterfly) {
  std::vector<float> in(96), out(96, 0.0f);
  for (int i = 0; i < 96; ++i) in[i] = static_cast<float>(i);
  LaunchCheck check;
  ASSERT_EQ(STEPSERVE_LAUNCH(1, 96, 0, nullptr, WarpSumKernel)(in.data(), out.data()), cudaSuccess);
  for (int w = 0; w < 3; ++w) {
    const float expect = static_cast<float>(32 * 32 * w + 31 * 32 / 2);  // sum of 32w .. 32w + 31
    for (int l = 0; l < 32; ++l) EXPECT_EQ(out[w * 32 + l], expect) << "warp " << w << " lane " << l;
  }
  EXPECT_EQ(check.launches(), 1u);
  EXPECT_EQ(check.blocks(), 1u);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST(CudaEmulationRuntime, ShuffleVariants) {
  std::vector<int> bcast(32), up(32), down(32), xor8(32), width8(32);
  ASSERT_EQ(STEPSERVE_LAUNCH(1, 32, 0, nullptr, ShuffleKernel)(bcast.data(), up.data(), down.data(), xor8.data(),
                                                                width8.data()),
            cudaSuccess);
  for (int l = 0; l < 32; ++l) {
    EXPECT_EQ(bcast[l], 103) << l;
    EXPECT_EQ(up[l], l == 0 ? 100 : 100 + l - 1) << l;      // lane 0 keeps its own value
    EXPECT_EQ(down[l], l >= 30 ? 100 + l : 100 + l + 2) << l;  // the last two keep theirs
    EXPECT_EQ(xor8[l], 100 + (l ^ 8)) << l;
    EXPECT_EQ(width8[l], 100 + (l & ~7) + 1) << l;
  }
}

TEST(CudaEmulationRuntime, BallotAnyAllPopc) {
  std::vector<unsigned> ballots(2);
  std::vector<int> pop(2), any(2), all(2);
  ASSERT_EQ(STEPSERVE_LAUNCH(1, 64, 0, nullptr, BallotKernel)(ballots.data(), pop.data(), any.data(), all.data()),
            cudaSuccess);
  unsigned expect = 0;
  for (int l = 0; l < 32; l += 3) expect |= 1u << l;
  EXPECT_EQ(ballots[0], expect);
  EXPECT_EQ(pop[0], 11);
  EXPECT_EQ(ballots[1], 0xffffffffu);
  EXPECT_EQ(pop[1], 32);
  EXPECT_EQ(any[0], 1);
  EXPECT_EQ(all[0], 1);
}

TEST(CudaEmulationRuntime, DisjointHalfWarpMasks) {
  std::vector<int> out(32);
  ASSERT_EQ(STEPSERVE_LAUNCH(1, 32, 0, nullptr, HalfWarpKernel)(out.data()), cudaSuccess);
  for (int l = 0; l < 32; ++l) EXPECT_EQ(out[l], l < 16 ? 120 : 376) << l;  // 0+..+15, 16+..+31
}

TEST(CudaEmulationRuntime, AtomicAddIntFloatUnsigned) {
  int count = 0;
  float sum = 0.0f;
  unsigned ucount = 0;
  ASSERT_EQ(STEPSERVE_LAUNCH(dim3(4, 2), 96, 0, nullptr, AtomicKernel)(&count, &sum, &ucount), cudaSuccess);
  EXPECT_EQ(count, 768);
  EXPECT_EQ(sum, 384.0f);
  EXPECT_EQ(ucount, 1536u);
}

TEST(CudaEmulationRuntime, SyncThreadsOrdersSharedMemory) {
  std::vector<int> in(3 * 256), out(3 * 256, -1);
  for (int i = 0; i < 3 * 256; ++i) in[i] = i * 7;
  ASSERT_EQ(STEPSERVE_LAUNCH(3, 256, 0, nullptr, ReverseKernel)(in.data(), out.data()), cudaSuccess);
  for (int b = 0; b < 3; ++b) {
    for (int t = 0; t < 256; ++t) ASSERT_EQ(out[b * 256 + t], in[b * 256 + 255 - t]) << b << " " << t;
  }
}

TEST(CudaEmulationRuntime, BlockSumOverManyWarps) {
  std::vector<float> in(2 * 512), out(2, 0.0f);
  for (int i = 0; i < 2 * 512; ++i) in[i] = static_cast<float>(i % 512);
  ASSERT_EQ(STEPSERVE_LAUNCH(2, 512, 0, nullptr, BlockSumKernel)(in.data(), out.data()), cudaSuccess);
  EXPECT_EQ(out[0], 511.0f * 512.0f / 2.0f);
  EXPECT_EQ(out[1], 511.0f * 512.0f / 2.0f);
}

TEST(CudaEmulationRuntime, ThreeDimensionalIndices) {
  const dim3 grid(3, 2, 2), block(8, 4, 2);
  const int threads = 64, blocks = 12;
  std::vector<int> out(blocks * threads, -1);
  LaunchCheck check;
  ASSERT_EQ(STEPSERVE_LAUNCH(grid, block, 0, nullptr, IndexKernel)(out.data()), cudaSuccess);
  for (int b = 0; b < blocks; ++b) {
    for (int t = 0; t < threads; ++t) ASSERT_EQ(out[b * threads + t], b * 1000 + t);
  }
  EXPECT_EQ(check.blocks(), 12u);
}

TEST(CudaEmulationRuntime, DynamicSharedMemoryIsPoisonedPerBlock) {
  std::vector<float> first(2, 0.0f), out(2 * 64, 0.0f);
  ASSERT_EQ(STEPSERVE_LAUNCH(2, 64, 64 * sizeof(float), nullptr, DynamicSharedKernel)(first.data(), out.data()),
            cudaSuccess);
  EXPECT_TRUE(std::isnan(first[0]));
  EXPECT_TRUE(std::isnan(first[1]));  // block 0's values do not leak into block 1
  for (int b = 0; b < 2; ++b) {
    for (int t = 0; t < 64; ++t) EXPECT_EQ(out[b * 64 + t], static_cast<float>((63 - t) * 2 + b));
  }
}

TEST(CudaEmulationRuntime, Bf16RoundingIsBitIdenticalToC10) {
  std::vector<float> values = {0.0f, -0.0f, 1.0f, -1.5f, 3.14159265f, 1e-40f, -1e-45f, 65504.0f, 3.4e38f,
                               std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                               std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::max()};
  // Exact ties (round half to even) and values just either side of them.
  for (uint32_t bits : {0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x3f808001u, 0x7f7f8000u, 0x00008000u}) {
    float f;
    std::memcpy(&f, &bits, sizeof(f));
    values.push_back(f);
  }
  uint32_t state = 12345;
  for (int i = 0; i < 20000; ++i) {  // random bit patterns, all exponents
    state = state * 1664525u + 1013904223u;
    float f;
    std::memcpy(&f, &state, sizeof(f));
    values.push_back(f);
  }
  for (float f : values) {
    const __nv_bfloat16 h = __float2bfloat16_rn(f);
    const c10::BFloat16 ref(f);
    ASSERT_EQ(h.__x, ref.x) << f;
    const float back = __bfloat162float(h);
    const float ref_back = static_cast<float>(ref);
    if (std::isnan(ref_back)) {
      EXPECT_TRUE(std::isnan(back));
    } else {
      EXPECT_EQ(back, ref_back);
    }
  }
}

TEST(CudaEmulationRuntime, MemsetAndErrorStrings) {
  std::vector<int32_t> v(16, 7);
  EXPECT_EQ(cudaMemsetAsync(v.data(), 0, sizeof(int32_t) * 16, nullptr), cudaSuccess);
  for (int32_t x : v) EXPECT_EQ(x, 0);
  EXPECT_EQ(cudaMemsetAsync(nullptr, 0, 4, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_STREQ(cudaGetErrorString(cudaSuccess), "no error");
  EXPECT_STREQ(cudaGetErrorName(cudaErrorLaunchFailure), "cudaErrorLaunchFailure");
}

TEST(CudaEmulationRuntime, BadConfigurationIsRejectedWithoutRunning) {
  std::vector<int> out(4096);
  LaunchCheck check;
  EXPECT_EQ(STEPSERVE_LAUNCH(1, 2048, 0, nullptr, IndexKernel)(out.data()), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(STEPSERVE_LAUNCH(0, 32, 0, nullptr, IndexKernel)(out.data()), cudaErrorInvalidConfiguration);
  EXPECT_EQ(STEPSERVE_LAUNCH(1, 32, 64 * 1024, nullptr, IndexKernel)(out.data()), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);  // sticky: the first error until read
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(check.blocks(), 0u);
}

// A fault: the launch returns cudaErrorLaunchFailure, cudaGetLastError reports it once, and the message says what.
void ExpectFault(cudaError_t launch_result, const std::string& needle) {
  EXPECT_EQ(launch_result, cudaErrorLaunchFailure);
  EXPECT_EQ(cudaPeekAtLastError(), cudaErrorLaunchFailure);
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_TRUE(FaultSays(needle));
}

TEST(CudaEmulationRuntime, DivergentSyncThreadsIsAFault) {
  QuietFaults quiet;
  std::vector<int> out(128, 0);
  const uint64_t faults = cuda_emu::GetStats().faults;
  ExpectFault(STEPSERVE_LAUNCH(1, 128, 0, nullptr, DivergentBarrierKernel)(out.data()), "divergent __syncthreads");
  EXPECT_TRUE(FaultSays("DivergentBarrierKernel"));
  EXPECT_TRUE(FaultSays("runtime_test.cc"));
  EXPECT_EQ(cuda_emu::GetStats().faults, faults + 1);
  EXPECT_EQ(out[0], 0);  // nobody got past the barrier
}

TEST(CudaEmulationRuntime, FullMaskShuffleAfterEarlyExitIsAFault) {
  QuietFaults quiet;
  std::vector<float> out(64, 0.0f);
  ExpectFault(STEPSERVE_LAUNCH(1, 64, 0, nullptr, ShuffleAfterExitKernel)(out.data()), "which has exited");
  EXPECT_TRUE(FaultSays("__shfl_xor_sync"));
  EXPECT_TRUE(FaultSays("lane 5"));
}

TEST(CudaEmulationRuntime, CollectiveThatOtherLanesNeverReachIsADeadlock) {
  QuietFaults quiet;
  std::vector<int> out(64, 0);
  ExpectFault(STEPSERVE_LAUNCH(1, 64, 0, nullptr, ShuffleNeverReachedKernel)(out.data()), "deadlock");
  EXPECT_TRUE(FaultSays("__shfl_sync(mask 0xffffffff)"));
  EXPECT_TRUE(FaultSays("__syncthreads"));
}

TEST(CudaEmulationRuntime, MaskProblemsAreFaults) {
  QuietFaults quiet;
  std::vector<int> out(64, 0);
  ExpectFault(STEPSERVE_LAUNCH(1, 32, 0, nullptr, MaskWithoutCallerKernel)(out.data()), "not in its own mask");
  ExpectFault(STEPSERVE_LAUNCH(1, 48, 0, nullptr, MaskNamesMissingLaneKernel)(out.data()), "does not exist");
}

TEST(CudaEmulationRuntime, SyncThreadsAtDifferentSitesIsAFault) {
  QuietFaults quiet;
  std::vector<int> out(64, 0);
  ExpectFault(STEPSERVE_LAUNCH(1, 64, 0, nullptr, TwoBarriersKernel)(out.data()), "different call sites");
}

TEST(CudaEmulationRuntime, FaultStopsTheLaunchAndTheNextLaunchRuns) {
  QuietFaults quiet;
  std::vector<int> out(4 * 64, 0);
  LaunchCheck check;
  ExpectFault(STEPSERVE_LAUNCH(4, 64, 0, nullptr, FaultInBlockTwoKernel)(out.data()), "block (2,0,0)");
  EXPECT_EQ(check.blocks(), 3u);  // blocks 0, 1 and the faulting 2; block 3 never ran
  for (int i = 0; i < 128; ++i) EXPECT_EQ(out[i], 1);
  EXPECT_EQ(out[3 * 64], 0);
  // The abandoned fibers are re-made: a good launch right after works.
  std::vector<float> in(96, 1.0f), sums(96, 0.0f);
  ASSERT_EQ(STEPSERVE_LAUNCH(1, 96, 0, nullptr, WarpSumKernel)(in.data(), sums.data()), cudaSuccess);
  for (float s : sums) EXPECT_EQ(s, 32.0f);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

}  // namespace
}  // namespace stepserve::emulation_test
