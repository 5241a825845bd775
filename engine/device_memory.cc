#include "engine/device_memory.h"

#include "absl/strings/str_cat.h"

#ifdef STEPSERVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace stepserve {

absl::StatusOr<int64_t> FreeDeviceMemoryBytes(const c10::Device& device) {
  if (!device.is_cuda()) return absl::InvalidArgumentError("free-memory sizing needs a CUDA device");
#ifdef STEPSERVE_CUDA
  int previous = 0;
  cudaGetDevice(&previous);
  cudaSetDevice(device.has_index() ? device.index() : 0);
  size_t free = 0, total = 0;
  const cudaError_t err = cudaMemGetInfo(&free, &total);
  cudaSetDevice(previous);
  if (err != cudaSuccess) return absl::InternalError(absl::StrCat("cudaMemGetInfo: ", cudaGetErrorString(err)));
  return static_cast<int64_t>(free);
#else
  return absl::UnimplementedError("this build has no CUDA support (STEPSERVE_CUDA is off)");
#endif
}

}  // namespace stepserve
