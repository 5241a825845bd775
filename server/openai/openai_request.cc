#include "server/openai/openai_request.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace stepserve::server::openai {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kMaxN = 128;  // sequences per request

// Reads body[key] when present and not null. Each returns false (with *error) on a wrong type.
class Reader {
 public:
  Reader(const Json& body, ApiError* error) : body_(body), error_(error) {}

  const Json* Find(const char* key) const {
    auto it = body_.find(key);
    if (it == body_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  bool Bool(const char* key, bool* out) {
    const Json* v = Find(key);
    if (v == nullptr) return true;
    if (!v->is_boolean()) return Fail(key, "must be a boolean");
    *out = v->get<bool>();
    return true;
  }

  bool Int(const char* key, std::optional<int64_t>* out) {
    const Json* v = Find(key);
    if (v == nullptr) return true;
    if (v->is_number_integer()) {
      *out = v->get<int64_t>();
      return true;
    }
    if (v->is_number_float()) {  // 16.0 is 16
      const double d = v->get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e18) {
        *out = static_cast<int64_t>(d);
        return true;
      }
    }
    return Fail(key, "must be an integer");
  }

  bool IntInRange(const char* key, int64_t lo, int64_t hi, std::optional<int>* out) {
    std::optional<int64_t> v;
    if (!Int(key, &v)) return false;
    if (!v) return true;
    if (*v < lo || *v > hi) return Fail(key, absl::StrCat("must be in [", lo, ", ", hi, "], got ", *v));
    *out = static_cast<int>(*v);
    return true;
  }

  bool Float(const char* key, std::optional<float>* out) {
    const Json* v = Find(key);
    if (v == nullptr) return true;
    if (!v->is_number()) return Fail(key, "must be a number");
    *out = v->get<float>();
    return true;
  }

  bool String(const char* key, std::string* out) {
    const Json* v = Find(key);
    if (v == nullptr) return true;
    if (!v->is_string()) return Fail(key, "must be a string");
    *out = v->get<std::string>();
    return true;
  }

  bool Fail(const std::string& param, const std::string& message) {
    *error_ = BadRequest(param, message);
    return false;
  }

 private:
  const Json& body_;
  ApiError* error_;
};

bool ParseStop(Reader& r, CompletionRequest* req) {
  const Json* v = r.Find("stop");
  if (v == nullptr) return true;
  if (v->is_string()) {
    req->stop.push_back(v->get<std::string>());
    return true;
  }
  if (!v->is_array()) return r.Fail("stop", "must be a string or an array of strings");
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) return r.Fail(absl::StrCat("stop[", i, "]"), "must be a string");
    req->stop.push_back((*v)[i].get<std::string>());
  }
  return true;
}

bool ParseTokenList(Reader& r, const Json& v, const std::string& param, std::vector<int32_t>* ids) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_number_integer()) return r.Fail(absl::StrCat(param, "[", i, "]"), "must be an integer token id");
    const int64_t id = v[i].get<int64_t>();
    if (id < 0 || id > std::numeric_limits<int32_t>::max()) {
      return r.Fail(absl::StrCat(param, "[", i, "]"), absl::StrCat("token id ", id, " is out of range"));
    }
    ids->push_back(static_cast<int32_t>(id));
  }
  return true;
}

// Completions' prompt: a string, a list of strings, a list of token ids, or a list of such lists.
bool ParsePrompts(Reader& r, CompletionRequest* req, bool add_special_tokens) {
  const Json* v = r.Find("prompt");
  if (v == nullptr) return r.Fail("prompt", "required");
  auto text_prompt = [&](std::string text) {
    TextInput in;
    in.kind = TextInput::Kind::kPrompt;
    in.prompt = std::move(text);
    in.add_special_tokens = add_special_tokens;
    req->prompts.push_back(std::move(in));
  };
  if (v->is_string()) {
    text_prompt(v->get<std::string>());
    return true;
  }
  if (!v->is_array() || v->empty()) return r.Fail("prompt", "must be a string, a list of strings or of token ids");
  if ((*v)[0].is_number_integer()) {
    TextInput in;
    if (!ParseTokenList(r, *v, "prompt", &in.token_ids)) return false;
    req->prompts.push_back(std::move(in));
    return true;
  }
  for (size_t i = 0; i < v->size(); ++i) {
    const Json& p = (*v)[i];
    const std::string param = absl::StrCat("prompt[", i, "]");
    if (p.is_string()) {
      text_prompt(p.get<std::string>());
    } else if (p.is_array() && !p.empty()) {
      TextInput in;
      if (!ParseTokenList(r, p, param, &in.token_ids)) return false;
      req->prompts.push_back(std::move(in));
    } else {
      return r.Fail(param, "must be a string or a non-empty list of token ids");
    }
  }
  return true;
}

bool ParseChatInput(Reader& r, CompletionRequest* req) {
  TextInput in;
  in.kind = TextInput::Kind::kChat;
  const Json* messages = r.Find("messages");
  if (messages == nullptr) return r.Fail("messages", "required");
  in.messages = *messages;  // shapes are checked by the text front, which names the field
  if (const Json* tools = r.Find("tools")) in.tools = *tools;
  if (const Json* choice = r.Find("tool_choice")) in.tool_choice = *choice;
  if (const Json* kwargs = r.Find("chat_template_kwargs")) {
    if (!kwargs->is_object()) return r.Fail("chat_template_kwargs", "must be an object");
    in.chat_template_kwargs = *kwargs;
  }
  if (!r.Bool("add_generation_prompt", &in.add_generation_prompt)) return false;
  req->prompts.push_back(std::move(in));
  return true;
}

}  // namespace

