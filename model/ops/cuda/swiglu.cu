// (c) Clamped SwiGLU over the packed [gate | up] projection output. Grid-stride, one element per thread step.
#include <algorithm>

#include "model/ops/cuda/common.cuh"

namespace stepserve::cuda {
namespace detail {
namespace {

template <typename T>
__global__ void ClampedSwiGluKernel(const T* __restrict__ gate_up, T* __restrict__ out, int64_t rows, int64_t inter,
                                    float limit) {
  const int64_t n = rows * inter;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / inter, c = i - r * inter;
    const float g = ToFloat<T>(gate_up[r * 2 * inter + c]);
    float u = ToFloat<T>(gate_up[r * 2 * inter + inter + c]);
    // Rounding points follow the CPU op: silu(gate) is materialised in T, then clamped, then multiplied.
    float s = RoundTo<T>(g / (1.0f + expf(-g)));
    if (limit > 0.0f) {
      s = fminf(s, limit);
      u = fminf(fmaxf(u, -limit), limit);
    }
    out[i] = FromFloat<T>(RoundTo<T>(s) * RoundTo<T>(u));
  }
}

template <typename T>
cudaError_t Launch(const void* gate_up, void* out, int64_t rows, int64_t inter, float limit, cudaStream_t stream) {
  const int64_t n = rows * inter;
  if (n == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 132 * 32);
  STEPSERVE_LAUNCH(static_cast<unsigned>(blocks), kThreads, 0, stream, ClampedSwiGluKernel<T>)(
      static_cast<const T*>(gate_up), static_cast<T*>(out), rows, inter, limit);
  return LastLaunchError();
}

}  // namespace
}  // namespace detail

cudaError_t LaunchClampedSwiGlu(DType dtype, const void* gate_up, void* out, int64_t rows, int64_t inter,
                                float limit, cudaStream_t stream) {
  if (rows < 0 || inter < 0 || (rows * inter > 0 && (gate_up == nullptr || out == nullptr))) {
    return cudaErrorInvalidValue;
  }
  STEPSERVE_DISPATCH_T(dtype, detail::Launch, gate_up, out, rows, inter, limit, stream);
}

}  // namespace stepserve::cuda
