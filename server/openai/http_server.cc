#include "server/openai/http_server.h"

#include <httplib.h>

#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"
#include "server/openai/http_util.h"

namespace stepserve::server::openai {
namespace {

using Json = nlohmann::ordered_json;

std::string RandomHex(int n) {
  std::random_device rd;
  std::mt19937_64 rng((static_cast<uint64_t>(rd()) << 32) ^ rd());
  std::string s;
  for (int i = 0; i < n; ++i) s += "0123456789abcdef"[rng() % 16];
  return s;
}

// The route label of stepserve_http_requests_total: the known paths, "other" for the rest.
std::string RouteLabel(const std::string& path) {
  for (const char* route : {"/v1/chat/completions", "/v1/completions", "/v1/models", "/tokenize", "/detokenize",
                            "/health"}) {
    if (path == route) return route;
  }
  return "other";
}

}  // namespace

OpenAiHttpServer::OpenAiHttpServer(const HttpOptions& options, ServerMetrics* metrics)
    : options_(options), metrics_(metrics), server_(std::make_unique<httplib::Server>()), id_salt_(RandomHex(8)) {}

absl::StatusOr<std::unique_ptr<OpenAiHttpServer>> OpenAiHttpServer::Start(const HttpOptions& options,
                                                                         ServerMetrics* metrics) {
  std::unique_ptr<OpenAiHttpServer> s(new OpenAiHttpServer(options, metrics));
  httplib::Server& svr = *s->server_;
  const int threads = std::max(1, options.threads);
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  svr.set_payload_max_length(options.max_body_bytes);
  svr.set_keep_alive_max_count(1000);
  // Each SSE event is its own small write: without TCP_NODELAY, Nagle holds one back until the client ACKs
  // the previous (its delayed-ACK time, tens of ms, on a kept-alive connection).
  svr.set_tcp_nodelay(true);
  if (options.stream_stall_timeout != absl::InfiniteDuration() && options.stream_stall_timeout > absl::ZeroDuration()) {
    // A write waits at most this long for the client to make room: a stream stalled longer ends.
    const int64_t us = absl::ToInt64Microseconds(options.stream_stall_timeout);
    svr.set_write_timeout(static_cast<time_t>(us / 1000000), static_cast<time_t>(us % 1000000));
  }
  s->Route();
  const std::string host = options.host.empty() ? std::string("0.0.0.0") : options.host;
  if (options.port == 0) {
    s->port_ = svr.bind_to_any_port(host);
    if (s->port_ <= 0) return absl::UnavailableError(absl::StrCat("--http_port: cannot listen on ", host));
  } else {
    if (!svr.bind_to_port(host, options.port)) {
      return absl::UnavailableError(absl::StrCat("--http_port: cannot listen on ", host, ":", options.port));
    }
    s->port_ = options.port;
  }
  OpenAiHttpServer* raw = s.get();
  s->thread_ = std::thread([raw] { raw->server_->listen_after_bind(); });
  return s;
}

OpenAiHttpServer::~OpenAiHttpServer() { Stop(); }

void OpenAiHttpServer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    draining_ = true;
  }
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

void OpenAiHttpServer::Attach(Executor* executor, std::shared_ptr<const TextPipeline> text,
                              const RequestDefaults& defaults) {
  std::lock_guard<std::mutex> lock(mu_);
  serving_ = Serving{executor, std::move(text), defaults};
  attached_ = true;
}

void OpenAiHttpServer::BeginDrain() {
  std::lock_guard<std::mutex> lock(mu_);
  draining_ = true;
}

absl::StatusOr<OpenAiHttpServer::Serving> OpenAiHttpServer::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (draining_) return absl::UnavailableError("the server is draining and accepts no new requests");
  if (!attached_) return absl::UnavailableError("the model is still loading; not serving yet");
  return serving_;
}

void OpenAiHttpServer::RequestStarted() {
  std::lock_guard<std::mutex> lock(mu_);
  ++active_;
}

void OpenAiHttpServer::RequestEnded() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--active_ == 0) idle_cv_.notify_all();
}

int OpenAiHttpServer::active_requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return active_;
}

bool OpenAiHttpServer::WaitForIdle(absl::Time deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_cv_.wait_until(lock, absl::ToChronoTime(deadline), [this] { return active_ == 0; });
}

void OpenAiHttpServer::Route() {
  httplib::Server& svr = *server_;
  // API keys (server/api_keys.h) before any route; /health stays open for probes.
  svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    const ApiKeys* keys = options_.api_keys;
    if (keys == nullptr || !keys->enabled() || req.path == "/health" ||
        keys->Check(req.get_header_value("Authorization"))) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    metrics_->RecordUnauthenticated("http");  // not the path: a client could make up any number of them
    ApiError e;
    e.http_status = 401;
    e.code = "invalid_api_key";
    e.message = "a valid API key is required: header \"Authorization: Bearer <key>\"";
    SendError(res, e);
    res.status = 401;
    res.set_header("WWW-Authenticate", "Bearer");
    return httplib::Server::HandlerResponse::Handled;
  });
  svr.Get("/health", [this](const httplib::Request& req, httplib::Response& res) { HandleHealth(req, res); });
  svr.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) { HandleModels(req, res); });
  svr.Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) { HandleTokenize(req, res); });
  svr.Post("/detokenize",
           [this](const httplib::Request& req, httplib::Response& res) { HandleDetokenize(req, res); });
  svr.Post("/v1/chat/completions",
           [this](const httplib::Request& req, httplib::Response& res) { HandleCompletion(req, res, true); });
  svr.Post("/v1/completions",
           [this](const httplib::Request& req, httplib::Response& res) { HandleCompletion(req, res, false); });
  // Whatever ends without a body of its own (no route 404, body too large 413, ...) gets the error JSON.
  svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    ApiError e;
    e.http_status = res.status;
    if (res.status == 404) {
      e.code = "not_found";
      e.message = absl::StrCat("no route ", req.method, " ", req.path);
    } else if (res.status == 413) {
      e.code = "request_too_large";
      e.message = "the request body is larger than --http_max_body_bytes";
    } else {
      e.code = "http_error";
      e.message = absl::StrCat("HTTP ", res.status);
    }
    SendError(res, e);
    res.status = e.http_status;
  });
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    LogWarning("HTTP handler failed: ", what);
    SendError(res, FromStatus(absl::InternalError(absl::StrCat("internal error: ", what))));
  });
  svr.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    if (metrics_ != nullptr) metrics_->RecordHttpRequest(RouteLabel(req.path), res.status);
  });
}

