// (f) The routed MoE experts over the device permutation of LaunchMoePermute, with no host round trip (so the
// whole MoE layer can be captured in a CUDA graph) and deterministic results (no atomics in any sum).
//
// Four launches on one stream:
//   1. setup: the exclusive scan of the m-tiles per expert (ceil(count_e / kBM)) into tile_start, and the
//      inverse permutation inv[flat index token * top_k + k] = p (position p of the pair in the permutation);
//   2. grouped GEMM gate/up: one block per (m-tile, 64 intermediate columns); it finds its expert by binary
//      search in tile_start (blocks past the last tile exit at once), gathers its rows y[token of p], computes
//      the gate and up tiles together (fp32 accumulation), rounds them to the storage dtype and applies the
//      clamped SwiGLU in the epilogue (the rounding points of swiglu.cu) -> act [pairs, inter];
//   3. grouped GEMM down: the same tiling over act -> h [pairs, hidden], rounded to the storage dtype;
//   4. combine: out[t] = sum over t's pairs, in ascending permutation position (= ascending expert, the order
//      of the CPU loop), of float(h[p]) * sorted_weight[p].
// The grid of 2 and 3 covers the worst case of the m-tile count, bounded from pairs and experts on the host.
#include <algorithm>

#include "model/ops/cuda/common.cuh"

namespace stepserve::cuda {
namespace detail {
namespace {

constexpr int kMaxExperts = 1024;  // as LaunchMoePermute
constexpr int kMaxTopK = 32;       // as LaunchMoeRoute
constexpr int kBM = 64;            // rows (pairs) per block tile
constexpr int kBN = 64;            // output columns per block tile
constexpr int kBK = 32;            // K step
constexpr int kThreads = 256;      // 16 x 16 threads, each 4 x 4 outputs (rows ty + 16 i, columns tx + 16 j)
constexpr int kLoadRows = kThreads / kBK;  // rows loaded per pass (a warp loads one row of kBK elements)
constexpr int kCombineThreads = 256;
constexpr int64_t kAlign = 256;  // workspace section alignment in bytes

static_assert(kBM == 64 && kBN == 64 && kThreads == 256, "the 16 x 16 thread layout assumes these");
static_assert(kBM % kLoadRows == 0 && kBN % kLoadRows == 0, "tile loads");

// Setup (one launch, blockDim kMaxExperts): block 0 scans the m-tiles per expert into tile_start
// [experts + 1]; all blocks write the inverse permutation (inv is pre-filled with -1).
__global__ void __launch_bounds__(kMaxExperts)
    MoeExpertsSetupKernel(const int32_t* __restrict__ offsets, const int32_t* __restrict__ sorted_slot, int experts,
                          int64_t pairs, int32_t* __restrict__ tile_start, int32_t* __restrict__ inv) {
  if (blockIdx.x == 0) {
    __shared__ int32_t buf[kMaxExperts];
    const int i = threadIdx.x;
    buf[i] = i < experts ? (offsets[i + 1] - offsets[i] + kBM - 1) / kBM : 0;
    BlockInclusiveScan<kMaxExperts>(buf);
    if (i < experts) tile_start[i + 1] = buf[i];
    if (i == 0) tile_start[0] = 0;
  }
  const int64_t placed = min(static_cast<int64_t>(offsets[experts]), pairs);
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < placed;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int32_t s = sorted_slot[p];
    if (s >= 0 && s < pairs) inv[s] = static_cast<int32_t>(p);
  }
}

// The expert owning m-tile `tile` (the largest e with tile_start[e] <= tile, which then has tiles), or -1
// when the tile is past the last one.
__device__ __forceinline__ int TileExpert(const int32_t* __restrict__ tile_start, int experts, int tile) {
  if (tile >= tile_start[experts]) return -1;
  int lo = 0, hi = experts - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (tile_start[mid] <= tile) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// Grouped GEMM over the permutation: for the rows p of expert e's m-tile,
//   kGated:  c[p][n] = ClampedSwiGlu(a_p . w_e[n], a_p . w_e[N + n])   (w_e [2N, K], the packed gate | up)
//   !kGated: c[p][n] = a_p . w_e[n]                                      (w_e [N, K])
// where a_p = a[sorted_slot[p] / top_k] (gather, when sorted_slot is non-null) or a[p]; all rows have K
// elements; c [pairs, N]. Matmul outputs are rounded to T as the CPU matmul does.
template <typename T, bool kGated>
__global__ void __launch_bounds__(kThreads)
    MoeGroupedGemmKernel(const T* __restrict__ a, const int32_t* __restrict__ sorted_slot, int top_k,
                         const T* __restrict__ w, const int32_t* __restrict__ offsets,
                         const int32_t* __restrict__ tile_start, int experts, int64_t n_cols, int64_t k_dim,
                         float limit, T* __restrict__ c) {
  constexpr int kMats = kGated ? 2 : 1;
  __shared__ float a_tile[kBK][kBM + 1];  // [k][row]; +1: conflict-free transposed stores
  __shared__ float b_tile[kMats][kBK][kBN + 1];
  __shared__ int64_t a_row[kBM];  // element offset of each tile row in `a`, -1 past the expert's rows

  const int tile = static_cast<int>(blockIdx.x);
  const int e = TileExpert(tile_start, experts, tile);
  if (e < 0) return;  // uniform over the block
  const int32_t row_begin = offsets[e] + (tile - tile_start[e]) * kBM;
  const int rows = min(kBM, offsets[e + 1] - row_begin);
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * kBN;
  const T* w_e = w + static_cast<int64_t>(e) * kMats * n_cols * k_dim;

  const int tid = threadIdx.x;
  for (int r = tid; r < kBM; r += kThreads) {
    int64_t off = -1;
    if (r < rows) {
      const int64_t p = static_cast<int64_t>(row_begin) + r;
      const int64_t src = sorted_slot != nullptr ? static_cast<int64_t>(sorted_slot[p] / top_k) : p;
      off = src * k_dim;
    }
    a_row[r] = off;
  }
  __syncthreads();

  const int ty = tid / 16, tx = tid % 16;
  const int lk = tid % kBK, lr = tid / kBK;  // loads: column k0 + lk of rows lr + kLoadRows * j
  // Warps whose first row is past the expert's rows only help load (decode: few rows per expert).
  const bool computes = ty < rows;
  float acc[kMats][4][4];
#pragma unroll
  for (int m = 0; m < kMats; ++m) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[m][i][j] = 0.0f;
    }
  }

