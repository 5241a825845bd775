#include "model/loading/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "model/loading/regular_file.h"
#include "nlohmann/json.hpp"

namespace stepserve {
namespace {

// Generous bound so a corrupt length cannot make us parse gigabytes of "header".
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

absl::Status FileError(const std::string& path, const std::string& what) {
  return absl::DataLossError(absl::StrCat(path, ": ", what));
}

absl::Status TensorError(const std::string& path, const std::string& tensor, const std::string& what) {
  return absl::DataLossError(absl::StrCat(path, ": tensor '", tensor, "': ", what));
}

const char* DtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "F32";
    case at::kBFloat16: return "BF16";
    case at::kHalf: return "F16";
    case at::kDouble: return "F64";
    case at::kLong: return "I64";
    case at::kInt: return "I32";
    case at::kShort: return "I16";
    case at::kChar: return "I8";
    case at::kByte: return "U8";
    case at::kBool: return "BOOL";
    default: return nullptr;
  }
}

}  // namespace

absl::StatusOr<at::ScalarType> SafetensorsDtype(const std::string& name) {
  static const std::map<std::string, at::ScalarType> kTypes = {
      {"F32", at::kFloat}, {"BF16", at::kBFloat16}, {"F16", at::kHalf}, {"F64", at::kDouble},
      {"I64", at::kLong},  {"I32", at::kInt},       {"I16", at::kShort}, {"I8", at::kChar},
      {"U8", at::kByte},   {"BOOL", at::kBool}};
  auto it = kTypes.find(name);
  if (it == kTypes.end()) return absl::InvalidArgumentError(absl::StrCat("unknown dtype '", name, "'"));
  return it->second;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  // A regular file only (checked before the open, which cannot block): a FIFO or a device would hang.
  uint64_t file_size = 0;
  absl::StatusOr<int> opened = OpenRegularFile(path, &file_size);
  if (!opened.ok()) return opened.status();
  const int fd = *opened;
  const size_t size = static_cast<size_t>(file_size);
  if (size < 8) {
    ::close(fd);
    return FileError(path, absl::StrCat("truncated: ", size, " bytes, shorter than the 8-byte header length"));
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return FileError(path, absl::StrCat("mmap failed: ", std::strerror(errno)));

  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->map_ = static_cast<const uint8_t*>(map);
  file->map_size_ = size;

  uint64_t header_len = 0;
  std::memcpy(&header_len, file->map_, 8);  // little-endian on every supported host
  if (header_len > size - 8 || header_len > kMaxHeaderBytes) {
    return FileError(path, absl::StrCat("header length ", header_len, " runs past the end of the file (",
                                        size, " bytes)"));
  }
  const char* header_begin = reinterpret_cast<const char*>(file->map_ + 8);
  nlohmann::json header = nlohmann::json::parse(header_begin, header_begin + header_len, nullptr, false);
  if (header.is_discarded() || !header.is_object()) return FileError(path, "header is not a valid JSON object");
  file->data_ = file->map_ + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;

  for (auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets")) {
      return TensorError(path, name, "entry needs dtype, shape and data_offsets");
    }
    TensorInfo info;
    if (!entry["dtype"].is_string()) return TensorError(path, name, "dtype is not a string");
    info.dtype = entry["dtype"].get<std::string>();
    auto dtype = SafetensorsDtype(info.dtype);
    if (!dtype.ok()) return TensorError(path, name, std::string(dtype.status().message()));
    if (!entry["shape"].is_array()) return TensorError(path, name, "shape is not a list");
    uint64_t numel = 1;
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_unsigned()) return TensorError(path, name, "shape entries must be non-negative integers");
      info.shape.push_back(d.get<int64_t>());
      numel *= d.get<uint64_t>();
    }
    const auto& off = entry["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      return TensorError(path, name, "data_offsets must be two non-negative integers");
    }
    info.begin = off[0].get<uint64_t>();
    info.end = off[1].get<uint64_t>();
    if (info.begin > info.end || info.end > data_size) {
      return TensorError(path, name, absl::StrCat("data_offsets [", info.begin, ", ", info.end,
                                                  ") out of range of the ", data_size, "-byte data section"));
    }
    const uint64_t expected = numel * at::elementSize(*dtype);
    if (info.end - info.begin != expected) {
      return TensorError(path, name, absl::StrCat("data_offsets span ", info.end - info.begin, " bytes but dtype ",
                                                  info.dtype, " and shape need ", expected));
    }
    file->tensors_.emplace(name, std::move(info));
  }
  // Overlap check: sort the non-empty ranges by start.
  std::vector<std::pair<const std::string*, const TensorInfo*>> ranges;
  for (const auto& [name, info] : file->tensors_) {
    if (info.end > info.begin) ranges.push_back({&name, &info});
  }
  std::sort(ranges.begin(), ranges.end(), [](auto& a, auto& b) { return a.second->begin < b.second->begin; });
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].second->begin < ranges[i - 1].second->end) {
      return TensorError(path, *ranges[i].first, absl::StrCat("data overlaps tensor '", *ranges[i - 1].first, "'"));
    }
  }
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(const_cast<uint8_t*>(map_), map_size_);
}

