// A header-only emulation of the CUDA execution model, so that CUDA C++ kernels compile as host C++ (g++ -x c++)
// and run on host memory in CI machines without a GPU. C++17, Linux (ucontext).
//
// It provides what the stepserve kernels (model/ops/cuda/*.cu) use and little more:
//   - kernel language: __global__/__device__/__host__/__forceinline__/__launch_bounds__, __shared__, threadIdx,
//     blockIdx, blockDim, gridDim, warpSize, __syncthreads, __syncwarp, __shfl{,_xor,_up,_down}_sync,
//     __ballot_sync/__any_sync/__all_sync, __popc, atomicAdd, rsqrtf, device min/max, __nv_bfloat16 and its
//     conversions (round to nearest even, bit-identical to c10::BFloat16);
//   - runtime: dim3/uint3, cudaError_t, cudaGetLastError/cudaPeekAtLastError/cudaGetErrorString, cudaStream_t,
//     cudaMemsetAsync (a host memset), and a launch function (cuda_emu::MakeLaunch, what STEPSERVE_LAUNCH
//     expands to instead of `kernel<<<grid, block, smem, stream>>>`).
//
// How a launch runs: blocks run one after another on the calling OS thread; the threads of a block run as fibers
// (ucontext, one stack per thread of the largest block seen, allocated once and reused) scheduled cooperatively.
// A thread runs until it reaches a barrier or a warp collective, or exits; then the next ready thread runs.
//   __syncthreads: waits until every thread of the block has arrived (at the same call site).
//   warp collectives: wait until every lane named in the mask has arrived at the same kind of collective with the
//     same mask, then each lane reads the snapshot of the values (lanes are linear thread id % 32, warps are 32
//     consecutive linear thread ids).
// __shared__ is a function-local `static`: blocks run one at a time and a global mutex serialises launches, so
// one copy serves every block. Dynamic shared memory (STEPSERVE_DYNAMIC_SHARED) is a heap buffer of exactly the
// launch's size, filled with 0xff bytes (NaN as floats) before each block.
//
// Faults are reported, never hung on: a __syncthreads that some threads of the block can no longer reach (they
// exited), one reached at different call sites, a warp collective whose mask names a lane that exited, does not
// exist, or never arrives, a mask that leaves out the calling lane, a shuffle reading a lane outside the mask, or
// any state where no thread can run. The launch stops at the faulting block; it returns cudaErrorLaunchFailure,
// which cudaGetLastError also reports (sticky until read), and cuda_emu::LastFaultMessage() says what happened.
// Not emulated: memory ordering beyond barriers, concurrency between blocks, timing, occupancy, registers,
// device faults (a wild pointer is a host access: a crash, or an AddressSanitizer report).
//
// Under AddressSanitizer the fiber switches are annotated (__sanitizer_{start,finish}_switch_fiber).
//
// Include this header after other headers: it defines the macros threadIdx, blockIdx, blockDim, gridDim,
// __global__, __shared__, ... and global min/max/rsqrtf overloads. With CUDA_EMU_RUNTIME_ONLY defined (the
// cuda_runtime_api.h shim does that) it declares only the runtime part (types, errors, launch), no kernel macros.
#ifndef STEPSERVE_CUDA_EMULATION_RUNTIME_H_
#define STEPSERVE_CUDA_EMULATION_RUNTIME_H_

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define CUDA_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUDA_EMU_ASAN 1
#endif
#endif
#ifndef CUDA_EMU_ASAN
#define CUDA_EMU_ASAN 0
#endif
#if CUDA_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// ---- Runtime types ------------------------------------------------------------------------------------------

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}  // NOLINT: implicit, as in CUDA
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

// The values of the real enumerators, so logs read the same.
enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotSupported = 801,
};
typedef enum cudaError cudaError_t;

// A distinct type (not CUstream_st), so emulated launchers never link against real ones by accident.
struct cuda_emu_stream_st;
typedef cuda_emu_stream_st* cudaStream_t;

// bf16 storage: the same 16 bits as at::BFloat16 / the real __nv_bfloat16.
struct __nv_bfloat16 {
  unsigned short __x;
};

inline float __bfloat162float(__nv_bfloat16 h) {
  const uint32_t bits = static_cast<uint32_t>(h.__x) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Round to nearest even, NaN -> 0x7fc0: bit-identical to c10::detail::round_to_nearest_even.
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  __nv_bfloat16 h;
  if (std::isnan(f)) {
    h.__x = 0x7fc0;
    return h;
  }
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  const uint32_t rounding_bias = ((bits >> 16) & 1u) + 0x7fffu;
  h.__x = static_cast<unsigned short>((bits + rounding_bias) >> 16);
  return h;
}
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }

