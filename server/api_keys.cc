#include "server/api_keys.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/logging.h"

namespace stepserve::server {
namespace {

int64_t NowNs() { return absl::ToUnixNanos(absl::Now()); }

absl::Status CheckKey(absl::string_view key, const std::string& where) {
  if (key.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": an empty key"));
  for (const char c : key) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte >= 0x7f) {
      // Never the key itself in a message: it would end up in a log.
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": a key holds whitespace, a control character or a non-ASCII byte"));
    }
  }
  return absl::OkStatus();
}

// Equal in time that depends on the lengths only, never on where the first difference is.
bool ConstantTimeEquals(std::string_view presented, std::string_view key) {
  unsigned char diff = presented.size() == key.size() ? 0 : 1;
  const size_t n = presented.size();
  for (size_t i = 0; i < key.size(); ++i) {
    const unsigned char p = n == 0 ? 0 : static_cast<unsigned char>(presented[i < n ? i : n - 1]);
    diff |= static_cast<unsigned char>(p ^ static_cast<unsigned char>(key[i]));
  }
  return diff == 0;
}

// FNV-1a, 64 bits: a caller's stable name (not a secret; the key cannot be read back from it in practice
// for keys of real length, and it is never compared for authentication).
uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

std::string_view BearerToken(std::string_view header_in) {
  const absl::string_view header = absl::StripAsciiWhitespace(absl::string_view(header_in.data(), header_in.size()));
  constexpr absl::string_view kScheme = "bearer";
  if (header.size() <= kScheme.size() || !absl::EqualsIgnoreCase(header.substr(0, kScheme.size()), kScheme) ||
      (header[kScheme.size()] != ' ' && header[kScheme.size()] != '\t')) {
    return {};
  }
  const absl::string_view token = absl::StripLeadingAsciiWhitespace(header.substr(kScheme.size()));
  return std::string_view(token.data(), token.size());
}

std::unique_ptr<ApiKeys> ApiKeys::Disabled() {
  std::unique_ptr<ApiKeys> keys(new ApiKeys());
  keys->keys_ = std::make_shared<const std::vector<std::string>>();
  return keys;
}

absl::StatusOr<std::unique_ptr<ApiKeys>> ApiKeys::Create(const std::vector<std::string>& flag_keys,
                                                         const std::string& key_file) {
  std::unique_ptr<ApiKeys> keys(new ApiKeys());
  for (const std::string& value : flag_keys) {
    for (absl::string_view key : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
      key = absl::StripAsciiWhitespace(key);
      if (absl::Status s = CheckKey(key, "--api_key"); !s.ok()) return s;
      keys->flag_keys_.emplace_back(key);
    }
  }
  keys->key_file_ = key_file;
  keys->enabled_ = !keys->flag_keys_.empty() || !key_file.empty();
  std::lock_guard<std::mutex> lock(keys->mu_);
  keys->keys_ = std::make_shared<const std::vector<std::string>>(keys->flag_keys_);
  if (!key_file.empty()) {
    if (absl::Status s = keys->ReloadLocked(/*at_start=*/true); !s.ok()) return s;
  }
  keys->next_file_check_ns_ = NowNs() + keys->check_interval_ns_.load();
  return keys;
}

ApiKeys::FileStamp ApiKeys::Stamp(const std::string& path) {
  FileStamp stamp;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return stamp;
  stamp.ok = true;
  stamp.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  stamp.size = st.st_size;
  stamp.inode = st.st_ino;
  return stamp;
}

absl::Status ApiKeys::ReloadLocked(bool at_start) const {
  const FileStamp stamp = Stamp(key_file_);
  struct stat st;
  if (stat(key_file_.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("--api_key_file: \"", key_file_, "\" is not a readable file"));
  }
  std::ifstream in(key_file_, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--api_key_file: cannot read \"", key_file_, "\""));
  std::ostringstream contents;
  contents << in.rdbuf();
  auto keys = std::make_shared<std::vector<std::string>>(flag_keys_);
  int line_number = 0;
  int from_file = 0;
  const std::string text = contents.str();
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    if (absl::Status s = CheckKey(line, absl::StrCat("--api_key_file: line ", line_number)); !s.ok()) return s;
    keys->emplace_back(line);
    ++from_file;
  }
  if (keys->empty() && at_start) {
    return absl::InvalidArgumentError(
        absl::StrCat("--api_key_file: \"", key_file_, "\" holds no key (and no --api_key is given)"));
  }
  if (keys->empty()) {
    LogWarning("--api_key_file: \"", key_file_, "\" holds no key: every StepServe call is refused until one is added");
  }
  keys_ = std::move(keys);
  stamp_ = stamp;
  LogInfo("API keys: ", from_file, " from ", key_file_, flag_keys_.empty() ? "" : absl::StrCat(" and ", flag_keys_.size(),
                                                                                                 " from --api_key"));
  return absl::OkStatus();
}

absl::Status ApiKeys::Reload() {
  if (key_file_.empty()) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(mu_);
  absl::Status s = ReloadLocked(/*at_start=*/false);
  if (!s.ok()) LogError("API keys not reloaded (the ones held before stay valid): ", s.message());
  return s;
}

void ApiKeys::MaybeReloadOnChange() const {
  if (key_file_.empty()) return;
  const int64_t now = NowNs();
  int64_t next = next_file_check_ns_.load();
  if (now < next) return;
  // One caller a second looks at the file; the others go on with the keys they have.
  if (!next_file_check_ns_.compare_exchange_strong(next, now + check_interval_ns_.load())) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (Stamp(key_file_) == stamp_) return;
  if (absl::Status s = ReloadLocked(/*at_start=*/false); !s.ok()) {
    LogError("API keys not reloaded after the file changed (the ones held before stay valid): ", s.message());
    stamp_ = Stamp(key_file_);  // not again until it changes again
  }
}

int ApiKeys::num_keys() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(keys_->size());
}

bool ApiKeys::Check(std::string_view authorization_header) const { return Check(authorization_header, nullptr); }

bool ApiKeys::Check(std::string_view authorization_header, std::string* caller) const {
  if (caller != nullptr) caller->clear();
  if (!enabled_) return true;
  MaybeReloadOnChange();
  std::shared_ptr<const std::vector<std::string>> keys;
  {
    std::lock_guard<std::mutex> lock(mu_);
    keys = keys_;
  }
  const std::string_view token = BearerToken(authorization_header);
  bool match = false;
  for (const std::string& key : *keys) match |= ConstantTimeEquals(token, key);  // every key, no early exit
  if (match && caller != nullptr) *caller = absl::StrCat("key:", absl::Hex(Fnv1a(token), absl::kZeroPad16));
  return match;
}

}  // namespace stepserve::server