  for (int64_t k0 = 0; k0 < k_dim; k0 += kBK) {
    const int64_t k = k0 + lk;
    const bool k_ok = k < k_dim;
#pragma unroll
    for (int j = 0; j < kBM / kLoadRows; ++j) {
      const int r = lr + kLoadRows * j;
      const int64_t off = a_row[r];
      a_tile[lk][r] = (k_ok && off >= 0) ? ToFloat<T>(a[off + k]) : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kBN / kLoadRows; ++j) {
      const int nl = lr + kLoadRows * j;
      const int64_t n = n0 + nl;
      const bool ok = k_ok && n < n_cols;
#pragma unroll
      for (int m = 0; m < kMats; ++m) {
        b_tile[m][lk][nl] = ok ? ToFloat<T>(w_e[(m * n_cols + n) * k_dim + k]) : 0.0f;
      }
    }
    __syncthreads();
    if (computes) {
#pragma unroll 8
      for (int kk = 0; kk < kBK; ++kk) {
        float av[4], bv[kMats][4];
#pragma unroll
        for (int i = 0; i < 4; ++i) av[i] = a_tile[kk][ty + 16 * i];
#pragma unroll
        for (int m = 0; m < kMats; ++m) {
#pragma unroll
          for (int j = 0; j < 4; ++j) bv[m][j] = b_tile[m][kk][tx + 16 * j];
        }
#pragma unroll
        for (int m = 0; m < kMats; ++m) {
#pragma unroll
          for (int i = 0; i < 4; ++i) {
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[m][i][j] = fmaf(av[i], bv[m][j], acc[m][i][j]);
          }
        }
      }
    }
    __syncthreads();
  }