namespace cuda_emu {

// Counters over the process (all host threads); for tests that want to know a launch really ran.
struct Stats {
  uint64_t launches = 0;  // launches that ran (all blocks, or up to a fault)
  uint64_t rejected = 0;  // launches refused before running (bad configuration, nested launch)
  uint64_t blocks = 0;    // blocks started
  uint64_t threads = 0;   // threads started
  uint64_t faults = 0;    // launches stopped by a fault
  uint64_t switches = 0;  // fiber switches
};

namespace detail {

struct Counters {
  std::atomic<uint64_t> launches{0}, rejected{0}, blocks{0}, threads{0}, faults{0}, switches{0};
};
inline Counters g_counters;

// CUDA keeps the last error per host thread.
inline thread_local cudaError_t t_last_error = cudaSuccess;
inline thread_local std::string t_fault_message;

inline void RecordError(cudaError_t e) {
  if (t_last_error == cudaSuccess) t_last_error = e;  // sticky until read
}

inline std::mutex& LaunchMutex() {
  static std::mutex m;
  return m;
}

}  // namespace detail

inline Stats GetStats() {
  const detail::Counters& c = detail::g_counters;
  Stats s;
  s.launches = c.launches.load();
  s.rejected = c.rejected.load();
  s.blocks = c.blocks.load();
  s.threads = c.threads.load();
  s.faults = c.faults.load();
  s.switches = c.switches.load();
  return s;
}

// The message of the last fault of a launch from this host thread ("" if none since ClearLastFault()).
inline const std::string& LastFaultMessage() { return detail::t_fault_message; }
inline void ClearLastFault() { detail::t_fault_message.clear(); }

// Whether faults are also printed to stderr when they happen (default: yes).
inline std::atomic<bool>& PrintFaults() {
  static std::atomic<bool> on{true};
  return on;
}

namespace detail {

enum class State : uint8_t { kReady, kBarrier, kWarp, kDone };
enum class WarpOp : uint8_t { kSyncWarp, kShfl, kShflXor, kShflUp, kShflDown, kBallot, kAny, kAll };

inline const char* WarpOpName(WarpOp op) {
  switch (op) {
    case WarpOp::kSyncWarp: return "__syncwarp";
    case WarpOp::kShfl: return "__shfl_sync";
    case WarpOp::kShflXor: return "__shfl_xor_sync";
    case WarpOp::kShflUp: return "__shfl_up_sync";
    case WarpOp::kShflDown: return "__shfl_down_sync";
    case WarpOp::kBallot: return "__ballot_sync";
    case WarpOp::kAny: return "__any_sync";
    case WarpOp::kAll: return "__all_sync";
  }
  return "?";
}

struct Site {
  const char* file = "?";
  int line = 0;
};

inline std::string SiteString(Site s) {
  const char* base = std::strrchr(s.file, '/');
  return std::string(base != nullptr ? base + 1 : s.file) + ":" + std::to_string(s.line);
}

inline std::string Hex(unsigned v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", v);
  return buf;
}

inline std::string Dim(uint3 v) {
  return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}

struct EmuThread {
  uint3 idx{0, 0, 0};
  int linear = 0;
  State state = State::kReady;
  // The pending barrier or warp collective.
  Site site;
  WarpOp op = WarpOp::kSyncWarp;
  unsigned mask = 0;
  int arg = 0, width = 32, size = 0;
  uint64_t value = 0, result = 0;
};

struct Fiber {
  ucontext_t ctx;
  char* map = nullptr;    // mmap'ed: one guard page, then the stack
  char* stack = nullptr;  // lowest usable address
  size_t size = 0;
  bool live = false;      // parked in FiberMain's loop (or never started: false)
  void* fake_stack = nullptr;
};

#if CUDA_EMU_ASAN
constexpr size_t kStackBytes = size_t{128} << 10;  // ASan clears a stack's shadow on every switch into it
#else
constexpr size_t kStackBytes = size_t{64} << 10;
#endif

using Body = void (*)(const void* bound);

class Engine;
inline Engine* g_engine = nullptr;  // the engine of the running launch (launches are serialised)

class Engine {
 public:
  static Engine& Get() {
    static Engine* e = new Engine();  // never destroyed: fibers may be parked on its stacks at exit
    return *e;
  }

