// The CUDA twin of RMSNorm: ATen glue around LaunchAddRmsNorm (model/ops/cuda/rms_norm.cu).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>

#include "model/ops/cuda_util.h"
#include "model/ops/rms_norm.h"

namespace stepserve {

namespace kc = ::stepserve::cuda;
using namespace ::stepserve::cuda_util;

namespace {

// out = RmsNorm(residual) after residual += x when x is defined (x == nullptr: a plain norm; residual is
// then only read). residual is contiguous, of the storage dtype.
at::Tensor LaunchNorm(const at::Tensor* x, const at::Tensor& residual, const at::Tensor& weight, double eps,
                      const char* name) {
  c10::cuda::CUDAGuard guard(residual.device());
  const kc::DType dt = StorageType(residual, name);
  at::Tensor w = NormWeight(weight, residual, name);
  const int64_t hidden = residual.size(-1);
  TORCH_CHECK(w.numel() == hidden, name, ": weight has ", w.numel(), " elements, expected ", hidden);
  at::Tensor xc;
  if (x != nullptr) {
    CheckCuda(*x, residual, name);
    TORCH_CHECK(x->sizes() == residual.sizes(), name, ": x and residual differ in shape");
    xc = x->contiguous();
  }
  at::Tensor out = at::empty_like(residual);
  Check(kc::LaunchAddRmsNorm(dt, StorageType(w, "weight"), xc.defined() ? xc.data_ptr() : nullptr,
                             residual.data_ptr(), w.data_ptr(), out.data_ptr(),
                             hidden == 0 ? 0 : residual.numel() / hidden, hidden, static_cast<float>(eps), Stream()),
        "LaunchAddRmsNorm");
  return out;
}

}  // namespace

at::Tensor RmsNormCuda(const at::Tensor& x, const at::Tensor& weight, double eps) {
  TORCH_CHECK(x.is_cuda(), "RmsNormCuda: x must be on a CUDA device");
  return LaunchNorm(nullptr, x.contiguous(), weight, eps, "RmsNormCuda");
}

at::Tensor AddRmsNormCuda(const at::Tensor& x, at::Tensor& residual, const at::Tensor& weight, double eps) {
  TORCH_CHECK(residual.is_cuda(), "AddRmsNormCuda: residual must be on a CUDA device");
  if (!residual.is_contiguous() || x.scalar_type() != residual.scalar_type()) {
    return AddRmsNormAten(x, residual, weight, eps);  // the ATen twin handles any layout
  }
  return LaunchNorm(&x, residual, weight, eps, "AddRmsNormCuda");
}

}  // namespace stepserve