  if (!computes) return;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = ty + 16 * i;
    if (r >= rows) break;
    T* c_row = c + (static_cast<int64_t>(row_begin) + r) * n_cols;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t n = n0 + tx + 16 * j;
      if (n >= n_cols) break;
      if constexpr (kGated) {
        // The gate/up matmul output is materialised in T, then ClampedSwiGlu as in swiglu.cu: silu(gate)
        // rounded to T, clamped, times the clamped up, the product rounded to T.
        const float g = RoundTo<T>(acc[0][i][j]);
        float u = RoundTo<T>(acc[1][i][j]);
        float s = RoundTo<T>(g / (1.0f + expf(-g)));
        if (limit > 0.0f) {
          s = fminf(s, limit);
          u = fminf(fmaxf(u, -limit), limit);
        }
        c_row[n] = FromFloat<T>(RoundTo<T>(s) * RoundTo<T>(u));
      } else {
        c_row[n] = FromFloat<T>(acc[0][i][j]);
      }
    }
  }
}

// out[t][:] = sum over the pairs of token t, in ascending permutation position, of float(h[p][:]) * weight[p].
// Every element of out is written (0 for a token without pairs).
template <typename T>
__global__ void __launch_bounds__(kCombineThreads)
    MoeCombineKernel(const T* __restrict__ h, const int32_t* __restrict__ inv, const float* __restrict__ weight,
                     int64_t tokens, int top_k, int64_t hidden, float* __restrict__ out) {
  __shared__ int32_t pos[kMaxTopK];
  __shared__ float wt[kMaxTopK];
  __shared__ int count;
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    if (threadIdx.x == 0) {
      int n = 0;
      for (int k = 0; k < top_k; ++k) {  // insertion sort of the (<= 32) positions
        const int32_t p = inv[t * top_k + k];
        if (p < 0) continue;
        int q = n++;
        while (q > 0 && pos[q - 1] > p) {
          pos[q] = pos[q - 1];
          --q;
        }
        pos[q] = p;
      }
      for (int q = 0; q < n; ++q) wt[q] = weight[pos[q]];
      count = n;
    }
    __syncthreads();
    const int n = count;
    for (int64_t col = threadIdx.x; col < hidden; col += blockDim.x) {
      float sum = 0.0f;
      for (int q = 0; q < n; ++q) sum += ToFloat<T>(h[static_cast<int64_t>(pos[q]) * hidden + col]) * wt[q];
      out[t * hidden + col] = sum;
    }
    __syncthreads();  // pos / wt / count are rewritten for the next token
  }
}

