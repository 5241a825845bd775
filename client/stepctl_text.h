// stepctl's text commands: generate --prompt, chat (one-shot and interactive), tokenize, detokenize.
#pragma once

#include <chrono>
#include <istream>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <grpcpp/channel.h>

#include "client/cli_flags.h"
#include "stepserve/v1/stepserve.pb.h"

namespace stepserve::client {

struct TextOptions {
  std::string prompt;                     // generate: a text prompt instead of --tokens
  std::vector<std::string> stop;          // stop strings: repeatable, each a comma list ("\," is a comma)
  bool include_stop_str_in_output = false;
  std::string system;                     // chat, tokenize --chat: the system prompt
  std::string tools;                      // chat, tokenize --chat: OpenAI tools JSON file
  std::string tool_choice = "auto";
  std::string reasoning_effort;           // a chat template variable
  std::string chat_template_kwargs;       // a JSON object of chat template variables
  std::string show_reasoning = "auto";    // auto, dim, prefix, hide
  bool chat = false;                      // tokenize: TEXT is a user message, rendered with the chat template
  bool add_generation_prompt = true;      // tokenize --chat
  bool add_special_tokens = true;         // generate --prompt, tokenize
  bool skip_special_tokens = true;        // generate --prompt, chat; detokenize (where it defaults to false)
  // Which of the tri-state flags were given (the API leaves unset ones to the server's default).
  bool add_generation_prompt_set = false;
  bool add_special_tokens_set = false;
  bool skip_special_tokens_set = false;
};

// Registers the flags above; NoteSetFlags records which tri-state ones were given after parsing.
void AddTextFlags(FlagSet* flags, TextOptions* o);
void NoteSetFlags(const FlagSet& flags, TextOptions* o);

// The stop strings of the --stop flags: each split at commas; "\," is a literal comma, "\n", "\t" and
// "\\" are escapes. False with a message on an empty stop string or an unknown escape.
bool ParseStopStrings(const std::vector<std::string>& flags, std::vector<std::string>* stops, std::string* error);

struct RpcSettings {
  std::string target;
  double timeout_s = 30;
  std::chrono::system_clock::time_point Deadline() const;
};

// Exit codes as stepctl's: 0 ok, 1 RPC error, 2 bad usage (messages on stderr).
// `base` carries the sampling, stopping and request settings; its input is set here.
int GenerateText(const std::shared_ptr<grpc::Channel>& channel, const RpcSettings& rpc, v1::GenerateRequest base,
                 const TextOptions& o, bool stream, std::ostream& out, std::ostream& err);
// `message` empty: interactive, the user's lines read from `in` (commands /reset, /tool ID TEXT, /exit).
int Chat(const std::shared_ptr<grpc::Channel>& channel, const RpcSettings& rpc, const v1::GenerateRequest& base,
         const TextOptions& o, const std::string& message, std::istream& in, bool interactive_tty, bool out_tty,
         std::ostream& out, std::ostream& err);
int Tokenize(const std::shared_ptr<grpc::Channel>& channel, const RpcSettings& rpc, const TextOptions& o,
             const std::string& text, bool json, std::ostream& out, std::ostream& err);
int Detokenize(const std::shared_ptr<grpc::Channel>& channel, const RpcSettings& rpc, const TextOptions& o,
               const std::string& ids, bool json, std::ostream& out, std::ostream& err);

// The summary line after a generation: finish_reason=... prompt_tokens=... ... request_id=...
// [matched_stop="..."].
std::string SummaryLine(const v1::GenerateResponse& last);

}  // namespace stepserve::client
