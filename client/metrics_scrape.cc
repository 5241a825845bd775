#include "client/metrics_scrape.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <utility>

namespace stepserve::client {

bool ParsePrometheusText(const std::string& text, std::vector<Sample>* samples, std::string* error) {
  samples->clear();
  std::istringstream in(text);
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    const auto bad = [&](const std::string& why) {
      *error = "metrics line " + std::to_string(lineno) + ": " + why + ": " + line;
      return false;
    };
    Sample s;
    size_t i = start;
    while (i < line.size() && line[i] != '{' && line[i] != ' ' && line[i] != '\t') ++i;
    s.name = line.substr(start, i - start);
    if (s.name.empty()) return bad("no metric name");
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (true) {
        while (i < line.size() && (line[i] == ' ' || line[i] == ',')) ++i;
        if (i >= line.size()) return bad("unterminated labels");
        if (line[i] == '}') {
          ++i;
          break;
        }
        const size_t eq = line.find('=', i);
        if (eq == std::string::npos || eq + 1 >= line.size() || line[eq + 1] != '"') return bad("bad label");
        std::string key = line.substr(i, eq - i);
        std::string value;
        i = eq + 2;
        for (; i < line.size() && line[i] != '"'; ++i) {
          if (line[i] == '\\' && i + 1 < line.size()) {
            ++i;
            value.push_back(line[i] == 'n' ? '\n' : line[i]);
          } else {
            value.push_back(line[i]);
          }
        }
        if (i >= line.size()) return bad("unterminated label value");
        ++i;  // closing quote
        s.labels[key] = value;
      }
    }
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t end = line.find_first_of(" \t", i);
    std::string value = line.substr(i, end == std::string::npos ? std::string::npos : end - i);
    if (value == "+Inf") {
      s.value = HUGE_VAL;
    } else if (value == "-Inf") {
      s.value = -HUGE_VAL;
    } else {
      char* stop = nullptr;
      s.value = std::strtod(value.c_str(), &stop);
      if (value.empty() || *stop != '\0') return bad("bad value");
    }
    samples->push_back(std::move(s));
  }
  return true;
}

double SumMetric(const std::vector<Sample>& samples, const std::string& name) {
  double sum = 0;
  for (const auto& s : samples) {
    if (s.name == name) sum += s.value;
  }
  return sum;
}

bool HasMetric(const std::vector<Sample>& samples, const std::string& name) {
  for (const auto& s : samples) {
    if (s.name == name) return true;
  }
  return false;
}

ServerCounters CountersFromSamples(const std::vector<Sample>& samples) {
  ServerCounters c;
  c.request_success = SumMetric(samples, "stepserve_request_success_total");
  c.request_failure = SumMetric(samples, "stepserve_request_failure_total");
  c.prompt_tokens = SumMetric(samples, "stepserve_prompt_tokens_total");
  c.generation_tokens = SumMetric(samples, "stepserve_generation_tokens_total");
  for (auto [name, field] : {std::pair{"stepserve_prefix_cache_queries_total", &c.prefix_cache_queries},
                             std::pair{"stepserve_prefix_cache_hits_total", &c.prefix_cache_hits}}) {
    if (HasMetric(samples, name)) *field = SumMetric(samples, name);
  }
  for (const auto& s : samples) {
    if (s.name != "stepserve_request_failure_total") continue;
    auto code = s.labels.find("code");
    c.failures_by_code[code == s.labels.end() ? "" : code->second] += s.value;
  }
  return c;
}

ServerCounters Delta(const ServerCounters& after, const ServerCounters& before) {
  ServerCounters d;
  d.request_success = after.request_success - before.request_success;
  d.request_failure = after.request_failure - before.request_failure;
  d.prompt_tokens = after.prompt_tokens - before.prompt_tokens;
  d.generation_tokens = after.generation_tokens - before.generation_tokens;
  if (after.prefix_cache_queries && before.prefix_cache_queries) {
    d.prefix_cache_queries = *after.prefix_cache_queries - *before.prefix_cache_queries;
  }
  if (after.prefix_cache_hits && before.prefix_cache_hits) {
    d.prefix_cache_hits = *after.prefix_cache_hits - *before.prefix_cache_hits;
  }
  for (const auto& [code, n] : after.failures_by_code) {
    auto b = before.failures_by_code.find(code);
    const double delta = n - (b == before.failures_by_code.end() ? 0 : b->second);
    if (delta != 0) d.failures_by_code[code] = delta;
  }
  return d;
}

