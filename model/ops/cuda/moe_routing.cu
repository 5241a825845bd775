// (d) MoE routing (fp32 scores, top-k on score + bias, unbiased weights) and the expert permutation for
// grouped expert GEMMs, all on the device (no host round trip).
#include <algorithm>

#include "model/ops/cuda/common.cuh"

namespace stepserve::cuda {
namespace detail {
namespace {

constexpr int kMaxExperts = 1024;
constexpr int kPerLane = kMaxExperts / 32;
constexpr int kMaxTopK = 32;
constexpr int kRouteWarps = 4;

// Warp-wide argmax of (value, index): larger value wins, ties go to the lower index.
__device__ __forceinline__ void WarpArgMax(float& v, int& idx) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
    if (ov > v || (ov == v && oi < idx)) {
      v = ov;
      idx = oi;
    }
  }
}

// One warp per token. Expert e lives in lane e % 32, register slot e / 32.
__global__ void MoeRouteKernel(const float* __restrict__ logits, const float* __restrict__ bias, int64_t tokens,
                               int experts, int top_k, bool use_sigmoid, bool normalize, float scaling,
                               int64_t* __restrict__ indices, float* __restrict__ weights) {
  const int lane = threadIdx.x & 31;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kRouteWarps + (threadIdx.x >> 5);
  if (t >= tokens) return;
  const float* row = logits + t * experts;
  const int slots = (experts + 31) / 32;
  float score[kPerLane], choice[kPerLane];
  float mx = -INFINITY;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int e = j * 32 + lane;
    score[j] = (j < slots && e < experts) ? row[e] : -INFINITY;
    mx = fmaxf(mx, score[j]);
  }
  if (use_sigmoid) {
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      if (j * 32 + lane < experts) score[j] = 1.0f / (1.0f + expf(-score[j]));
    }
  } else {
    mx = WarpMax(mx);
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      if (j * 32 + lane < experts) {
        score[j] = expf(score[j] - mx);
        sum += score[j];
      }
    }
    sum = WarpSum(sum);
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      if (j * 32 + lane < experts) score[j] = score[j] / sum;
    }
  }
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int e = j * 32 + lane;
    choice[j] = e < experts ? score[j] + (bias != nullptr ? bias[e] : 0.0f) : -INFINITY;
  }
  float chosen_w[kMaxTopK];
  int chosen_e[kMaxTopK];
  float wsum = 0.0f;
  for (int k = 0; k < top_k; ++k) {
    float best = -INFINITY;
    int best_e = 0x7fffffff;
    float best_s = 0.0f;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int e = j * 32 + lane;
      if (e < experts && (choice[j] > best || (choice[j] == best && e < best_e))) {
        best = choice[j];
        best_e = e;
        best_s = score[j];
      }
    }
    float v = best;
    int idx = best_e;
    WarpArgMax(v, idx);
    // The winning lane removes its expert and shares its unbiased score.
    const int owner = idx & 31;
    const float s = __shfl_sync(0xffffffffu, best_s, owner);
    if (lane == owner) {
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) {
        if (j * 32 + lane == idx) choice[j] = -INFINITY;
      }
    }
    chosen_e[k] = idx;
    chosen_w[k] = s;
    wsum += s;
  }
  if (lane == 0) {
    for (int k = 0; k < top_k; ++k) {
      float w = chosen_w[k];
      if (normalize && top_k > 1) w = w / wsum;
      indices[t * top_k + k] = chosen_e[k];
      weights[t * top_k + k] = w * scaling;
    }
  }
}

// Histogram of the chosen experts.
__global__ void MoeCountKernel(const int64_t* __restrict__ indices, int64_t n, int experts, int32_t* counts) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t e = indices[i];
    if (e >= 0 && e < experts) atomicAdd(&counts[e], 1);
  }
}

// Exclusive prefix sum of the counts (experts <= kMaxExperts), one block of kMaxExperts threads.
__global__ void MoeOffsetsKernel(const int32_t* __restrict__ counts, int experts, int32_t* __restrict__ offsets) {
  __shared__ int32_t buf[kMaxExperts];
  const int i = threadIdx.x;
  buf[i] = i < experts ? counts[i] : 0;
  BlockInclusiveScan<kMaxExperts>(buf);
  if (i < experts) offsets[i + 1] = buf[i];
  if (i == 0) offsets[0] = 0;
}

