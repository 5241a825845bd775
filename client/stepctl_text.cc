#include "client/stepctl_text.h"

#include <sstream>

#include <google/protobuf/util/json_util.h>
#include <grpcpp/client_context.h>

#include "client/channel.h"
#include "client/chat_session.h"
#include "client/token_list.h"
#include "stepserve/v1/stepserve.grpc.pb.h"

namespace stepserve::client {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitRpcError = 1;
constexpr int kExitUsage = 2;

int RpcFailed(const grpc::Status& status, const RpcSettings& rpc, std::ostream& err) {
  err << "stepctl: " << DescribeStatus(status, rpc.target) << "\n";
  return kExitRpcError;
}

int Usage(const std::string& message, std::ostream& err) {
  err << "stepctl: " << message << "\n";
  return kExitUsage;
}

// The API's name of the reason without "FINISH_REASON_" (the server's metrics label is the same name in
// lower case).
std::string FinishReasonText(v1::FinishReason reason) {
  std::string name = v1::FinishReason_Name(reason);
  if (name.rfind("FINISH_REASON_", 0) == 0) name = name.substr(14);
  return name;
}

// Tools, tool choice and template kwargs of a chat (or tokenize --chat).
bool ChatSettings(const TextOptions& o, v1::ChatInput* settings, std::string* error) {
  std::vector<v1::Tool> tools;
  if (!o.tools.empty()) {
    std::string text;
    if (!ReadFileToString(o.tools, &text)) {
      *error = "--tools: cannot read " + o.tools;
      return false;
    }
    if (!ParseToolsJson(text, &tools, error)) {
      *error = "--tools: " + o.tools + ": " + *error;
      return false;
    }
  }
  for (const auto& t : tools) *settings->add_tools() = t;
  if (!tools.empty() || o.tool_choice != "auto") {
    if (!ParseToolChoice(o.tool_choice, tools, settings->mutable_tool_choice(), error)) {
      *error = "--tool_choice: " + *error;
      return false;
    }
  }
  std::string kwargs;
  if (!TemplateKwargs(o.chat_template_kwargs, o.reasoning_effort, &kwargs, error)) {
    *error = "--chat_template_kwargs: " + *error;
    return false;
  }
  settings->set_chat_template_kwargs_json(kwargs);
  return true;
}

std::string JsonOf(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions print;
  print.always_print_primitive_fields = true;
  print.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, print);
  return json;
}

// Streams one chat turn: prints it as it comes, keeps it in the session on success.
grpc::Status ChatTurn(v1::StepServe::Stub* stub, const RpcSettings& rpc, const v1::GenerateRequest& base,
                      const TextOptions& o, ChatSession* session, ChatPrinter* printer, std::ostream& err) {
  v1::GenerateRequest req = base;
  *req.mutable_chat() = session->Input();
  if (o.skip_special_tokens_set) req.set_skip_special_tokens(o.skip_special_tokens);
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc.Deadline());
  ctx.set_wait_for_ready(false);
  auto reader = stub->Generate(&ctx, req);
  TurnAccumulator acc;
  v1::GenerateResponse msg;
  while (reader->Read(&msg)) {
    acc.Add(msg);
    printer->Reasoning(msg.reasoning_text());
    printer->Content(msg.text());
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) {
    printer->End(AssistantTurn{});
    return status;
  }
  const AssistantTurn kept = session->AddAssistant(acc.turn());
  printer->End(kept);
  err << SummaryLine(acc.final_message()) << "\n";
  return status;
}

constexpr const char* kInteractiveHelp =
    "type a message and press enter; commands:\n"
    "  /tool ID TEXT  answer the tool call ID (the assistant goes on once every call is answered)\n"
    "  /reset         start over (the system prompt stays)\n"
    "  /exit          leave (so does end of input)\n";

}  // namespace

void AddTextFlags(FlagSet* flags, TextOptions* o) {
  flags->AddString("prompt", &o->prompt, "generate: a text prompt (instead of --tokens), encoded by the server");
  flags->AddStringList("stop", &o->stop,
                       "generate --prompt, chat: stop strings; repeatable, each a comma list (\\, is a comma, \\n a newline)");
  flags->AddBool("include_stop_str_in_output", &o->include_stop_str_in_output,
                 "generate --prompt, chat: keep a matched stop string in the text");
  flags->AddString("system", &o->system, "chat, tokenize --chat: the system prompt");
  flags->AddString("tools", &o->tools, "chat, tokenize --chat: a file of OpenAI tools JSON ([{\"type\":\"function\",...}])");
  flags->AddString("tool_choice", &o->tool_choice, "chat: auto, none, required or a tool's name");
  flags->AddString("reasoning_effort", &o->reasoning_effort, "chat, tokenize --chat: the chat template's reasoning_effort");
  flags->AddString("chat_template_kwargs", &o->chat_template_kwargs,
                   "chat, tokenize --chat: a JSON object of extra chat template variables");
  flags->AddString("show_reasoning", &o->show_reasoning,
                   "chat: how reasoning is shown: auto (dim on a terminal, else prefix), dim, prefix ([reasoning] ), hide");
  flags->AddBool("chat", &o->chat, "tokenize: TEXT is a user message rendered with the chat template");
  flags->AddBool("add_generation_prompt", &o->add_generation_prompt, "tokenize --chat: end with the assistant's opening");
  flags->AddBool("add_special_tokens", &o->add_special_tokens,
                 "generate --prompt, tokenize: add BOS/EOS as the tokenizer does (server default: true)");
  flags->AddBool("skip_special_tokens", &o->skip_special_tokens,
                 "generate --prompt, chat (server default true), detokenize (default false): leave special tokens out of the text");
}

