// POST /v1/chat/completions and /v1/completions: parse, prepare the prompts with the text front, run the
// sequences (CompletionSession), answer with one JSON body or a stream of server-sent events.
#include <httplib.h>

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/openai/completion_session.h"
#include "server/openai/http_server.h"
#include "server/openai/http_util.h"
#include "server/openai/openai_request.h"
#include "server/openai/openai_response.h"

namespace stepserve::server::openai {
namespace {

// One streamed response: what the content provider keeps between its calls.
struct StreamState {
  std::shared_ptr<CompletionSession> session;
  ResponseContext ctx;
  bool include_usage = false;
  int n = 1;
  absl::Duration heartbeat;
  std::vector<std::string> prefix;  // echo: sent with a choice's first chunk
  std::vector<int64_t> text_offset;
  std::vector<bool> finished;
  int num_finished = 0;
  UsageTotals usage;
  bool started = false;
  bool done = false;
  std::function<void()> on_end;  // once, from the releaser
  ServerMetrics* metrics = nullptr;
  absl::Duration stall_timeout = absl::InfiniteDuration();  // the server's write timeout
};

void AddUsage(const TextOutput& last, int choice, int n, UsageTotals* usage) {
  usage->completion_tokens += last.out.completion_tokens;
  if (choice % n == 0) {  // each prompt once
    usage->prompt_tokens += last.out.prompt_tokens;
    usage->cached_tokens += last.out.cached_prompt_tokens;
  }
}

// One call of the chunked content provider: the role chunks first (chat), then whatever arrived (waiting up to
// the heartbeat for it; an SSE comment when nothing did, so that a client gone away fails the write), then
// the usage chunk and [DONE] once every choice has finished. False (the client is gone) cancels the session.
bool WriteStreamEvents(StreamState& st, httplib::DataSink& sink) {
  if (st.done) {
    sink.done();
    return true;
  }
  std::string out;
  if (!st.started) {
    st.started = true;
    if (st.ctx.chat) {
      for (int i = 0; i < static_cast<int>(st.finished.size()); ++i) {
        out += SseEvent(ChatRoleChunk(st.ctx, i, st.include_usage));
      }
    }
  }
  std::vector<CompletionSession::Event> events = st.session->Wait(out.empty() ? st.heartbeat : absl::ZeroDuration());
  for (CompletionSession::Event& e : events) {
    const int c = e.choice;
    std::optional<Json> chunk = OutputChunk(st.ctx, c, e.output, st.include_usage, st.prefix[c], &st.text_offset[c]);
    st.prefix[c].clear();
    if (chunk) out += SseEvent(*chunk);
    if (e.output.out.finished && !st.finished[c]) {
      st.finished[c] = true;
      ++st.num_finished;
      AddUsage(e.output, c, st.n, &st.usage);
      if (std::optional<ApiError> error = ErrorOf(e.output)) out += SseEvent(error->ToJson());
    }
  }
  const bool all_done = st.num_finished == static_cast<int>(st.finished.size());
  if (all_done) {
    if (st.include_usage) out += SseEvent(UsageChunk(st.ctx, st.usage));
    out += "data: [DONE]\n\n";
    st.done = true;
  }
  if (out.empty()) out = ": keep-alive\n\n";
  const absl::Time write_started = absl::Now();
  if (!sink.write(out.data(), out.size())) {
    // Gone, or stalled: the client read nothing for the write timeout (--stream_stall_timeout_s) while the
    // session paused its sequences. Either way they are cancelled and their blocks freed.
    if (st.metrics != nullptr && absl::Now() - write_started >= st.stall_timeout * 0.9) {
      st.metrics->RecordStreamStalled("http");
    }
    st.session->Cancel();
    return false;
  }
  if (all_done) sink.done();
  return true;
}

}  // namespace

void OpenAiHttpServer::HandleCompletion(const httplib::Request& req, httplib::Response& res, bool chat) {
  auto serving = Current();
  if (!serving.ok()) return SendError(res, FromStatus(serving.status()));
  Json body;
  ApiError error;
  if (!ParseJsonBody(req, &body, &error)) return SendError(res, error);
  CompletionRequest request;
  if (!ParseCompletionRequest(body, chat, &request, &error)) return SendError(res, error);
  const TextPipeline& text = *serving->text;
  if (!CheckModel(body, text.model_name(), &error)) return SendError(res, error);

  PrepareOptions prepare;
  prepare.max_context = serving->defaults.max_context;
  std::vector<PreparedPrompt> prompts;
  for (size_t i = 0; i < request.prompts.size(); ++i) {
    auto prepared = text.Prepare(request.prompts[i], prepare);
    if (!prepared.ok()) {
      if (metrics_ != nullptr) metrics_->RecordFailure(prepared.status().code());
      ApiError e = FromStatus(prepared.status(), OpenAiParamOf, chat);
      if (!chat && request.prompts.size() > 1 && e.param == "prompt") e.param = absl::StrCat("prompt[", i, "]");
      return SendError(res, e);
    }
    prompts.push_back(*std::move(prepared));
  }

  ResponseContext ctx;
  ctx.id = absl::StrCat(chat ? "chatcmpl-" : "cmpl-", id_salt_, absl::StrFormat("%08x", next_id_.fetch_add(1)));
  ctx.created = absl::ToUnixSeconds(absl::Now());
  ctx.model = text.model_name();
  ctx.chat = chat;
  ctx.logprobs = request.logprobs;
  ctx.top_logprobs = request.top_logprobs;
  ctx.tokenizer = text.tokenizer().get();

  auto started = CompletionSession::Start(serving->executor, text, request, prompts, serving->defaults, ctx.id,
                                         options_.max_stream_buffered_outputs, metrics_);
  if (!started.ok()) {
    if (metrics_ != nullptr) metrics_->RecordFailure(started.status().code());  // as gRPC counts refusals
    return SendError(res, FromStatus(started.status(), OpenAiParamOf, chat));
  }
  std::shared_ptr<CompletionSession> session = *std::move(started);
  const int total = session->num_choices();

  // echo (completions): the prompt's text before each choice's.
  std::vector<std::string> prefix(total);
  if (!chat && request.echo) {
    for (int c = 0; c < total; ++c) {
      const TextInput& in = request.prompts[c / request.n];
      if (in.kind == TextInput::Kind::kPrompt) {
        prefix[c] = in.prompt;
      } else if (text.has_tokenizer()) {
        prefix[c] = text.tokenizer()->Decode(in.token_ids, request.skip_special_tokens);
      }
    }
  }
  RequestStarted();

  if (!request.stream) {
    // No disconnect detection here: the request runs to its end (at most max_tokens).
    std::vector<ChoiceResult> results(total);
    int finished = 0;
    while (finished < total) {
      for (CompletionSession::Event& e : session->Wait(absl::Seconds(1))) {
        const bool was = results[e.choice].finished;
        results[e.choice].Add(e.output);
        if (!was && results[e.choice].finished) ++finished;
      }
    }
    RequestEnded();
    UsageTotals usage;
    for (int c = 0; c < total; ++c) {
      if (std::optional<ApiError> e = ErrorOf(results[c].last)) return SendError(res, *e);
      AddUsage(results[c].last, c, request.n, &usage);
    }
    return SendJson(res, CompletionResponse(ctx, results, usage, prefix));
  }

  auto state = std::make_shared<StreamState>();
  state->session = session;
  state->ctx = std::move(ctx);
  state->include_usage = request.include_usage;
  state->n = request.n;
  state->heartbeat = options_.heartbeat;
  state->metrics = metrics_;
  state->stall_timeout = options_.stream_stall_timeout;
  state->prefix = std::move(prefix);
  state->text_offset.assign(total, 0);
  state->finished.assign(total, false);
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [state](size_t /*offset*/, httplib::DataSink& sink) { return WriteStreamEvents(*state, sink); },
      [this, state](bool /*success*/) {
        // The response is over (written, or the client went away): nothing of it may run on.
        state->session->Cancel();
        RequestEnded();
      });
}

}  // namespace stepserve::server::openai
