#include "engine/step_runner.h"

#include <exception>

#include "absl/strings/str_cat.h"
#include "common/exception_text.h"
#include "common/logging.h"
#include "engine/step_broadcast.h"

namespace stepserve {

bool StepRunner::leads_group() const {
  const ParallelContext& parallel = model_.parallel();
  return parallel.distributed() && parallel.config.rank == 0;
}

absl::StatusOr<at::Tensor> StepRunner::Run(const StepPlan& plan, KvPools* pools,
                                            const CausalLM::LayerObserver& observer) const {
  if (leads_group()) {
    // Every check passes on rank 0 before the other ranks hear of the step, so they never get a bad plan.
    if (absl::Status bad = model_.CheckPlan(plan, pools); !bad.ok()) return bad;
    SendStep(*model_.parallel().comm, plan);
  }
  return model_.Execute(plan, pools, observer);
}

void StepRunner::Heartbeat() const {
  if (leads_group()) SendHeartbeat(*model_.parallel().comm);
}

void StepRunner::Stop() const {
  if (leads_group()) SendStop(*model_.parallel().comm);
}

absl::Status ServeWorkerSteps(const CausalLM& model, KvPools* pools) {
  const ParallelContext& parallel = model.parallel();
  if (!parallel.distributed() || parallel.config.rank == 0) {
    return absl::FailedPreconditionError("ServeWorkerSteps runs on the ranks other than 0 of a group");
  }
  Collectives& comm = *parallel.comm;
  int64_t steps = 0;
  try {
    while (true) {
      ControlMessage m = ReceiveControl(comm);
      if (m.op == ControlOp::kStop) {
        LogInfo("rank ", comm.rank(), ": stop from rank 0 after ", steps, " steps");
        return absl::OkStatus();
      }
      if (m.op != ControlOp::kStep) continue;  // a heartbeat (ReceiveControl joined it)
      // Rank 0 checked the plan before sending it, so an error here means the ranks disagree (different
      // models or flags): the group cannot go on.
      absl::StatusOr<at::Tensor> out = model.Execute(m.plan, pools);
      if (!out.ok()) {
        return absl::InternalError(absl::StrCat("rank ", comm.rank(), ": step ", steps,
                                                " failed here but not on rank 0: ", out.status().message()));
      }
      ++steps;
    }
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("rank ", comm.rank(), ": the tensor-parallel group failed after ",
                                               steps, " steps: ", ExceptionText(e)));
  }
}

}  // namespace stepserve
