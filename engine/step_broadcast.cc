#include "engine/step_broadcast.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

namespace stepserve {
namespace {

// Header: op, payload words, then a heartbeat's one-element all-reduce follows the header.
constexpr int64_t kHeaderWords = 2;

at::Tensor Header(ControlOp op, int64_t payload_words) {
  at::Tensor h = at::empty({kHeaderWords}, at::TensorOptions().dtype(at::kLong));
  h.data_ptr<int64_t>()[0] = static_cast<int64_t>(op);
  h.data_ptr<int64_t>()[1] = payload_words;
  return h;
}

// All ranks join: rank 0 learns that every rank is alive and in step.
void JoinHeartbeat(Collectives& comm) {
  at::Tensor one = at::ones({1}, at::TensorOptions().dtype(at::kLong));
  comm.AllReduceMin(one);
}

}  // namespace

std::vector<int64_t> EncodeStepPlan(const StepPlan& plan) {
  std::vector<int64_t> w;
  const int64_t t = plan.num_tokens(), c = plan.num_seqs();
  w.insert(w.end(), {t, c, plan.block_size, plan.all_logits ? 1 : 0});
  for (const auto& kind : plan.kinds) {
    w.insert(w.end(), {kind.max_blocks, static_cast<int64_t>(kind.block_tables.size()),
                       static_cast<int64_t>(kind.slot_mapping.size())});
  }
  w.insert(w.end(), plan.token_ids.begin(), plan.token_ids.end());
  w.insert(w.end(), plan.positions.begin(), plan.positions.end());
  for (const PlannedChunk& ch : plan.chunks) w.insert(w.end(), {ch.num_tokens, ch.start_pos, ch.cached ? 1 : 0});
  for (const auto& kind : plan.kinds) {
    w.insert(w.end(), kind.block_tables.begin(), kind.block_tables.end());
    w.insert(w.end(), kind.slot_mapping.begin(), kind.slot_mapping.end());
  }
  return w;
}

bool DecodeStepPlan(const std::vector<int64_t>& w, StepPlan* plan) {
  constexpr size_t kFixed = 4 + 3 * kNumAttentionKinds;
  if (w.size() < kFixed) return false;
  const int64_t t = w[0], c = w[1];
  if (t < 0 || c < 0) return false;
  int64_t need = static_cast<int64_t>(kFixed) + 2 * t + 3 * c;
  for (int k = 0; k < kNumAttentionKinds; ++k) {
    const int64_t tables = w[5 + 3 * k], slots = w[6 + 3 * k];
    if (tables < 0 || slots < 0) return false;
    need += tables + slots;
  }
  if (need != static_cast<int64_t>(w.size())) return false;
  StepPlan p;
  p.block_size = static_cast<int>(w[2]);
  p.all_logits = w[3] != 0;
  auto it = w.begin() + kFixed;
  p.token_ids.assign(it, it + t);
  it += t;
  p.positions.assign(it, it + t);
  it += t;
  for (int64_t i = 0; i < c; ++i, it += 3) p.chunks.push_back({it[0], it[1], it[2] != 0});
  for (int k = 0; k < kNumAttentionKinds; ++k) {
    auto& kind = p.kinds[k];
    kind.max_blocks = static_cast<int32_t>(w[4 + 3 * k]);
    const int64_t tables = w[5 + 3 * k], slots = w[6 + 3 * k];
    kind.block_tables.assign(it, it + tables);
    it += tables;
    kind.slot_mapping.assign(it, it + slots);
    it += slots;
  }
  *plan = std::move(p);
  return true;
}

void SendStep(Collectives& comm, const StepPlan& plan) {
  std::vector<int64_t> words = EncodeStepPlan(plan);
  at::Tensor header = Header(ControlOp::kStep, static_cast<int64_t>(words.size()));
  comm.Broadcast(header);
  at::Tensor payload = at::from_blob(words.data(), {static_cast<int64_t>(words.size())},
                                     at::TensorOptions().dtype(at::kLong));
  comm.Broadcast(payload);
}

void SendHeartbeat(Collectives& comm) {
  at::Tensor header = Header(ControlOp::kHeartbeat, 0);
  comm.Broadcast(header);
  JoinHeartbeat(comm);
}

void SendStop(Collectives& comm) {
  at::Tensor header = Header(ControlOp::kStop, 0);
  comm.Broadcast(header);
}

ControlMessage ReceiveControl(Collectives& comm) {
  at::Tensor header = at::zeros({kHeaderWords}, at::TensorOptions().dtype(at::kLong));
  comm.Broadcast(header);
  ControlMessage m;
  const int64_t op = header.data_ptr<int64_t>()[0], words = header.data_ptr<int64_t>()[1];
  TORCH_CHECK(op >= 1 && op <= 3 && words >= 0, "malformed control header from rank 0 (op ", op, ")");
  m.op = static_cast<ControlOp>(op);
  if (m.op == ControlOp::kHeartbeat) JoinHeartbeat(comm);
  if (m.op != ControlOp::kStep) return m;
  std::vector<int64_t> payload(static_cast<size_t>(words));
  at::Tensor t = at::from_blob(payload.data(), {words}, at::TensorOptions().dtype(at::kLong));
  comm.Broadcast(t);
  TORCH_CHECK(DecodeStepPlan(payload, &m.plan), "malformed step plan from rank 0 (", words, " words)");
  return m;
}

}  // namespace stepserve
