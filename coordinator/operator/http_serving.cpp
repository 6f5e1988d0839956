#include "coordinator/operator/http_serving.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace kforge {
namespace {

thread_local bool t_close_after = false;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Bytes of a connection in the drain after the server closed its side, read and dropped so
// that close() does not reset the connection (and lose the answer) while the client still
// sends a body nobody will read.
constexpr size_t kDrainBytes = 1u << 20;
constexpr int kDrainMs = 1000;

// `from`: where the blank line can start at the earliest (bytes before it were searched
// already), so that a head trickled a byte at a time costs linear time, not quadratic.
bool head_complete(const std::string& buf, size_t max_head, size_t from = 0) {
  auto end = buf.find("\r\n\r\n", from);
  return end != std::string::npos && end + 4 <= max_head;
}

void address_of(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  int rc = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len)
                : ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (rc != 0) return;
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
      ::inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], text, sizeof text);
    } else {
      ::inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
    }
    port = ntohs(a->sin6_port);
  }
  ip = text;
}

// One request's view of its connection: the bytes the loop already read, then the socket,
// each step bounded by io_timeout_ms and the whole by request_timeout_ms.
class ConnStream : public httplib::Stream {
 public:
  ConnStream(int fd, std::string buffered, const ServingOptions& options,
             const std::atomic<bool>& stopping)
      : fd_(fd),
        buf_(std::move(buffered)),
        io_timeout_ms_(options.io_timeout_ms),
        deadline_ms_(now_ms() + options.request_timeout_ms),
        stopping_(stopping) {}

  bool is_readable() const override { return pos_ < buf_.size() || wait(POLLIN); }
  bool is_writable() const override { return wait(POLLOUT); }

  ssize_t read(char* ptr, size_t size) override {
    if (pos_ < buf_.size()) {
      size_t n = std::min(size, buf_.size() - pos_);
      std::memcpy(ptr, buf_.data() + pos_, n);
      pos_ += n;
      return static_cast<ssize_t>(n);
    }
    for (;;) {
      if (!wait(POLLIN)) return -1;
      ssize_t n = ::recv(fd_, ptr, size, 0);
      if (n >= 0) return n;
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
    }
  }

