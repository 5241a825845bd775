// c10d glue: ProcessGroupGloo (control plane, and the data plane on the CPU) and ProcessGroupNCCL (the
// data plane on CUDA, when the LibTorch has it). Only this file includes the c10d headers.
#include "parallel/communicator.h"

#include <cstdlib>
#include <exception>
#include <functional>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if defined(STEPSERVE_CUDA) && defined(STEPSERVE_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace stepserve {

CollectiveStats Communicator::stats() const {
  CollectiveStats s;
  s.all_reduces = all_reduces_.load();
  s.broadcasts = broadcasts_.load();
  s.seconds = static_cast<double>(nanos_.load()) * 1e-9;
  return s;
}

Communicator::Timer::Timer(Communicator* c, bool broadcast)
    : c_(c), broadcast_(broadcast), start_(std::chrono::steady_clock::now()) {}

Communicator::Timer::~Timer() {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start_);
  c_->nanos_ += ns.count();
  ++(broadcast_ ? c_->broadcasts_ : c_->all_reduces_);
}

namespace {

std::chrono::milliseconds ToMillis(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

// The process groups are held by their concrete types: in LibTorch 1.13 they derive from
// c10d::ProcessGroup, in 2.x from c10d::Backend, and only the members used here exist in both.
class C10dCommunicator : public Communicator {
 public:
  using AllReduce = std::function<void(std::vector<at::Tensor>&)>;
  using AllGatherFn = std::function<void(std::vector<std::vector<at::Tensor>>&, std::vector<at::Tensor>&)>;
  C10dCommunicator(int rank, int world, c10::intrusive_ptr<c10d::ProcessGroupGloo> control, AllReduce all_reduce,
                   AllGatherFn all_gather)
      : rank_(rank),
        world_(world),
        control_(std::move(control)),
        data_all_reduce_(std::move(all_reduce)),
        data_all_gather_(std::move(all_gather)) {}

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }

  void AllReduceSum(at::Tensor& t) override {
    Timer timer(this, false);
    std::vector<at::Tensor> v{t};
    data_all_reduce_(v);
  }

  std::vector<at::Tensor> AllGather(const at::Tensor& t) override {
    Timer timer(this, false);
    std::vector<at::Tensor> input{t.contiguous()};
    std::vector<std::vector<at::Tensor>> output(1);
    for (int r = 0; r < world_; ++r) output[0].push_back(at::empty_like(input[0]));
    data_all_gather_(output, input);
    return output[0];
  }

  void Broadcast(at::Tensor& t) override {
    TORCH_CHECK(t.device().is_cpu(), "Communicator::Broadcast: control tensors live on the host");
    Timer timer(this, true);
    std::vector<at::Tensor> v{t};
    c10d::BroadcastOptions opts;
    opts.rootRank = 0;
    control_->broadcast(v, opts)->wait();
  }

  void AllReduceMin(at::Tensor& t) override {
    TORCH_CHECK(t.device().is_cpu(), "Communicator::AllReduceMin: control tensors live on the host");
    std::vector<at::Tensor> v{t};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::MIN;
    control_->allreduce(v, opts)->wait();
  }

 private:
  int rank_, world_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> control_;
  AllReduce data_all_reduce_;
  AllGatherFn data_all_gather_;
};

std::shared_ptr<::gloo::transport::Device> GlooDevice(const std::string& hostname) {
  if (!hostname.empty()) return c10d::ProcessGroupGloo::createDeviceForHostname(hostname);
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname != '\0') {
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  }
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

// The collective timeout (--dist_timeout_s): a zero, negative or infinite one would make c10d fail later with a
// misleading message (or wait forever), so it is refused here, naming the flag.
absl::Status CheckTimeout(absl::Duration timeout) {
  if (timeout <= absl::ZeroDuration() || timeout == absl::InfiniteDuration() || timeout > absl::Hours(24 * 365)) {
    return absl::InvalidArgumentError(absl::StrCat("--dist_timeout_s: the collective timeout must be positive and ",
                                                   "finite, got ", absl::FormatDuration(timeout)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<Communicator>> ConnectC10dGroup(const c10::intrusive_ptr<c10d::Store>& store,
                                                               const C10dOptions& o) {
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", o.rank, " is outside a group of ", o.world_size));
  }
  RETURN_IF_ERROR(CheckTimeout(o.timeout));
  try {
    auto gloo_options = c10d::ProcessGroupGloo::Options::create(ToMillis(o.timeout));
    gloo_options->devices.push_back(GlooDevice(o.gloo_hostname));
    auto control = c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::make_intrusive<c10d::PrefixStore>("control", store), o.rank, o.world_size, gloo_options);
    C10dCommunicator::AllReduce data;
    C10dCommunicator::AllGatherFn gather;
    if (o.device.is_cuda()) {
#if defined(STEPSERVE_CUDA) && defined(STEPSERVE_NCCL)
      auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
      nccl_options->timeout = ToMillis(o.timeout);
      auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(c10::make_intrusive<c10d::PrefixStore>("data", store),
                                                              o.rank, o.world_size, nccl_options);
      data = [nccl](std::vector<at::Tensor>& v) { nccl->allreduce(v)->wait(); };
      gather = [nccl](std::vector<std::vector<at::Tensor>>& out, std::vector<at::Tensor>& in) {
        nccl->allgather(out, in)->wait();
      };
#else
      return absl::FailedPreconditionError(
          "tensor parallelism on CUDA needs a LibTorch with NCCL (this build has no STEPSERVE_NCCL)");
#endif
    } else {
      auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(c10::make_intrusive<c10d::PrefixStore>("data", store),
                                                              o.rank, o.world_size, gloo_options);
      data = [gloo](std::vector<at::Tensor>& v) { gloo->allreduce(v)->wait(); };
      gather = [gloo](std::vector<std::vector<at::Tensor>>& out, std::vector<at::Tensor>& in) {
        gloo->allgather(out, in)->wait();
      };
    }
    return std::shared_ptr<Communicator>(
        new C10dCommunicator(o.rank, o.world_size, control, std::move(data), std::move(gather)));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("rank ", o.rank, " could not join the group of ", o.world_size,
                                               ": ", e.what()));
  }
}

absl::StatusOr<c10::intrusive_ptr<c10d::Store>> ConnectTcpStore(const std::string& host, int port, bool is_server,
                                                                int world_size, absl::Duration timeout,
                                                                int* bound_port) {
  if (port < 0 || port > 65535) return absl::InvalidArgumentError(absl::StrCat("--dist_addr: bad port ", port));
  RETURN_IF_ERROR(CheckTimeout(timeout));
  try {
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<uint16_t>(port);
    opts.isServer = is_server;
    opts.numWorkers = world_size;
    opts.waitWorkers = false;  // the process groups wait for every rank themselves
    opts.timeout = ToMillis(timeout);
    auto store = c10::make_intrusive<c10d::TCPStore>(host, opts);
    if (bound_port != nullptr) *bound_port = store->getPort();
    return c10::intrusive_ptr<c10d::Store>(store);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("--dist_addr=", host, ":", port, ": cannot ",
                                               is_server ? "host" : "reach", " the rendezvous store: ", e.what()));
  }
}

}  // namespace stepserve
