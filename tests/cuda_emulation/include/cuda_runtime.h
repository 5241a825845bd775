// Emulation shim (tests/cuda_emulation): the whole emulation, runtime and kernel language.
#include "../cuda_emulation.h"