  ssize_t write(const char* ptr, size_t size) override {
    for (;;) {
      if (!wait(POLLOUT)) return -1;
      ssize_t n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
      if (n >= 0) return n;
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    address_of(fd_, true, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    address_of(fd_, false, ip, port);
  }
  socket_t socket() const override { return fd_; }

  // What the loop read beyond this request (a pipelined next request).
  std::string take_unread() { return buf_.substr(std::min(pos_, buf_.size())); }

 private:
  bool wait(short events) const {
    int64_t deadline = std::min(now_ms() + io_timeout_ms_, deadline_ms_);
    for (;;) {
      if (stopping_ && (events & POLLIN))
        return false;  // no new input once stopping; answers still go out
      int64_t left = deadline - now_ms();
      if (left <= 0) return false;
      pollfd p{fd_, events, 0};
      int r = ::poll(&p, 1,
                     static_cast<int>(std::min<int64_t>(left, 100)));  // slices: a stop is noticed
      if (r > 0) return true;
      if (r < 0 && errno != EINTR) return false;
    }
  }

  int fd_;
  std::string buf_;
  size_t pos_ = 0;
  int io_timeout_ms_;
  int64_t deadline_ms_;
  const std::atomic<bool>& stopping_;
};

}  // namespace

void close_connection_after_answer() {
  t_close_after = true;
}

struct ConnectionServer::Conn {
  int fd = -1;
  std::string buf;              // the request head being read (and what came after it)
  int64_t idle_since_ms = 0;    // waiting for a request since
  int64_t head_started_ms = 0;  // first byte of the current head; 0: none yet
  int64_t drain_until_ms = 0;   // > 0: the server closed its side; dropping what still comes
  size_t drained = 0;
  size_t served = 0;
  bool in_epoll = false;
  bool busy = false;     // a worker has it
  bool closing = false;  // the worker's verdict: close after the answer
};

ConnectionServer::ConnectionServer(RequestProcessor& processor, const ServingOptions& options)
    : processor_(processor), options_(options) {}

Result<std::unique_ptr<ConnectionServer>> ConnectionServer::start(const std::string& host, int port,
                                                                  RequestProcessor& processor,
                                                                  const ServingOptions& options) {
  std::unique_ptr<ConnectionServer> s(new ConnectionServer(processor, options));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  std::string service = std::to_string(port);
  if (int rc =
          ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found);
      rc != 0) {
    return io_error("http_listen: cannot resolve '" + host + "': " + ::gai_strerror(rc));
  }
  std::string why = "no address";
  for (addrinfo* a = found; a != nullptr && !s->listen_fd_.valid(); a = a->ai_next) {
    UniqueFd fd(
        ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol));
    if (!fd.valid()) continue;
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd.get(), 1024) == 0) {
      s->listen_fd_ = std::move(fd);
    } else {
      why = std::strerror(errno);  // fd closes after: errno is the bind's or listen's
    }
  }
  ::freeaddrinfo(found);
  if (!s->listen_fd_.valid())
    return io_error("http_listen: cannot bind " + host + ":" + service + ": " + why);
  std::string ip;
  address_of(s->listen_fd_.get(), false, ip, s->port_);
  // Room for the connections allowed beside the rest of the process (database, agents' link):
  // the soft limit is often 1024, the hard one far higher.
  rlimit files{};
  rlim_t wanted = static_cast<rlim_t>(options.max_connections) + 1024;
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < wanted) {
    files.rlim_cur = std::min(wanted, files.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  s->epoll_fd_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  if (!s->epoll_fd_.valid()) return io_error(std::string("http: epoll: ") + std::strerror(errno));
  auto wake = EventFd::open("http");
  if (!wake.ok()) return wake.status();
  s->wake_ = std::move(wake.value());
  for (int fd : {s->listen_fd_.get(), s->wake_.fd()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    ::epoll_ctl(s->epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev);
  }
  s->loop_thread_ = std::thread([p = s.get()] { p->loop(); });
  for (size_t i = 0; i < std::max<size_t>(options.threads, 1); ++i) {
    s->workers_.emplace_back([p = s.get()] { p->work(); });
  }
  return s;
}

ConnectionServer::~ConnectionServer() {
  stopping_ = true;
  if (wake_.valid()) wake_.notify();
  if (loop_thread_.joinable()) loop_thread_.join();
  work_cv_.notify_all();
  for (auto& w : workers_) w.join();
  for (auto& [fd, c] : conns_) ::close(fd);
  conns_.clear();
  listen_fd_.reset();
  epoll_fd_.reset();
}

void ConnectionServer::close_conn(int fd) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  if (it->second->in_epoll) ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
  ::close(fd);
  conns_.erase(it);
  open_ = conns_.size();
}

// The server is done with the connection: no more writes; what the client still sends is
// read and dropped for a moment (see kDrainBytes), then it closes.
static void start_drain(int fd) {
  ::shutdown(fd, SHUT_WR);
}

void ConnectionServer::answer_and_close(int fd, int status, const char* message) {
  std::string body = std::string("{\"error\": \"") + message + "\"}";
  const char* reason = status == 408   ? "Request Timeout"
                       : status == 431 ? "Request Header Fields Too Large"
                                       : "Service Unavailable";
  std::string text =
      "HTTP/1.1 " + std::to_string(status) + " " + reason +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\nConnection: close\r\n\r\n" + body;
  (void)!::send(fd, text.data(), text.size(),
                MSG_NOSIGNAL | MSG_DONTWAIT);  // small: fits the socket buffer
  auto it = conns_.find(fd);
  if (it == conns_.end()) {
    ::close(fd);
    return;
  }
  start_drain(fd);
  it->second->drain_until_ms = now_ms() + kDrainMs;
  it->second->buf.clear();
}

void ConnectionServer::dispatch(Conn& c) {
  if (c.in_epoll) {
    ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, c.fd, nullptr);
    c.in_epoll = false;
  }
  c.busy = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ready_.push_back(&c);
  }
  work_cv_.notify_one();
}

