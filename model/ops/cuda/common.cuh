// Device helpers shared by the Step3p5 kernels (included by the .cu files only).
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "model/ops/cuda/launchers.h"

// Kernel launches and dynamic shared memory go through these macros, so the .cu files also compile as host C++
// against the CPU emulation of the CUDA execution model (tests/cuda_emulation, STEPSERVE_CUDA_EMULATION), where
// `kernel<<<...>>>` and `extern __shared__` do not exist. The kernel is the variadic tail because template
// arguments contain commas:
//   STEPSERVE_LAUNCH(grid, block, smem_bytes, stream, MyKernel<T, W>)(args...);
//   STEPSERVE_DYNAMIC_SHARED(float, smem);  // inside the kernel: float smem[] of the launch's smem_bytes
#if defined(STEPSERVE_CUDA_EMULATION)
#define STEPSERVE_LAUNCH(grid, block, smem, stream, ...) \
  ::cuda_emu::MakeLaunch(&__VA_ARGS__, (grid), (block), (smem), (stream), #__VA_ARGS__, __FILE__, __LINE__)
#define STEPSERVE_DYNAMIC_SHARED(type, name) type* const name = ::cuda_emu::DynamicShared<type>()
#else
#define STEPSERVE_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<(grid), (block), (smem), (stream)>>>
#define STEPSERVE_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

namespace stepserve::cuda::detail {

using bf16 = __nv_bfloat16;

template <typename T> __device__ __forceinline__ float ToFloat(T v);
template <> __device__ __forceinline__ float ToFloat<float>(float v) { return v; }
template <> __device__ __forceinline__ float ToFloat<bf16>(bf16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T FromFloat(float v);
template <> __device__ __forceinline__ float FromFloat<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16 FromFloat<bf16>(float v) { return __float2bfloat16_rn(v); }

// Rounds v to T's precision and back (what a CPU op that materialises a T intermediate does).
template <typename T> __device__ __forceinline__ float RoundTo(float v) { return ToFloat<T>(FromFloat<T>(v)); }

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block; every thread gets the result. `scratch` holds >= 32 floats. blockDim.x % 32 == 0.
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = WarpSum(v);
  __syncthreads();  // scratch may be in use by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.0f;
  return WarpSum(v);
}

// In-place inclusive prefix sum of buf[0..N), run by a block of exactly N threads (thread i owns buf[i],
// which it has written before the call). Hillis-Steele: log2(N) rounds, a barrier around each.
template <int N>
__device__ __forceinline__ void BlockInclusiveScan(int32_t* buf) {
  const int i = threadIdx.x;
  __syncthreads();
  for (int o = 1; o < N; o <<= 1) {
    const int32_t add = i >= o ? buf[i - o] : 0;
    __syncthreads();
    buf[i] += add;
    __syncthreads();
  }
}

inline cudaError_t LastLaunchError() { return cudaGetLastError(); }

}  // namespace stepserve::cuda::detail

// Instantiates `FN<T, W>(args...)` for the storage dtype and the weight dtype (fp32 or the storage dtype).
#define STEPSERVE_DISPATCH_TW(dtype, wdtype, FN, ...)                                                 \
  do {                                                                                                \
    using ::stepserve::cuda::DType;                                                                   \
    using ::stepserve::cuda::detail::bf16;                                                            \
    if ((dtype) == DType::kFloat32 && (wdtype) == DType::kFloat32) return FN<float, float>(__VA_ARGS__); \
    if ((dtype) == DType::kBFloat16 && (wdtype) == DType::kBFloat16) return FN<bf16, bf16>(__VA_ARGS__); \
    if ((dtype) == DType::kBFloat16 && (wdtype) == DType::kFloat32) return FN<bf16, float>(__VA_ARGS__); \
    return cudaErrorInvalidValue;                                                                     \
  } while (0)

#define STEPSERVE_DISPATCH_T(dtype, FN, ...)                                                          \
  do {                                                                                                \
    using ::stepserve::cuda::DType;                                                                   \
    using ::stepserve::cuda::detail::bf16;                                                            \
    if ((dtype) == DType::kFloat32) return FN<float>(__VA_ARGS__);                                    \
    if ((dtype) == DType::kBFloat16) return FN<bf16>(__VA_ARGS__);                                    \
    return cudaErrorInvalidValue;                                                                     \
  } while (0)
