// Launchers of the Step3p5 CUDA kernels: raw device pointers, sizes and a stream; no ATen, no torch.
//
// This header is plain C++ (it needs only <cuda_runtime_api.h>), so the ATen glue in model/ops/*_cuda.cc
// compiles with the host compiler while the kernels themselves live in the .cu files next to it, which
// nvcc compiles standalone (scripts/check-cuda-compile.sh). Every launcher returns the launch error
// (cudaGetLastError after the launch) or cudaErrorInvalidValue for arguments it cannot handle.
//
// Storage types: `DType::kFloat32` (float) or `DType::kBFloat16` (__nv_bfloat16 / at::BFloat16; same bits).
// All math is fp32. Where the CPU ops round an intermediate to the storage type (bf16), the kernels round
// at the same points, so the fp32 path matches the CPU ops to float rounding and the bf16 path closely.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace stepserve::cuda {

enum class DType : int { kFloat32 = 0, kBFloat16 = 1 };

// ---- (a) RMSNorm(+1), optionally fused with the residual add -------------------------------------------
// Per row of `hidden` elements: if `x` is non-null, residual = residual + x (rounded to `dtype`, written
// back to `residual`); then out = residual * rsqrt(mean(residual^2) + eps) * (weight + 1).
// With x == nullptr this is a plain RMSNorm of `residual` (which is then only read). Rows are contiguous.
// `weight` has `weight_dtype` (fp32 or the storage dtype). `out` may alias neither input.
cudaError_t LaunchAddRmsNorm(DType dtype, DType weight_dtype, const void* x, void* residual, const void* weight,
                             void* out, int64_t rows, int64_t hidden, float eps, cudaStream_t stream);

// ---- (b) per-head Q/K RMSNorm(+1) fused with partial rotary, in place ----------------------------------
// q: [tokens, q_heads, head_dim] with row (token) stride q_stride elements and head stride head_dim;
// k likewise with k_stride (so q and k may be views into the packed QKV projection output).
// Each head vector is RMS-normalised with q_weight / k_weight ([head_dim], weight_dtype) and rounded to the
// storage dtype; then its first rotary_dim channels are rotated rotate-half style with
// angle = float(positions[t]) * inv_freq[i], i < rotary_dim / 2 (cosf/sinf in fp32). rotary_dim may be 0.
// head_dim must be even, <= 512; rotary_dim even and <= head_dim.
cudaError_t LaunchQkNormRope(DType dtype, DType weight_dtype, void* q, int64_t q_stride, void* k, int64_t k_stride,
                             const void* q_weight, const void* k_weight, const int64_t* positions,
                             const float* inv_freq, int64_t tokens, int q_heads, int k_heads, int head_dim,
                             int rotary_dim, float eps, cudaStream_t stream);

// ---- (c) clamped SwiGLU over a packed [gate | up] buffer -------------------------------------------------
// gate_up [rows, 2 * inter] (contiguous) -> out [rows, inter]:
// out = silu(gate).clamp(max = limit) * up.clamp(-limit, limit); limit <= 0 means no clamp.
cudaError_t LaunchClampedSwiGlu(DType dtype, const void* gate_up, void* out, int64_t rows, int64_t inter,
                                float limit, cudaStream_t stream);

// ---- (d) MoE routing and the token permutation ------------------------------------------------------------
// logits fp32 [tokens, experts] (the router GEMM, in fp32). scores = sigmoid(logits) (or softmax over the
// experts); the top_k experts of scores + bias (bias fp32 [experts] or null) are chosen, in descending
// order of that sum (ties: lower expert id first); their weights are the unbiased scores, divided by their
// sum when `normalize` and top_k > 1, times `scaling`. indices int64 [tokens, top_k], weights fp32.
// experts <= 1024, 1 <= top_k <= min(experts, 32).
cudaError_t LaunchMoeRoute(const float* logits, const float* bias, int64_t tokens, int experts, int top_k,
                           bool sigmoid, bool normalize, float scaling, int64_t* indices, float* weights,
                           cudaStream_t stream);

// Groups the tokens * top_k (token, slot) pairs by expert for grouped expert GEMMs, all on the device:
// counts int32 [experts], offsets int32 [experts + 1] (exclusive prefix sum; offsets[experts] = tokens * top_k),
// and for each position p of the permutation (expert-major, then ascending flat index token * top_k + slot):
// sorted_token[p] (int32 row of the token), sorted_slot[p] (int32 flat index into indices/weights) and,
// when route_weights / sorted_weight are non-null, sorted_weight[p] = route_weights[flat index].
// Deterministic (no atomics decide the order).
cudaError_t LaunchMoePermute(const int64_t* indices, const float* route_weights, int64_t tokens, int top_k,
                             int experts, int32_t* counts, int32_t* offsets, int32_t* sorted_token,
                             int32_t* sorted_slot, float* sorted_weight, cudaStream_t stream);