void ConnectionServer::read_head(Conn& c) {
  char chunk[8192];
  for (;;) {
    ssize_t n = ::recv(c.fd, chunk, sizeof chunk, 0);
    if (n == 0) return close_conn(c.fd);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      return close_conn(c.fd);
    }
    if (c.drain_until_ms > 0) {
      c.drained += static_cast<size_t>(n);
      if (c.drained > kDrainBytes) return close_conn(c.fd);
      continue;
    }
    if (c.buf.empty()) c.head_started_ms = now_ms();
    size_t from = c.buf.size() >= 3 ? c.buf.size() - 3 : 0;
    c.buf.append(chunk, static_cast<size_t>(n));
    if (head_complete(c.buf, options_.max_head_bytes, from)) return dispatch(c);
    if (c.buf.size() >= options_.max_head_bytes) {
      return answer_and_close(c.fd, 431, "the request line and headers are too large");
    }
  }
}

void ConnectionServer::loop() {
  epoll_event events[128];
  while (!stopping_) {
    int n = ::epoll_wait(epoll_fd_.get(), events, 128, 100);
    int64_t now = now_ms();
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == wake_.fd()) {
        wake_.drain();
      } else if (fd == listen_fd_.get()) {
        for (;;) {
          int client = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (client < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE) {
              // The listen socket stays readable: stop watching it for a moment, or this loop
              // spins.
              spdlog::warn(
                  "http: out of file descriptors ({} connections open); not accepting for 100 ms",
                  conns_.size());
              epoll_event ev{};
              ev.data.fd = listen_fd_.get();
              ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, listen_fd_.get(), &ev);
              accept_paused_until_ms_ = now + 100;
            }
            break;
          }
          if (conns_.size() >= options_.max_connections) {
            answer_and_close(client, 503, "too many open connections; try again");
            continue;
          }
          int one = 1;
          ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          auto c = std::make_unique<Conn>();
          c->fd = client;
          c->idle_since_ms = now;
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.fd = client;
          ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, client, &ev);
          c->in_epoll = true;
          conns_.emplace(client, std::move(c));
          open_ = conns_.size();
        }
      } else if (auto it = conns_.find(fd); it != conns_.end() && !it->second->busy) {
        read_head(*it->second);
      }
    }
    // Connections the workers are done with.
    std::deque<Conn*> back;
    {
      std::lock_guard<std::mutex> lock(mu_);
      back.swap(returned_);
    }
    for (Conn* c : back) {
      c->busy = false;
      c->idle_since_ms = now;
      c->head_started_ms = c->buf.empty() ? 0 : now;
      if (c->closing) {
        start_drain(c->fd);
        c->drain_until_ms = now + kDrainMs;
        c->buf.clear();
      } else if (head_complete(c->buf, options_.max_head_bytes)) {
        dispatch(*c);  // pipelined: the next request is here already
        continue;
      }
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = c->fd;
      ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, c->fd, &ev);
      c->in_epoll = true;
    }
    if (accept_paused_until_ms_ > 0 && now >= accept_paused_until_ms_) {
      accept_paused_until_ms_ = 0;
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = listen_fd_.get();
      ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, listen_fd_.get(), &ev);
    }
    // Deadlines: idle connections, heads that do not complete, drains.
    std::vector<std::pair<int, int>> expired;  // fd, 408 or 0 (just close)
    for (const auto& [fd, c] : conns_) {
      if (c->busy) continue;
      if (c->drain_until_ms > 0) {
        if (now >= c->drain_until_ms) expired.emplace_back(fd, 0);
      } else if (c->head_started_ms > 0) {
        if (now - c->head_started_ms >= options_.head_timeout_ms) expired.emplace_back(fd, 408);
      } else if (now - c->idle_since_ms >= options_.idle_timeout_ms) {
        expired.emplace_back(fd, 0);
      }
    }
    for (auto [fd, status] : expired) {
      if (status == 0) {
        close_conn(fd);
      } else {
        answer_and_close(fd, status, "the request head did not arrive in time");
      }
    }
  }
}

void ConnectionServer::work() {
  for (;;) {
    Conn* c = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !ready_.empty(); });
      if (stopping_ || ready_.empty()) return;
      c = ready_.front();
      ready_.pop_front();
    }
    ConnStream stream(c->fd, std::move(c->buf), options_, stopping_);
    t_close_after = false;
    bool client_closes = false;
    bool last = ++c->served >= options_.max_requests_per_connection;
    bool ok = processor_.serve_one(stream, last, client_closes);
    c->buf = stream.take_unread();
    c->closing = !ok || client_closes || last || t_close_after;
    {
      std::lock_guard<std::mutex> lock(mu_);
      returned_.push_back(c);
    }
    wake_.notify();
  }
}

}  // namespace kforge