void NoteSetFlags(const FlagSet& flags, TextOptions* o) {
  o->add_generation_prompt_set = flags.IsSet("add_generation_prompt");
  o->add_special_tokens_set = flags.IsSet("add_special_tokens");
  o->skip_special_tokens_set = flags.IsSet("skip_special_tokens");
}

bool ParseStopStrings(const std::vector<std::string>& flags, std::vector<std::string>* stops, std::string* error) {
  stops->clear();
  for (const std::string& flag : flags) {
    std::string current;
    const auto finish = [&]() {
      if (current.empty()) {
        *error = "--stop \"" + flag + "\": an empty stop string";
        return false;
      }
      stops->push_back(std::move(current));
      current.clear();
      return true;
    };
    for (size_t i = 0; i < flag.size(); ++i) {
      const char c = flag[i];
      if (c == ',') {
        if (!finish()) return false;
      } else if (c == '\\') {
        if (i + 1 >= flag.size()) {
          *error = "--stop \"" + flag + "\": a trailing backslash";
          return false;
        }
        const char e = flag[++i];
        if (e == ',' || e == '\\') {
          current.push_back(e);
        } else if (e == 'n') {
          current.push_back('\n');
        } else if (e == 't') {
          current.push_back('\t');
        } else {
          *error = "--stop \"" + flag + "\": unknown escape \\" + std::string(1, e) + " (\\, \\n \\t \\\\)";
          return false;
        }
      } else {
        current.push_back(c);
      }
    }
    if (!finish()) return false;
  }
  return true;
}

std::chrono::system_clock::time_point RpcSettings::Deadline() const {
  return std::chrono::system_clock::now() + std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6));
}

std::string SummaryLine(const v1::GenerateResponse& last) {
  std::ostringstream os;
  os << "finish_reason=" << FinishReasonText(last.finish_reason()) << " prompt_tokens=" << last.usage().prompt_tokens()
     << " completion_tokens=" << last.usage().completion_tokens()
     << " cached_prompt_tokens=" << last.usage().cached_prompt_tokens()
     << " queue_ms=" << last.timings().queue_time_s() * 1e3
     << " ttft_ms=" << last.timings().time_to_first_token_s() * 1e3
     << " e2e_ms=" << last.timings().e2e_latency_s() * 1e3 << " request_id=" << last.request_id();
  if (!last.matched_stop().empty()) {
    std::string quoted;
    for (char c : last.matched_stop()) {
      if (c == '\n') {
        quoted += "\\n";
      } else if (c == '"' || c == '\\') {
        quoted += std::string("\\") + c;
      } else {
        quoted += c;
      }
    }
    os << " matched_stop=\"" << quoted << "\"";
  }
  return os.str();
}

int GenerateText(const std::shared_ptr<grpc::Channel>& channel, const RpcSettings& rpc, v1::GenerateRequest base,
                 const TextOptions& o, bool stream, std::ostream& out, std::ostream& err) {
  std::vector<std::string> stops;
  std::string error;
  if (!ParseStopStrings(o.stop, &stops, &error)) return Usage(error, err);
  base.set_prompt(o.prompt);
  for (auto& s : stops) base.add_stop(s);
  base.set_include_stop_str_in_output(o.include_stop_str_in_output);
  if (o.add_special_tokens_set) base.set_add_special_tokens(o.add_special_tokens);
  if (o.skip_special_tokens_set) base.set_skip_special_tokens(o.skip_special_tokens);

  auto stub = v1::StepServe::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc.Deadline());
  ctx.set_wait_for_ready(false);
  auto reader = stub->Generate(&ctx, base);
  v1::GenerateResponse msg, last;
  std::string text;
  while (reader->Read(&msg)) {
    text += msg.text();
    if (stream && !msg.text().empty()) {
      out << msg.text();
      out.flush();
    }
    if (msg.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) last = msg;
  }
  const grpc::Status status = reader->Finish();
  if (!stream) out << text;
  if (!text.empty() && text.back() != '\n') out << "\n";
  out.flush();
  if (!status.ok()) return RpcFailed(status, rpc, err);
  out << SummaryLine(last) << "\n";
  return kExitOk;
}

