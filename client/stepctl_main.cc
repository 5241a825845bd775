// stepctl: a command-line client for a stepserve server.
//
//   stepctl [--target=host:port] [--timeout_s=N] [TLS flags] health [--service=NAME]
//   stepctl ... info [--json]
//   stepctl ... generate --tokens=1,2,3 [--max_new_tokens=N] [--temperature=T] [--top_p=P] [--top_k=K]
//                        [--seed=S] [--logprobs=N] [--ignore_eos] [--stream] [--cache_salt=STR]
//   stepctl ... generate --prompt=TEXT [--stop=STR,...] [--stream] [sampling flags]
//   stepctl ... chat [MESSAGE] [--system=TEXT] [--tools=FILE] [--tool_choice=C] [--reasoning_effort=E]
//                    [--chat_template_kwargs=JSON] [--show_reasoning=auto|dim|prefix|hide]
//               (no MESSAGE: interactive, one user message per line of stdin)
//   stepctl ... tokenize TEXT [--chat] [--json]
//   stepctl ... detokenize 1,2,3 [--skip_special_tokens] [--json]
//
// Exit codes: 0 success, 1 an RPC error (or a server that is not SERVING), 2 bad usage.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <google/protobuf/util/json_util.h>
#include <grpcpp/client_context.h>

#include "client/channel.h"
#include "client/channel_flags.h"
#include "client/cli_flags.h"
#include "client/health_client.h"
#include "client/stepctl_text.h"
#include "client/token_list.h"
#include "stepserve/v1/stepserve.grpc.pb.h"

namespace stepserve::client {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitRpcError = 1;
constexpr int kExitUsage = 2;

constexpr const char* kUsage =
    "usage: stepctl [flags] <command> [flags]\n"
    "commands:\n"
    "  health    grpc.health.v1 Check; exit 0 when SERVING\n"
    "  info      the served model (GetModelInfo)\n"
    "  generate  generate: --tokens=1,2,3 (ids out) or --prompt=TEXT (text out)\n"
    "  chat      chat [MESSAGE]: one answer, or without MESSAGE a conversation read line by line from stdin\n"
    "  tokenize  tokenize TEXT: the token ids (--chat: TEXT as a user message in the chat template)\n"
    "  detokenize  detokenize 1,2,3: the text of these ids\n"
    "exit codes: 0 success, 1 RPC error or not serving, 2 bad usage\n"
    "flags:\n";

struct Options {
  ChannelConfig channel;
  double timeout_s = 30;
  std::string service;
  bool json = false;
  std::string tokens;
  int64_t max_new_tokens = 16;
  double temperature = 0;
  double top_p = 1;
  int64_t top_k = 0;
  double min_p = 0;
  int64_t seed = 0;
  int64_t logprobs = 0;
  bool ignore_eos = false;
  std::string stop_token_ids;
  std::string request_id;
  bool stream = false;
  std::string cache_salt;
  TextOptions text;
  bool max_new_tokens_set = false;
};

RpcSettings Rpc(const Options& o) { return RpcSettings{o.channel.target, o.timeout_s}; }

std::chrono::system_clock::time_point Deadline(const Options& o) {
  return std::chrono::system_clock::now() +
         std::chrono::microseconds(static_cast<int64_t>(o.timeout_s * 1e6));
}

int RpcFailed(const grpc::Status& status, const Options& o) {
  std::cerr << "stepctl: " << DescribeStatus(status, o.channel.target) << "\n";
  return kExitRpcError;
}

int Health(const std::shared_ptr<grpc::Channel>& channel, const Options& o) {
  ServingStatus serving;
  grpc::Status status = CheckHealth(channel, o.service, Deadline(o), &serving);
  if (!status.ok()) return RpcFailed(status, o);
  std::cout << ServingStatusName(serving) << "\n";
  if (serving != ServingStatus::kServing) {
    std::cerr << "stepctl: " << (o.service.empty() ? std::string("the server") : "service " + o.service)
              << " is " << ServingStatusName(serving) << "\n";
    return kExitRpcError;
  }
  return kExitOk;
}

int Info(const std::shared_ptr<grpc::Channel>& channel, const Options& o) {
  auto stub = v1::StepServe::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(o));
  ctx.set_wait_for_ready(false);
  v1::ModelInfo info;
  grpc::Status status = stub->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info);
  if (!status.ok()) return RpcFailed(status, o);
  if (o.json) {
    std::string json;
    google::protobuf::util::JsonPrintOptions print;
    print.always_print_primitive_fields = true;
    print.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(info, &json, print);
    std::cout << json << "\n";
    return kExitOk;
  }
  std::cout << "model:              " << info.model() << "\n"
            << "dtype:              " << info.dtype() << "\n"
            << "device:             " << info.device() << "\n"
            << "vocab_size:         " << info.vocab_size() << "\n"
            << "max_context:        " << info.max_context() << "\n"
            << "num_layers:         " << info.num_layers() << "\n"
            << "eos_token_ids:      " << JoinTokens(info.eos_token_ids()) << "\n"
            << "kv_capacity_tokens: " << info.kv_capacity_tokens() << "\n"
            << "max_num_seqs:       " << info.max_num_seqs() << "\n"
            << "prefix_caching:     " << (info.prefix_caching() ? "true" : "false") << "\n"
            << "tokenizer_loaded:   " << (info.tokenizer_loaded() ? "true" : "false") << "\n"
            << "chat_template:      " << (info.chat_template_loaded() ? "true" : "false") << "\n"
            << "bos_token:          " << info.bos_token() << "\n"
            << "eos_token:          " << info.eos_token() << "\n"
            << "special_tokens:     ";
  for (int i = 0; i < info.special_tokens_size(); ++i) std::cout << (i ? " " : "") << info.special_tokens(i);
  std::cout << "\n";
  return kExitOk;
}

