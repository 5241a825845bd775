// The CUDA twin of the clamped SwiGLU: ATen glue around LaunchClampedSwiGlu.
#include <vector>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>

#include "model/ops/cuda_util.h"
#include "model/ops/swiglu.h"

namespace stepserve {

namespace kc = ::stepserve::cuda;
using namespace ::stepserve::cuda_util;

at::Tensor ClampedSwiGluCuda(const at::Tensor& gate_up, double limit) {
  TORCH_CHECK(gate_up.is_cuda(), "ClampedSwiGluCuda: gate_up must be on a CUDA device");
  c10::cuda::CUDAGuard guard(gate_up.device());
  const kc::DType dt = StorageType(gate_up, "ClampedSwiGluCuda gate_up");
  at::Tensor gu = gate_up.contiguous();
  TORCH_CHECK(gu.dim() >= 1 && gu.size(-1) % 2 == 0, "ClampedSwiGluCuda: last dim must be even");
  const int64_t inter = gu.size(-1) / 2;
  std::vector<int64_t> sizes(gu.sizes().begin(), gu.sizes().end());
  sizes.back() = inter;
  at::Tensor out = at::empty(sizes, gu.options());
  const int64_t rows = inter == 0 ? 0 : out.numel() / inter;
  Check(kc::LaunchClampedSwiGlu(dt, gu.data_ptr(), out.data_ptr(), rows, inter, static_cast<float>(limit), Stream()),
        "LaunchClampedSwiGlu");
  return out;
}

}  // namespace stepserve