  // Runs every block of a launch; caller holds LaunchMutex(). Returns cudaSuccess or cudaErrorLaunchFailure.
  cudaError_t Run(Body body, const void* bound, dim3 grid, dim3 block, size_t smem, const char* name, Site site) {
    body_ = body;
    bound_ = bound;
    grid_ = grid;
    block_ = block;
    n_ = static_cast<int>(block.x * block.y * block.z);
    EnsureFibers(n_);
    threads_.assign(n_, EmuThread{});
    for (int i = 0; i < n_; ++i) {
      EmuThread& t = threads_[i];
      t.linear = i;
      t.idx = uint3{static_cast<unsigned>(i) % block.x, (static_cast<unsigned>(i) / block.x) % block.y,
                    static_cast<unsigned>(i) / (block.x * block.y)};
    }
    smem_size_ = smem;
    std::unique_ptr<unsigned char[]> smem_buf(new unsigned char[smem]);  // exact size: ASan sees overruns
    smem_ = smem_buf.get();
    g_engine = this;
    g_counters.launches.fetch_add(1);
    cudaError_t result = cudaSuccess;
    for (unsigned z = 0; z < grid.z && result == cudaSuccess; ++z) {
      for (unsigned y = 0; y < grid.y && result == cudaSuccess; ++y) {
        for (unsigned x = 0; x < grid.x; ++x) {
          block_idx_ = uint3{x, y, z};
          std::memset(smem_, 0xff, smem);
          g_counters.blocks.fetch_add(1);
          g_counters.threads.fetch_add(static_cast<uint64_t>(n_));
          if (!RunBlock()) {
            std::string msg = "kernel " + std::string(name) + " (launched at " + SiteString(site) + ", grid " +
                              Dim(grid) + ", block " + Dim(block) + "): block " + Dim(block_idx_) + ": " + fault_;
            if (PrintFaults().load()) std::fprintf(stderr, "[cuda_emu] fault: %s\n", msg.c_str());
            t_fault_message = std::move(msg);
            g_counters.faults.fetch_add(1);
            result = cudaErrorLaunchFailure;
            break;
          }
        }
      }
    }
    g_engine = nullptr;
    smem_ = nullptr;
    return result;
  }

  // ---- What the kernel-language macros call (from inside a fiber) ----

  const uint3& ThreadIdx() const { return threads_[cur_].idx; }
  const uint3& BlockIdx() const { return block_idx_; }
  const dim3& BlockDim() const { return block_; }
  const dim3& GridDim() const { return grid_; }
  void* DynamicShared() const { return smem_; }

  void SyncThreads(Site site) {
    EmuThread& me = threads_[cur_];
    me.state = State::kBarrier;
    me.site = site;
    if (done_ > 0) {
      RecordFault(DivergentBarrierMessage());
      AbandonFiber();
    }
    if (++barrier_waiting_ == n_) {
      for (const EmuThread& t : threads_) {
        if (t.site.line != site.line || (t.site.file != site.file && std::strcmp(t.site.file, site.file) != 0)) {
          RecordFault("__syncthreads reached at different call sites: thread " + Dim(me.idx) + " at " +
                      SiteString(site) + ", thread " + Dim(t.idx) + " at " + SiteString(t.site));
          AbandonFiber();
        }
      }
      barrier_waiting_ = 0;
      for (EmuThread& t : threads_) t.state = State::kReady;
      return;
    }
    Yield();
  }

  template <typename T>
  T Warp(WarpOp op, unsigned mask, T value, int arg, int width, Site site) {
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= sizeof(uint64_t),
                  "warp collectives of trivially copyable values up to 8 bytes");
    EmuThread& me = threads_[cur_];
    const int lane = me.linear & 31;
    if (((mask >> lane) & 1u) == 0) {
      RecordFault(std::string(WarpOpName(op)) + " at " + SiteString(site) + ": thread " + Dim(me.idx) + " (lane " +
                  std::to_string(lane) + ") is not in its own mask " + Hex(mask));
      AbandonFiber();
    }
    if (width <= 0 || width > 32 || (width & (width - 1)) != 0) {
      RecordFault(std::string(WarpOpName(op)) + " at " + SiteString(site) + ": width " + std::to_string(width) +
                  " is not a power of two <= 32");
      AbandonFiber();
    }
    me.state = State::kWarp;
    me.site = site;
    me.op = op;
    me.mask = mask;
    me.arg = arg;
    me.width = width;
    me.size = static_cast<int>(sizeof(T));
    me.value = 0;
    std::memcpy(&me.value, &value, sizeof(T));
    TryCompleteWarp(me);
    if (me.state != State::kReady) Yield();
    T out;
    std::memcpy(&out, &me.result, sizeof(T));
    return out;
  }

 private:
  Engine() { std::memset(&sched_ctx_, 0, sizeof(sched_ctx_)); }

  static size_t PageSize() {
    static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return page;
  }