void PrintLogprobs(const v1::GenerateResponse& msg) {
  for (const auto& lp : msg.logprobs()) {
    std::cout << "token " << lp.token_id() << " logprob " << lp.logprob();
    if (lp.top_logprobs_size() > 0) {
      std::cout << " top";
      for (const auto& top : lp.top_logprobs()) std::cout << " " << top.token_id() << ":" << top.logprob();
    }
    std::cout << "\n";
  }
}

// The settings generate and chat share: request id, stopping, sampling, logprobs, cache salt. False on bad
// usage (reported).
bool FillRequest(const Options& o, bool set_max_new_tokens, v1::GenerateRequest* request) {
  v1::GenerateRequest& req = *request;
  req.set_request_id(o.request_id);
  std::string err;
  std::vector<int32_t> stops;
  if (!ParseTokenList(o.stop_token_ids, &stops, &err)) {
    std::cerr << "stepctl: --stop_token_ids: " << err << "\n";
    return false;
  }
  auto* stopping = req.mutable_stopping();
  if (set_max_new_tokens) stopping->set_max_new_tokens(static_cast<int32_t>(o.max_new_tokens));
  stopping->mutable_stop_token_ids()->Add(stops.begin(), stops.end());
  stopping->set_ignore_eos(o.ignore_eos);
  auto* sampling = req.mutable_sampling();
  // Only what was asked for: unset fields mean greedy and no penalties on the server.
  if (o.temperature != 0) sampling->set_temperature(static_cast<float>(o.temperature));
  if (o.top_p != 1) sampling->set_top_p(static_cast<float>(o.top_p));
  if (o.top_k != 0) sampling->set_top_k(static_cast<int32_t>(o.top_k));
  if (o.min_p != 0) sampling->set_min_p(static_cast<float>(o.min_p));
  if (o.seed != 0) sampling->set_seed(static_cast<uint64_t>(o.seed));
  req.set_logprobs(static_cast<int32_t>(o.logprobs));
  req.set_cache_salt(o.cache_salt);
  return true;
}