// ---- (e) paged decode attention -----------------------------------------------------------------------------
// One query token per sequence. For sequence s, its query row q_row[s] attends, for each of its q heads,
// to the cached keys at positions first_pos[s] .. first_pos[s] + num_cached[s] - 1 read from the pools, then
// to the sequence's own new key (row q_row[s] of k_new / v_new) at position q_pos[s]. first_pos[s] is the
// first cached position any query of the sequence can see and num_cached[s] the cached keys from there; it
// may be earlier than the window's start (the start of that block, or 0 with the whole block table): keys
// outside the window are skipped without being read.
// Where a cached key lives: with block_tables (int32 [num_seqs, max_blocks]), position p is in slot
// block_tables[s][p / block_size] * block_size + p % block_size; otherwise slots[slot_begin[s] + j]
// (int64, the j-th cached key). A key is masked, and neither it nor (outside the window) its block-table
// entry is ever read, when p > q_pos, when window > 0 and q_pos - p >= window, when its block id is < 0 (a
// sliding block already returned to the pool: KvSequence::block_table holds -1 there), when p / block_size
// >= max_blocks, or when its slot is < 0 (slot lists). The new key is always visible.
// GQA: q head h uses kv head h / (q_heads / kv_heads). Softmax in fp32 with `scale`.
// gate (optional, [tokens, q_heads] with row stride gate_stride, in gate_dtype): the output of head h of
// token t is rounded to the storage dtype and then multiplied by sigmoid(gate[t][h]) in fp32 (the head-wise
// gate, fused into the epilogue). out [tokens, q_heads, head_dim] (only the q_row rows are written).
// Split-K: the keys of one (sequence, kv head) are split over num_splits blocks when num_splits > 1 (0: pick
// automatically); the partial results go to `workspace` (fp32) and a reduction kernel combines them.
struct PagedDecodeParams {
  DType dtype = DType::kFloat32;
  const void* q = nullptr;      // [tokens, q_heads, head_dim]
  const void* k_new = nullptr;  // [tokens, kv_heads, head_dim]
  const void* v_new = nullptr;
  const void* k_pool = nullptr;  // [slots, kv_heads, head_dim]
  const void* v_pool = nullptr;
  void* out = nullptr;           // [tokens, q_heads, head_dim]
  int num_seqs = 0;
  int q_heads = 0, kv_heads = 0, head_dim = 0;
  int window = 0;
  float scale = 1.0f;
  // Per sequence, int32 [num_seqs] each, on the device.
  const int32_t* q_row = nullptr;
  const int32_t* q_pos = nullptr;
  const int32_t* first_pos = nullptr;
  const int32_t* num_cached = nullptr;
  const int32_t* slot_begin = nullptr;  // slot-list mode
  const int64_t* slots = nullptr;       // slot-list mode
  const int32_t* block_tables = nullptr;  // block-table mode (takes precedence when non-null)
  int max_blocks = 0, block_size = 0;
  const void* gate = nullptr;
  DType gate_dtype = DType::kFloat32;
  int64_t gate_stride = 0;
  int max_keys = 0;    // upper bound on num_cached[s] + 1 over the batch (sizes the split)
  int num_splits = 0;  // 0: automatic
  float* workspace = nullptr;  // PagedDecodeWorkspaceFloats() floats, needed when the split is > 1
  int num_sms = 132;   // multiprocessors, for the automatic split
};

// Splits the launcher will use for these params (resolves num_splits == 0).
int PagedDecodeNumSplits(const PagedDecodeParams& p);
// fp32 elements of workspace needed for `splits` (0 when splits == 1).
int64_t PagedDecodeWorkspaceFloats(const PagedDecodeParams& p, int splits);
cudaError_t LaunchPagedDecodeAttention(const PagedDecodeParams& p, cudaStream_t stream);

// ---- KV cache write ---------------------------------------------------------------------------------------
// pool[slots[i]] = src[rows[i]] for i < n, rows of row_elems elements (both in `dtype`), for K and V.
cudaError_t LaunchWriteKvCache(DType dtype, const void* k, const void* v, void* k_pool, void* v_pool,
                               const int64_t* src_rows, const int64_t* slots, int64_t n, int64_t row_elems,
                               cudaStream_t stream);

// ---- (f) routed MoE experts over the permutation, no host round trip --------------------------------------
// y [tokens, hidden], gate_up [experts, 2 * inter, hidden] (gate rows, then up rows), down [experts, hidden,
// inter], all in `dtype` and contiguous; offsets (int32 [experts + 1]), sorted_slot (int32 [tokens * top_k])
// and sorted_weight (fp32 [tokens * top_k]) from LaunchMoePermute, on the device. For every pair (token t,
// expert e, weight w) of the permutation: act = ClampedSwiGlu(gate_up_e · y[t], limit) and h = down_e · act, the
// matmul outputs and act rounded to `dtype` where the CPU ops round them; then
// out[t] = sum of float(h) * w over t's pairs in ascending expert order (as the CPU loop over experts adds them).
// out fp32 [tokens, hidden] is fully written (no zeroing needed). Deterministic: no atomics decide any sum.
// workspace: MoeExpertsWorkspaceBytes(...) bytes (4-byte aligned at least; cudaMalloc / at::empty are), for
// the per-pair [pairs, inter] and [pairs, hidden] intermediates in `dtype` and small index tables (it need not be
// initialised). 1 <= top_k <= 32, experts <= 1024. Every launch of it is on `stream`; nothing is read on the host.
cudaError_t LaunchMoeExperts(DType dtype, const void* y, const void* gate_up, const void* down,
                             const int32_t* offsets, const int32_t* sorted_slot, const float* sorted_weight,
                             int64_t tokens, int top_k, int experts, int64_t hidden, int64_t inter, float limit,
                             void* workspace, float* out, cudaStream_t stream);
int64_t MoeExpertsWorkspaceBytes(DType dtype, int64_t tokens, int top_k, int experts, int64_t hidden,
                                 int64_t inter);

}  // namespace stepserve::cuda
