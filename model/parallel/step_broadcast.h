// The control messages rank 0 sends the other ranks of a tensor-parallel group, over the communicator's
// control plane: a step (the whole StepPlan, a few int64 arrays), a heartbeat (every rank joins, so a dead
// or hung rank shows within the collective timeout even when no request is running), or stop.
// Every message is a fixed-size header broadcast, then, for a step, one payload broadcast.
#pragma once

#include "model/parallel/communicator.h"
#include "model/step_plan.h"

namespace stepserve {

enum class ControlOp : int64_t { kStep = 1, kHeartbeat = 2, kStop = 3 };

struct ControlMessage {
  ControlOp op = ControlOp::kStop;
  StepPlan plan;  // kStep only
};

// Rank 0. Throw c10::Error when a rank has failed or the collective timed out.
void SendStep(Communicator& comm, const StepPlan& plan);
void SendHeartbeat(Communicator& comm);
void SendStop(Communicator& comm);

// The other ranks: blocks until rank 0's next message (or throws like the senders).
ControlMessage ReceiveControl(Communicator& comm);

// The plan as int64 words and back (exposed for tests).
std::vector<int64_t> EncodeStepPlan(const StepPlan& plan);
// False on a malformed encoding.
bool DecodeStepPlan(const std::vector<int64_t>& words, StepPlan* plan);

}  // namespace stepserve
