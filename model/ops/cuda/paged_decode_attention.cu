// (e) Paged decode attention: one query token per sequence, keys read through block tables (or slot lists)
// from pools [slots, kv_heads, head_dim], GQA (one block serves up to kMaxGroup query heads of one KV head,
// so each K/V row is read once for all of them), sliding-window mask, the head-wise sigmoid gate fused into
// the epilogue, and split-K over long contexts (flash-decoding) with a reduction kernel. fp32 math.
// Masked keys (after the query, outside the window, in a block whose id is < 0) are never read; the score pass
// stages each tile's V row pointers in shared memory for the P.V pass.
#include <algorithm>

#include "model/ops/cuda/common.cuh"

namespace stepserve::cuda {
namespace detail {
namespace {

constexpr int kThreads = 128;            // 4 warps
constexpr int kWarps = kThreads / 32;
constexpr int kMaxGroup = 16;            // query heads per block
constexpr int kMaxHeadDim = 256;
constexpr int kMaxCh = kMaxHeadDim / kThreads;  // channels per thread in the P.V product
constexpr int kMaxLaneCh = kMaxHeadDim / 32;     // channels per lane in the Q.K product
constexpr int kTile = 64;                // keys per tile (online softmax across tiles)
constexpr int kMinKeysPerSplit = 256;
constexpr int kMaxSplits = 64;

// The K and V rows of one key for one KV head; both null when the key is masked.
template <typename T>
struct KeyRows {
  const T* k;
  const T* v;
};

// Per-block constants of one sequence.
struct SeqView {
  int s, kvh, row, qpos, first, cached;
};

// Key j of the sequence (j < cached: the cached key at position first + j; j == cached: this step's own key).
// Masked keys are never dereferenced, nor (outside the window) their block-table entries: a key after the query,
// before the window, past the block table, in a block whose id is < 0 (a sliding block already returned to the
// pool) or at a negative slot (slot-list mode) gives null rows.
template <typename T>
__device__ __forceinline__ KeyRows<T> VisibleKey(const PagedDecodeParams& p, const SeqView& sv, int j) {
  const int64_t row_elems = static_cast<int64_t>(p.kv_heads) * p.head_dim;
  const int64_t head_off = static_cast<int64_t>(sv.kvh) * p.head_dim;
  if (j == sv.cached) {  // this step's own key
    const int64_t off = static_cast<int64_t>(sv.row) * row_elems + head_off;
    return {static_cast<const T*>(p.k_new) + off, static_cast<const T*>(p.v_new) + off};
  }
  const int pos = sv.first + j;
  if (pos < 0 || pos > sv.qpos || (p.window > 0 && sv.qpos - pos >= p.window)) return {nullptr, nullptr};
  int64_t slot;
  if (p.block_tables != nullptr) {
    const int logical = pos / p.block_size;
    if (logical >= p.max_blocks) return {nullptr, nullptr};
    const int32_t block = p.block_tables[static_cast<int64_t>(sv.s) * p.max_blocks + logical];
    if (block < 0) return {nullptr, nullptr};
    slot = static_cast<int64_t>(block) * p.block_size + pos % p.block_size;
  } else {
    slot = p.slots[p.slot_begin[sv.s] + j];
    if (slot < 0) return {nullptr, nullptr};
  }
  const int64_t off = slot * row_elems + head_off;
  return {static_cast<const T*>(p.k_pool) + off, static_cast<const T*>(p.v_pool) + off};
}

__device__ __forceinline__ float GateValue(const PagedDecodeParams& p, int row, int h) {
  const int64_t i = static_cast<int64_t>(row) * p.gate_stride + h;
  const float g = p.gate_dtype == DType::kBFloat16 ? ToFloat<bf16>(static_cast<const bf16*>(p.gate)[i])
                                                   : static_cast<const float*>(p.gate)[i];
  return 1.0f / (1.0f + expf(-g));
}

// Grid: x = sequence, y = kv head * head groups, z = split.
template <typename T>
__global__ void __launch_bounds__(kThreads) PagedDecodeKernel(const PagedDecodeParams p, int splits, int head_groups) {
  __shared__ float q_s[kMaxGroup][kMaxHeadDim];
  __shared__ float p_s[kMaxGroup][kTile];
  __shared__ float m_s[kMaxGroup], l_s[kMaxGroup], alpha_s[kMaxGroup];
  // V rows of the tile's keys, staged by the score pass for the P.V pass (null: masked, probability 0).
  __shared__ const T* v_rows[kTile];

  const int s = blockIdx.x;
  const int kvh = blockIdx.y / head_groups;
  const int group = p.q_heads / p.kv_heads;
  const int g0 = (blockIdx.y % head_groups) * kMaxGroup;
  const int ng = min(kMaxGroup, group - g0);
  const int h0 = kvh * group + g0;  // first query head of this block
  const int split = blockIdx.z;
  const int d = p.head_dim;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  const int row = p.q_row[s];
  const int qpos = p.q_pos[s];
  const SeqView sv{s, kvh, row, qpos, p.first_pos[s], p.num_cached[s]};
  // Keys j in [jlo, cached]: those before the window are not even visited, so the splits share the visible ones.
  const int jlo = p.window > 0 ? min(sv.cached, max(0, qpos - p.window + 1 - sv.first)) : 0;
  const int total = sv.cached + 1 - jlo;
  const int per_split = (total + splits - 1) / splits;
  const int kbeg = jlo + min(total, split * per_split);
  const int kend = jlo + min(total, split * per_split + per_split);

  const T* q = static_cast<const T*>(p.q) + (static_cast<int64_t>(row) * p.q_heads + h0) * d;
  for (int i = tid; i < ng * d; i += kThreads) q_s[i / d][i % d] = ToFloat<T>(q[i]);
  if (tid < kMaxGroup) {
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.0f;
  }
  float acc[kMaxGroup][kMaxCh];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
#pragma unroll
    for (int c = 0; c < kMaxCh; ++c) acc[g][c] = 0.0f;
  }
  __syncthreads();

