#include "server/flag_checks.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace stepserve::server {
namespace {

std::string Shown(const NumericFlag& f) {
  if (f.integer && std::isfinite(f.value)) return absl::StrCat(static_cast<int64_t>(f.value));
  return absl::StrCat(f.value);
}

}  // namespace

absl::Status CheckNumericFlags(const std::vector<NumericFlag>& flags) {
  using Rule = NumericFlag::Rule;
  for (const NumericFlag& f : flags) {
    const double v = f.value;
    bool ok = std::isfinite(v);
    const char* what = "";
    switch (f.rule) {
      case Rule::kPositive:
        ok = ok && v > 0;
        what = f.integer ? "an integer >= 1" : "a finite number > 0";
        break;
      case Rule::kNonNegative:
        ok = ok && v >= 0;
        what = f.integer ? "an integer >= 0" : "a finite number >= 0";
        break;
      case Rule::kFraction:
        ok = ok && v > 0 && v <= 1;
        what = "a fraction in (0, 1]";
        break;
      case Rule::kPort:
        ok = ok && v >= 0 && v <= 65535;
        what = "a port in [0, 65535]";
        break;
      case Rule::kPortOrOff:
        ok = ok && v >= -1 && v <= 65535;
        what = "a port in [0, 65535], or -1 (off)";
        break;
    }
    if (!ok) return absl::InvalidArgumentError(absl::StrCat("--", f.name, "=", Shown(f), ": must be ", what));
  }
  return absl::OkStatus();
}

absl::StatusOr<KvCacheSize> ResolveKvCacheSize(bool cuda, bool bytes_given, int64_t bytes, bool fraction_given,
                                               double fraction) {
  if (bytes_given && bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("--kv_cache_bytes=", bytes, ": must be an integer >= 1"));
  }
  if (fraction_given && !(std::isfinite(fraction) && fraction > 0 && fraction <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kv_cache_memory_fraction=", fraction, ": must be a fraction in (0, 1]"));
  }
  if (bytes_given && fraction_given) {
    return absl::InvalidArgumentError(
        "--kv_cache_bytes and --kv_cache_memory_fraction: give one (a fixed size, or a fraction of the device "
        "memory the weights leave)");
  }
  KvCacheSize size;
  if (!cuda) {
    if (fraction_given) {
      return absl::InvalidArgumentError(
          "--kv_cache_memory_fraction: only for CUDA devices (a fraction of the device memory the weights "
          "leave); on the CPU, size the cache with --kv_cache_bytes");
    }
    size.bytes = bytes_given ? bytes : kDefaultKvCacheBytes;
    return size;
  }
  if (bytes_given) {
    size.bytes = bytes;
    return size;
  }
  size.fraction = fraction_given ? fraction : kDefaultKvCacheMemoryFraction;
  size.bytes = kDefaultKvCacheBytes;  // unused
  return size;
}

}  // namespace stepserve::server