// One block per expert scans the flat choices in order and compacts its own, so the permutation is
// deterministic (ascending flat index within each expert). O(experts * n) reads, all from L2.
constexpr int kScatterThreads = 256;
__global__ void MoeScatterKernel(const int64_t* __restrict__ indices, const float* __restrict__ route_weights,
                                 int64_t n, int top_k, const int32_t* __restrict__ offsets,
                                 int32_t* __restrict__ sorted_token, int32_t* __restrict__ sorted_slot,
                                 float* __restrict__ sorted_weight) {
  __shared__ int32_t warp_counts[kScatterThreads / 32];
  const int e = blockIdx.x;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int32_t base = offsets[e];
  const int32_t end = offsets[e + 1];
  for (int64_t start = 0; start < n && base < end; start += kScatterThreads) {
    const int64_t i = start + threadIdx.x;
    const bool mine = i < n && indices[i] == e;
    const unsigned ballot = __ballot_sync(0xffffffffu, mine);
    if (lane == 0) warp_counts[warp] = __popc(ballot);
    __syncthreads();
    int32_t before = 0, total = 0;
#pragma unroll
    for (int w = 0; w < kScatterThreads / 32; ++w) {
      before += w < warp ? warp_counts[w] : 0;
      total += warp_counts[w];
    }
    if (mine) {
      const int32_t p = base + before + __popc(ballot & ((1u << lane) - 1u));
      sorted_token[p] = static_cast<int32_t>(i / top_k);
      sorted_slot[p] = static_cast<int32_t>(i);
      if (sorted_weight != nullptr) sorted_weight[p] = route_weights[i];
    }
    base += total;
    __syncthreads();  // warp_counts is rewritten next round
  }
}

}  // namespace
}  // namespace detail

cudaError_t LaunchMoeRoute(const float* logits, const float* bias, int64_t tokens, int experts, int top_k,
                           bool sigmoid, bool normalize, float scaling, int64_t* indices, float* weights,
                           cudaStream_t stream) {
  if (tokens < 0 || experts <= 0 || experts > detail::kMaxExperts || top_k < 1 || top_k > experts ||
      top_k > detail::kMaxTopK) {
    return cudaErrorInvalidValue;
  }
  if (tokens == 0) return cudaSuccess;
  const int64_t blocks = (tokens + detail::kRouteWarps - 1) / detail::kRouteWarps;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  STEPSERVE_LAUNCH(static_cast<unsigned>(blocks), detail::kRouteWarps * 32, 0, stream, detail::MoeRouteKernel)(
      logits, bias, tokens, experts, top_k, sigmoid, normalize, scaling, indices, weights);
  return detail::LastLaunchError();
}

cudaError_t LaunchMoePermute(const int64_t* indices, const float* route_weights, int64_t tokens, int top_k,
                             int experts, int32_t* counts, int32_t* offsets, int32_t* sorted_token,
                             int32_t* sorted_slot, float* sorted_weight, cudaStream_t stream) {
  const int64_t n = tokens * top_k;
  if (tokens < 0 || top_k < 1 || experts <= 0 || experts > detail::kMaxExperts || n > 0x7fffffff ||
      (sorted_weight != nullptr && route_weights == nullptr)) {
    return cudaErrorInvalidValue;
  }
  cudaError_t err = cudaMemsetAsync(counts, 0, sizeof(int32_t) * experts, stream);
  if (err != cudaSuccess) return err;
  if (n > 0) {
    const int64_t blocks = std::min<int64_t>((n + 255) / 256, 1024);
    STEPSERVE_LAUNCH(static_cast<unsigned>(blocks), 256, 0, stream, detail::MoeCountKernel)(indices, n, experts,
                                                                                           counts);
  }
  STEPSERVE_LAUNCH(1, detail::kMaxExperts, 0, stream, detail::MoeOffsetsKernel)(counts, experts, offsets);
  if (n > 0) {
    STEPSERVE_LAUNCH(experts, detail::kScatterThreads, 0, stream, detail::MoeScatterKernel)(
        indices, route_weights, n, top_k, offsets, sorted_token, sorted_slot, sorted_weight);
  }
  return detail::LastLaunchError();
}

}  // namespace stepserve::cuda