  void EnsureFibers(int n) {
    while (static_cast<int>(fibers_.size()) < n) {
      auto f = std::make_unique<Fiber>();
      const size_t page = PageSize();
      void* map = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (map == MAP_FAILED) {
        std::fprintf(stderr, "[cuda_emu] cannot map a fiber stack\n");
        std::abort();
      }
      mprotect(map, page, PROT_NONE);  // guard page: a stack overflow faults instead of corrupting a neighbour
      f->map = static_cast<char*>(map);
      f->stack = f->map + page;
      f->size = kStackBytes;
      fibers_.push_back(std::move(f));
    }
  }

  Fiber& Prepare(int i) {
    Fiber& f = *fibers_[i];
    if (!f.live) {
#if CUDA_EMU_ASAN
      __asan_unpoison_memory_region(f.stack, f.size);  // an abandoned fiber may have left poisoned frames
#endif
      getcontext(&f.ctx);
      f.ctx.uc_stack.ss_sp = f.stack;
      f.ctx.uc_stack.ss_size = f.size;
      f.ctx.uc_link = nullptr;  // FiberMain never returns
      makecontext(&f.ctx, &Engine::FiberMain, 0);
      f.fake_stack = nullptr;
      f.live = true;
    }
    return f;
  }

  static void FiberMain() {
    Engine& e = *g_engine;
    e.ArrivedInFiber(nullptr);
    for (;;) {
      e.body_(e.bound_);
      e.ThreadExit();
    }
  }

  // ---- Switches (with the AddressSanitizer fiber annotations) ----

  static void StartSwitch(void** fake_save, const void* bottom, size_t size) {
#if CUDA_EMU_ASAN
    __sanitizer_start_switch_fiber(fake_save, bottom, size);
#else
    (void)fake_save, (void)bottom, (void)size;
#endif
  }

  void ArrivedInFiber(void* fake) {
#if CUDA_EMU_ASAN
    const void* bottom = nullptr;
    size_t size = 0;
    __sanitizer_finish_switch_fiber(fake, &bottom, &size);
    if (from_scheduler_) {
      sched_bottom_ = bottom;
      sched_size_ = size;
    }
#else
    (void)fake;
#endif
  }

  void SchedulerToFiber(int to) {
    Fiber& f = Prepare(to);
    cur_ = to;
    from_scheduler_ = true;
    g_counters.switches.fetch_add(1, std::memory_order_relaxed);
    StartSwitch(&sched_fake_, f.stack, f.size);
    swapcontext(&sched_ctx_, &f.ctx);
#if CUDA_EMU_ASAN
    __sanitizer_finish_switch_fiber(sched_fake_, nullptr, nullptr);
#endif
  }

  void FiberToFiber(int from, int to) {
    Fiber& a = *fibers_[from];
    Fiber& b = Prepare(to);
    cur_ = to;
    from_scheduler_ = false;
    g_counters.switches.fetch_add(1, std::memory_order_relaxed);
    StartSwitch(&a.fake_stack, b.stack, b.size);
    swapcontext(&a.ctx, &b.ctx);
    ArrivedInFiber(a.fake_stack);
  }

  void FiberToScheduler(int from) {
    Fiber& a = *fibers_[from];
    g_counters.switches.fetch_add(1, std::memory_order_relaxed);
    StartSwitch(&a.fake_stack, sched_bottom_, sched_size_);
    swapcontext(&a.ctx, &sched_ctx_);
    ArrivedInFiber(a.fake_stack);
  }

  // Next thread after `from` (wrapping around) that can run, or -1.
  int NextReady(int from) const {
    for (int k = 1; k <= n_; ++k) {
      const int i = (from + k) % n_;
      if (threads_[i].state == State::kReady) return i;
    }
    return -1;
  }

  // The current thread waits (or has exited): run the next ready thread, or go back to the scheduler.
  void Yield() {
    const int me = cur_;
    const int next = NextReady(me);
    if (next >= 0) {
      FiberToFiber(me, next);
    } else {
      FiberToScheduler(me);
    }
  }

  // A fault in the running thread: record what happened (a statement of its own, so that the temporaries
  // building the message are destroyed before the switch), then AbandonFiber().
  void RecordFault(std::string message) {
    if (fault_.empty()) fault_ = std::move(message);
    faulted_ = true;
  }

  [[noreturn]] void AbandonFiber() {
    const int me = cur_;
    faulted_ = true;
    Fiber& a = *fibers_[me];
    a.live = false;  // abandoned mid-kernel; re-made before its next use
    g_counters.switches.fetch_add(1, std::memory_order_relaxed);
    StartSwitch(nullptr, sched_bottom_, sched_size_);  // nullptr: this fiber's frames are gone for good
    swapcontext(&a.ctx, &sched_ctx_);
    std::abort();  // never resumed
  }

