#include "tests/support/fake_llm.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <deque>
#include <list>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace kforge::test {

using nlohmann::json;
using steady = std::chrono::steady_clock;

FakeBehaviour FakeBehaviour::ok(std::string content, std::string reasoning) {
  FakeBehaviour b;
  b.kind = Kind::ok;
  b.content = std::move(content);
  b.reasoning = std::move(reasoning);
  return b;
}

FakeBehaviour FakeBehaviour::status(int code, int retry_after_s, std::string message) {
  FakeBehaviour b;
  b.kind = Kind::status;
  b.code = code;
  b.retry_after_s = retry_after_s;
  b.message = message.empty() ? "fake server error " + std::to_string(code) : std::move(message);
  return b;
}

FakeBehaviour FakeBehaviour::malformed_json() {
  FakeBehaviour b;
  b.kind = Kind::malformed_json;
  return b;
}

FakeBehaviour FakeBehaviour::truncated_body() {
  FakeBehaviour b;
  b.kind = Kind::truncated_body;
  return b;
}

FakeBehaviour FakeBehaviour::slow(int delay_ms) {
  FakeBehaviour b;
  b.kind = Kind::slow;
  b.delay_ms = delay_ms;
  return b;
}

namespace {

constexpr size_t k_max_head = 64 * 1024;

const char* reason_phrase(int code) {
  switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Status";
  }
}

std::string http_response(int code, const std::string& body, const std::string& extra_headers = "",
                          size_t content_length = std::string::npos) {
  if (content_length == std::string::npos) content_length = body.size();
  std::string out = "HTTP/1.1 " + std::to_string(code) + " " + reason_phrase(code) + "\r\n";
  out += "Content-Type: application/json\r\n";
  out += "Content-Length: " + std::to_string(content_length) + "\r\n";
  out += extra_headers;
  out += "\r\n";
  out += body;
  return out;
}

std::string error_body(int code, const std::string& message) {
  json j = {{"error", {{"message", message}, {"type", "fake_error"}, {"code", code}}}};
  return j.dump();
}

std::string default_content(const json& body) {
  if (body.is_object() && body.contains("messages") && body["messages"].is_array() &&
      !body["messages"].empty()) {
    const json& last = body["messages"].back();
    if (last.is_object() && last.contains("content") && last["content"].is_string()) {
      return "echo: " + last["content"].get<std::string>();
    }
  }
  return "echo";
}

}  // namespace

struct FakeLlmServer::State {
  struct Conn {
    int fd = -1;
    std::string in;
    std::string out;
    size_t out_off = 0;
    bool busy = false;     // a request received and not yet fully answered
    bool waiting = false;  // the answer is ready but held until send_at
    steady::time_point send_at;
    bool close_after = false;  // close once `out` is written
  };

  int listen_fd = -1;
  int wake_r = -1, wake_w = -1;
  int port = 0;
  std::thread thread;

  mutable std::mutex mu;  // guards everything below
  bool stop = false;
  std::deque<FakeBehaviour> script;
  Responder responder = default_content;
  RequestHook on_request;
  std::vector<FakeRequest> received;
  int current = 0;
  int max_current = 0;

  void run();
  // Parses one complete request from c.in, if there is one, and prepares its answer.
  void take_request(Conn& c);
  std::string answer(const FakeRequest& req, Conn& c);
  void release(Conn& c) {
    if (!c.busy) return;
    c.busy = false;
    std::lock_guard<std::mutex> lock(mu);
    --current;
  }
};

FakeLlmServer::FakeLlmServer() : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s.listen_fd < 0) throw std::runtime_error("fake llm: socket failed");
  int one = 1;
  ::setsockopt(s.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(s.listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(s.listen_fd, 128) != 0) {
    ::close(s.listen_fd);
    throw std::runtime_error("fake llm: bind/listen failed");
  }
  socklen_t len = sizeof(addr);
  ::getsockname(s.listen_fd, reinterpret_cast<sockaddr*>(&addr), &len);
  s.port = ntohs(addr.sin_port);
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
    ::close(s.listen_fd);
    throw std::runtime_error("fake llm: pipe failed");
  }
  s.wake_r = fds[0];
  s.wake_w = fds[1];
  s.thread = std::thread([&s] { s.run(); });
}

FakeLlmServer::~FakeLlmServer() {
  State& s = *state_;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.stop = true;
  }
  char byte = 1;
  [[maybe_unused]] ssize_t n = ::write(s.wake_w, &byte, 1);
  s.thread.join();
  ::close(s.listen_fd);
  ::close(s.wake_r);
  ::close(s.wake_w);
}

