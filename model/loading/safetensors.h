// Reading (by memory map) and writing of the safetensors format.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"

namespace stepserve {

class SafetensorsFile {
 public:
  struct TensorInfo {
    std::string dtype;  // "F32", "BF16", "F16", "I64", ...
    std::vector<int64_t> shape;
    uint64_t begin = 0;  // byte offsets into the data section
    uint64_t end = 0;
  };

  // Maps the file and validates its header completely (sizes, offsets, overlaps, dtypes).
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  bool Contains(const std::string& name) const { return tensors_.count(name) > 0; }

  // Copies the tensor out of the mapping in its stored dtype.
  absl::StatusOr<at::Tensor> Read(const std::string& name) const;
  // Copies only the slice [begin, begin + size) of dimension `dim` (a tensor-parallel rank's shard): the
  // pages of the other slices are never touched. dim < 0: the whole tensor.
  absl::StatusOr<at::Tensor> ReadSlice(const std::string& name, int dim, int64_t begin, int64_t size) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::map<std::string, TensorInfo> tensors_;
};

// Maps a safetensors dtype name to an ATen scalar type; error for unknown names.
absl::StatusOr<at::ScalarType> SafetensorsDtype(const std::string& name);

// Writes tensors (contiguous copies are made as needed) to a safetensors file.
absl::Status WriteSafetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors);

}  // namespace stepserve
