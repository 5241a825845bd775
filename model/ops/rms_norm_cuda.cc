// The CUDA twin of RMSNorm: ATen glue around LaunchAddRmsNorm (model/ops/cuda/rms_norm.cu).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>

#include "model/ops/cuda_util.h"
#include "model/ops/rms_norm.h"

namespace stepserve {

namespace kc = ::stepserve::cuda;
using namespace ::stepserve::cuda_util;

at::Tensor RmsNormCuda(const at::Tensor& x, const at::Tensor& weight, double eps) {
  TORCH_CHECK(x.is_cuda(), "RmsNormCuda: x must be on a CUDA device");
  c10::cuda::CUDAGuard guard(x.device());
  const kc::DType dt = StorageType(x, "RmsNormCuda x");
  at::Tensor xc = x.contiguous();
  at::Tensor w = NormWeight(weight, x, "RmsNormCuda weight");
  const int64_t hidden = x.size(-1);
  TORCH_CHECK(w.numel() == hidden, "RmsNormCuda: weight has ", w.numel(), " elements, expected ", hidden);
  at::Tensor out = at::empty_like(xc);
  Check(kc::LaunchAddRmsNorm(dt, StorageType(w, "weight"), nullptr, xc.data_ptr(), w.data_ptr(), out.data_ptr(),
                             hidden == 0 ? 0 : xc.numel() / hidden, hidden, static_cast<float>(eps), Stream()),
        "LaunchAddRmsNorm");
  return out;
}

at::Tensor AddRmsNormCuda(const at::Tensor& x, at::Tensor& residual, const at::Tensor& weight, double eps) {
  TORCH_CHECK(residual.is_cuda(), "AddRmsNormCuda: residual must be on a CUDA device");
  if (!residual.is_contiguous() || x.scalar_type() != residual.scalar_type()) {
    return AddRmsNormCpu(x, residual, weight, eps);  // the ATen twin handles any layout
  }
  c10::cuda::CUDAGuard guard(residual.device());
  CheckCuda(x, residual, "AddRmsNormCuda x");
  TORCH_CHECK(x.sizes() == residual.sizes(), "AddRmsNormCuda: x and residual differ in shape");
  const kc::DType dt = StorageType(residual, "AddRmsNormCuda residual");
  at::Tensor xc = x.contiguous();
  at::Tensor w = NormWeight(weight, residual, "AddRmsNormCuda weight");
  const int64_t hidden = residual.size(-1);
  TORCH_CHECK(w.numel() == hidden, "AddRmsNormCuda: weight has ", w.numel(), " elements, expected ", hidden);
  at::Tensor out = at::empty_like(residual);
  Check(kc::LaunchAddRmsNorm(dt, StorageType(w, "weight"), xc.data_ptr(), residual.data_ptr(), w.data_ptr(),
                             out.data_ptr(), hidden == 0 ? 0 : residual.numel() / hidden, hidden,
                             static_cast<float>(eps), Stream()),
        "LaunchAddRmsNorm");
  return out;
}

}  // namespace stepserve