std::string FakeLlmServer::base_url() const {
  return "http://127.0.0.1:" + std::to_string(state_->port) + "/v1";
}

void FakeLlmServer::push(FakeBehaviour behaviour) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->script.push_back(std::move(behaviour));
}

void FakeLlmServer::set_responder(Responder responder) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->responder = std::move(responder);
}

void FakeLlmServer::set_on_request(RequestHook hook) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->on_request = std::move(hook);
}

std::vector<FakeRequest> FakeLlmServer::requests() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->received;
}

size_t FakeLlmServer::request_count() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->received.size();
}

int FakeLlmServer::max_concurrent() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->max_current;
}

void FakeLlmServer::State::take_request(Conn& c) {
  size_t head_end = c.in.find("\r\n\r\n");
  if (head_end == std::string::npos) {
    if (c.in.size() > k_max_head) {
      c.out = http_response(400, error_body(400, "request head too large"));
      c.close_after = true;
    }
    return;
  }
  FakeRequest req;
  std::string head = c.in.substr(0, head_end);
  size_t line_end = head.find("\r\n");
  std::string request_line = head.substr(0, line_end);
  size_t sp1 = request_line.find(' ');
  size_t sp2 = request_line.find(' ', sp1 == std::string::npos ? 0 : sp1 + 1);
  if (sp1 == std::string::npos || sp2 == std::string::npos) {
    c.out = http_response(400, error_body(400, "bad request line"));
    c.close_after = true;
    return;
  }
  req.method = request_line.substr(0, sp1);
  req.path = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
  size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    size_t end = head.find("\r\n", pos);
    if (end == std::string::npos) end = head.size();
    std::string line = head.substr(pos, end - pos);
    pos = end + 2;
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char ch) { return std::tolower(ch); });
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    value.erase(value.find_last_not_of(" \t") + 1);
    req.headers[name] = value;
  }
  size_t content_length = 0;
  if (auto it = req.headers.find("content-length"); it != req.headers.end()) {
    content_length = std::stoul(it->second);
  }
  if (c.in.size() < head_end + 4 + content_length) return;  // the body is still coming
  std::string body = c.in.substr(head_end + 4, content_length);
  c.in.erase(0, head_end + 4 + content_length);
  req.body = json::parse(body, nullptr, false);
  if (req.body.is_discarded()) req.body = nullptr;
  req.received = steady::now();
  if (auto it = req.headers.find("connection"); it != req.headers.end()) {
    std::string v = it->second;
    std::transform(v.begin(), v.end(), v.begin(),
                   [](unsigned char ch) { return std::tolower(ch); });
    if (v == "close") c.close_after = true;
  }
  RequestHook hook;
  size_t index = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    index = received.size();
    received.push_back(req);
    ++current;
    max_current = std::max(max_current, current);
    hook = on_request;
  }
  if (hook) hook(index, req);
  c.busy = true;
  c.out = answer(req, c);
  c.out_off = 0;
}

std::string FakeLlmServer::State::answer(const FakeRequest& req, Conn& c) {
  if (req.path != "/v1/chat/completions")
    return http_response(404, error_body(404, "no route " + req.path));
  if (req.method != "POST") return http_response(405, error_body(405, "method not allowed"));
  if (req.body.is_null() || !req.body.is_object()) {
    return http_response(400, error_body(400, "request body is not a JSON object"));
  }
  FakeBehaviour b;
  bool scripted = false;
  Responder respond;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!script.empty()) {
      b = std::move(script.front());
      script.pop_front();
      scripted = true;
    }
    respond = responder;
  }
  switch (scripted ? b.kind : FakeBehaviour::Kind::ok) {
    case FakeBehaviour::Kind::status: {
      std::string extra;
      if (b.retry_after_s >= 0) extra = "Retry-After: " + std::to_string(b.retry_after_s) + "\r\n";
      return http_response(b.code, error_body(b.code, b.message), extra);
    }
    case FakeBehaviour::Kind::malformed_json:
      return http_response(200, "{\"id\": \"chatcmpl-fake\", \"choices\": [ this is not json");
    case FakeBehaviour::Kind::truncated_body: {
      std::string part = "{\"id\": \"chatcmpl-fake\", \"object\": \"chat.completion\", \"choi";
      c.close_after = true;
      return http_response(200, part, "Connection: close\r\n", part.size() + 100);
    }
    case FakeBehaviour::Kind::slow:
      c.waiting = true;
      c.send_at = steady::now() + std::chrono::milliseconds(b.delay_ms);
      [[fallthrough]];
    case FakeBehaviour::Kind::ok: break;
  }
  std::string content =
      scripted && b.kind == FakeBehaviour::Kind::ok ? b.content : respond(req.body);
  std::string reasoning = scripted ? b.reasoning : "";
  int64_t prompt_tokens = 0;
  if (req.body.contains("messages") && req.body["messages"].is_array()) {
    for (const auto& m : req.body["messages"]) {
      if (m.is_object() && m.contains("content") && m["content"].is_string()) {
        prompt_tokens += static_cast<int64_t>(m["content"].get<std::string>().size());
      }
    }
  }
  int64_t completion_tokens = static_cast<int64_t>(content.size());
  json message = {{"role", "assistant"}, {"content", content}};
  if (!reasoning.empty()) message["reasoning_content"] = reasoning;
  std::string model = req.body.contains("model") && req.body["model"].is_string()
                          ? req.body["model"].get<std::string>()
                          : "fake-model";
  json reply = {
      {"id", "chatcmpl-fake"},
      {"object", "chat.completion"},
      {"created", 1767225600},
      {"model", model},
      {"choices", json::array({{{"index", 0}, {"message", message}, {"finish_reason", "stop"}}})},
      {"usage",
       {{"prompt_tokens", prompt_tokens},
        {"completion_tokens", completion_tokens},
        {"total_tokens", prompt_tokens + completion_tokens}}},
  };
  return http_response(200, reply.dump(),
                       c.close_after ? "Connection: close\r\n" : "Connection: keep-alive\r\n");
}

