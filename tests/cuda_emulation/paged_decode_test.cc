// The paged decode attention and KV-write kernels (model/ops/cuda/paged_decode_attention.cu), emulated on the
// CPU, against the CPU twins PagedAttentionAten and WriteKvCacheAten: GQA groups 1..20 (two head groups per KV head past
// 16), head_dim 64/80/128, sliding windows whose early blocks were returned to the pool (-1 in the block table),
// windows larger than the context, split-K (1, 3, automatic) over a long context, the fused gate, fp32 and bf16,
// block-table and slot-list addressing.
//
// Every slot the kernel must not read holds NaN (the positions outside the window in live blocks, and a guard
// region right before the pools, where a block id of -1 would point): one stray read, even multiplied by a zero
// probability, turns the output into NaN. Under AddressSanitizer the guard region is also poisoned.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>

#include "model/ops/paged_attention.h"
#include "tests/cuda_emulation/emulation_test_util.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define EMU_TEST_ASAN 1
#else
#define EMU_TEST_ASAN 0
#endif

namespace stepserve::emulation_test {
namespace {

// The test's own per-sequence bookkeeping (explicit slot lists), converted to the op layer's metadata
// for the ATen twins PagedAttentionAten / WriteKvCacheAten.
struct SeqKv {
  int64_t read_from_pos = 0;
  at::Tensor read_slots;
  int64_t write_from_pos = 0;
  at::Tensor write_slots;
};
struct SeqAttention {
  int64_t token_begin = 0, num_tokens = 0, start_pos = 0;
  bool cached = false;
  SeqKv kv;
};

at::Tensor PagedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& k_pool,
                          const at::Tensor& v_pool, const std::vector<SeqAttention>& seqs,
                          const AttentionShape& shape, const at::Tensor& gate) {
  AttentionMetadata m;
  std::vector<at::Tensor> slots;
  for (const SeqAttention& s : seqs) {
    AttentionSeq a;
    a.token_begin = s.token_begin;
    a.num_tokens = s.num_tokens;
    a.start_pos = s.start_pos;
    const bool cached = s.cached && s.kv.read_slots.defined() && s.kv.read_slots.numel() > 0;
    a.first_cached_pos = cached ? s.kv.read_from_pos : s.start_pos;
    a.read_offset = m.total_cached;
    m.total_cached += a.num_cached();
    if (cached) slots.push_back(s.kv.read_slots);
    m.seqs.push_back(a);
  }
  m.read_slots = slots.empty() ? at::empty({0}, at::TensorOptions().dtype(at::kLong)) : at::cat(slots);
  return PagedAttentionAten(q, k, v, k_pool, v_pool, m, shape, gate);
}

void WriteKvCache(const at::Tensor& k, const at::Tensor& v, at::Tensor& k_pool, at::Tensor& v_pool,
                  const std::vector<SeqAttention>& seqs) {
  std::vector<int64_t> rows, slots;
  for (const SeqAttention& s : seqs) {
    if (!s.cached || !s.kv.write_slots.defined()) continue;
    const int64_t* w = s.kv.write_slots.data_ptr<int64_t>();
    for (int64_t j = 0; j < s.kv.write_slots.numel(); ++j) {
      rows.push_back(s.token_begin + (s.kv.write_from_pos - s.start_pos) + j);
      slots.push_back(w[j]);
    }
  }
  AttentionMetadata m;
  m.write_rows = at::tensor(rows, at::TensorOptions().dtype(at::kLong));
  m.write_slots = at::tensor(slots, at::TensorOptions().dtype(at::kLong));
  WriteKvCacheAten(k, v, k_pool, v_pool, m);
}

// bf16 against the CPU op, relative to the output scale. Both sides compute in fp32 from the same bf16 inputs and
// round the output once (and, with the gate, the ungated output first, as Attention::Forward does); the online
// softmax sums in another order than ATen's softmax + bmm, so an output can round to the neighbouring bf16 value:
// one bf16 step (at most 2^-7 of the largest output). Measured max 4.3e-6 over these cases (one step of a small
// output; most cases bit-identical).
constexpr double kBf16RelTol = 8e-3;

enum class Addressing { kSlotList, kBlockTableExact, kBlockTableFromBlockStart, kBlockTableFromZero };

std::string AddressingName(Addressing a) {
  switch (a) {
    case Addressing::kSlotList: return "slot lists";
    case Addressing::kBlockTableExact: return "block table from the window start";
    case Addressing::kBlockTableFromBlockStart: return "block table from the window's block start";
    case Addressing::kBlockTableFromZero: return "block table from position 0";
  }
  return "?";
}

// One decode step: sequence s has lens[s] cached tokens and its query at position lens[s], in row rows[s].
class DecodeCase {
 public:
  DecodeCase(std::vector<int64_t> lens, int nh, int nkv, int d, int window, at::ScalarType dt, int block_size = 4)
      : lens_(std::move(lens)), nh_(nh), nkv_(nkv), d_(d), window_(window), bs_(block_size), dt_(dt) {
    const int64_t S = static_cast<int64_t>(lens_.size());
    for (int64_t L : lens_) max_blocks_ = std::max<int64_t>(max_blocks_, (L + bs_ - 1) / bs_);
    max_blocks_ = std::max<int64_t>(max_blocks_, 1);
    num_blocks_ = S * max_blocks_ + 3;
    const int64_t slots = num_blocks_ * bs_;
    // The pools sit right after a guard region as large as one block, filled with NaN.
    guard_rows_ = bs_;
    k_store_ = at::full({guard_rows_ + slots, nkv, d}, std::nan(""), Opt(dt));
    v_store_ = at::full({guard_rows_ + slots, nkv, d}, std::nan(""), Opt(dt));
    k_pool_ = k_store_.narrow(0, guard_rows_, slots);
    v_pool_ = v_store_.narrow(0, guard_rows_, slots);
    q_ = at::randn({S, nh, d}, Opt()).to(dt);
    k_ = at::randn({S, nkv, d}, Opt()).to(dt);
    v_ = at::randn({S, nkv, d}, Opt()).to(dt);
    gate_ = at::randn({S, nh}, Opt()).to(dt);
    tables_.assign(S * max_blocks_, -1);
    std::vector<int64_t> free_blocks(num_blocks_);
    at::Tensor perm = at::randperm(num_blocks_, Opt(at::kLong));
    for (int64_t i = 0; i < num_blocks_; ++i) free_blocks[i] = perm[i].item<int64_t>();
    int64_t next_block = 0;
    for (int64_t s = 0; s < S; ++s) {
      const int64_t L = lens_[s];
      // Positions below L + 1 - window are dead once the query at L runs; blocks holding only dead positions went
      // back to the pool (-1), as PagedKvCache does for sliding layers.
      const int64_t first_live = window_ > 0 ? std::max<int64_t>(0, L + 1 - window_) : 0;
      SeqAttention a;
      a.token_begin = S - 1 - s;  // rows in reverse order: q_row is honoured
      a.num_tokens = 1;
      a.start_pos = L;
      a.cached = true;
      a.kv.read_from_pos = first_live;
      std::vector<int64_t> read;
      for (int64_t b = 0; b * bs_ < L; ++b) {
        if ((b + 1) * bs_ <= first_live) continue;  // evicted
        const int64_t phys = free_blocks[next_block++];
        tables_[s * max_blocks_ + b] = static_cast<int32_t>(phys);
        for (int64_t o = 0; o < bs_ && b * bs_ + o < L; ++o) {
          const int64_t pos = b * bs_ + o, slot = phys * bs_ + o;
          if (pos < first_live) continue;  // dead position in a live block: stays NaN
          k_pool_[slot].copy_(at::randn({nkv, d}, Opt()).to(dt));
          v_pool_[slot].copy_(at::randn({nkv, d}, Opt()).to(dt));
          read.push_back(slot);
        }
      }
      a.kv.read_slots = at::tensor(read, Opt(at::kLong));
      a.kv.write_from_pos = L;
      seqs_.push_back(a);
    }
#if EMU_TEST_ASAN
    for (at::Tensor* t : {&k_store_, &v_store_}) {
      ASAN_POISON_MEMORY_REGION(t->data_ptr(), guard_rows_ * nkv * d * t->element_size());
    }
#endif
  }

