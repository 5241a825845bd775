// Emulation shim (tests/cuda_emulation): __nv_bfloat16 and its conversions come with the whole emulation.
#include "../cuda_emulation.h"
