// Opening the files of a checkpoint (config.json, model.safetensors, shards, the shard index) so that a
// path that is not a regular file (a FIFO, a device, a directory, a socket) is refused with a clear error
// instead of blocking forever in open() or read(): the path is examined with stat() first, opened with
// O_NONBLOCK (a FIFO that appears between the two calls cannot block the open), and the descriptor is
// checked again with fstat(). Header-only: the loading library's build lists stay as they are.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace stepserve {

// What `mode` is, in words, for an error message.
inline const char* FileKindName(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISREG(mode)) return "a regular file";
  return "not a regular file";
}

// Opens `path` read-only after checking that it is a regular file (symbolic links are followed: a Hugging
// Face cache links to its blobs). Returns the descriptor, which the caller closes; `size` gets its size.
// NOT_FOUND when it does not exist, FAILED_PRECONDITION when it is no regular file.
inline absl::StatusOr<int> OpenRegularFile(const std::string& path, uint64_t* size = nullptr) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    const std::string why = absl::StrCat(path, ": cannot open: ", std::strerror(err));
    return err == ENOENT || err == ENOTDIR ? absl::NotFoundError(why) : absl::FailedPreconditionError(why);
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": is ", FileKindName(st.st_mode), ", not a regular file"));
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    const int err = errno;
    return absl::FailedPreconditionError(absl::StrCat(path, ": cannot open: ", std::strerror(err)));
  }
  // The path may have been replaced between stat() and open(): the descriptor is what counts.
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::FailedPreconditionError(absl::StrCat(path, ": is not a regular file"));
  }
  // Regular files ignore O_NONBLOCK for reads; clear it anyway so that reads are plain blocking reads.
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  if (size != nullptr) *size = static_cast<uint64_t>(st.st_size);
  return fd;
}

// The whole of a regular file of at most `max_bytes` bytes (a JSON file of a checkpoint).
inline absl::StatusOr<std::string> ReadRegularFile(const std::string& path, uint64_t max_bytes) {
  uint64_t size = 0;
  absl::StatusOr<int> fd = OpenRegularFile(path, &size);
  if (!fd.ok()) return fd.status();
  if (size > max_bytes) {
    ::close(*fd);
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": is ", size, " bytes, more than the ", max_bytes, " bytes such a file may have"));
  }
  std::string text;
  text.resize(static_cast<size_t>(size));
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::read(*fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(*fd);
      return absl::DataLossError(absl::StrCat(path, ": read failed: ", std::strerror(err)));
    }
    if (n == 0) break;  // the file shrank meanwhile
    done += static_cast<size_t>(n);
  }
  ::close(*fd);
  text.resize(done);
  return text;
}

}  // namespace stepserve