void FakeLlmServer::State::run() {
  std::list<Conn> conns;
  auto close_conn = [&](std::list<Conn>::iterator it) {
    release(*it);
    ::close(it->fd);
    return conns.erase(it);
  };
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (stop) break;
    }
    std::vector<pollfd> fds;
    fds.push_back({wake_r, POLLIN, 0});
    fds.push_back({listen_fd, POLLIN, 0});
    int timeout = 1000;
    auto now = steady::now();
    for (auto& c : conns) {
      short events = POLLIN;
      if (c.out_off < c.out.size() && !c.waiting) events |= POLLOUT;
      fds.push_back({c.fd, events, 0});
      if (c.waiting) {
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(c.send_at - now).count();
        timeout = std::min<int>(timeout, static_cast<int>(std::max<int64_t>(ms, 0)));
      }
    }
    int n = ::poll(fds.data(), fds.size(), timeout);
    if (n < 0 && errno != EINTR) break;
    if (fds[0].revents & POLLIN) {
      char buf[64];
      while (::read(wake_r, buf, sizeof(buf)) > 0) {
      }
    }
    if (fds[1].revents & POLLIN) {
      for (;;) {
        int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        Conn c;
        c.fd = fd;
        conns.push_back(std::move(c));  // polled from the next turn on
      }
    }
    size_t i = 2;
    for (auto it = conns.begin(); it != conns.end(); ++i) {
      Conn& c = *it;
      short revents = i < fds.size() && fds[i].fd == c.fd ? fds[i].revents : 0;
      bool dead = false;
      if (revents & (POLLIN | POLLHUP | POLLERR)) {
        char buf[16384];
        for (;;) {
          ssize_t r = ::recv(c.fd, buf, sizeof(buf), 0);
          if (r > 0) {
            c.in.append(buf, static_cast<size_t>(r));
            continue;
          }
          if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) dead = true;
          if (r < 0 && errno == EINTR) continue;
          break;
        }
      }
      // Serve: answer the current request, then take the next one, until nothing moves.
      for (bool progress = true; progress && !dead;) {
        progress = false;
        if (c.waiting && steady::now() >= c.send_at) c.waiting = false;
        if (c.out_off < c.out.size() && !c.waiting) {
          ssize_t w =
              ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
          if (w > 0) {
            c.out_off += static_cast<size_t>(w);
            progress = true;
          } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            dead = true;
            break;
          }
          if (c.out_off == c.out.size()) {
            c.out.clear();
            c.out_off = 0;
            release(c);
            if (c.close_after) {
              dead = true;
              break;
            }
          }
        }
        if (!c.busy && c.out.empty() && !c.in.empty()) {
          size_t before = c.in.size();
          take_request(c);
          if (c.busy || c.in.size() != before || !c.out.empty()) progress = true;
        }
      }
      if (dead) {
        it = close_conn(it);
      } else {
        ++it;
      }
    }
  }
  for (auto it = conns.begin(); it != conns.end();) it = close_conn(it);
}

}  // namespace kforge::test