  ~DecodeCase() {
#if EMU_TEST_ASAN
    for (at::Tensor* t : {&k_store_, &v_store_}) {
      ASAN_UNPOISON_MEMORY_REGION(t->data_ptr(), guard_rows_ * nkv_ * d_ * t->element_size());
    }
#endif
  }

  AttentionShape Shape() const { return {nh_, nkv_, window_, 1.0 / std::sqrt(static_cast<double>(d_))}; }

  // The CPU twin (it reads only the plan's slots), with the head-wise gate when `gated`.
  at::Tensor Reference(bool gated) const {
    return PagedAttention(q_, k_, v_, k_pool_, v_pool_, seqs_, Shape(), gated ? gate_ : at::Tensor());
  }

  // The kernel, through the launcher. Fills `splits_used` with the split the launcher chose.
  at::Tensor Run(Addressing mode, int num_splits, bool gated, int* splits_used = nullptr,
                 at::ScalarType gate_dtype = at::kFloat) {
    const int64_t S = static_cast<int64_t>(lens_.size());
    std::vector<int32_t> q_row(S), q_pos(S), first_pos(S), num_cached(S), slot_begin(S);
    std::vector<int64_t> slots;
    int max_keys = 1;
    for (int64_t s = 0; s < S; ++s) {
      const SeqAttention& a = seqs_[s];
      const int64_t L = lens_[s];
      q_row[s] = static_cast<int32_t>(a.token_begin);
      q_pos[s] = static_cast<int32_t>(L);
      int64_t first = a.kv.read_from_pos;
      if (mode == Addressing::kBlockTableFromBlockStart) first = first / bs_ * bs_;
      if (mode == Addressing::kBlockTableFromZero) first = 0;
      first_pos[s] = static_cast<int32_t>(first);
      num_cached[s] = static_cast<int32_t>(L - first);
      slot_begin[s] = static_cast<int32_t>(slots.size());
      const int64_t* rs = a.kv.read_slots.data_ptr<int64_t>();
      slots.insert(slots.end(), rs, rs + a.kv.read_slots.numel());
      max_keys = std::max(max_keys, num_cached[s] + 1);
    }
    kc::PagedDecodeParams p;
    p.dtype = KernelType(dt_);
    p.q = q_.data_ptr();
    p.k_new = k_.data_ptr();
    p.v_new = v_.data_ptr();
    p.k_pool = k_pool_.data_ptr();
    p.v_pool = v_pool_.data_ptr();
    at::Tensor out = at::full(q_.sizes(), std::nan(""), Opt(dt_));
    p.out = out.data_ptr();
    p.num_seqs = static_cast<int>(S);
    p.q_heads = nh_;
    p.kv_heads = nkv_;
    p.head_dim = d_;
    p.window = window_;
    p.scale = static_cast<float>(Shape().scale);
    p.q_row = q_row.data();
    p.q_pos = q_pos.data();
    p.first_pos = first_pos.data();
    p.num_cached = num_cached.data();
    if (mode == Addressing::kSlotList) {
      p.slot_begin = slot_begin.data();
      p.slots = slots.data();
    } else {
      p.block_tables = tables_.data();
      p.max_blocks = static_cast<int>(max_blocks_);
      p.block_size = bs_;
    }
    at::Tensor g = gate_.to(gate_dtype);
    if (gated) {
      p.gate = g.data_ptr();
      p.gate_dtype = KernelType(gate_dtype);
      p.gate_stride = g.stride(0);
    }
    p.max_keys = max_keys;
    p.num_splits = num_splits;
    p.num_sms = 2;  // a small "GPU", so the automatic split goes past 1 on a long context
    const int splits = kc::PagedDecodeNumSplits(p);
    if (splits_used != nullptr) *splits_used = splits;
    at::Tensor workspace;
    if (splits > 1) {
      workspace = at::full({kc::PagedDecodeWorkspaceFloats(p, splits)}, std::nan(""), Opt());
      p.workspace = workspace.data_ptr<float>();
    }
    LaunchCheck check;
    const cudaError_t err = kc::LaunchPagedDecodeAttention(p, nullptr);
    EXPECT_EQ(err, cudaSuccess) << cudaGetErrorString(err) << ": " << cuda_emu::LastFaultMessage();
    EXPECT_EQ(check.launches(), splits > 1 ? 2u : 1u);
    return out;
  }