  void ThreadExit() {
    EmuThread& me = threads_[cur_];
    me.state = State::kDone;
    ++done_;
    if (barrier_waiting_ > 0) {
      RecordFault(DivergentBarrierMessage());
      AbandonFiber();
    }
    // A lane of this warp waiting on a collective that names this thread can never be released.
    const int base = me.linear & ~31, lane = me.linear & 31;
    for (int l = 0; l < 32 && base + l < n_; ++l) {
      const EmuThread& t = threads_[base + l];
      if (t.state == State::kWarp && ((t.mask >> lane) & 1u) != 0) {
        RecordFault(std::string(WarpOpName(t.op)) + " at " + SiteString(t.site) + " (mask " + Hex(t.mask) +
                    ") waits in thread " + Dim(t.idx) + " for lane " + std::to_string(lane) + " (thread " +
                    Dim(me.idx) + "), which has exited");
        AbandonFiber();
      }
    }
    Yield();
    // Resumed: this fiber now runs the thread of the same index in the next block (or launch).
  }

  std::string DivergentBarrierMessage() const {
    int waiting = 0, exited = 0;
    const EmuThread* w = nullptr;
    const EmuThread* x = nullptr;
    for (const EmuThread& t : threads_) {
      if (t.state == State::kBarrier) {
        ++waiting;
        if (w == nullptr) w = &t;
      } else if (t.state == State::kDone) {
        ++exited;
        if (x == nullptr) x = &t;
      }
    }
    return "divergent __syncthreads at " + (w != nullptr ? SiteString(w->site) : std::string("?")) + ": " +
           std::to_string(waiting) + " of " + std::to_string(n_) + " threads wait there, but " +
           std::to_string(exited) + " have exited without reaching it (e.g. thread " +
           (x != nullptr ? Dim(x->idx) : std::string("?")) + ")";
  }

  // `me` just arrived at a warp collective: if every lane of its mask is there, release them all.
  void TryCompleteWarp(const EmuThread& me) {
    const int base = me.linear & ~31;
    const unsigned mask = me.mask;
    auto where = [&] {
      return std::string(WarpOpName(me.op)) + " at " + SiteString(me.site) + " in thread " + Dim(me.idx) +
             " (mask " + Hex(mask) + ")";
    };
    for (int l = 0; l < 32; ++l) {
      if (((mask >> l) & 1u) == 0) continue;
      if (base + l >= n_) {
        RecordFault(where() + " names lane " + std::to_string(l) + ", which does not exist (the block has " +
                    std::to_string(n_) + " threads)");
        AbandonFiber();
      }
      const EmuThread& t = threads_[base + l];
      if (t.state == State::kDone) {
        RecordFault(where() + " names lane " + std::to_string(l) + " (thread " + Dim(t.idx) + "), which has exited");
        AbandonFiber();
      }
      if (t.state != State::kWarp || t.mask != mask || t.op != me.op) return;  // not there yet
      if (t.size != me.size) {
        RecordFault(where() + ": lanes exchange values of different sizes (" + std::to_string(t.size) + " and " +
                    std::to_string(me.size) + " bytes)");
        AbandonFiber();
      }
    }
    unsigned votes = 0;
    for (int l = 0; l < 32; ++l) {
      if (((mask >> l) & 1u) != 0 && threads_[base + l].value != 0) votes |= 1u << l;
    }
    for (int l = 0; l < 32; ++l) {
      if (((mask >> l) & 1u) == 0) continue;
      EmuThread& t = threads_[base + l];
      const int w = t.width, seg = l & ~(w - 1);
      int src = l;
      switch (t.op) {
        case WarpOp::kSyncWarp: t.result = 0; break;
        case WarpOp::kBallot: t.result = votes; break;
        case WarpOp::kAny: t.result = votes != 0 ? 1 : 0; break;
        case WarpOp::kAll: t.result = votes == mask ? 1 : 0; break;
        case WarpOp::kShfl: src = seg + (((t.arg % w) + w) % w); break;
        case WarpOp::kShflXor: src = l ^ t.arg; src = (src < 0 || src > seg + w - 1) ? l : src; break;
        case WarpOp::kShflUp: src = l - t.arg; src = src < seg ? l : src; break;
        case WarpOp::kShflDown: src = l + t.arg; src = src > seg + w - 1 ? l : src; break;
      }
      if (t.op == WarpOp::kShfl || t.op == WarpOp::kShflXor || t.op == WarpOp::kShflUp ||
          t.op == WarpOp::kShflDown) {
        if (((mask >> src) & 1u) == 0) {
          RecordFault(std::string(WarpOpName(t.op)) + " at " + SiteString(t.site) + ": lane " + std::to_string(l) +
                      " reads lane " + std::to_string(src) + ", which is not in the mask " + Hex(mask));
          AbandonFiber();
        }
        t.result = threads_[base + src].value;
      }
    }
    for (int l = 0; l < 32; ++l) {
      if (((mask >> l) & 1u) != 0) threads_[base + l].state = State::kReady;
    }
  }

