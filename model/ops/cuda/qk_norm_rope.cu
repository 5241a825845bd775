// (b) Per-head Q/K RMSNorm(+1) fused with partial rotary (rotate-half), in place. One warp per head vector.
#include "model/ops/cuda/common.cuh"

namespace stepserve::cuda {
namespace detail {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kMaxHeadDim = 512;

template <typename T, typename W>
__global__ void QkNormRopeKernel(T* __restrict__ q, int64_t q_stride, T* __restrict__ k, int64_t k_stride,
                                 const W* __restrict__ q_weight, const W* __restrict__ k_weight,
                                 const int64_t* __restrict__ positions, const float* __restrict__ inv_freq,
                                 int64_t tokens, int q_heads, int k_heads, int head_dim, int rotary_dim, float eps) {
  STEPSERVE_DYNAMIC_SHARED(float, smem);  // [kWarpsPerBlock][head_dim]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float* buf = smem + warp * head_dim;
  const int heads = q_heads + k_heads;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  if (item >= tokens * heads) return;  // whole warp leaves together
  const int64_t t = item / heads;
  const int h = static_cast<int>(item % heads);
  const bool is_q = h < q_heads;
  T* vec = is_q ? q + t * q_stride + static_cast<int64_t>(h) * head_dim
                : k + t * k_stride + static_cast<int64_t>(h - q_heads) * head_dim;
  const W* weight = is_q ? q_weight : k_weight;

  float sumsq = 0.0f;
  for (int i = lane; i < head_dim; i += 32) {
    const float f = ToFloat<T>(vec[i]);
    buf[i] = f;
    sumsq += f * f;
  }
  const float inv = rsqrtf(WarpSum(sumsq) / static_cast<float>(head_dim) + eps);
  // The CPU op materialises the normalised head in the storage dtype before the rotation: round here too.
  for (int i = lane; i < head_dim; i += 32) buf[i] = RoundTo<T>(buf[i] * inv * (ToFloat<W>(weight[i]) + 1.0f));
  __syncwarp();
  const int half = rotary_dim / 2;
  // positions may be null when rotary_dim == 0 (the wrapper passes nullptr then): read it only for a rotation.
  const float pos = rotary_dim > 0 ? static_cast<float>(positions[t]) : 0.0f;
  for (int i = lane; i < head_dim; i += 32) {
    float o = buf[i];
    if (i < rotary_dim) {
      const int f = i < half ? i : i - half;
      const float angle = pos * inv_freq[f];
      const float c = cosf(angle), s = sinf(angle);
      o = i < half ? buf[i] * c - buf[i + half] * s : buf[i] * c + buf[i - half] * s;
    }
    vec[i] = FromFloat<T>(o);
  }
}

template <typename T, typename W>
cudaError_t Launch(void* q, int64_t q_stride, void* k, int64_t k_stride, const void* q_weight, const void* k_weight,
                   const int64_t* positions, const float* inv_freq, int64_t tokens, int q_heads, int k_heads,
                   int head_dim, int rotary_dim, float eps, cudaStream_t stream) {
  const int64_t items = tokens * (q_heads + k_heads);
  if (items == 0) return cudaSuccess;
  const int64_t blocks = (items + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  const size_t smem = sizeof(float) * kWarpsPerBlock * head_dim;
  STEPSERVE_LAUNCH(static_cast<unsigned>(blocks), kWarpsPerBlock * 32, smem, stream, QkNormRopeKernel<T, W>)(
      static_cast<T*>(q), q_stride, static_cast<T*>(k), k_stride, static_cast<const W*>(q_weight),
      static_cast<const W*>(k_weight), positions, inv_freq, tokens, q_heads, k_heads, head_dim, rotary_dim, eps);
  return LastLaunchError();
}

}  // namespace
}  // namespace detail

cudaError_t LaunchQkNormRope(DType dtype, DType weight_dtype, void* q, int64_t q_stride, void* k, int64_t k_stride,
                             const void* q_weight, const void* k_weight, const int64_t* positions,
                             const float* inv_freq, int64_t tokens, int q_heads, int k_heads, int head_dim,
                             int rotary_dim, float eps, cudaStream_t stream) {
  if (tokens < 0 || q_heads < 0 || k_heads < 0 || head_dim <= 0 || head_dim % 2 != 0 ||
      head_dim > detail::kMaxHeadDim || rotary_dim < 0 || rotary_dim % 2 != 0 || rotary_dim > head_dim ||
      (q_heads > 0 && (q == nullptr || q_weight == nullptr)) ||
      (k_heads > 0 && (k == nullptr || k_weight == nullptr)) ||
      (rotary_dim > 0 && (positions == nullptr || inv_freq == nullptr))) {
    return cudaErrorInvalidValue;
  }
  STEPSERVE_DISPATCH_TW(dtype, weight_dtype, detail::Launch, q, q_stride, k, k_stride, q_weight, k_weight, positions,
                        inv_freq, tokens, q_heads, k_heads, head_dim, rotary_dim, eps, stream);
}

}  // namespace stepserve::cuda
