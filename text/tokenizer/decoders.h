// Decoders of tokenizer.json (ByteLevel, ByteFallback, Fuse, Replace, Strip, Metaspace, Sequence) as
// streaming stages: tokens go in one at a time and text comes out as soon as it is decided. Decode and the
// IncrementalDetokenizer run the same stages, so the deltas of a stream add up to Decode's result by
// construction, and Decode itself follows the crate's decode_chain + join.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace stepserve::text {

// One stage of a decode stream. The crate's decoders map a list of strings to a list of strings; here each
// list element ("item") arrives as fragments: `begin` opens an item, `end` closes it.
class DecodeStage {
 public:
  virtual ~DecodeStage() = default;
  virtual void Push(std::string_view text, bool begin, bool end) = 0;
  // End of the token list.
  virtual void Finish() = 0;
  void set_next(DecodeStage* next) { next_ = next; }

 protected:
  DecodeStage* next_ = nullptr;
};

// The configured decoder (immutable, shared); each decode opens a stream of fresh stages.
class Decoder {
 public:
  virtual ~Decoder() = default;
  // Appends this decoder's stages (in order) to `stages`.
  virtual void NewStages(std::vector<std::unique_ptr<DecodeStage>>* stages) const = 0;
};

// nullptr for a null decoder (tokens are then joined with spaces, as the crate does).
absl::StatusOr<std::unique_ptr<Decoder>> DecoderFromJson(const nlohmann::json& j, std::string_view path);

// A running decode: Push tokens, read `out`; Finish at the end.
class DecodeStream {
 public:
  // `decoder` may be null.
  explicit DecodeStream(const Decoder* decoder);
  DecodeStream(const DecodeStream&) = delete;
  DecodeStream& operator=(const DecodeStream&) = delete;
  void PushToken(std::string_view token) { head_->Push(token, true, true); }
  void Finish() { head_->Finish(); }
  // Text produced so far and not yet taken.
  std::string& out() { return out_; }

 private:
  std::string out_;
  std::vector<std::unique_ptr<DecodeStage>> stages_;
  DecodeStage* head_ = nullptr;
};

}  // namespace stepserve::text
