// (a) RMSNorm(+1) with an optional fused residual add. One block per row; fp32 math; VEC-wide loads.
#include "model/ops/cuda/common.cuh"

namespace stepserve::cuda {
namespace detail {
namespace {

template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

template <typename T, typename W, int VEC>
__global__ void AddRmsNormKernel(const T* __restrict__ x, T* __restrict__ residual, const W* __restrict__ weight,
                                 T* __restrict__ out, int64_t hidden, float eps) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const int64_t nvec = hidden / VEC;
  T* res_row = residual + row * hidden;
  const T* x_row = x != nullptr ? x + row * hidden : nullptr;
  float sumsq = 0.0f;
  for (int64_t i = threadIdx.x; i < nvec; i += blockDim.x) {
    Pack<T, VEC> r = reinterpret_cast<const Pack<T, VEC>*>(res_row)[i];
    if (x_row != nullptr) {
      const Pack<T, VEC> a = reinterpret_cast<const Pack<T, VEC>*>(x_row)[i];
#pragma unroll
      for (int j = 0; j < VEC; ++j) r.v[j] = FromFloat<T>(ToFloat<T>(r.v[j]) + ToFloat<T>(a.v[j]));
      reinterpret_cast<Pack<T, VEC>*>(res_row)[i] = r;
    }
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float f = ToFloat<T>(r.v[j]);
      sumsq += f * f;
    }
  }
  const float inv = rsqrtf(BlockSum(sumsq, scratch) / static_cast<float>(hidden) + eps);
  // Each thread re-reads the elements it wrote above (same indices), so no barrier is needed for them.
  for (int64_t i = threadIdx.x; i < nvec; i += blockDim.x) {
    const Pack<T, VEC> r = reinterpret_cast<const Pack<T, VEC>*>(res_row)[i];
    Pack<T, VEC> o;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float w = static_cast<float>(ToFloat<W>(weight[i * VEC + j])) + 1.0f;
      o.v[j] = FromFloat<T>(ToFloat<T>(r.v[j]) * inv * w);
    }
    reinterpret_cast<Pack<T, VEC>*>(out + row * hidden)[i] = o;
  }
}

bool Aligned(const void* p, int bytes) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % bytes == 0; }

template <typename T, typename W>
cudaError_t Launch(const void* x, void* residual, const void* weight, void* out, int64_t rows, int64_t hidden,
                   float eps, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  constexpr int kVec = 16 / sizeof(T);
  const int threads = hidden >= 4096 ? 512 : (hidden >= 1024 ? 256 : 128);
  const dim3 grid(static_cast<unsigned>(rows));
  const bool vec = hidden % kVec == 0 && Aligned(x, 16) && Aligned(residual, 16) && Aligned(out, 16);
  if (vec) {
    STEPSERVE_LAUNCH(grid, threads, 0, stream, AddRmsNormKernel<T, W, kVec>)(
        static_cast<const T*>(x), static_cast<T*>(residual), static_cast<const W*>(weight), static_cast<T*>(out),
        hidden, eps);
  } else {
    STEPSERVE_LAUNCH(grid, threads, 0, stream, AddRmsNormKernel<T, W, 1>)(
        static_cast<const T*>(x), static_cast<T*>(residual), static_cast<const W*>(weight), static_cast<T*>(out),
        hidden, eps);
  }
  return LastLaunchError();
}

}  // namespace
}  // namespace detail

cudaError_t LaunchAddRmsNorm(DType dtype, DType weight_dtype, const void* x, void* residual, const void* weight,
                             void* out, int64_t rows, int64_t hidden, float eps, cudaStream_t stream) {
  if (rows < 0 || hidden <= 0 || rows > 0x7fffffff || residual == nullptr || weight == nullptr || out == nullptr) {
    return cudaErrorInvalidValue;
  }
  STEPSERVE_DISPATCH_TW(dtype, weight_dtype, detail::Launch, x, residual, weight, out, rows, hidden, eps, stream);
}

}  // namespace stepserve::cuda