  // Nothing can run but not every thread has exited: say why.
  std::string DeadlockMessage() const {
    struct Group {
      State state;
      WarpOp op;
      unsigned mask;
      Site site;
      int count;
    };
    std::vector<Group> groups;
    int exited = 0;
    for (const EmuThread& t : threads_) {
      if (t.state == State::kDone) {
        ++exited;
        continue;
      }
      bool found = false;
      for (Group& g : groups) {
        if (g.state == t.state && (t.state == State::kBarrier || (g.op == t.op && g.mask == t.mask)) &&
            g.site.line == t.site.line && std::strcmp(g.site.file, t.site.file) == 0) {
          ++g.count;
          found = true;
          break;
        }
      }
      if (!found) groups.push_back(Group{t.state, t.op, t.mask, t.site, 1});
    }
    std::string msg = "deadlock: no thread can run;";
    for (size_t i = 0; i < groups.size() && i < 8; ++i) {
      const Group& g = groups[i];
      msg += " " + std::to_string(g.count) + " wait at " +
             (g.state == State::kBarrier ? std::string("__syncthreads")
                                         : std::string(WarpOpName(g.op)) + "(mask " + Hex(g.mask) + ")") +
             " (" + SiteString(g.site) + ");";
    }
    if (groups.size() > 8) msg += " ...;";
    msg += " " + std::to_string(exited) + " exited";
    return msg;
  }

  bool RunBlock() {
    for (EmuThread& t : threads_) {
      t.state = State::kReady;
      t.site = Site{};
    }
    done_ = 0;
    barrier_waiting_ = 0;
    faulted_ = false;
    fault_.clear();
    for (int next = NextReady(n_ - 1); next >= 0 && !faulted_; next = NextReady(n_ - 1)) SchedulerToFiber(next);
    if (!faulted_ && done_ != n_) {
      fault_ = DeadlockMessage();
      faulted_ = true;
    }
    if (faulted_) {
      for (int i = 0; i < n_; ++i) {
        if (threads_[i].state != State::kDone) fibers_[i]->live = false;  // abandoned mid-kernel
      }
      return false;
    }
    return true;
  }

  Body body_ = nullptr;
  const void* bound_ = nullptr;
  dim3 grid_, block_;
  uint3 block_idx_{0, 0, 0};
  int n_ = 0;
  std::vector<EmuThread> threads_;
  std::vector<std::unique_ptr<Fiber>> fibers_;  // stable addresses: a saved ucontext points into itself
  unsigned char* smem_ = nullptr;
  size_t smem_size_ = 0;

  int cur_ = 0;
  int done_ = 0;
  int barrier_waiting_ = 0;
  bool faulted_ = false;
  std::string fault_;

  ucontext_t sched_ctx_;
  void* sched_fake_ = nullptr;
  const void* sched_bottom_ = nullptr;
  size_t sched_size_ = 0;
  bool from_scheduler_ = false;
};

inline thread_local bool t_in_launch = false;

inline cudaError_t Reject(cudaError_t e) {
  g_counters.rejected.fetch_add(1);
  RecordError(e);
  return e;
}

// Validates the configuration like the runtime does, then runs the launch under the global launch mutex.
inline cudaError_t Launch(Body body, const void* bound, dim3 grid, dim3 block, size_t smem, const char* name,
                          Site site) {
  if (t_in_launch) return Reject(cudaErrorNotSupported);  // no launches from inside a kernel
  const uint64_t threads = static_cast<uint64_t>(block.x) * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
      grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) {
    return Reject(cudaErrorInvalidConfiguration);
  }
  if (smem > 48 * 1024) return Reject(cudaErrorInvalidValue);  // beyond the default dynamic shared limit
  std::lock_guard<std::mutex> lock(LaunchMutex());
  t_in_launch = true;
  const cudaError_t e = Engine::Get().Run(body, bound, grid, block, smem, name, site);
  t_in_launch = false;
  if (e != cudaSuccess) RecordError(e);
  return e;
}

inline Engine& Current() {
  if (g_engine == nullptr) {
    std::fprintf(stderr, "[cuda_emu] a kernel built-in was used outside a kernel launch\n");
    std::abort();
  }
  return *g_engine;
}

}  // namespace detail