  at::Tensor& k_pool() { return k_pool_; }
  at::Tensor& v_pool() { return v_pool_; }
  std::vector<int32_t>& tables() { return tables_; }
  std::vector<SeqAttention>& seqs() { return seqs_; }
  int64_t max_blocks() const { return max_blocks_; }
  const at::Tensor& k() const { return k_; }
  const at::Tensor& v() const { return v_; }

 private:
  std::vector<int64_t> lens_;
  int nh_, nkv_, d_, window_, bs_;
  at::ScalarType dt_;
  int64_t max_blocks_ = 0, num_blocks_ = 0, guard_rows_ = 0;
  at::Tensor q_, k_, v_, gate_, k_store_, v_store_, k_pool_, v_pool_;
  std::vector<int32_t> tables_;
  std::vector<SeqAttention> seqs_;
};

double Tol(at::ScalarType dt) { return dt == at::kFloat ? kFp32RelTol : kBf16RelTol; }

class CudaEmulationPagedDecode : public ::testing::TestWithParam<at::ScalarType> {
 protected:
  void SetUp() override { at::manual_seed(99); }
};

// GQA groups 1, 4, 8 and 20 (> 16: two head groups per KV head), head_dim 64, 128 and 80; full attention.
TEST_P(CudaEmulationPagedDecode, GqaGroupsAndHeadDims) {
  const at::ScalarType dt = GetParam();
  struct Heads {
    int nh, nkv, d;
  };
  for (const Heads& h : {Heads{4, 4, 64}, Heads{8, 2, 128}, Heads{16, 2, 80}, Heads{20, 1, 64}}) {
    DecodeCase c({0, 7, 45}, h.nh, h.nkv, h.d, /*window=*/0, dt);
    const at::Tensor ref = c.Reference(false);
    const std::string what = Name(dt) + " heads " + std::to_string(h.nh) + "/" + std::to_string(h.nkv) + " d " +
                             std::to_string(h.d);
    for (Addressing mode : {Addressing::kSlotList, Addressing::kBlockTableExact}) {
      for (int splits : {1, 3}) {
        EXPECT_REL_CLOSE(c.Run(mode, splits, false), ref, Tol(dt),
                         what + ", " + AddressingName(mode) + ", splits " + std::to_string(splits));
      }
    }
  }
}

// Sliding window 8 over blocks of 4: the early blocks are -1 in the table. Whatever first position the caller
// passes (the window start, the start of its block, or 0 with the whole table), the kernel reads only live keys
// in the window: the NaN in dead positions and before the pools never reaches the output.
TEST_P(CudaEmulationPagedDecode, SlidingWindowWithEvictedBlocks) {
  const at::ScalarType dt = GetParam();
  DecodeCase c({3, 7, 8, 9, 29, 70}, 8, 2, 64, /*window=*/8, dt);
  int evicted = 0;
  for (int32_t b : c.tables()) evicted += b < 0 ? 1 : 0;
  ASSERT_GT(evicted, 10);
  const at::Tensor ref = c.Reference(false);
  for (Addressing mode : {Addressing::kSlotList, Addressing::kBlockTableExact, Addressing::kBlockTableFromBlockStart,
                          Addressing::kBlockTableFromZero}) {
    for (int splits : {1, 3, 0}) {
      const at::Tensor out = c.Run(mode, splits, false);
      EXPECT_FALSE(at::isnan(out.to(at::kFloat)).any().item<bool>()) << AddressingName(mode) << " splits " << splits;
      EXPECT_REL_CLOSE(out, ref, Tol(dt),
                       Name(dt) + " window 8, " + AddressingName(mode) + ", splits " + std::to_string(splits));
    }
  }
}

// A window larger than every context: nothing is evicted or masked.
TEST_P(CudaEmulationPagedDecode, WindowLargerThanContext) {
  const at::ScalarType dt = GetParam();
  DecodeCase c({1, 5, 20}, 8, 2, 64, /*window=*/64, dt);
  const at::Tensor ref = c.Reference(false);
  for (Addressing mode : {Addressing::kSlotList, Addressing::kBlockTableFromZero}) {
    EXPECT_REL_CLOSE(c.Run(mode, 1, false), ref, Tol(dt), Name(dt) + " window 64, " + AddressingName(mode));
  }
}

// Split-K over a 600-key context: forced 1 and 3 splits and the automatic choice (2 on this small "GPU"), full
// and sliding (the splits then share only the window's keys).
TEST_P(CudaEmulationPagedDecode, SplitKOverLongContext) {
  const at::ScalarType dt = GetParam();
  for (int window : {0, 100}) {
    DecodeCase c({600}, 8, 1, 64, window, dt, /*block_size=*/16);
    const at::Tensor ref = c.Reference(false);
    for (int splits : {1, 3, 0}) {
      int used = 0;
      const at::Tensor out = c.Run(Addressing::kBlockTableFromZero, splits, false, &used);
      if (splits == 0) {
        EXPECT_EQ(used, 2) << "automatic split";
      }
      EXPECT_REL_CLOSE(out, ref, Tol(dt),
                       Name(dt) + " 600 keys, window " + std::to_string(window) + ", splits " + std::to_string(used));
    }
  }
}

// The head-wise gate fused into the epilogue (after the output is rounded to the storage dtype), in both the
// single-split kernel and the split reduction, with fp32 and bf16 gate logits.
TEST_P(CudaEmulationPagedDecode, GateFusedIntoEpilogue) {
  const at::ScalarType dt = GetParam();
  DecodeCase c({4, 33, 70}, 12, 4, 64, /*window=*/16, dt);
  const at::Tensor ref = c.Reference(true);
  for (at::ScalarType gate_dtype : {at::kFloat, at::kBFloat16}) {
    if (dt == at::kFloat && gate_dtype == at::kBFloat16) continue;  // bf16 gate logits only with bf16 storage
    for (int splits : {1, 3}) {
      EXPECT_REL_CLOSE(c.Run(Addressing::kBlockTableFromBlockStart, splits, true, nullptr, gate_dtype), ref, Tol(dt),
                       Name(dt) + " gated (" + Name(gate_dtype) + " gate), splits " + std::to_string(splits));
    }
  }
}

// A block id < 0 inside the visible range (full attention) masks its keys: never read, never counted.
TEST_P(CudaEmulationPagedDecode, NegativeBlockIdInsideTheContextIsMasked) {
  const at::ScalarType dt = GetParam();
  DecodeCase c({30}, 4, 1, 64, /*window=*/0, dt);
  // Drop logical block 3 (positions 12..15): its slots become NaN and the table entry -1.
  const int32_t phys = c.tables()[3];
  c.tables()[3] = -1;
  for (int o = 0; o < 4; ++o) {
    c.k_pool()[phys * 4 + o].fill_(std::nan(""));
    c.v_pool()[phys * 4 + o].fill_(std::nan(""));
  }
  // The CPU op sees the remaining keys (positions do not matter without a window).
  SeqAttention& a = c.seqs()[0];
  at::Tensor keep = at::cat({a.kv.read_slots.narrow(0, 0, 12), a.kv.read_slots.narrow(0, 16, 14)});
  a.kv.read_slots = keep;
  a.kv.read_from_pos = 30 - keep.numel();
  const at::Tensor ref = c.Reference(false);
  for (int splits : {1, 3}) {
    EXPECT_REL_CLOSE(c.Run(Addressing::kBlockTableFromZero, splits, false), ref, Tol(dt),
                     Name(dt) + " hole at block 3, splits " + std::to_string(splits));
  }
}

INSTANTIATE_TEST_SUITE_P(, CudaEmulationPagedDecode, ::testing::Values(at::kFloat, at::kBFloat16),
                         [](const ::testing::TestParamInfo<at::ScalarType>& info) { return Name(info.param); });

TEST(CudaEmulationPagedDecodeArgs, RejectsBadArguments) {
  float buf[64] = {};
  int32_t zero = 0;
  kc::PagedDecodeParams p;
  p.q = p.k_new = p.v_new = buf;
  p.out = buf;
  p.q_row = p.q_pos = p.first_pos = p.num_cached = &zero;
  p.num_seqs = 1;
  p.q_heads = 6;
  p.kv_heads = 4;  // not a divisor
  p.head_dim = 8;
  EXPECT_EQ(kc::LaunchPagedDecodeAttention(p, nullptr), cudaErrorInvalidValue);
  p.kv_heads = 3;
  p.head_dim = 512;  // > 256
  EXPECT_EQ(kc::LaunchPagedDecodeAttention(p, nullptr), cudaErrorInvalidValue);
  p.head_dim = 8;
  p.num_splits = 2;  // no workspace
  EXPECT_EQ(kc::LaunchPagedDecodeAttention(p, nullptr), cudaErrorInvalidValue);
}

// ---- KV cache write ---------------------------------------------------------------------------------------

class CudaEmulationKvWrite : public ::testing::TestWithParam<at::ScalarType> {
 protected:
  void SetUp() override { at::manual_seed(5); }
};

TEST_P(CudaEmulationKvWrite, MatchesCpuWriteKvCache) {
  const at::ScalarType dt = GetParam();
  const int64_t nkv = 2, d = 64, slots = 40;
  const int64_t n = 9;  // tokens of this step, over three sequences (2, 4 and 3 tokens)
  at::Tensor k = at::randn({n, nkv, d}, Opt()).to(dt), v = at::randn({n, nkv, d}, Opt()).to(dt);
  at::Tensor k_pool = at::randn({slots, nkv, d}, Opt()).to(dt), v_pool = at::randn({slots, nkv, d}, Opt()).to(dt);
  std::vector<SeqAttention> seqs(3);
  const int64_t begins[] = {0, 2, 6}, counts[] = {2, 4, 3}, skips[] = {0, 1, 0};  // seq 1's first row not kept
  const std::vector<std::vector<int64_t>> write_slots = {{17, 3}, {30, 31, 8}, {0, 39, 12}};
  std::vector<int64_t> src_rows, dst_slots;
  for (int i = 0; i < 3; ++i) {
    SeqAttention& s = seqs[i];
    s.token_begin = begins[i];
    s.num_tokens = counts[i];
    s.start_pos = 10 * i;
    s.cached = true;
    s.kv.write_from_pos = s.start_pos + skips[i];
    s.kv.write_slots = at::tensor(write_slots[i], Opt(at::kLong));
    for (size_t j = 0; j < write_slots[i].size(); ++j) {
      src_rows.push_back(begins[i] + skips[i] + static_cast<int64_t>(j));
      dst_slots.push_back(write_slots[i][j]);
    }
  }
  at::Tensor k_ref = k_pool.clone(), v_ref = v_pool.clone();
  WriteKvCache(k, v, k_ref, v_ref, seqs);
  LaunchCheck check;
  ASSERT_EQ(kc::LaunchWriteKvCache(KernelType(dt), k.data_ptr(), v.data_ptr(), k_pool.data_ptr(), v_pool.data_ptr(),
                                   src_rows.data(), dst_slots.data(), static_cast<int64_t>(src_rows.size()), nkv * d,
                                   nullptr),
            cudaSuccess);
  EXPECT_GT(check.blocks(), 0u);
  EXPECT_TRUE(at::equal(k_pool, k_ref));
  EXPECT_TRUE(at::equal(v_pool, v_ref));
}

INSTANTIATE_TEST_SUITE_P(, CudaEmulationKvWrite, ::testing::Values(at::kFloat, at::kBFloat16),
                         [](const ::testing::TestParamInfo<at::ScalarType>& info) { return Name(info.param); });

}  // namespace
}  // namespace stepserve::emulation_test