  for (int t0 = kbeg; t0 < kend; t0 += kTile) {
    const int tn = min(kTile, kend - t0);
    // Scores: a warp per key, lanes across channels. The key's address is computed once, here.
    for (int jj = warp; jj < tn; jj += kWarps) {
      const KeyRows<T> key = VisibleKey<T>(p, sv, t0 + jj);  // the same in every lane of the warp
      if (lane == 0) v_rows[jj] = key.v;
      if (key.k == nullptr) {
        for (int g = lane; g < ng; g += 32) p_s[g][jj] = -INFINITY;
        continue;
      }
      float kv[kMaxLaneCh];
#pragma unroll
      for (int i = 0; i < kMaxLaneCh; ++i) {
        const int c = lane + 32 * i;
        kv[i] = c < d ? ToFloat<T>(key.k[c]) : 0.0f;
      }
      for (int g = 0; g < ng; ++g) {
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < kMaxLaneCh; ++i) {
          const int c = lane + 32 * i;
          if (c < d) dot += q_s[g][c] * kv[i];
        }
        dot = WarpSum(dot);
        if (lane == 0) p_s[g][jj] = dot * p.scale;
      }
    }
    __syncthreads();
    // Online softmax: a warp per head, lanes across the tile.
    for (int g = warp; g < ng; g += kWarps) {
      float mx = -INFINITY;
      for (int jj = lane; jj < tn; jj += 32) mx = fmaxf(mx, p_s[g][jj]);
      mx = WarpMax(mx);
      const float m_old = m_s[g];
      const float m_new = fmaxf(m_old, mx);
      float sum = 0.0f;
      for (int jj = lane; jj < tn; jj += 32) {
        const float e = m_new == -INFINITY ? 0.0f : expf(p_s[g][jj] - m_new);
        p_s[g][jj] = e;
        sum += e;
      }
      sum = WarpSum(sum);
      if (lane == 0) {
        const float alpha = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
        alpha_s[g] = alpha;
        l_s[g] = l_s[g] * alpha + sum;
        m_s[g] = m_new;
      }
    }
    __syncthreads();
    // P.V: threads across channels, looping over the tile's keys.
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g < ng) {
        const float a = alpha_s[g];
#pragma unroll
        for (int c = 0; c < kMaxCh; ++c) acc[g][c] *= a;
      }
    }
    for (int jj = 0; jj < tn; ++jj) {
      const T* vr = v_rows[jj];  // staged by the score pass (the barriers above order it)
      if (vr == nullptr) continue;  // masked: probability 0, never read
      float vv[kMaxCh];
#pragma unroll
      for (int c = 0; c < kMaxCh; ++c) {
        const int ch = tid + kThreads * c;
        vv[c] = ch < d ? ToFloat<T>(vr[ch]) : 0.0f;
      }
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) {
        if (g < ng) {
          const float pr = p_s[g][jj];
#pragma unroll
          for (int c = 0; c < kMaxCh; ++c) acc[g][c] += pr * vv[c];
        }
      }
    }
    __syncthreads();  // p_s, alpha_s and v_rows are rewritten by the next tile
  }

  if (splits == 1) {
    T* out = static_cast<T*>(p.out) + (static_cast<int64_t>(row) * p.q_heads + h0) * d;
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g >= ng) continue;
      const float inv_l = l_s[g] > 0.0f ? 1.0f / l_s[g] : 0.0f;
      const float gate = p.gate != nullptr ? GateValue(p, row, h0 + g) : 1.0f;