// What STEPSERVE_LAUNCH(grid, block, smem, stream, kernel)(args...) builds: the launch configuration bound to a
// kernel; calling it with the arguments converts them to the kernel's parameter types (as a launch does) and runs
// the kernel. Returns the launch's error (cudaGetLastError reports it too).
template <typename... P>
class KernelLaunch {
 public:
  using Fn = void (*)(P...);
  KernelLaunch(Fn fn, dim3 grid, dim3 block, size_t smem, cudaStream_t stream, const char* name, const char* file,
               int line)
      : fn_(fn), grid_(grid), block_(block), smem_(smem), name_(name), site_{file, line} {
    (void)stream;  // one in-order queue: everything runs at once
  }

  template <typename... A>
  cudaError_t operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    struct Bound {
      Fn fn;
      std::tuple<std::decay_t<P>...> params;
    };
    const Bound bound{fn_, std::tuple<std::decay_t<P>...>(std::forward<A>(args)...)};
    return detail::Launch(&Invoke<Bound>, &bound, grid_, block_, smem_, name_, site_);
  }

 private:
  template <typename B>
  static void Invoke(const void* p) {
    const B& b = *static_cast<const B*>(p);
    std::apply(b.fn, b.params);  // each thread gets its own copies of the parameters
  }

  Fn fn_;
  dim3 grid_, block_;
  size_t smem_;
  const char* name_;
  detail::Site site_;
};

template <typename... P>
KernelLaunch<P...> MakeLaunch(void (*fn)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                              const char* name, const char* file, int line) {
  return KernelLaunch<P...>(fn, grid, block, smem, stream, name, file, line);
}

// The dynamic shared memory of the running block (STEPSERVE_DYNAMIC_SHARED).
template <typename T>
T* DynamicShared() {
  return static_cast<T*>(detail::Current().DynamicShared());
}

}  // namespace cuda_emu

// ---- Runtime API -----------------------------------------------------------------------------------------------

inline cudaError_t cudaGetLastError() {
  const cudaError_t e = cuda_emu::detail::t_last_error;
  cuda_emu::detail::t_last_error = cudaSuccess;
  return e;
}

inline cudaError_t cudaPeekAtLastError() { return cuda_emu::detail::t_last_error; }

inline const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
  }
  return "cudaErrorUnknown";
}

inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure (emulated: see cuda_emu::LastFaultMessage())";
    case cudaErrorNotSupported: return "operation not supported";
  }
  return "unrecognized error code";
}

// Launches run synchronously, so every queued operation has finished when a call returns.
inline cudaError_t cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t stream = nullptr) {
  (void)stream;
  if (count == 0) return cudaSuccess;
  if (ptr == nullptr) {
    cuda_emu::detail::RecordError(cudaErrorInvalidValue);
    return cudaErrorInvalidValue;
  }
  std::memset(ptr, value, count);
  return cudaSuccess;
}

inline cudaError_t cudaMemset(void* ptr, int value, size_t count) { return cudaMemsetAsync(ptr, value, count); }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaPeekAtLastError(); }
inline cudaError_t cudaDeviceSynchronize() { return cudaPeekAtLastError(); }

#endif  // STEPSERVE_CUDA_EMULATION_RUNTIME_H_

// ---- Kernel language (not with CUDA_EMU_RUNTIME_ONLY) -----------------------------------------------------------
#if !defined(CUDA_EMU_RUNTIME_ONLY) && !defined(STEPSERVE_CUDA_EMULATION_KERNEL_H_)
#define STEPSERVE_CUDA_EMULATION_KERNEL_H_

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static  // blocks run one at a time: one copy serves them all

#define threadIdx (::cuda_emu::detail::Current().ThreadIdx())
#define blockIdx (::cuda_emu::detail::Current().BlockIdx())
#define blockDim (::cuda_emu::detail::Current().BlockDim())
#define gridDim (::cuda_emu::detail::Current().GridDim())

inline constexpr int warpSize = 32;