absl::StatusOr<at::Tensor> SafetensorsFile::Read(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) return absl::NotFoundError(absl::StrCat(path_, ": no tensor '", name, "'"));
  const TensorInfo& info = it->second;
  auto dtype = SafetensorsDtype(info.dtype);
  if (!dtype.ok()) return dtype.status();
  // Copy: the mapping may not be aligned for the element type.
  at::Tensor out = at::empty(info.shape, at::TensorOptions().dtype(*dtype));
  std::memcpy(out.data_ptr(), data_ + info.begin, info.end - info.begin);
  return out;
}

absl::StatusOr<at::Tensor> SafetensorsFile::ReadSlice(const std::string& name, int dim, int64_t begin,
                                                      int64_t size) const {
  if (dim < 0) return Read(name);
  auto it = tensors_.find(name);
  if (it == tensors_.end()) return absl::NotFoundError(absl::StrCat(path_, ": no tensor '", name, "'"));
  const TensorInfo& info = it->second;
  auto dtype = SafetensorsDtype(info.dtype);
  if (!dtype.ok()) return dtype.status();
  const int rank = static_cast<int>(info.shape.size());
  if (dim >= rank || begin < 0 || size < 0 || begin + size > info.shape[dim]) {
    return absl::OutOfRangeError(absl::StrCat(path_, ": tensor '", name, "': slice [", begin, ", ", begin + size,
                                              ") of dimension ", dim, " is out of range"));
  }
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < dim; ++d) outer *= info.shape[d];
  for (int d = dim + 1; d < rank; ++d) inner *= info.shape[d];
  std::vector<int64_t> shape = info.shape;
  shape[dim] = size;
  at::Tensor out = at::empty(shape, at::TensorOptions().dtype(*dtype));
  // One contiguous run per index of the outer dimensions (memcpy: the mapping may be unaligned).
  const size_t elem = out.element_size();
  const size_t run = static_cast<size_t>(size * inner) * elem;
  const uint8_t* src = data_ + info.begin;
  auto* dst = static_cast<uint8_t*>(out.data_ptr());
  for (int64_t o = 0; o < outer; ++o) {
    std::memcpy(dst + o * run, src + static_cast<size_t>((o * info.shape[dim] + begin) * inner) * elem, run);
  }
  return out;
}

absl::Status WriteSafetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::vector<at::Tensor> contiguous;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    const char* dtype = DtypeName(t.scalar_type());
    if (dtype == nullptr) return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': unsupported dtype"));
    at::Tensor c = t.to(at::kCPU).contiguous();
    const uint64_t bytes = c.numel() * c.element_size();
    header[name] = {{"dtype", dtype}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(c);
  }
  std::string header_text = header.dump();
  while ((8 + header_text.size()) % 8 != 0) header_text.push_back(' ');  // align the data section
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open for writing"));
  const uint64_t len = header_text.size();
  out.write(reinterpret_cast<const char*>(&len), 8);
  out.write(header_text.data(), header_text.size());
  for (const at::Tensor& c : contiguous) {
    out.write(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  }
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace stepserve