void OpenAiHttpServer::HandleHealth(const httplib::Request&, httplib::Response& res) {
  auto serving = Current();
  if (!serving.ok()) {
    SendError(res, FromStatus(serving.status()));
    return;
  }
  res.status = 200;
  res.set_content("", "text/plain");
}

void OpenAiHttpServer::HandleModels(const httplib::Request&, httplib::Response& res) {
  auto serving = Current();
  if (!serving.ok()) {
    SendError(res, FromStatus(serving.status()));
    return;
  }
  const std::string& name = serving->text->model_name();
  Json model = {{"id", name},
                {"object", "model"},
                {"created", absl::ToUnixSeconds(absl::Now())},
                {"owned_by", "stepserve"},
                {"root", name},
                {"parent", nullptr},
                {"max_model_len", serving->defaults.max_context}};
  SendJson(res, {{"object", "list"}, {"data", Json::array({model})}});
}

void OpenAiHttpServer::HandleTokenize(const httplib::Request& req, httplib::Response& res) {
  auto serving = Current();
  if (!serving.ok()) return SendError(res, FromStatus(serving.status()));
  Json body;
  ApiError error;
  if (!ParseJsonBody(req, &body, &error)) return SendError(res, error);
  if (!body.is_object()) return SendError(res, BadRequest("", "the request body must be a JSON object", "invalid_json"));
  if (!CheckModel(body, serving->text->model_name(), &error)) return SendError(res, error);
  TextInput input;
  auto messages = body.find("messages");
  auto prompt = body.find("prompt");
  const bool has_messages = messages != body.end() && !messages->is_null();
  const bool has_prompt = prompt != body.end() && !prompt->is_null();
  if (has_messages == has_prompt) {
    return SendError(res, BadRequest(has_messages ? "prompt" : "messages", "give exactly one of prompt and messages"));
  }
  auto get_bool = [&](const char* key, bool* out) {
    auto it = body.find(key);
    if (it == body.end() || it->is_null()) return true;
    if (!it->is_boolean()) {
      error = BadRequest(key, "must be a boolean");
      return false;
    }
    *out = it->get<bool>();
    return true;
  };
  if (has_prompt) {
    if (!prompt->is_string()) return SendError(res, BadRequest("prompt", "must be a string"));
    input.kind = TextInput::Kind::kPrompt;
    input.prompt = prompt->get<std::string>();
    if (!get_bool("add_special_tokens", &input.add_special_tokens)) return SendError(res, error);
  } else {
    input.kind = TextInput::Kind::kChat;
    input.messages = *messages;
    if (auto it = body.find("tools"); it != body.end()) input.tools = *it;
    if (auto it = body.find("tool_choice"); it != body.end()) input.tool_choice = *it;
    if (auto it = body.find("chat_template_kwargs"); it != body.end()) input.chat_template_kwargs = *it;
    if (!get_bool("add_generation_prompt", &input.add_generation_prompt)) return SendError(res, error);
  }
  auto prepared = serving->text->Prepare(input, PrepareOptions());
  if (!prepared.ok()) return SendError(res, FromStatus(prepared.status()));
  SendJson(res, {{"tokens", prepared->ids},
                 {"count", prepared->ids.size()},
                 {"max_model_len", serving->defaults.max_context}});
}

void OpenAiHttpServer::HandleDetokenize(const httplib::Request& req, httplib::Response& res) {
  auto serving = Current();
  if (!serving.ok()) return SendError(res, FromStatus(serving.status()));
  Json body;
  ApiError error;
  if (!ParseJsonBody(req, &body, &error)) return SendError(res, error);
  if (!body.is_object()) return SendError(res, BadRequest("", "the request body must be a JSON object", "invalid_json"));
  if (!CheckModel(body, serving->text->model_name(), &error)) return SendError(res, error);
  auto tokens = body.find("tokens");
  if (tokens == body.end() || !tokens->is_array()) {
    return SendError(res, BadRequest("tokens", "required: an array of token ids"));
  }
  std::vector<int32_t> ids;
  for (size_t i = 0; i < tokens->size(); ++i) {
    const Json& t = (*tokens)[i];
    if (!t.is_number_integer() || t.get<int64_t>() < INT32_MIN || t.get<int64_t>() > INT32_MAX) {
      return SendError(res, BadRequest(absl::StrCat("tokens[", i, "]"), "must be an integer token id"));
    }
    ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  // Special tokens are kept, as Hugging Face's decode (and vLLM's /detokenize) keeps them.
  auto text = serving->text->Detokenize(ids, /*skip_special_tokens=*/false, "tokens");
  if (!text.ok()) return SendError(res, FromStatus(text.status()));
  SendJson(res, {{"prompt", *text}});
}

}  // namespace stepserve::server::openai