int Generate(const std::shared_ptr<grpc::Channel>& channel, const Options& o) {
  v1::GenerateRequest req;
  std::string err;
  const bool text = !o.text.prompt.empty();
  if (text && !o.tokens.empty()) {
    std::cerr << "stepctl: --tokens and --prompt exclude each other\n" << kUsage;
    return kExitUsage;
  }
  if (!text) {
    std::vector<int32_t> prompt;
    if (!ParseTokenList(o.tokens, &prompt, &err) || prompt.empty()) {
      std::cerr << "stepctl: --tokens: " << (err.empty() ? "no tokens given (or give --prompt)" : err) << "\n"
                << kUsage;
      return kExitUsage;
    }
    req.mutable_prompt_token_ids()->Add(prompt.begin(), prompt.end());
  }
  if (!FillRequest(o, /*set_max_new_tokens=*/true, &req)) return kExitUsage;
  if (text) return GenerateText(channel, Rpc(o), req, o.text, o.stream, std::cout, std::cerr);

  auto stub = v1::StepServe::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(o));
  ctx.set_wait_for_ready(false);
  auto reader = stub->Generate(&ctx, req);
  v1::GenerateResponse msg;
  std::vector<int32_t> tokens;
  v1::GenerateResponse last;
  bool first = true;
  while (reader->Read(&msg)) {
    tokens.insert(tokens.end(), msg.token_ids().begin(), msg.token_ids().end());
    if (o.stream) {
      if (o.logprobs > 0) {
        PrintLogprobs(msg);
      } else {
        // The same "tokens: 1,2,3" line as without --stream, written as the tokens arrive.
        for (int32_t t : msg.token_ids()) {
          std::cout << (first ? "tokens: " : ",") << t;
          first = false;
        }
      }
      std::cout.flush();
    } else if (o.logprobs > 0) {
      PrintLogprobs(msg);
    }
    if (msg.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) last = msg;
  }
  grpc::Status status = reader->Finish();
  if (o.stream && o.logprobs == 0 && !first) std::cout << "\n";
  if (!status.ok()) {
    std::cout.flush();
    return RpcFailed(status, o);
  }
  if (!o.stream || o.logprobs > 0) std::cout << "tokens: " << JoinTokens(tokens) << "\n";
  std::cout << SummaryLine(last) << "\n";  // the same line as the text commands'
  return kExitOk;
}

