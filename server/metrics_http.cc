#include "server/metrics_http.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/logging.h"

namespace stepserve::server {
namespace {

absl::Status SplitHostPort(const std::string& address, std::string* host, std::string* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError(absl::StrCat("no port in \"", address, "\""));
  *host = address.substr(0, colon);
  *port = address.substr(colon + 1);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  int number = 0;
  if (!absl::SimpleAtoi(*port, &number) || number < 0 || number > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad port in \"", address, "\""));
  }
  return absl::OkStatus();
}

std::string Response(int code, const char* reason, const std::string& content_type, const std::string& body,
                     bool head, bool keep_alive) {
  std::string out = absl::StrCat("HTTP/1.1 ", code, " ", reason, "\r\nContent-Type: ", content_type,
                                 "\r\nContent-Length: ", body.size(), "\r\nConnection: ",
                                 keep_alive ? "keep-alive" : "close", "\r\n\r\n");
  if (!head) out += body;
  return out;
}

}  // namespace

struct MetricsHttpServer::Connection {
  int fd = -1;
  std::string in;
  std::string out;
  size_t out_offset = 0;
  bool writing = false;
  bool close_after_write = false;
  bool closed = false;
  int served = 0;
  absl::Time waiting_since;                           // accepted, or its last response written
  absl::Time first_byte = absl::InfiniteFuture();     // of the request being received
  absl::Time write_started = absl::InfiniteFuture();  // of the response being written

  absl::Time Deadline(const MetricsHttpOptions& o) const {
    if (writing) return write_started + o.request_timeout;
    if (first_byte != absl::InfiniteFuture()) return first_byte + o.request_timeout;
    return waiting_since + o.idle_timeout;
  }
  // Eviction order: the longest waiting for a complete request first.
  absl::Time WaitingSince() const { return first_byte != absl::InfiniteFuture() ? first_byte : waiting_since; }
  void Close() {
    if (closed) return;
    closed = true;
    close(fd);
  }
};

