// The CUDA kernels against the CPU ops on random inputs (fp32 to 1e-4, bf16 to the tolerances below), and
// the tiny golden model on the GPU. Built only with STEPSERVE_CUDA; every test skips without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "model/causal_lm.h"
#include "model/kernels/cuda/cuda_ops.h"
#include "model/kernels/paged_attention.h"
#include "model/kv_cache.h"
#include "model/mlp.h"
#include "model/model_loader.h"
#include "model/rms_norm.h"
#include "model/rotary_embedding.h"
#include "tests/test_util.h"

namespace stepserve {
namespace {

using testing::MaxAbsDiff;

constexpr double kFp32Tol = 1e-4;
// bf16 results may differ from the CPU op by one bf16 rounding step of the largest outputs (8 bits of
// mantissa: 2^-8 relative), plus fp32 reduction-order noise; outputs here are O(1..8).
constexpr double kBf16Tol = 6e-2;

#define SKIP_WITHOUT_CUDA() \
  if (!at::globalContext().hasCUDA()) GTEST_SKIP() << "no CUDA device"

at::TensorOptions Cpu(at::ScalarType t = at::kFloat) { return at::TensorOptions().dtype(t); }
at::Device Gpu() { return at::Device(at::kCUDA, 0); }
double Tol(at::ScalarType t) { return t == at::kFloat ? kFp32Tol : kBf16Tol; }
double Diff(const at::Tensor& gpu, const at::Tensor& cpu) {
  return MaxAbsDiff(gpu.cpu().to(at::kFloat), cpu.to(at::kFloat));
}

class CudaKernelsTest : public ::testing::TestWithParam<at::ScalarType> {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_CUDA();
    at::manual_seed(1234);
  }
};

TEST_P(CudaKernelsTest, RmsNorm) {
  const auto dt = GetParam();
  for (int64_t hidden : {64, 100, 4096}) {  // 100: the unvectorised path
    at::Tensor x = (at::randn({7, hidden}, Cpu()) * 3).to(dt);
    at::Tensor w = (at::randn({hidden}, Cpu()) * 0.1).to(dt);
    at::Tensor ref = RmsNorm(x, w, 1e-5);
    at::Tensor out = RmsNorm(x.to(Gpu()), w.to(Gpu()), 1e-5);  // dispatches to RmsNormCuda
    EXPECT_EQ(out.scalar_type(), dt);
    EXPECT_LE(Diff(out, ref), Tol(dt)) << "hidden " << hidden;
  }
}

TEST_P(CudaKernelsTest, AddRmsNorm) {
  const auto dt = GetParam();
  const int64_t hidden = 1024;
  at::Tensor h = at::randn({9, hidden}, Cpu()).to(dt);
  at::Tensor x = at::randn({9, hidden}, Cpu()).to(dt);
  at::Tensor w = (at::randn({hidden}, Cpu()) * 0.1).to(dt);
  at::Tensor h_ref = h + x;
  at::Tensor ref = RmsNorm(h_ref, w, 1e-5);
  at::Tensor residual = h.to(Gpu());
  at::Tensor out = AddRmsNormCuda(x.to(Gpu()), residual, w.to(Gpu()), 1e-5);
  EXPECT_LE(Diff(residual, h_ref), dt == at::kFloat ? 1e-6 : 1e-2);
  EXPECT_LE(Diff(out, ref), Tol(dt));
}

TEST_P(CudaKernelsTest, QkNormRope) {
  const auto dt = GetParam();
  const int64_t n = 11, nh = 8, nkv = 2, d = 128;
  for (int rotary_dim : {0, 64, 128}) {
    LayerConfig layer;
    layer.rope_theta = 5e5;
    layer.rotary_dim = rotary_dim;
    layer.use_rope = rotary_dim > 0;
    RotaryEmbedding rope(layer, RopeScaling{}, at::kCPU);
    at::Tensor qkv = at::randn({n, (nh + 2 * nkv) * d}, Cpu()).to(dt);
    at::Tensor qw = (at::randn({d}, Cpu()) * 0.1).to(dt), kw = (at::randn({d}, Cpu()) * 0.1).to(dt);
    at::Tensor positions = at::randint(0, 200000, {n}, Cpu(at::kLong));
    // CPU reference: what Attention::Forward does.
    at::Tensor q_ref = RmsNorm(qkv.narrow(1, 0, nh * d).view({n, nh, d}), qw, 1e-5);
    at::Tensor k_ref = RmsNorm(qkv.narrow(1, nh * d, nkv * d).view({n, nkv, d}), kw, 1e-5);
    if (rotary_dim > 0) {
      auto [cos, sin] = rope.CosSin(positions);
      q_ref = rope.Apply(q_ref, cos, sin);
      k_ref = rope.Apply(k_ref, cos, sin);
    }
    at::Tensor g = qkv.to(Gpu());
    at::Tensor q = g.narrow(1, 0, nh * d).view({n, nh, d});
    at::Tensor k = g.narrow(1, nh * d, nkv * d).view({n, nkv, d});
    QkNormRopeCuda(q, k, qw.to(Gpu()), kw.to(Gpu()), positions.to(Gpu()), rope.inv_freq().to(Gpu()), rotary_dim,
                   1e-5);
    // Large angles (positions up to 2e5): cosf/sinf vs the CPU's vectorised cos/sin, both fp32.
    EXPECT_LE(Diff(q, q_ref), dt == at::kFloat ? 2e-4 : kBf16Tol) << "rotary_dim " << rotary_dim;
    EXPECT_LE(Diff(k, k_ref), dt == at::kFloat ? 2e-4 : kBf16Tol) << "rotary_dim " << rotary_dim;
    // v untouched.
    EXPECT_TRUE(at::equal(g.narrow(1, (nh + nkv) * d, nkv * d).cpu(), qkv.narrow(1, (nh + nkv) * d, nkv * d)));
  }
}

TEST_P(CudaKernelsTest, ClampedSwiGlu) {
  const auto dt = GetParam();
  for (double limit : {0.0, 1.2, 7.0}) {
    at::Tensor gu = (at::randn({13, 2 * 300}, Cpu()) * 4).to(dt);
    at::Tensor ref = ClampedSwiGlu(gu, limit);
    at::Tensor out = ClampedSwiGlu(gu.to(Gpu()), limit);  // dispatches to ClampedSwiGluCuda
    EXPECT_LE(Diff(out, ref), Tol(dt)) << "limit " << limit;
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaKernelsTest, ::testing::Values(at::kFloat, at::kBFloat16),
                         [](const auto& info) { return std::string(info.param == at::kFloat ? "fp32" : "bf16"); });

// MoeBlock::Route's math on the CPU (the golden semantics), for logits already computed.
std::pair<at::Tensor, at::Tensor> RouteReference(const at::Tensor& logits, const at::Tensor& bias, int top_k,
                                                 bool sigmoid, bool normalize, double scaling) {
  at::Tensor scores = sigmoid ? at::sigmoid(logits) : at::softmax(logits, -1);
  at::Tensor choice = bias.defined() ? scores + bias : scores;
  at::Tensor idx = std::get<1>(at::topk(choice, top_k, -1));
  at::Tensor w = scores.gather(1, idx);
  if (normalize && top_k > 1) w = w / w.sum(-1, true);
  return {idx, w * scaling};
}

TEST(CudaMoeTest, RouteMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(7);
  for (int experts : {8, 32, 288}) {
    for (bool sigmoid : {true, false}) {
      const int top_k = experts == 8 ? 3 : 8;
      at::Tensor logits = at::randn({37, experts}, Cpu()) * 2;
      at::Tensor bias = at::randn({experts}, Cpu()) * 0.1;
      auto [idx_ref, w_ref] = RouteReference(logits, bias, top_k, sigmoid, true, 2.5);
      auto [idx, w] = MoeRouteCuda(logits.to(Gpu()), bias.to(Gpu()), top_k, sigmoid, true, 2.5);
      // Compare as sets per token (sorted by expert id), as the golden tensors do.
      auto [si_ref, o_ref] = idx_ref.sort(-1);
      auto [si, o] = idx.cpu().sort(-1);
      EXPECT_TRUE(at::equal(si, si_ref)) << experts << " experts, sigmoid " << sigmoid;
      EXPECT_LE(MaxAbsDiff(w.cpu().gather(1, o), w_ref.gather(1, o_ref)), kFp32Tol);
    }
  }
}

TEST(CudaMoeTest, PermutationGroupsTokensByExpert) {
  SKIP_WITHOUT_CUDA();
  const int experts = 16, top_k = 4;
  at::Tensor logits = at::randn({50, experts}, Cpu());
  auto [idx, w] = MoeRouteCuda(logits.to(Gpu()), at::Tensor(), top_k, true, true, 1.0);
  MoePermutation p = MoePermuteCuda(idx, w, experts);
  at::Tensor flat = idx.cpu().reshape({-1});
  at::Tensor counts_ref = at::bincount(flat, {}, experts).to(at::kInt);
  EXPECT_TRUE(at::equal(p.counts.cpu(), counts_ref));
  at::Tensor offsets = p.offsets.cpu(), slot = p.sorted_slot.cpu(), token = p.sorted_token.cpu();
  at::Tensor weight = p.sorted_weight.cpu(), wf = w.cpu().reshape({-1});
  ASSERT_EQ(offsets[experts].item<int>(), 50 * top_k);
  for (int e = 0; e < experts; ++e) {
    int prev = -1;
    for (int i = offsets[e].item<int>(); i < offsets[e + 1].item<int>(); ++i) {
      const int s = slot[i].item<int>();
      EXPECT_EQ(flat[s].item<int64_t>(), e);
      EXPECT_GT(s, prev);  // ascending flat index within an expert
      EXPECT_EQ(token[i].item<int>(), s / top_k);
      EXPECT_EQ(weight[i].item<float>(), wf[s].item<float>());
      prev = s;
    }
  }
}

// A decode step for `lens` sequences whose cached keys sit at random slots of a shared pool.
struct DecodeCase {
  at::Tensor q, k, v, k_pool, v_pool, gate;
  std::vector<SeqAttention> seqs;
  AttentionShape shape;
};

DecodeCase MakeDecodeCase(const std::vector<int64_t>& lens, int nh, int nkv, int d, int window, at::ScalarType dt) {
  DecodeCase c;
  const int64_t n = static_cast<int64_t>(lens.size());
  int64_t total = 0;
  for (int64_t l : lens) total += l;
  const int64_t slots = total + 64;
  c.q = at::randn({n, nh, d}, Cpu()).to(dt);
  c.k = at::randn({n, nkv, d}, Cpu()).to(dt);
  c.v = at::randn({n, nkv, d}, Cpu()).to(dt);
  c.k_pool = at::randn({slots, nkv, d}, Cpu()).to(dt);
  c.v_pool = at::randn({slots, nkv, d}, Cpu()).to(dt);
  c.gate = at::randn({n, nh}, Cpu()).to(dt);
  c.shape = {nh, nkv, window, 1.0 / std::sqrt(static_cast<double>(d))};
  at::Tensor perm = at::randperm(slots, Cpu(at::kLong));
  int64_t used = 0;
  for (int64_t i = 0; i < n; ++i) {
    SeqAttention s;
    s.token_begin = i;
    s.num_tokens = 1;
    s.start_pos = lens[i];  // lens[i] earlier tokens
    s.cached = true;
    s.kv.read_from_pos = window > 0 ? std::max<int64_t>(0, lens[i] - window + 1) : 0;
    const int64_t cached = lens[i] - s.kv.read_from_pos;
    s.kv.read_slots = perm.narrow(0, used, cached).clone();
    s.kv.write_from_pos = lens[i];
    s.kv.write_slots = perm.narrow(0, used + cached, 1).clone();
    used += cached + 1;
    c.seqs.push_back(s);
  }
  return c;
}

std::vector<SeqAttention> OnGpu(std::vector<SeqAttention> seqs) {
  for (SeqAttention& s : seqs) {
    s.kv.read_slots = s.kv.read_slots.to(Gpu());
    s.kv.write_slots = s.kv.write_slots.to(Gpu());
  }
  return seqs;
}

class CudaDecodeTest : public ::testing::TestWithParam<at::ScalarType> {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_CUDA();
    at::manual_seed(99);
  }
};

TEST_P(CudaDecodeTest, MatchesCpuPagedAttention) {
  const auto dt = GetParam();
  struct Shape { int nh, nkv, d, window; };
  // GQA groups 1, 4, 8 (flash full), 12 (flash sliding), 24 (two head groups per KV head); head_dim 64/128.
  for (const Shape& sh : {Shape{4, 4, 64, 0}, Shape{8, 2, 128, 0}, Shape{64, 8, 128, 0}, Shape{96, 8, 128, 512},
                          Shape{24, 1, 128, 16}}) {
    DecodeCase c = MakeDecodeCase({0, 1, 17, 300, 2100}, sh.nh, sh.nkv, sh.d, sh.window, dt);
    at::Tensor ref = PagedAttention(c.q, c.k, c.v, c.k_pool, c.v_pool, c.seqs, c.shape);
    const auto gseqs = OnGpu(c.seqs);
    at::Tensor gq = c.q.to(Gpu()), gk = c.k.to(Gpu()), gv = c.v.to(Gpu());
    at::Tensor gkp = c.k_pool.to(Gpu()), gvp = c.v_pool.to(Gpu());
    for (int splits : {1, 4, 0}) {
      at::Tensor out = PagedDecodeAttentionCuda(gq, gk, gv, gkp, gvp, gseqs, c.shape, at::Tensor(), splits);
      EXPECT_LE(Diff(out, ref), dt == at::kFloat ? kFp32Tol : 2e-2)
          << "heads " << sh.nh << "/" << sh.nkv << " d " << sh.d << " window " << sh.window << " splits " << splits;
    }
    // Through the PagedAttention seam.
    EXPECT_LE(Diff(PagedAttention(gq, gk, gv, gkp, gvp, gseqs, c.shape), ref), dt == at::kFloat ? kFp32Tol : 2e-2);
    // Gate fused into the epilogue, as Attention::Forward applies it.
    at::Tensor gated_ref = (ref.to(at::kFloat) * at::sigmoid(c.gate.to(at::kFloat)).unsqueeze(-1)).to(dt);
    at::Tensor gated = PagedDecodeAttentionCuda(gq, gk, gv, gkp, gvp, gseqs, c.shape, c.gate.to(Gpu()), 0);
    EXPECT_LE(Diff(gated, gated_ref), dt == at::kFloat ? kFp32Tol : 2e-2);
  }
}

TEST_P(CudaDecodeTest, WriteKvCacheMatchesCpu) {
  const auto dt = GetParam();
  DecodeCase c = MakeDecodeCase({3, 40, 7}, 8, 2, 64, 0, dt);
  at::Tensor kp = c.k_pool.clone(), vp = c.v_pool.clone();
  WriteKvCache(c.k, c.v, kp, vp, c.seqs);
  at::Tensor gkp = c.k_pool.to(Gpu()), gvp = c.v_pool.to(Gpu());
  WriteKvCache(c.k.to(Gpu()), c.v.to(Gpu()), gkp, gvp, OnGpu(c.seqs));  // dispatches to WriteKvCacheCuda
  EXPECT_TRUE(at::equal(gkp.cpu(), kp));
  EXPECT_TRUE(at::equal(gvp.cpu(), vp));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaDecodeTest, ::testing::Values(at::kFloat, at::kBFloat16),
                         [](const auto& info) { return std::string(info.param == at::kFloat ? "fp32" : "bf16"); });

// Timing, not a check: the decode attention call (host metadata included) at Step-3.5-Flash's attention
// shapes, bf16, 2k cached tokens per sequence on the full layer and the 512 window on a sliding layer.
// Prints microseconds and the K/V bytes read per second; compare with the card's peak (H100 SXM 3.35 TB/s,
// H200 4.8 TB/s).
TEST(CudaKernelTiming, PagedDecodeAtFlashShapes) {
  SKIP_WITHOUT_CUDA();
  cudaDeviceProp prop;
  ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  struct Shape { const char* name; int nh, nkv, window; int64_t context; };
  for (const Shape& sh : {Shape{"full 64/8", 64, 8, 0, 2048}, Shape{"sliding 96/8", 96, 8, 512, 2048}}) {
    for (int batch : {1, 8, 32, 128}) {
      DecodeCase c = MakeDecodeCase(std::vector<int64_t>(batch, sh.context), sh.nh, sh.nkv, 128, sh.window,
                                    at::kBFloat16);
      const auto gseqs = OnGpu(c.seqs);
      at::Tensor gq = c.q.to(Gpu()), gk = c.k.to(Gpu()), gv = c.v.to(Gpu());
      at::Tensor gkp = c.k_pool.to(Gpu()), gvp = c.v_pool.to(Gpu()), gate = c.gate.to(Gpu());
      for (int i = 0; i < 3; ++i) PagedDecodeAttentionCuda(gq, gk, gv, gkp, gvp, gseqs, c.shape, gate);
      cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
      cudaEvent_t start, stop;
      cudaEventCreate(&start);
      cudaEventCreate(&stop);
      constexpr int kIters = 20;
      cudaEventRecord(start, stream);
      for (int i = 0; i < kIters; ++i) PagedDecodeAttentionCuda(gq, gk, gv, gkp, gvp, gseqs, c.shape, gate);
      cudaEventRecord(stop, stream);
      cudaEventSynchronize(stop);
      float ms = 0;
      cudaEventElapsedTime(&ms, start, stop);
      cudaEventDestroy(start);
      cudaEventDestroy(stop);
      const int64_t keys = sh.window > 0 ? std::min<int64_t>(sh.window, sh.context + 1) : sh.context + 1;
      const double bytes = 2.0 * batch * keys * sh.nkv * 128 * 2;  // K and V, bf16
      const double us = 1000.0 * ms / kIters;
      std::printf("[timing] %s: paged decode %-12s batch %3d: %8.1f us, %7.1f GB/s of K/V\n", prop.name, sh.name,
                  batch, us, bytes / (us * 1e3));
    }
  }
}

// The tiny golden model on the GPU, fp32: prefill logits of all three sequences (ATen attention on CUDA plus
// the RMSNorm / SwiGLU / routing kernels), then seq0 decoded token by token (the paged decode kernel).
TEST(CudaGoldenTest, Fp32LogitsPrefillAndDecode) {
  SKIP_WITHOUT_CUDA();
  ModelLoadOptions options;
  options.dtype = at::kFloat;
  options.device = Gpu();
  auto model = LoadModel(testing::TinyCheckpointDir(), options);
  ASSERT_TRUE(model.ok()) << model.status();
  KvCacheOptions o;
  o.num_blocks_full = 16;
  o.num_blocks_sliding = 16;
  o.device = Gpu();
  for (int s = 0; s < 3; ++s) {
    const std::string p = "seq" + std::to_string(s);
    at::Tensor tokens = testing::GoldenTensor(p + ".tokens");
    PagedKvCache cache((*model)->config(), o);
    KvSequence seq;
    ForwardBatch batch;
    batch.token_ids = tokens;
    batch.seqs.push_back({tokens.numel(), 0, &seq});
    batch.all_logits = true;
    auto logits = (*model)->Forward(batch, &cache);
    ASSERT_TRUE(logits.ok()) << logits.status();
    EXPECT_LE(MaxAbsDiff(logits->cpu(), testing::GoldenTensor(p + ".logits")), kFp32Tol) << p;
  }
  at::Tensor tokens = testing::GoldenTensor("seq0.tokens"), golden = testing::GoldenTensor("seq0.logits");
  PagedKvCache cache((*model)->config(), o);
  KvSequence seq;
  ForwardBatch first;
  first.token_ids = tokens.narrow(0, 0, 1);
  first.seqs.push_back({1, 0, &seq});
  ASSERT_TRUE((*model)->Forward(first, &cache).ok());
  for (int64_t t = 1; t < tokens.numel(); ++t) {
    ForwardBatch step;
    step.token_ids = tokens.narrow(0, t, 1);
    step.seqs.push_back({1, t, &seq});
    auto logits = (*model)->Forward(step, &cache);
    ASSERT_TRUE(logits.ok()) << logits.status();
    EXPECT_LE(MaxAbsDiff(logits->cpu().reshape({-1}), golden[t]), kFp32Tol) << "decode position " << t;
  }
}

}  // namespace
}  // namespace stepserve