int Main(int argc, char** argv) {
  Options o;
  FlagSet flags("stepctl");
  AddChannelFlags(&flags, &o.channel);
  flags.AddDouble("timeout_s", &o.timeout_s, "deadline for the RPC in seconds, connection included");
  flags.AddString("service", &o.service, "health: the service to check; empty is the whole server");
  flags.AddBool("json", &o.json, "info, tokenize, detokenize: print JSON");
  flags.AddString("tokens", &o.tokens, "generate: prompt token ids, comma separated");
  flags.AddInt("max_new_tokens", &o.max_new_tokens, "generate: at most this many new tokens");
  flags.AddDouble("temperature", &o.temperature, "generate: 0 is greedy");
  flags.AddDouble("top_p", &o.top_p, "generate: nucleus sampling, (0, 1]");
  flags.AddInt("top_k", &o.top_k, "generate: 0 is no limit");
  flags.AddDouble("min_p", &o.min_p, "generate: [0, 1]");
  flags.AddInt("seed", &o.seed, "generate: sampling seed; 0 leaves it unset");
  flags.AddInt("logprobs", &o.logprobs, "generate: print log-probabilities with this many alternatives");
  flags.AddBool("ignore_eos", &o.ignore_eos, "generate: do not stop at the EOS ids");
  flags.AddString("stop_token_ids", &o.stop_token_ids, "generate: comma-separated ids that stop generation");
  flags.AddString("request_id", &o.request_id, "generate: request id; the server assigns one when empty");
  flags.AddBool("stream", &o.stream, "generate: print tokens as they arrive");
  flags.AddString("cache_salt", &o.cache_salt,
                  "generate: prefix-cache salt; only requests with equal salts share cached prompt blocks (<= 256 bytes)");
  AddTextFlags(&flags, &o.text);

  std::vector<std::string> args(argv + 1, argv + argc);
  if (auto err = flags.Parse(args)) {
    std::cerr << "stepctl: " << *err << "\n" << kUsage << flags.Usage();
    return kExitUsage;
  }
  if (flags.help_requested()) {
    std::cout << kUsage << flags.Usage();
    return kExitOk;
  }
  if (flags.positional().empty()) {
    std::cerr << "stepctl: expected a command\n" << kUsage << flags.Usage();
    return kExitUsage;
  }
  NoteSetFlags(flags, &o.text);
  o.max_new_tokens_set = flags.IsSet("max_new_tokens");
  const std::string& command = flags.positional()[0];
  const std::vector<std::string> operands(flags.positional().begin() + 1, flags.positional().end());
  if (command != "health" && command != "info" && command != "generate" && command != "chat" &&
      command != "tokenize" && command != "detokenize") {
    std::cerr << "stepctl: unknown command \"" << command << "\"\n" << kUsage << flags.Usage();
    return kExitUsage;
  }
  if ((command == "health" || command == "info" || command == "generate") && !operands.empty()) {
    std::cerr << "stepctl: " << command << " takes no argument (got \"" << operands[0]
              << "\"); expected exactly one command\n" << kUsage;
    return kExitUsage;
  }
  if ((command == "tokenize" || command == "detokenize") && operands.size() != 1) {
    std::cerr << "stepctl: " << command << " takes one argument, "
              << (command == "tokenize" ? "the text (quote it)" : "the token ids (1,2,3)") << "\n" << kUsage;
    return kExitUsage;
  }
  if (!(o.timeout_s > 0)) {
    std::cerr << "stepctl: --timeout_s must be > 0\n";
    return kExitUsage;
  }
  if ((command == "generate" || command == "chat") && (o.max_new_tokens < 1 || o.logprobs < 0 || o.top_k < 0)) {
    std::cerr << "stepctl: --max_new_tokens must be >= 1, --logprobs and --top_k >= 0\n";
    return kExitUsage;
  }
  if (o.cache_salt.size() > 256) {
    std::cerr << "stepctl: --cache_salt is " << o.cache_salt.size() << " bytes; at most 256\n";
    return kExitUsage;
  }
  std::shared_ptr<grpc::Channel> channel;
  if (grpc::Status s = MakeChannel(o.channel, &channel); !s.ok()) {
    std::cerr << "stepctl: " << s.error_message() << "\n";
    return kExitUsage;
  }
  if (command == "health") return Health(channel, o);
  if (command == "info") return Info(channel, o);
  if (command == "tokenize") return Tokenize(channel, Rpc(o), o.text, operands[0], o.json, std::cout, std::cerr);
  if (command == "detokenize") return Detokenize(channel, Rpc(o), o.text, operands[0], o.json, std::cout, std::cerr);
  if (command == "chat") {
    std::string message;
    for (const auto& word : operands) message += (message.empty() ? "" : " ") + word;
    v1::GenerateRequest base;
    // Unset, the server's default length applies: an answer is not cut at generate's 16 tokens.
    if (!FillRequest(o, o.max_new_tokens_set, &base)) return kExitUsage;
    return Chat(channel, Rpc(o), base, o.text, message, std::cin, ::isatty(STDIN_FILENO) != 0,
                ::isatty(STDOUT_FILENO) != 0, std::cout, std::cerr);
  }
  return Generate(channel, o);
}

}  // namespace
}  // namespace stepserve::client

int main(int argc, char** argv) { return stepserve::client::Main(argc, argv); }