bool ParseCompletionRequest(const Json& body, bool chat, CompletionRequest* req, ApiError* error) {
  if (!body.is_object()) {
    *error = BadRequest("", "the request body must be a JSON object", "invalid_json");
    return false;
  }
  Reader r(body, error);
  req->chat = chat;
  if (!r.String("model", &req->model)) return false;
  bool add_special_tokens = true;
  if (!r.Bool("add_special_tokens", &add_special_tokens)) return false;
  if (chat) {
    if (!ParseChatInput(r, req)) return false;
  } else {
    if (!ParsePrompts(r, req, add_special_tokens)) return false;
  }
  std::optional<int> n;
  if (!r.IntInRange("n", 1, kMaxN, &n)) return false;
  req->n = n.value_or(1);
  if (!r.Bool("stream", &req->stream)) return false;
  if (const Json* so = r.Find("stream_options")) {
    if (!so->is_object()) return r.Fail("stream_options", "must be an object");
    if (!req->stream) return r.Fail("stream_options", "is only allowed with stream: true");
    auto it = so->find("include_usage");
    if (it != so->end() && !it->is_null()) {
      if (!it->is_boolean()) return r.Fail("stream_options.include_usage", "must be a boolean");
      req->include_usage = it->get<bool>();
    }
  }
  std::optional<int> max_tokens, max_completion_tokens;
  if (!r.IntInRange("max_tokens", 1, std::numeric_limits<int>::max(), &max_tokens)) return false;
  if (!r.IntInRange("max_completion_tokens", 1, std::numeric_limits<int>::max(), &max_completion_tokens)) {
    return false;
  }
  req->max_tokens = max_completion_tokens ? max_completion_tokens : max_tokens;

  std::optional<float> temperature;
  if (!r.Float("temperature", &temperature)) return false;
  if (temperature) req->temperature = *temperature;
  if (!r.Float("top_p", &req->top_p) || !r.Float("min_p", &req->min_p) ||
      !r.Float("presence_penalty", &req->presence_penalty) || !r.Float("frequency_penalty", &req->frequency_penalty) ||
      !r.Float("repetition_penalty", &req->repetition_penalty)) {
    return false;
  }
  std::optional<int> top_k;
  if (!r.IntInRange("top_k", -1, std::numeric_limits<int>::max(), &top_k)) return false;
  if (top_k) req->top_k = *top_k < 0 ? 0 : *top_k;  // vLLM: -1 (or 0) is no limit
  std::optional<int64_t> seed;
  if (!r.Int("seed", &seed)) return false;
  if (seed) req->seed = static_cast<uint64_t>(*seed);
  if (!ParseStop(r, req)) return false;
  if (const Json* ids = r.Find("stop_token_ids")) {
    if (!ids->is_array()) return r.Fail("stop_token_ids", "must be an array of token ids");
    if (!ParseTokenList(r, *ids, "stop_token_ids", &req->stop_token_ids)) return false;
  }
  if (!r.Bool("ignore_eos", &req->ignore_eos) ||
      !r.Bool("include_stop_str_in_output", &req->include_stop_str_in_output) ||
      !r.Bool("skip_special_tokens", &req->skip_special_tokens)) {
    return false;
  }
  if (chat) {
    if (!r.Bool("logprobs", &req->logprobs)) return false;
    std::optional<int> top;
    if (!r.IntInRange("top_logprobs", 0, 20, &top)) return false;
    if (top && *top > 0 && !req->logprobs) return r.Fail("top_logprobs", "needs logprobs: true");
    req->top_logprobs = top.value_or(0);
  } else {
    std::optional<int> lp;
    if (!r.IntInRange("logprobs", 0, 20, &lp)) return false;
    req->logprobs = lp.has_value();
    req->top_logprobs = lp.value_or(0);
    if (!r.Bool("echo", &req->echo)) return false;
    std::string suffix;
    if (!r.String("suffix", &suffix)) return false;
    if (!suffix.empty()) return r.Fail("suffix", "is not supported");
  }
  if (!r.String("cache_salt", &req->cache_salt) || !r.String("user", &req->user)) return false;
  return true;
}

GenerationRequest ToEngineRequest(const CompletionRequest& req, std::vector<int32_t> prompt_ids, int index,
                                      const RequestDefaults& defaults) {
  GenerationRequest g;
  g.prompt = std::move(prompt_ids);
  SamplingParams& s = g.sampling;
  s.temperature = req.temperature;
  if (req.top_p) s.top_p = *req.top_p;
  if (req.top_k) s.top_k = *req.top_k;
  if (req.min_p) s.min_p = *req.min_p;
  if (req.presence_penalty) s.presence_penalty = *req.presence_penalty;
  if (req.frequency_penalty) s.frequency_penalty = *req.frequency_penalty;
  if (req.repetition_penalty) s.repetition_penalty = *req.repetition_penalty;
  if (req.seed) s.seed = *req.seed + static_cast<uint64_t>(index);
  if (req.max_tokens) {
    g.stopping.max_new_tokens = *req.max_tokens;
  } else {
    const int64_t room = defaults.max_context - static_cast<int64_t>(g.prompt.size());
    const int64_t wanted = req.chat ? std::min<int64_t>(defaults.default_max_new_tokens, defaults.max_new_tokens_cap)
                                    : 16;
    g.stopping.max_new_tokens = static_cast<int>(std::max<int64_t>(1, std::min(wanted, room)));
  }
  g.stopping.stop_token_ids = req.stop_token_ids;
  g.stopping.ignore_eos = req.ignore_eos;
  // The engine returns the sampled token's log-probability only with at least one alternative.
  if (req.logprobs) g.logprobs = std::max(1, req.top_logprobs);
  g.cache_salt = req.cache_salt;
  return g;
}

}  // namespace stepserve::server::openai
