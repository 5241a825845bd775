#include "model/ops/cuda_util.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>

namespace stepserve::cuda_util {

namespace kc = ::stepserve::cuda;

void Check(cudaError_t err, const char* what) { TORCH_CHECK(err == cudaSuccess, what, ": ", cudaGetErrorString(err)); }

kc::DType StorageType(const at::Tensor& t, const char* name) {
  if (t.scalar_type() == at::kFloat) return kc::DType::kFloat32;
  if (t.scalar_type() == at::kBFloat16) return kc::DType::kBFloat16;
  TORCH_CHECK(false, name, ": expected float32 or bfloat16, got ", t.scalar_type());
  return kc::DType::kFloat32;
}

void CheckCuda(const at::Tensor& t, const at::Tensor& ref, const char* name) {
  TORCH_CHECK(t.defined() && t.is_cuda() && t.device() == ref.device(), name, ": expected a tensor on ", ref.device());
}

at::Tensor NormWeight(const at::Tensor& weight, const at::Tensor& ref, const char* name) {
  CheckCuda(weight, ref, name);
  at::Tensor w = weight.contiguous();
  if (w.scalar_type() != at::kFloat && w.scalar_type() != ref.scalar_type()) w = w.to(at::kFloat);
  return w;
}

cudaStream_t Stream() { return c10::cuda::getCurrentCUDAStream(); }

int NumSms(int device) {
  static int cached[64] = {};
  if (device < 0 || device >= 64) return 132;
  if (cached[device] == 0) {
    int n = 0;
    if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || n <= 0) n = 132;
    cached[device] = n;
  }
  return cached[device];
}

}  // namespace stepserve::cuda_util
