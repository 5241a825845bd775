#include "client/text_load.h"

#include <httplib.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include <grpcpp/client_context.h>

#include "client/channel.h"
#include "client/sse.h"
#include "stepserve/v1/stepserve.grpc.pb.h"

namespace stepserve::client {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Records TTFT and ITL from the arrival times of the messages (or chunks) that carry output.
class Timer {
 public:
  Timer() : start_(Clock::now()) {}
  void Output(RequestResult* r) {
    const auto now = Clock::now();
    if (!got_output_) {
      r->ttft_s = Seconds(now - start_);
      got_output_ = true;
    } else {
      r->itl_s.push_back(Seconds(now - last_));
    }
    last_ = now;
  }
  void End(RequestResult* r) const { r->e2e_s = Seconds(Clock::now() - start_); }
  bool got_output() const { return got_output_; }

 private:
  Clock::time_point start_;
  Clock::time_point last_;
  bool got_output_ = false;
};

class GrpcTextBackend : public TextBackend {
 public:
  explicit GrpcTextBackend(std::shared_ptr<grpc::Channel> channel) : stub_(v1::StepServe::NewStub(channel)) {}

  RequestResult Send(const PromptEntry& entry, const LoadConfig& config) override {
    v1::GenerateRequest req;
    if (entry.is_chat()) {
      for (const auto& m : entry.messages) {
        auto* msg = req.mutable_chat()->add_messages();
        msg->set_role(m.role);
        msg->set_content(m.content);
      }
    } else {
      req.set_prompt(entry.prompt);
    }
    req.mutable_stopping()->set_max_new_tokens(entry.max_new_tokens);
    req.mutable_stopping()->set_ignore_eos(config.ignore_eos);
    req.set_cache_salt(config.cache_salt);
    RequestResult r;
    r.expected_tokens = entry.max_new_tokens;
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(false);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::microseconds(static_cast<int64_t>(config.request_timeout_s * 1e6)));
    Timer timer;
    auto reader = stub_->Generate(&ctx, req);
    v1::GenerateResponse msg;
    while (reader->Read(&msg)) {
      if (msg.token_ids_size() > 0) {
        timer.Output(&r);
        r.output_tokens += msg.token_ids_size();
      }
      if (msg.has_usage()) {
        r.prompt_tokens = msg.usage().prompt_tokens();
        r.cached_prompt_tokens = msg.usage().cached_prompt_tokens();
      }
    }
    const grpc::Status status = reader->Finish();
    timer.End(&r);
    r.ok = status.ok();
    if (!status.ok()) {
      r.code = StatusCodeName(status.error_code());
      r.message = status.error_message();
    }
    return r;
  }

 private:
  std::unique_ptr<v1::StepServe::Stub> stub_;
};

// The "error.message" of an OpenAI error body, else the body itself (cut short).
std::string ErrorMessage(const std::string& body) {
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_discarded() && j.is_object()) {
    if (auto e = j.find("error"); e != j.end()) {
      if (e->is_object() && e->contains("message") && (*e)["message"].is_string()) {
        return (*e)["message"].get<std::string>();
      }
      if (e->is_string()) return e->get<std::string>();
    }
  }
  return body.substr(0, 300);
}

class OpenAiBackend : public TextBackend {
 public:
  explicit OpenAiBackend(OpenAiTarget target) : target_(std::move(target)) {}