namespace {

// Waits for fd to be ready for `events` until the deadline; false on timeout or error.
bool WaitFd(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

std::string DecodeChunked(const std::string& body) {
  std::string out;
  size_t pos = 0;
  while (pos < body.size()) {
    const size_t eol = body.find("\r\n", pos);
    if (eol == std::string::npos) break;
    const size_t n = std::strtoul(body.substr(pos, eol - pos).c_str(), nullptr, 16);
    if (n == 0) break;
    out += body.substr(eol + 2, n);
    pos = eol + 2 + n + 2;
  }
  return out;
}

}  // namespace

bool HttpGet(const std::string& url, double timeout_s, std::string* body, std::string* error) {
  const std::string prefix = "http://";
  if (url.rfind(prefix, 0) != 0) {
    *error = "only http:// URLs are supported: " + url;
    return false;
  }
  std::string rest = url.substr(prefix.size());
  const size_t slash = rest.find('/');
  const std::string hostport = rest.substr(0, slash);
  const std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
  std::string host = hostport, port = "80";
  if (const size_t colon = hostport.rfind(':'); colon != std::string::npos) {
    host = hostport.substr(0, colon);
    port = hostport.substr(colon + 1);
  }
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);

  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6));
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* addrs = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &addrs); rc != 0) {
    *error = "cannot resolve " + hostport + ": " + gai_strerror(rc);
    return false;
  }
  int fd = -1;
  std::string last_error = "no address";
  for (addrinfo* a = addrs; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      int err = errno;
      if (err == EINPROGRESS && WaitFd(fd, POLLOUT, deadline)) {
        socklen_t len = sizeof(err);
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      } else if (err == EINPROGRESS) {
        err = ETIMEDOUT;
      }
      if (err != 0) {
        last_error = std::strerror(err);
        ::close(fd);
        fd = -1;
      }
    }
  }
  ::freeaddrinfo(addrs);
  if (fd < 0) {
    *error = "cannot connect to " + hostport + ": " + last_error;
    return false;
  }
  const std::string request =
      "GET " + path + " HTTP/1.0\r\nHost: " + hostport + "\r\nAccept: text/plain\r\nConnection: close\r\n\r\n";
  size_t sent = 0;
  while (sent < request.size()) {
    if (!WaitFd(fd, POLLOUT, deadline)) break;
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) break;
    if (n > 0) sent += static_cast<size_t>(n);
  }
  std::string response;
  bool complete = false;
  if (sent == request.size()) {
    char buf[16384];
    while (WaitFd(fd, POLLIN, deadline)) {
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n == 0) {
        complete = true;
        break;
      }
      if (n < 0 && errno != EAGAIN && errno != EINTR) break;
      if (n > 0) response.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  if (!complete) {
    *error = "no complete answer from " + url + " within " + std::to_string(timeout_s) + " s";
    return false;
  }
  const size_t header_end = response.find("\r\n\r\n");
  if (header_end == std::string::npos || response.compare(0, 5, "HTTP/") != 0) {
    *error = "malformed HTTP answer from " + url;
    return false;
  }
  const std::string headers = response.substr(0, header_end);
  const size_t sp = headers.find(' ');
  const int status = sp == std::string::npos ? 0 : std::atoi(headers.c_str() + sp + 1);
  if (status != 200) {
    *error = url + " answered HTTP " + std::to_string(status);
    return false;
  }
  *body = response.substr(header_end + 4);
  std::string lower = headers;
  for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (lower.find("transfer-encoding: chunked") != std::string::npos) *body = DecodeChunked(*body);
  return true;
}

bool ScrapeCounters(const std::string& url, double timeout_s, ServerCounters* counters, std::string* error) {
  std::string body;
  if (!HttpGet(url, timeout_s, &body, error)) return false;
  std::vector<Sample> samples;
  if (!ParsePrometheusText(body, &samples, error)) return false;
  *counters = CountersFromSamples(samples);
  return true;
}

}  // namespace stepserve::client
