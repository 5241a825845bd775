// Emulation shim (tests/cuda_emulation): the runtime part only (types, errors, launch), no kernel-language macros,
// so host code that includes model/ops/cuda/launchers.h is not affected by threadIdx & co.
#ifndef CUDA_EMU_RUNTIME_ONLY
#define CUDA_EMU_RUNTIME_ONLY
#include "../cuda_emulation.h"
#undef CUDA_EMU_RUNTIME_ONLY
#else
#include "../cuda_emulation.h"
#endif
