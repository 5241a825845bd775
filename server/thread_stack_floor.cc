// Raises small explicit thread stack sizes so that civetweb (the /metrics HTTP server inside
// prometheus-cpp) can start its threads when OpenBLAS is the process's BLAS.
//
// Why: glibc carves a new thread's static TLS out of the stack size the caller asked for
// (glibc bug 11787). civetweb asks for 100 KiB stacks; libopenblas (60 KiB of static TLS), libglog
// (30 KiB) and libtorch_cpu (10 KiB) together leave too little, so pthread_create fails with EINVAL and
// Exposer throws "null context when constructing CivetServer". This definition in the stepserve
// executable interposes the libc one and gives every explicit request at least kMinThreadStackBytes.
#include <dlfcn.h>
#include <pthread.h>

#include <algorithm>
#include <cstddef>

namespace {
constexpr size_t kMinThreadStackBytes = size_t{1} << 20;  // 1 MiB: ample for ~110 KiB TLS + civetweb's 100 KiB
using SetStackSizeFn = int (*)(pthread_attr_t*, size_t);

SetStackSizeFn RealSetStackSize() {
  static const SetStackSizeFn real =
      reinterpret_cast<SetStackSizeFn>(dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
  return real;
}
}  // namespace

extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr, size_t stack_size) {
  SetStackSizeFn real = RealSetStackSize();
  if (real == nullptr) return 0;  // keep the default (8 MiB) stack rather than fail thread creation
  return real(attr, std::max(stack_size, kMinThreadStackBytes));
}