  RequestResult Send(const PromptEntry& entry, const LoadConfig& config) override {
    RequestResult r;
    r.expected_tokens = entry.max_new_tokens;
    std::unique_ptr<httplib::Client> client = Acquire(config.request_timeout_s);
    httplib::Request req;
    req.method = "POST";
    req.path = OpenAiPath(entry);
    req.body = OpenAiRequestBody(entry, target_.model, config).dump();
    req.set_header("Content-Type", "application/json");
    req.set_header("Accept", "text/event-stream");
    const auto deadline =
        Clock::now() + std::chrono::microseconds(static_cast<int64_t>(config.request_timeout_s * 1e6));
    int status = 0;
    std::string error_body;
    SseParser sse;
    std::vector<SseEvent> events;
    bool done = false, usage = false, deadline_hit = false;
    int64_t output_chunks = 0;
    std::string stream_error;
    Timer timer;
    req.response_handler = [&](const httplib::Response& res) {
      status = res.status;
      return true;
    };
    req.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
      if (status != 200) {
        if (error_body.size() < 4096) error_body.append(data, size);
        return true;
      }
      events.clear();
      sse.Feed(data, size, &events);
      for (const SseEvent& e : events) {
        StreamChunk chunk;
        std::string err;
        if (done) continue;  // nothing counts after [DONE]
        if (!ParseStreamChunk(e.data, &chunk, &err)) {
          stream_error = err;
          return false;
        }
        if (!chunk.error.empty()) {
          stream_error = chunk.error;
          return false;
        }
        if (chunk.done) done = true;
        if (chunk.has_output()) {
          timer.Output(&r);
          ++output_chunks;
        }
        if (chunk.has_usage) {
          usage = true;
          r.prompt_tokens = chunk.prompt_tokens;
          r.output_tokens = chunk.completion_tokens;
          r.cached_prompt_tokens = chunk.cached_tokens;
        }
      }
      if (Clock::now() > deadline) {
        deadline_hit = true;
        return false;
      }
      return true;
    };
    httplib::Response res;
    httplib::Error error = httplib::Error::Success;
    const bool sent = client->send(req, res, error);
    timer.End(&r);
    if (!usage) r.output_tokens = output_chunks;
    if (!stream_error.empty()) {
      r.code = "STREAM_ERROR";
      r.message = stream_error;
    } else if (deadline_hit) {
      r.code = "DEADLINE_EXCEEDED";
      r.message = "the request ran past --request_timeout_s";
    } else if (!sent) {
      r.code = error == httplib::Error::Read ? "HTTP_READ" : "HTTP_" + httplib::to_string(error);
      for (char& c : r.code) c = c == ' ' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      r.message = "POST " + req.path + " to " + target_.host + ":" + std::to_string(target_.port) + ": " +
                  httplib::to_string(error);
    } else if (status != 200) {
      r.code = "HTTP_" + std::to_string(status);
      r.message = ErrorMessage(error_body);
    } else if (!done) {
      r.code = "INCOMPLETE_STREAM";
      r.message = "the event stream ended without data: [DONE]";
    } else {
      r.ok = true;
    }
    // A connection that ended a stream cleanly can carry the next request.
    if (r.ok) Release(std::move(client));
    return r;
  }

 private:
  std::unique_ptr<httplib::Client> Acquire(double timeout_s) {
    std::unique_ptr<httplib::Client> client;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!pool_.empty()) {
        client = std::move(pool_.back());
        pool_.pop_back();
      }
    }
    if (!client) {
      client = std::make_unique<httplib::Client>(target_.host, target_.port);
      client->set_keep_alive(true);
      // The request goes out as headers and body in separate writes: with Nagle's algorithm the body waits
      // for the server's delayed ACK of the headers (measured: TTFT up by ~70 ms on loopback).
      client->set_tcp_nodelay(true);
      client->set_connection_timeout(std::chrono::seconds(10));
    }
    const auto read = std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6));
    client->set_read_timeout(read);
    client->set_write_timeout(read);
    return client;
  }
  void Release(std::unique_ptr<httplib::Client> client) {
    std::lock_guard<std::mutex> lock(mu_);
    pool_.push_back(std::move(client));
  }

  OpenAiTarget target_;
  std::mutex mu_;
  std::vector<std::unique_ptr<httplib::Client>> pool_;
};

}  // namespace

std::unique_ptr<TextBackend> MakeGrpcTextBackend(std::shared_ptr<grpc::Channel> channel) {
  return std::make_unique<GrpcTextBackend>(std::move(channel));
}

std::unique_ptr<TextBackend> MakeOpenAiBackend(const OpenAiTarget& target) {
  return std::make_unique<OpenAiBackend>(target);
}

bool ParseHttpTarget(const std::string& text, std::string* host, int* port, std::string* error) {
  std::string rest = text;
  if (rest.rfind("http://", 0) == 0) rest = rest.substr(7);
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  const auto bad = [&](const std::string& why) {
    *error = "bad HTTP target \"" + text + "\": " + why;
    return false;
  };
  if (rest.rfind("https://", 0) == 0) return bad("https is not supported");
  if (rest.find('/') != std::string::npos) return bad("give host:port without a path");
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0) return bad("expected host:port");
  std::string h = rest.substr(0, colon);
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  const std::string p = rest.substr(colon + 1);
  if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) {
    return bad("the port is not a number");
  }
  const int n = std::stoi(p);
  if (n < 1 || n > 65535) return bad("the port is outside 1..65535");
  *host = h;
  *port = n;
  return true;
}

std::string OpenAiPath(const PromptEntry& entry) {
  return entry.is_chat() ? "/v1/chat/completions" : "/v1/completions";
}

