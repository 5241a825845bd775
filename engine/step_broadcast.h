// The control messages rank 0 sends the other ranks of a tensor-parallel group, over the communicator's
// control plane: a step (the whole StepPlan, a few int64 arrays), a heartbeat (every rank joins, so a dead
// or hung rank shows within the collective timeout even when no request is running), or stop.
// Every message is a fixed-size header broadcast, then, for a step, one payload broadcast.
#pragma once

#include "model/layers/collectives.h"
#include "model/layers/step_plan.h"

namespace stepserve {

enum class ControlOp : int64_t { kStep = 1, kHeartbeat = 2, kStop = 3 };

struct ControlMessage {
  ControlOp op = ControlOp::kStop;
  StepPlan plan;  // kStep only
};

// Rank 0. Throw c10::Error when a rank has failed or the collective timed out.
void SendStep(Collectives& comm, const StepPlan& plan);
void SendHeartbeat(Collectives& comm);
void SendStop(Collectives& comm);

// The other ranks: blocks until rank 0's next message (or throws like the senders).
ControlMessage ReceiveControl(Collectives& comm);

// The plan as int64 words and back (exposed for tests).
std::vector<int64_t> EncodeStepPlan(const StepPlan& plan);
// False on a malformed encoding.
bool DecodeStepPlan(const std::vector<int64_t>& words, StepPlan* plan);

}  // namespace stepserve