namespace cuda_emu::detail {

// Call-site capture for the collectives (so faults name file:line); `At{...}.F(args)` keeps CUDA's defaults.
struct At {
  const char* file;
  int line;
  Site site() const { return Site{file, line}; }
  void SyncThreads() const { Current().SyncThreads(site()); }
  void SyncWarp(unsigned mask = 0xffffffffu) const {
    Current().Warp<int>(WarpOp::kSyncWarp, mask, 0, 0, 32, site());
  }
  template <typename T>
  T Shfl(unsigned mask, T v, int src_lane, int width = 32) const {
    return Current().Warp<T>(WarpOp::kShfl, mask, v, src_lane, width, site());
  }
  template <typename T>
  T ShflXor(unsigned mask, T v, int lane_mask, int width = 32) const {
    return Current().Warp<T>(WarpOp::kShflXor, mask, v, lane_mask, width, site());
  }
  template <typename T>
  T ShflUp(unsigned mask, T v, unsigned delta, int width = 32) const {
    return Current().Warp<T>(WarpOp::kShflUp, mask, v, static_cast<int>(delta), width, site());
  }
  template <typename T>
  T ShflDown(unsigned mask, T v, unsigned delta, int width = 32) const {
    return Current().Warp<T>(WarpOp::kShflDown, mask, v, static_cast<int>(delta), width, site());
  }
  unsigned Ballot(unsigned mask, int pred) const {
    return static_cast<unsigned>(Current().Warp<uint64_t>(WarpOp::kBallot, mask, pred != 0 ? 1 : 0, 0, 32, site()));
  }
  int Any(unsigned mask, int pred) const {
    return static_cast<int>(Current().Warp<uint64_t>(WarpOp::kAny, mask, pred != 0 ? 1 : 0, 0, 32, site()));
  }
  int All(unsigned mask, int pred) const {
    return static_cast<int>(Current().Warp<uint64_t>(WarpOp::kAll, mask, pred != 0 ? 1 : 0, 0, 32, site()));
  }
};

}  // namespace cuda_emu::detail

#define __syncthreads() (::cuda_emu::detail::At{__FILE__, __LINE__}.SyncThreads())
#define __syncwarp(...) (::cuda_emu::detail::At{__FILE__, __LINE__}.SyncWarp(__VA_ARGS__))
#define __shfl_sync(...) (::cuda_emu::detail::At{__FILE__, __LINE__}.Shfl(__VA_ARGS__))
#define __shfl_xor_sync(...) (::cuda_emu::detail::At{__FILE__, __LINE__}.ShflXor(__VA_ARGS__))
#define __shfl_up_sync(...) (::cuda_emu::detail::At{__FILE__, __LINE__}.ShflUp(__VA_ARGS__))
#define __shfl_down_sync(...) (::cuda_emu::detail::At{__FILE__, __LINE__}.ShflDown(__VA_ARGS__))
#define __ballot_sync(...) (::cuda_emu::detail::At{__FILE__, __LINE__}.Ballot(__VA_ARGS__))
#define __any_sync(...) (::cuda_emu::detail::At{__FILE__, __LINE__}.Any(__VA_ARGS__))
#define __all_sync(...) (::cuda_emu::detail::At{__FILE__, __LINE__}.All(__VA_ARGS__))

// Memory fences: one OS thread runs everything, so program order is the only order.
inline void __threadfence() {}
inline void __threadfence_block() {}

template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

inline int __popc(unsigned int v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz(static_cast<unsigned>(v)); }

// Atomics: a fiber never switches inside one, so a plain read-modify-write is atomic.
inline int atomicAdd(int* p, int v) {
  const int old = *p;
  *p = old + v;
  return old;
}
inline unsigned int atomicAdd(unsigned int* p, unsigned int v) {
  const unsigned int old = *p;
  *p = old + v;
  return old;
}
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  const unsigned long long old = *p;
  *p = old + v;
  return old;
}
inline float atomicAdd(float* p, float v) {
  const float old = *p;
  *p = old + v;
  return old;
}
inline double atomicAdd(double* p, double v) {
  const double old = *p;
  *p = old + v;
  return old;
}
inline int atomicMax(int* p, int v) {
  const int old = *p;
  if (v > old) *p = v;
  return old;
}
inline int atomicMin(int* p, int v) {
  const int old = *p;
  if (v < old) *p = v;
  return old;
}

// Device math: what the kernels call beyond <cmath> (expf, cosf, sinf, fminf, fmaxf, INFINITY come from there).
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }

// CUDA's device min/max overloads (std::min would need both arguments of one type, as these do).
inline int min(int a, int b) { return b < a ? b : a; }
inline int max(int a, int b) { return a < b ? b : a; }
inline unsigned int min(unsigned int a, unsigned int b) { return b < a ? b : a; }
inline unsigned int max(unsigned int a, unsigned int b) { return a < b ? b : a; }
inline long min(long a, long b) { return b < a ? b : a; }
inline long max(long a, long b) { return a < b ? b : a; }
inline long long min(long long a, long long b) { return b < a ? b : a; }
inline long long max(long long a, long long b) { return a < b ? b : a; }
inline unsigned long min(unsigned long a, unsigned long b) { return b < a ? b : a; }
inline unsigned long max(unsigned long a, unsigned long b) { return a < b ? b : a; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return b < a ? b : a; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a < b ? b : a; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }

#endif  // STEPSERVE_CUDA_EMULATION_KERNEL_H_