#pragma unroll
      for (int c = 0; c < kMaxCh; ++c) {
        const int ch = tid + kThreads * c;
        if (ch >= d) continue;
        float o = acc[g][c] * inv_l;
        if (p.gate != nullptr) o = RoundTo<T>(o) * gate;  // the CPU path rounds before gating
        out[static_cast<int64_t>(g) * d + ch] = FromFloat<T>(o);
      }
    }
  } else {
    // Partials: o [seq][head][split][d] (unnormalised), then m and l [seq][head][split].
    const int64_t heads_total = static_cast<int64_t>(p.num_seqs) * p.q_heads;
    float* o_part = p.workspace;
    float* m_part = o_part + heads_total * splits * d;
    float* l_part = m_part + heads_total * splits;
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g >= ng) continue;
      const int64_t hs = (static_cast<int64_t>(s) * p.q_heads + h0 + g) * splits + split;
#pragma unroll
      for (int c = 0; c < kMaxCh; ++c) {
        const int ch = tid + kThreads * c;
        if (ch < d) o_part[hs * d + ch] = acc[g][c];
      }
      if (tid == 0) {
        m_part[hs] = m_s[g];
        l_part[hs] = l_s[g];
      }
    }
  }
}

// Grid: x = sequence, y = query head. Combines the splits and applies the gate.
template <typename T>
__global__ void __launch_bounds__(kThreads) PagedDecodeReduceKernel(const PagedDecodeParams p, int splits) {
  const int s = blockIdx.x, h = blockIdx.y, d = p.head_dim;
  const int64_t heads_total = static_cast<int64_t>(p.num_seqs) * p.q_heads;
  const float* o_part = p.workspace;
  const float* m_part = o_part + heads_total * splits * d;
  const float* l_part = m_part + heads_total * splits;
  const int64_t base = (static_cast<int64_t>(s) * p.q_heads + h) * splits;
  float m = -INFINITY;
  for (int i = 0; i < splits; ++i) m = fmaxf(m, m_part[base + i]);
  float l = 0.0f;
  for (int i = 0; i < splits; ++i) {
    if (m_part[base + i] != -INFINITY) l += expf(m_part[base + i] - m) * l_part[base + i];
  }
  const float inv_l = l > 0.0f ? 1.0f / l : 0.0f;
  const int row = p.q_row[s];
  const float gate = p.gate != nullptr ? GateValue(p, row, h) : 1.0f;
  T* out = static_cast<T*>(p.out) + (static_cast<int64_t>(row) * p.q_heads + h) * d;
  for (int c = threadIdx.x; c < d; c += kThreads) {
    float o = 0.0f;
    for (int i = 0; i < splits; ++i) {
      const float mi = m_part[base + i];
      if (mi != -INFINITY) o += expf(mi - m) * o_part[(base + i) * d + c];
    }
    o *= inv_l;
    if (p.gate != nullptr) o = RoundTo<T>(o) * gate;
    out[c] = FromFloat<T>(o);
  }
}

int HeadGroups(const PagedDecodeParams& p) {
  const int group = p.q_heads / p.kv_heads;
  return (group + kMaxGroup - 1) / kMaxGroup;
}

template <typename T>
cudaError_t Launch(const PagedDecodeParams& p, int splits, cudaStream_t stream) {
  const int head_groups = HeadGroups(p);
  const dim3 grid(p.num_seqs, p.kv_heads * head_groups, splits);
  STEPSERVE_LAUNCH(grid, kThreads, 0, stream, PagedDecodeKernel<T>)(p, splits, head_groups);
  if (splits > 1) {
    STEPSERVE_LAUNCH(dim3(p.num_seqs, p.q_heads), kThreads, 0, stream, PagedDecodeReduceKernel<T>)(p, splits);
  }
  return LastLaunchError();
}

}  // namespace
}  // namespace detail

