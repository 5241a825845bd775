// Free memory on a device, for sizing the KV cache as a fraction of what is left after the weights.
#pragma once

#include <cstdint>

#include <c10/core/Device.h>

#include "absl/status/statusor.h"

namespace stepserve {

// Bytes free on `device` (CUDA only; builds without STEPSERVE_CUDA return UNIMPLEMENTED).
absl::StatusOr<int64_t> FreeDeviceMemoryBytes(const c10::Device& device);

}  // namespace stepserve