int Chat(const std::shared_ptr<grpc::Channel>& channel, const RpcSettings& rpc, const v1::GenerateRequest& base,
         const TextOptions& o, const std::string& message, std::istream& in, bool interactive_tty, bool out_tty,
         std::ostream& out, std::ostream& err) {
  ReasoningDisplay display;
  if (!ParseReasoningDisplay(o.show_reasoning, out_tty, &display)) {
    return Usage("--show_reasoning must be auto, dim, prefix or hide", err);
  }
  v1::ChatInput settings;
  std::string error;
  if (!ChatSettings(o, &settings, &error)) return Usage(error, err);
  std::vector<std::string> stops;
  if (!ParseStopStrings(o.stop, &stops, &error)) return Usage(error, err);
  v1::GenerateRequest request = base;
  for (auto& s : stops) request.add_stop(s);
  request.set_include_stop_str_in_output(o.include_stop_str_in_output);

  ChatSession session(settings);
  if (!o.system.empty()) session.SetSystem(o.system);
  auto stub = v1::StepServe::NewStub(channel);
  ChatPrinter printer(out, display);

  if (!message.empty()) {  // one-shot
    session.AddUser(message);
    const grpc::Status status = ChatTurn(stub.get(), rpc, request, o, &session, &printer, err);
    return status.ok() ? kExitOk : RpcFailed(status, rpc, err);
  }

  if (interactive_tty) err << kInteractiveHelp;
  int exit_code = kExitOk;
  std::string line;
  while (true) {
    if (interactive_tty) {
      err << "> ";
      err.flush();
    }
    if (!std::getline(in, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/help") {
      err << kInteractiveHelp;
      continue;
    }
    if (line == "/reset") {
      session.Reset();
      err << "(the conversation starts over)\n";
      continue;
    }
    const ChatSession before = session;
    if (line.rfind("/tool ", 0) == 0) {
      std::istringstream words(line.substr(6));
      std::string id;
      words >> id;
      std::string content;
      std::getline(words, content);
      if (!content.empty() && content[0] == ' ') content.erase(0, 1);
      if (!session.AddToolResult(id, content, &error)) {
        err << "stepctl: /tool: " << error << "\n";
        continue;
      }
      if (!session.PendingToolCalls().empty()) continue;  // the assistant goes on once all are answered
    } else if (line[0] == '/' && line.rfind("//", 0) != 0) {
      err << "stepctl: unknown command " << line.substr(0, line.find(' ')) << " (/help lists them)\n";
      continue;
    } else {
      session.AddUser(line[0] == '/' ? line.substr(1) : line);  // "//x" sends "/x"
    }
    const grpc::Status status = ChatTurn(stub.get(), rpc, request, o, &session, &printer, err);
    if (!status.ok()) {
      RpcFailed(status, rpc, err);
      session = before;  // the failed turn is not part of the conversation
      exit_code = kExitRpcError;
    }
  }
  return exit_code;
}

int Tokenize(const std::shared_ptr<grpc::Channel>& channel, const RpcSettings& rpc, const TextOptions& o,
             const std::string& text, bool json, std::ostream& out, std::ostream& err) {
  v1::TokenizeRequest req;
  if (o.chat) {
    v1::ChatInput settings;
    std::string error;
    if (!ChatSettings(o, &settings, &error)) return Usage(error, err);
    ChatSession session(settings);
    if (!o.system.empty()) session.SetSystem(o.system);
    session.AddUser(text);
    *req.mutable_chat() = session.Input();
    if (o.add_generation_prompt_set) req.mutable_chat()->set_add_generation_prompt(o.add_generation_prompt);
  } else {
    req.set_prompt(text);
  }
  if (o.add_special_tokens_set) req.set_add_special_tokens(o.add_special_tokens);
  auto stub = v1::StepServe::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc.Deadline());
  ctx.set_wait_for_ready(false);
  v1::TokenizeResponse res;
  const grpc::Status status = stub->Tokenize(&ctx, req, &res);
  if (!status.ok()) return RpcFailed(status, rpc, err);
  if (json) {
    out << JsonOf(res) << "\n";
  } else {
    out << "tokens: " << JoinTokens(res.token_ids()) << "\n"
        << "count: " << res.count() << "\n"
        << "max_model_len: " << res.max_model_len() << "\n";
  }
  return kExitOk;
}

int Detokenize(const std::shared_ptr<grpc::Channel>& channel, const RpcSettings& rpc, const TextOptions& o,
               const std::string& ids, bool json, std::ostream& out, std::ostream& err) {
  std::vector<int32_t> tokens;
  std::string error;
  if (!ParseTokenList(ids, &tokens, &error)) return Usage("detokenize: " + error, err);
  v1::DetokenizeRequest req;
  req.mutable_token_ids()->Add(tokens.begin(), tokens.end());
  if (o.skip_special_tokens_set) req.set_skip_special_tokens(o.skip_special_tokens);
  auto stub = v1::StepServe::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc.Deadline());
  ctx.set_wait_for_ready(false);
  v1::DetokenizeResponse res;
  const grpc::Status status = stub->Detokenize(&ctx, req, &res);
  if (!status.ok()) return RpcFailed(status, rpc, err);
  if (json) {
    out << JsonOf(res) << "\n";
  } else {
    out << res.text() << "\n";
  }
  return kExitOk;
}

}  // namespace stepserve::client