int PagedDecodeNumSplits(const PagedDecodeParams& p) {
  if (p.num_splits > 0) return std::min(p.num_splits, detail::kMaxSplits);
  if (p.kv_heads <= 0 || p.num_seqs <= 0) return 1;
  const int64_t blocks = static_cast<int64_t>(p.num_seqs) * p.kv_heads * detail::HeadGroups(p);
  const int64_t want = (2LL * std::max(p.num_sms, 1) + blocks - 1) / blocks;
  const int64_t by_length = std::max<int64_t>(1, p.max_keys / detail::kMinKeysPerSplit);
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({want, by_length, detail::kMaxSplits})));
}

int64_t PagedDecodeWorkspaceFloats(const PagedDecodeParams& p, int splits) {
  if (splits <= 1) return 0;
  return static_cast<int64_t>(p.num_seqs) * p.q_heads * splits * (p.head_dim + 2);
}

cudaError_t LaunchPagedDecodeAttention(const PagedDecodeParams& p, cudaStream_t stream) {
  if (p.num_seqs < 0 || p.kv_heads <= 0 || p.q_heads <= 0 || p.q_heads % p.kv_heads != 0 || p.head_dim <= 0 ||
      p.head_dim > detail::kMaxHeadDim ||
      static_cast<int64_t>(p.kv_heads) * detail::HeadGroups(p) > 65535 || p.q == nullptr || p.k_new == nullptr ||
      p.v_new == nullptr || p.out == nullptr || p.q_row == nullptr || p.q_pos == nullptr ||
      p.first_pos == nullptr || p.num_cached == nullptr ||
      (p.block_tables == nullptr && p.slots != nullptr && p.slot_begin == nullptr) ||
      (p.block_tables != nullptr && p.block_size <= 0)) {
    return cudaErrorInvalidValue;
  }
  if (p.num_seqs == 0) return cudaSuccess;
  const int splits = PagedDecodeNumSplits(p);
  if (splits > 1 && p.workspace == nullptr) return cudaErrorInvalidValue;
  STEPSERVE_DISPATCH_T(p.dtype, detail::Launch, p, splits, stream);
}

// ---- KV cache write ----------------------------------------------------------------------------------------
namespace detail {
namespace {

template <typename T>
__global__ void WriteKvCacheKernel(const T* __restrict__ k, const T* __restrict__ v, T* __restrict__ k_pool,
                                   T* __restrict__ v_pool, const int64_t* __restrict__ src_rows,
                                   const int64_t* __restrict__ slots, int64_t n, int64_t row_elems) {
  const int64_t total = n * row_elems;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / row_elems, c = i - r * row_elems;
    const int64_t src = src_rows[r] * row_elems + c, dst = slots[r] * row_elems + c;
    k_pool[dst] = k[src];
    v_pool[dst] = v[src];
  }
}

template <typename T>
cudaError_t LaunchWrite(const void* k, const void* v, void* k_pool, void* v_pool, const int64_t* src_rows,
                        const int64_t* slots, int64_t n, int64_t row_elems, cudaStream_t stream) {
  const int64_t total = n * row_elems;
  if (total == 0) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>((total + 255) / 256, 132 * 16);
  STEPSERVE_LAUNCH(static_cast<unsigned>(blocks), 256, 0, stream, WriteKvCacheKernel<T>)(
      static_cast<const T*>(k), static_cast<const T*>(v), static_cast<T*>(k_pool), static_cast<T*>(v_pool), src_rows,
      slots, n, row_elems);
  return LastLaunchError();
}

}  // namespace
}  // namespace detail

cudaError_t LaunchWriteKvCache(DType dtype, const void* k, const void* v, void* k_pool, void* v_pool,
                               const int64_t* src_rows, const int64_t* slots, int64_t n, int64_t row_elems,
                               cudaStream_t stream) {
  if (n < 0 || row_elems <= 0) return cudaErrorInvalidValue;
  STEPSERVE_DISPATCH_T(dtype, detail::LaunchWrite, k, v, k_pool, v_pool, src_rows, slots, n, row_elems, stream);
}

}  // namespace stepserve::cuda