int64_t AlignUp(int64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

struct Workspace {
  int64_t tile_start = 0, inv = 0, act = 0, h = 0, total = 0;  // byte offsets
};

Workspace Layout(int64_t elem, int64_t pairs, int experts, int64_t hidden, int64_t inter) {
  Workspace w;
  w.tile_start = 0;
  w.inv = AlignUp(w.tile_start + static_cast<int64_t>(sizeof(int32_t)) * (experts + 1));
  w.act = AlignUp(w.inv + static_cast<int64_t>(sizeof(int32_t)) * pairs);
  w.h = AlignUp(w.act + elem * pairs * inter);
  w.total = AlignUp(w.h + elem * pairs * hidden);
  return w;
}

int64_t ElemBytes(DType dtype) { return dtype == DType::kBFloat16 ? 2 : 4; }

// Upper bound on the number of m-tiles: each non-empty expert (at most min(experts, pairs) of them) has
// ceil(count / kBM) <= (count + kBM - 1) / kBM tiles.
int64_t MaxTiles(int64_t pairs, int experts) {
  const int64_t nonempty = std::min<int64_t>(experts, pairs);
  return (pairs + nonempty * (kBM - 1)) / kBM;
}

template <typename T>
cudaError_t Launch(const void* y, const void* gate_up, const void* down, const int32_t* offsets,
                   const int32_t* sorted_slot, const float* sorted_weight, int64_t tokens, int top_k, int experts,
                   int64_t hidden, int64_t inter, float limit, void* workspace, float* out, cudaStream_t stream) {
  const int64_t pairs = tokens * top_k;
  const Workspace ws = Layout(sizeof(T), pairs, experts, hidden, inter);
  char* base = static_cast<char*>(workspace);
  int32_t* tile_start = reinterpret_cast<int32_t*>(base + ws.tile_start);
  int32_t* inv = reinterpret_cast<int32_t*>(base + ws.inv);
  T* act = reinterpret_cast<T*>(base + ws.act);
  T* h = reinterpret_cast<T*>(base + ws.h);

  cudaError_t err = cudaMemsetAsync(inv, 0xff, sizeof(int32_t) * pairs, stream);  // -1: no pair
  if (err != cudaSuccess) return err;
  const int64_t setup_blocks = std::max<int64_t>(1, std::min<int64_t>((pairs + kMaxExperts - 1) / kMaxExperts, 132));
  STEPSERVE_LAUNCH(static_cast<unsigned>(setup_blocks), kMaxExperts, 0, stream, MoeExpertsSetupKernel)(
      offsets, sorted_slot, experts, pairs, tile_start, inv);
  if ((err = LastLaunchError()) != cudaSuccess) return err;

  const int64_t tiles = MaxTiles(pairs, experts);
  const dim3 grid1(static_cast<unsigned>(tiles), static_cast<unsigned>((inter + kBN - 1) / kBN));
  STEPSERVE_LAUNCH(grid1, kThreads, 0, stream, MoeGroupedGemmKernel<T, true>)(
      static_cast<const T*>(y), sorted_slot, top_k, static_cast<const T*>(gate_up), offsets, tile_start, experts,
      inter, hidden, limit, act);
  if ((err = LastLaunchError()) != cudaSuccess) return err;

  const dim3 grid2(static_cast<unsigned>(tiles), static_cast<unsigned>((hidden + kBN - 1) / kBN));
  STEPSERVE_LAUNCH(grid2, kThreads, 0, stream, MoeGroupedGemmKernel<T, false>)(
      act, nullptr, 1, static_cast<const T*>(down), offsets, tile_start, experts, hidden, inter, 0.0f, h);
  if ((err = LastLaunchError()) != cudaSuccess) return err;

  const int64_t combine_blocks = std::min<int64_t>(tokens, 65536);
  STEPSERVE_LAUNCH(static_cast<unsigned>(combine_blocks), kCombineThreads, 0, stream, MoeCombineKernel<T>)(
      h, inv, sorted_weight, tokens, top_k, hidden, out);
  return LastLaunchError();
}

}  // namespace
}  // namespace detail

int64_t MoeExpertsWorkspaceBytes(DType dtype, int64_t tokens, int top_k, int experts, int64_t hidden,
                                 int64_t inter) {
  return detail::Layout(detail::ElemBytes(dtype), tokens * top_k, experts, hidden, inter).total;
}

cudaError_t LaunchMoeExperts(DType dtype, const void* y, const void* gate_up, const void* down,
                             const int32_t* offsets, const int32_t* sorted_slot, const float* sorted_weight,
                             int64_t tokens, int top_k, int experts, int64_t hidden, int64_t inter, float limit,
                             void* workspace, float* out, cudaStream_t stream) {
  if (tokens < 0 || top_k < 1 || top_k > detail::kMaxTopK || experts < 1 || experts > detail::kMaxExperts ||
      hidden < 1 || inter < 1 || tokens * top_k > 0x7fffffff) {
    return cudaErrorInvalidValue;
  }
  if (tokens == 0) return cudaSuccess;
  const int64_t pairs = tokens * top_k;
  if (detail::MaxTiles(pairs, experts) > 0x7fffffff || (hidden + detail::kBN - 1) / detail::kBN > 65535 ||
      (inter + detail::kBN - 1) / detail::kBN > 65535) {
    return cudaErrorInvalidValue;
  }
  if (y == nullptr || gate_up == nullptr || down == nullptr || offsets == nullptr || sorted_slot == nullptr ||
      sorted_weight == nullptr || workspace == nullptr || out == nullptr) {
    return cudaErrorInvalidValue;
  }
  STEPSERVE_DISPATCH_T(dtype, detail::Launch, y, gate_up, down, offsets, sorted_slot, sorted_weight, tokens, top_k,
                       experts, hidden, inter, limit, workspace, out, stream);
}

}  // namespace stepserve::cuda
