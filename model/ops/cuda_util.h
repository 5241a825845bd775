// Shared checks and handles of the ATen wrappers of the CUDA kernels (built only with STEPSERVE_CUDA).
#pragma once

#include <ATen/core/Tensor.h>
#include <cuda_runtime_api.h>

#include "model/ops/cuda/launchers.h"

namespace stepserve::cuda_util {

// TORCH_CHECKs a launcher's result.
void Check(cudaError_t err, const char* what);
// fp32 or bf16 storage, else a TORCH_CHECK failure naming `name`.
::stepserve::cuda::DType StorageType(const at::Tensor& t, const char* name);
// `t` is defined and on ref's CUDA device.
void CheckCuda(const at::Tensor& t, const at::Tensor& ref, const char* name);
// Norm weights may be fp32 or the storage dtype; anything else is converted to fp32. Contiguous.
at::Tensor NormWeight(const at::Tensor& weight, const at::Tensor& ref, const char* name);
// The current CUDA stream of the current device.
cudaStream_t Stream();
// Multiprocessors of `device` (cached), for split-K decisions.
int NumSms(int device);

}  // namespace stepserve::cuda_util