nlohmann::json OpenAiRequestBody(const PromptEntry& entry, const std::string& model, const LoadConfig& config) {
  nlohmann::json body = nlohmann::json::object();
  if (!model.empty()) body["model"] = model;
  if (entry.is_chat()) {
    nlohmann::json messages = nlohmann::json::array();
    for (const auto& m : entry.messages) messages.push_back({{"role", m.role}, {"content", m.content}});
    body["messages"] = std::move(messages);
  } else {
    body["prompt"] = entry.prompt;
  }
  body["max_tokens"] = entry.max_new_tokens;
  body["temperature"] = 0;
  if (config.ignore_eos) body["ignore_eos"] = true;
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  if (!config.cache_salt.empty()) body["cache_salt"] = config.cache_salt;
  return body;
}

bool OpenAiFirstModel(const std::string& host, int port, double timeout_s, std::string* model, std::string* error) {
  httplib::Client client(host, port);
  const auto t = std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6));
  client.set_connection_timeout(t);
  client.set_read_timeout(t);
  const std::string where = "GET http://" + host + ":" + std::to_string(port) + "/v1/models";
  httplib::Result res = client.Get("/v1/models");
  if (!res) {
    *error = where + ": " + httplib::to_string(res.error()) + " (is the server's HTTP front listening there?)";
    return false;
  }
  if (res->status != 200) {
    *error = where + ": HTTP " + std::to_string(res->status) + ": " + ErrorMessage(res->body);
    return false;
  }
  const nlohmann::json j = nlohmann::json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("data") || !j["data"].is_array() || j["data"].empty() ||
      !j["data"][0].is_object() || !j["data"][0].contains("id") || !j["data"][0]["id"].is_string()) {
    *error = where + ": no model in the answer: " + res->body.substr(0, 200);
    return false;
  }
  *model = j["data"][0]["id"].get<std::string>();
  return true;
}

LoadResult RunTextLoad(TextBackend& backend, const std::vector<PromptEntry>& entries, const LoadConfig& config) {
  const int64_t total = static_cast<int64_t>(entries.size());
  LoadResult out;
  out.requests.resize(entries.size());
  std::mutex mu;
  std::condition_variable cv;
  int64_t finished = 0;
  int64_t in_flight = 0;
  Clock::time_point last_finish;
  const Clock::time_point start = Clock::now();

  const auto run_one = [&](size_t i) {
    RequestResult r = backend.Send(entries[i], config);
    std::lock_guard<std::mutex> lock(mu);
    out.requests[i] = std::move(r);
    ++finished;
    --in_flight;
    last_finish = Clock::now();
    cv.notify_all();
  };
  Clock::time_point last_report;
  const auto report = [&](std::unique_lock<std::mutex>& lock, bool force) {
    if (!config.progress) return;
    const auto now = Clock::now();
    if (!force && now - last_report < std::chrono::milliseconds(200)) return;
    last_report = now;
    const int64_t done = finished;
    lock.unlock();
    config.progress(done, total);
    lock.lock();
  };

  std::vector<std::thread> threads;
  std::atomic<size_t> next{0};  // closed loop: the next entry to send (outlives the workers: joined below)
  if (config.arrivals_s.empty()) {
    // Closed loop: `concurrency` workers take the next entry as soon as theirs ends.
    const int64_t workers = std::min<int64_t>(std::max<int64_t>(1, config.concurrency), total);
    for (int64_t w = 0; w < workers; ++w) {
      threads.emplace_back([&] {
        for (size_t i = next++; i < entries.size(); i = next++) {
          {
            std::lock_guard<std::mutex> lock(mu);
            ++in_flight;
          }
          run_one(i);
        }
      });
    }
  } else {
    // Open loop: each request starts at its arrival time, once fewer than the cap are in flight.
    const int64_t cap = config.concurrency > 0 ? config.concurrency : INT64_MAX;
    std::unique_lock<std::mutex> lock(mu);
    for (size_t i = 0; i < entries.size(); ++i) {
      const auto due = start + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(i < config.arrivals_s.size() ? config.arrivals_s[i] : 0));
      while (Clock::now() < due || in_flight >= cap) {
        const auto until = Clock::now() < due ? due : Clock::now() + std::chrono::milliseconds(200);
        cv.wait_until(lock, std::min(until, Clock::now() + std::chrono::milliseconds(200)));
        report(lock, false);
      }
      ++in_flight;
      threads.emplace_back(run_one, i);
    }
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    while (finished < total) {
      cv.wait_for(lock, std::chrono::milliseconds(200));
      report(lock, false);
    }
    report(lock, true);
  }
  for (auto& t : threads) t.join();
  out.duration_s = total > 0 ? Seconds(last_finish - start) : 0;
  return out;
}

}  // namespace stepserve::client
