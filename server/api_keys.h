// API keys (--api_key, --api_key_file): which callers may use the StepServe RPCs and the OpenAI HTTP routes.
// A caller presents "authorization: Bearer KEY" (gRPC metadata) or "Authorization: Bearer KEY" (HTTP).
//
// Several keys are valid at once, so a key can be rotated without a restart: add the new key to the file,
// move the clients, remove the old one. The file (one key per line; blank lines and lines starting with '#'
// ignored) is re-read on SIGHUP (Reload) and when its modification time, size or inode changes (checked at
// most once a second, by Check itself). A file that cannot be read on a reload keeps the keys held before.
// Keys are compared in constant time (no early exit on the first differing byte, every key tried) and never
// logged.
//
// The HTTP front calls Check(request's Authorization header) and answers 401 when it is false.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace stepserve::server {

class ApiKeys {
 public:
  // `flag_keys`: --api_key values (each may be a comma-separated list); `key_file`: --api_key_file (empty:
  // none). With neither, authentication is off (enabled() false, Check always true). INVALID_ARGUMENT when
  // the file cannot be read, a key is empty or holds whitespace or control characters, or --api_key_file
  // holds no key and no --api_key is given.
  static absl::StatusOr<std::unique_ptr<ApiKeys>> Create(const std::vector<std::string>& flag_keys,
                                                         const std::string& key_file);
  // Authentication off.
  static std::unique_ptr<ApiKeys> Disabled();

  bool enabled() const { return enabled_; }
  // True when authentication is off, or `authorization_header` is "Bearer KEY" (scheme case-insensitive)
  // with a valid KEY.
  bool Check(std::string_view authorization_header) const;
  // Check, and the caller's identity when it passes: "key:" and a 64-bit hash of its key in hex (a name that
  // stays the same over connections and does not reveal the key); "" when authentication is off.
  bool Check(std::string_view authorization_header, std::string* caller) const;

  // Re-reads --api_key_file (SIGHUP). OK when there is no file; on an error the keys held before stay.
  absl::Status Reload();
  int num_keys() const;
  const std::string& key_file() const { return key_file_; }

  // For tests: how often Check looks at the file's modification time (default 1 s).
  void set_file_check_interval(absl::Duration d) {
    check_interval_ns_ = absl::ToInt64Nanoseconds(d);
    next_file_check_ns_ = 0;  // the next Check looks
  }

 private:
  struct FileStamp {
    bool ok = false;
    int64_t mtime_ns = 0;
    int64_t size = 0;
    ino_t inode = 0;
    bool operator==(const FileStamp& o) const {
      return ok == o.ok && mtime_ns == o.mtime_ns && size == o.size && inode == o.inode;
    }
  };
  ApiKeys() = default;
  void MaybeReloadOnChange() const;
  absl::Status ReloadLocked(bool at_start) const;
  static FileStamp Stamp(const std::string& path);

  bool enabled_ = false;
  std::string key_file_;
  std::vector<std::string> flag_keys_;

  mutable std::mutex mu_;
  mutable std::shared_ptr<const std::vector<std::string>> keys_;  // flag keys + file keys; replaced on reload
  mutable FileStamp stamp_;
  mutable std::atomic<int64_t> next_file_check_ns_{0};
  std::atomic<int64_t> check_interval_ns_{1'000'000'000};
};

// For both fronts: the key of "Bearer KEY" ("" when the header is not of that form).
std::string_view BearerToken(std::string_view authorization_header);

}  // namespace stepserve::server
