// The text front's input side, shared by the gRPC and the OpenAI HTTP fronts: the tokenizer and chat
// template (loaded once at start-up) and the preparation of one request's prompt (a text prompt encoded, or
// chat messages normalized, rendered with the chat template and encoded without special tokens). The model
// and the engine never see text: what leaves here is token ids.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "stepserve/v1/stepserve.pb.h"
#include "text/jinja/chat_template.h"
#include "text/parsers/chat_output.h"
#include "text/tokenizer/tokenizer.h"

namespace stepserve::server {

class ServerMetrics;

struct TextOptions {
  // --tokenizer: a directory with tokenizer.json (and tokenizer_config.json, generation_config.json). Empty:
  // the --model folder, where a checkpoint without tokenizer.json means "no tokenizer" (text requests are
  // then refused); presets bring the builtin tokenizer and the builtin Step chat template.
  std::string tokenizer_dir;
  std::string chat_template_file;  // --chat_template: overrides the tokenizer's template
  std::string served_model_name;   // --served_model_name; empty: the preset name or the folder's base name
};

// Caps on what one request may bring (flags of the same names; INVALID_ARGUMENT naming the field past them).
struct TextLimits {
  int max_stop_strings = 16;         // --max_stop_strings: entries of stop
  int max_stop_string_bytes = 1024;  // --max_stop_string_bytes: bytes of one stop string
  int max_chat_messages = 1024;      // --max_chat_messages: entries of messages
  int max_tools = 256;               // --max_tools: entries of tools
};

// One request's input as either front gives it. Exactly one kind.
struct TextInput {
  enum class Kind { kTokenIds, kPrompt, kChat };
  Kind kind = Kind::kTokenIds;
  std::vector<int32_t> token_ids;  // kTokenIds (passed through; the executor validates them)
  std::string prompt;              // kPrompt
  bool add_special_tokens = true;  // kPrompt
  // kChat, as the OpenAI API shapes them (key order kept: tools are rendered in the client's order).
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  nlohmann::ordered_json tools;        // null or an array
  nlohmann::ordered_json tool_choice;  // null, a string or {"type": "function", "function": {"name"}}
  nlohmann::ordered_json chat_template_kwargs;  // null or an object
  bool add_generation_prompt = true;
};

struct PrepareOptions {
  // Prefixed to the field named in errors about the chat input ("chat." for gRPC, "" for HTTP).
  std::string chat_field_prefix;
  // > 0: a prompt of this many tokens or more is INVALID_ARGUMENT (it leaves no room to generate).
  int64_t max_context = 0;
};

struct PreparedPrompt {
  std::vector<int32_t> ids;
  bool is_text = false;  // prompt or chat: the response carries text
  bool is_chat = false;
  text::ChatOutputOptions chat_output;  // is_chat: how to parse the output
};

class TextPipeline {
 public:
  // Start-up: the tokenizer and template for `model_spec` (a preset or a checkpoint directory) whose
  // vocabulary has `model_vocab_size` ids. Errors (a bad --tokenizer or --chat_template, a tokenizer whose
  // ids reach past the model's vocabulary) name the flag.
  static absl::StatusOr<std::shared_ptr<TextPipeline>> Load(const TextOptions& options, const std::string& model_spec,
                                                            int model_vocab_size);
  // A pipeline from parts (either may be null), e.g. for tests.
  TextPipeline(std::shared_ptr<const text::Tokenizer> tokenizer, std::shared_ptr<const text::ChatTemplate> chat_template,
               std::string model_name);

  // The name the APIs report and accept (OpenAI `model`, ModelInfo.model).
  const std::string& model_name() const { return model_name_; }
  bool has_tokenizer() const { return tokenizer_ != nullptr; }
  bool has_chat_template() const { return chat_template_ != nullptr; }
  const std::shared_ptr<const text::Tokenizer>& tokenizer() const { return tokenizer_; }

  // Per-request caps (set before serving).
  void set_limits(const TextLimits& limits) { limits_ = limits; }
  const TextLimits& limits() const { return limits_; }
  // Tokenizer and template timings go to these metrics (may be null; set before serving).
  void set_metrics(ServerMetrics* metrics) { metrics_ = metrics; }

  // The prompt ids of a request. INVALID_ARGUMENT (naming the field) for invalid UTF-8, malformed chat input,
  // a template that raises, or a prompt that fills options.max_context; FAILED_PRECONDITION naming
  // --tokenizer (or --chat_template) when text comes without a tokenizer (or chat without a template).
  absl::StatusOr<PreparedPrompt> Prepare(const TextInput& input, const PrepareOptions& options) const;

  // Detokenize: ids outside the vocabulary are INVALID_ARGUMENT naming `field`[i].
  absl::StatusOr<std::string> Detokenize(const std::vector<int32_t>& ids, bool skip_special_tokens,
                                         const std::string& field) const;

  // FAILED_PRECONDITION naming --tokenizer when there is none (`what` says what needed it).
  absl::Status RequireTokenizer(const std::string& what) const;

  // ModelInfo's tokenizer fields.
  void FillModelInfo(v1::ModelInfo* info) const;

 private:
  absl::StatusOr<std::vector<int32_t>> Encode(const std::string& text, bool add_special_tokens) const;
  absl::StatusOr<PreparedPrompt> PrepareChat(const TextInput& input, const PrepareOptions& options) const;

  std::shared_ptr<const text::Tokenizer> tokenizer_;
  std::shared_ptr<const text::ChatTemplate> chat_template_;
  std::string model_name_;
  TextLimits limits_;
  ServerMetrics* metrics_ = nullptr;
};

// The API name of a model spec: a preset's spec as given ("tiny", "small:4"), a directory's base name.
std::string DefaultServedModelName(const std::string& model_spec);

// The field an INVALID_ARGUMENT message names: its text before the first ": " when that looks like a field
// path ("messages[2].role: unknown role" -> "messages[2].role"); empty otherwise.
std::string FieldOfError(const absl::Status& status);

}  // namespace stepserve::server
