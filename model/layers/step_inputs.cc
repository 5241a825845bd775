#include "model/layers/step_inputs.h"

#include <algorithm>

#include <ATen/ATen.h>

namespace stepserve {
namespace {

// Where each kind's pieces sit in the packed buffer.
struct KindLayout {
  int64_t tables = 0, info = 0, write_rows = 0, write_slots = 0, num_writes = 0;
};

// Slots of every sequence's cached keys, derived on the device from the int64 block tables (no host loop
// over the context): key j of sequence s is at position first[s] + j.
at::Tensor CachedKeySlots(const AttentionMetadata& m, const at::Tensor& tables, const at::Tensor& first_pos,
                          const at::Tensor& num_cached) {
  const auto opts = first_pos.options();
  if (m.total_cached == 0) return at::empty({0}, opts);
  const int64_t S = static_cast<int64_t>(m.seqs.size());
  at::Tensor seq_of = at::repeat_interleave(at::arange(S, opts), num_cached, /*dim=*/0, m.total_cached);
  at::Tensor begin = at::cumsum(num_cached, 0) - num_cached;  // exclusive prefix sum
  at::Tensor pos = first_pos.index_select(0, seq_of) + at::arange(m.total_cached, opts) - begin.index_select(0, seq_of);
  const int64_t B = m.block_size, max_blocks = tables.size(1);
  at::Tensor block = tables.reshape({-1}).index_select(0, seq_of * max_blocks + at::floor_divide(pos, B));
  return block * B + at::remainder(pos, B);
}

}  // namespace

StepInputs UploadStepPlan(const StepPlan& plan, int window, at::Device device,
                          std::array<bool, kNumAttentionKinds> kinds) {
  const int64_t T = plan.num_tokens(), S = plan.num_seqs();
  std::vector<int64_t> host;
  host.reserve(3 * T + 16 * S);
  host.insert(host.end(), plan.token_ids.begin(), plan.token_ids.end());
  host.insert(host.end(), plan.positions.begin(), plan.positions.end());
  const int64_t logits_at = static_cast<int64_t>(host.size());
  int64_t row = 0;
  for (const PlannedChunk& c : plan.chunks) {
    row += c.num_tokens;
    host.push_back(row - 1);
  }

  StepInputs in;
  std::array<KindLayout, kNumAttentionKinds> layout;
  for (int k = 0; k < kNumAttentionKinds; ++k) {
    if (!kinds[k]) continue;  // no layer of this kind: nothing to derive (a full-only model has no window)
    const StepPlan::KindTables& kt = plan.kinds[k];
    AttentionMetadata& m = in.attention[k];
    const AttentionKind kind = static_cast<AttentionKind>(k);
    m.block_size = plan.block_size;
    m.decode = S > 0;
    KindLayout& l = layout[k];
    l.tables = static_cast<int64_t>(host.size());
    host.insert(host.end(), kt.block_tables.begin(), kt.block_tables.end());
    // seq_info rows: query row, query position, first cached position, number of cached keys.
    l.info = static_cast<int64_t>(host.size());
    host.resize(host.size() + 4 * S);
    int64_t begin = 0;
    for (int64_t s = 0; s < S; ++s) {
      const PlannedChunk& c = plan.chunks[s];
      AttentionSeq a;
      a.token_begin = begin;
      a.num_tokens = c.num_tokens;
      a.start_pos = c.start_pos;
      a.first_cached_pos = c.start_pos;
      if (c.cached) {
        a.first_cached_pos = kind == AttentionKind::kFull ? 0 : std::max<int64_t>(0, c.start_pos - window + 1);
      }
      a.read_offset = m.total_cached;
      m.total_cached += a.num_cached();
      m.max_cached = std::max(m.max_cached, a.num_cached());
      m.decode = m.decode && c.num_tokens == 1;
      host[l.info + s] = a.token_begin;
      host[l.info + S + s] = a.start_pos;
      host[l.info + 2 * S + s] = a.first_cached_pos;
      host[l.info + 3 * S + s] = a.num_cached();
      m.seqs.push_back(a);
      begin += c.num_tokens;
    }
    l.write_rows = static_cast<int64_t>(host.size());
    for (int64_t t = 0; t < T; ++t) {
      if (kt.slot_mapping[t] >= 0) host.push_back(t);
    }
    l.num_writes = static_cast<int64_t>(host.size()) - l.write_rows;
    l.write_slots = static_cast<int64_t>(host.size());
    for (int64_t t = 0; t < T; ++t) {
      if (kt.slot_mapping[t] >= 0) host.push_back(kt.slot_mapping[t]);
    }
  }

  // The one host-to-device copy of the step.
  const auto i64 = at::TensorOptions().dtype(at::kLong);
  at::Tensor buffer;
  if (device.is_cpu()) {
    buffer = at::empty({static_cast<int64_t>(host.size())}, i64);
    std::copy(host.begin(), host.end(), buffer.data_ptr<int64_t>());
  } else {
    at::Tensor pinned = at::empty({static_cast<int64_t>(host.size())}, i64.pinned_memory(true));
    std::copy(host.begin(), host.end(), pinned.data_ptr<int64_t>());
    buffer = pinned.to(device, /*non_blocking=*/true);
  }
  in.token_ids = buffer.narrow(0, 0, T);
  in.positions = buffer.narrow(0, T, T);
  if (!plan.all_logits) in.logits_rows = buffer.narrow(0, logits_at, S);
  for (int k = 0; k < kNumAttentionKinds; ++k) {
    if (!kinds[k]) continue;
    AttentionMetadata& m = in.attention[k];
    const KindLayout& l = layout[k];
    const int64_t max_blocks = plan.kinds[k].max_blocks;
    at::Tensor tables = buffer.narrow(0, l.tables, S * max_blocks).view({S, max_blocks});
    m.block_tables = tables.to(at::kInt);
    at::Tensor info = buffer.narrow(0, l.info, 4 * S).view({4, S});
    m.seq_info = info.to(at::kInt);
    m.write_rows = buffer.narrow(0, l.write_rows, l.num_writes);
    m.write_slots = buffer.narrow(0, l.write_slots, l.num_writes);
    // CUDA decode steps read the block tables in the kernel; everything else gathers cached keys by slot.
    if (!(device.is_cuda() && m.decode)) m.read_slots = CachedKeySlots(m, tables, info[2], info[3]);
  }
  return in;
}

}  // namespace stepserve
