// stepserve's numeric flags checked before anything starts: a bad number exits 2 naming the flag, like every
// other bad flag (it used to be accepted and fail later with a misleading message: --dist_timeout_s=-1).
// And the one meaning of the KV cache size flags.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace stepserve::server {

// One numeric flag and what it must be.
struct NumericFlag {
  enum class Rule {
    kPositive,      // > 0 (integers: >= 1)
    kNonNegative,   // >= 0
    kFraction,      // in (0, 1]
    kPort,          // [0, 65535]
    kPortOrOff,     // [-1, 65535] (-1: off)
  };
  std::string name;  // without the dashes
  double value = 0;
  Rule rule = Rule::kPositive;
  bool integer = true;
};

// OK, or INVALID_ARGUMENT "--NAME=VALUE: must be ..." for the first flag that breaks its rule (NaN and
// infinities break every rule).
absl::Status CheckNumericFlags(const std::vector<NumericFlag>& flags);

// The KV cache size, one meaning for serving and --dry_run:
//   on a GPU, by default the fraction kDefaultKvCacheMemoryFraction (0.9) of the device memory the weights
//   leave free (as vLLM's gpu_memory_utilization); --kv_cache_memory_fraction changes the fraction,
//   --kv_cache_bytes asks for a fixed size instead;
//   on the CPU, --kv_cache_bytes (default kDefaultKvCacheBytes, 256 MiB); --kv_cache_memory_fraction is a bad
//   flag there (there is no device memory to take a fraction of).
// Giving both is a bad flag. `bytes_given` / `fraction_given`: whether each was on the command line.
inline constexpr double kDefaultKvCacheMemoryFraction = 0.9;
inline constexpr int64_t kDefaultKvCacheBytes = 256ll << 20;
struct KvCacheSize {
  int64_t bytes = 0;      // used when fraction is 0
  double fraction = 0.0;  // > 0: this fraction of the free device memory
};
absl::StatusOr<KvCacheSize> ResolveKvCacheSize(bool cuda, bool bytes_given, int64_t bytes, bool fraction_given,
                                               double fraction);

}  // namespace stepserve::server