MetricsHttpServer::MetricsHttpServer(Render render, const MetricsHttpOptions& options)
    : render_(std::move(render)), options_(options) {}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(const std::string& address, Render render,
                                                                         const MetricsHttpOptions& options) {
  std::string host, port;
  if (absl::Status s = SplitHostPort(address, &host, &port); !s.ok()) return s;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", address, ": ", gai_strerror(rc)));
  }
  std::unique_ptr<MetricsHttpServer> server(new MetricsHttpServer(std::move(render), options));
  std::string error = "no address";
  for (addrinfo* ai = found; ai != nullptr && server->listen_fd_ < 0; ai = ai->ai_next) {
    const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      error = std::strerror(errno);
      continue;
    }
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
      error = std::strerror(errno);
      close(fd);
      continue;
    }
    server->listen_fd_ = fd;
  }
  freeaddrinfo(found);
  if (server->listen_fd_ < 0) return absl::UnavailableError(absl::StrCat("cannot listen on ", address, ": ", error));
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  getsockname(server->listen_fd_, reinterpret_cast<sockaddr*>(&bound), &length);
  server->port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                    : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  if (pipe2(server->wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  server->thread_ = std::thread([s = server.get()] { s->Loop(); });
  return server;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (thread_.joinable()) {
    const char byte = 0;
    while (write(wake_pipe_[1], &byte, 1) < 0 && errno == EINTR) {
    }
    thread_.join();
  }
  for (int fd : {listen_fd_, wake_pipe_[0], wake_pipe_[1]}) {
    if (fd >= 0) close(fd);
  }
}

void MetricsHttpServer::Loop() {
  std::vector<std::unique_ptr<Connection>> connections;
  std::vector<pollfd> fds;
  absl::Time accept_paused_until = absl::InfinitePast();

  // Takes one complete request out of c->in, if there is one, and queues its response.
  auto handle = [&](Connection* c) {
    size_t end = c->in.find("\r\n\r\n");
    size_t terminator = 4;
    if (end == std::string::npos) {
      end = c->in.find("\n\n");
      terminator = 2;
    }
    if (end == std::string::npos) {
      if (c->in.size() > options_.max_request_bytes) {
        c->out = Response(431, "Request Header Fields Too Large", "text/plain", "request header too large\n", false,
                          false);
        c->close_after_write = true;
        c->writing = true;
        c->write_started = absl::Now();
      }
      return;
    }
    const std::string head = c->in.substr(0, end);
    c->in.erase(0, end + terminator);
    std::vector<absl::string_view> lines = absl::StrSplit(head, '\n');
    std::vector<absl::string_view> request_line =
        absl::StrSplit(absl::StripAsciiWhitespace(lines[0]), ' ', absl::SkipEmpty());
    bool keep_alive = false;
    bool has_body = false;
    bool close_requested = false;
    for (size_t i = 1; i < lines.size(); ++i) {
      const absl::string_view line = absl::StripAsciiWhitespace(lines[i]);
      const size_t colon = line.find(':');
      if (colon == absl::string_view::npos) continue;
      const absl::string_view name = absl::StripAsciiWhitespace(line.substr(0, colon));
      const absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
      if (absl::EqualsIgnoreCase(name, "connection")) {
        const std::string lower = absl::AsciiStrToLower(value);
        if (absl::StrContains(lower, "close")) close_requested = true;
        if (absl::StrContains(lower, "keep-alive")) keep_alive = true;
      } else if ((absl::EqualsIgnoreCase(name, "content-length") && value != "0") ||
                 absl::EqualsIgnoreCase(name, "transfer-encoding")) {
        has_body = true;  // not read: the connection ends after the response
      }
    }
    const bool valid = request_line.size() == 3 && absl::StartsWith(request_line[2], "HTTP/1.");
    if (valid && request_line[2] == "HTTP/1.1") keep_alive = true;
    keep_alive = keep_alive && !close_requested && !has_body && valid &&
                 c->served + 1 < options_.max_requests_per_connection;
    if (!valid) {
      c->out = Response(400, "Bad Request", "text/plain", "bad request\n", false, false);
    } else {
      const absl::string_view method = request_line[0];
      const absl::string_view path = request_line[1].substr(0, request_line[1].find('?'));
      const bool head_only = method == "HEAD";
      if (method != "GET" && !head_only) {
        c->out = Response(405, "Method Not Allowed", "text/plain", "only GET and HEAD\n", false, keep_alive);
      } else if (path != "/metrics") {
        c->out = Response(404, "Not Found", "text/plain", "not found: /metrics only\n", head_only, keep_alive);
      } else {
        std::string body;
        try {
          body = render_();
          c->out = Response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, head_only, keep_alive);
        } catch (const std::exception& e) {
          c->out = Response(500, "Internal Server Error", "text/plain", "metrics unavailable\n", head_only, false);
          keep_alive = false;
        }
      }
    }
    c->close_after_write = !keep_alive;
    c->out_offset = 0;
    c->writing = true;
    c->write_started = absl::Now();
    c->first_byte = absl::InfiniteFuture();
  };

  auto evict_oldest = [&]() -> bool {
    Connection* oldest = nullptr;
    for (auto& c : connections) {
      if (c->closed || c->writing) continue;
      if (oldest == nullptr || c->WaitingSince() < oldest->WaitingSince()) oldest = c.get();
    }
    if (oldest == nullptr) return false;
    oldest->Close();
    return true;
  };

  while (true) {
    absl::Time now = absl::Now();
    absl::Time next_deadline = now + absl::Seconds(1);
    for (auto& c : connections) {
      const absl::Time deadline = c->Deadline(options_);
      if (now >= deadline) {
        if (!c->writing && c->first_byte != absl::InfiniteFuture()) {
          const std::string timeout = Response(408, "Request Timeout", "text/plain", "request timeout\n", false, false);
          (void)send(c->fd, timeout.data(), timeout.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        c->Close();
      } else {
        next_deadline = std::min(next_deadline, deadline);
      }
    }
    connections.erase(std::remove_if(connections.begin(), connections.end(), [](const auto& c) { return c->closed; }),
                      connections.end());

    fds.clear();
    fds.push_back({wake_pipe_[0], POLLIN, 0});
    const bool accepting = now >= accept_paused_until;
    fds.push_back({accepting ? listen_fd_ : -1, POLLIN, 0});
    if (!accepting) next_deadline = std::min(next_deadline, accept_paused_until);
    for (auto& c : connections) fds.push_back({c->fd, static_cast<short>(c->writing ? POLLOUT : POLLIN), 0});
    const int timeout_ms =
        static_cast<int>(std::max<int64_t>(1, absl::ToInt64Milliseconds(next_deadline - now) + 1));
    if (poll(fds.data(), fds.size(), timeout_ms) < 0) {
      if (errno == EINTR) continue;
      LogError("/metrics: poll: ", std::strerror(errno));
      break;
    }
    if (fds[0].revents != 0) break;  // stop
    now = absl::Now();

    for (size_t i = 0; i < connections.size(); ++i) {
      Connection* c = connections[i].get();
      const short revents = fds[i + 2].revents;
      if (revents == 0 || c->closed) continue;
      if (!c->writing) {
        char buffer[4096];
        bool peer_done = false;
        while (true) {
          const ssize_t n = recv(c->fd, buffer, sizeof(buffer), MSG_DONTWAIT);
          if (n > 0) {
            if (c->first_byte == absl::InfiniteFuture()) c->first_byte = now;
            c->in.append(buffer, static_cast<size_t>(n));
            if (c->in.size() > options_.max_request_bytes + 4) break;
            continue;
          }
          if (n == 0) {
            peer_done = true;  // it may still read the response to what it sent
          } else if (errno == EINTR) {
            continue;
          } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            c->Close();
          }
          break;
        }
        if (!c->closed) handle(c);
        if (peer_done && !c->closed) {
          if (c->writing) {
            c->close_after_write = true;
          } else {
            c->Close();
          }
        }
      }
      // Write what is queued (at once after a request came in: usually it all fits the socket buffer).
      while (!c->closed && c->writing) {
        const ssize_t n = send(c->fd, c->out.data() + c->out_offset, c->out.size() - c->out_offset,
                               MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno != EAGAIN && errno != EWOULDBLOCK) c->Close();
          break;
        }
        c->out_offset += static_cast<size_t>(n);
        if (c->out_offset < c->out.size()) continue;
        c->out.clear();
        c->writing = false;
        ++c->served;
        c->write_started = absl::InfiniteFuture();
        if (c->close_after_write) {
          c->Close();
          break;
        }
        c->waiting_since = absl::Now();
        if (!c->in.empty()) {
          c->first_byte = c->waiting_since;
          handle(c);  // a pipelined request
        }
      }
    }

    if (fds[1].revents != 0) {
      while (true) {
        const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
          if (errno == EINTR || errno == ECONNABORTED) continue;
          if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            // Out of descriptors: make room, or wait a little before trying again.
            if (!evict_oldest()) accept_paused_until = now + absl::Milliseconds(100);
          }
          break;
        }
        int open = 0;
        for (auto& c : connections) open += c->closed ? 0 : 1;
        if (open >= options_.max_connections) evict_oldest();
        auto c = std::make_unique<Connection>();
        c->fd = fd;
        c->waiting_since = now;
        connections.push_back(std::move(c));
      }
    }
    connections.erase(std::remove_if(connections.begin(), connections.end(), [](const auto& c) { return c->closed; }),
                      connections.end());
  }
  for (auto& c : connections) c->Close();
}

}  // namespace stepserve::server
