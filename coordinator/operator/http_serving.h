// How the operator API's connections are served: httplib parses requests and runs the
// routes, this decides which connection gets a thread and for how long.
//
// httplib's own model gives each accepted connection a pool thread while it waits for a
// request, so a few hundred idle connections (or a slow client trickling its headers) held
// every thread and starved real requests for minutes. Here:
//
//   accept (at most max_connections open; beyond: 503 and close)
//     -> the event loop (one thread, epoll) reads each request head without blocking until
//        its blank line; idle and slow connections cost no thread, only their buffer
//        (max_head_bytes at most, else 431)
//     -> a worker (threads of them) parses the head with httplib, runs the checks and the
//        handler (the body is read there, after the checks), writes the answer
//     -> the connection returns to the loop for its next request (keep-alive), or closes
//        (an error answer, "Connection: close", max_requests_per_connection reached).
//
// Deadlines: a request head must be complete within head_timeout_ms of its first byte (else
// 408); a connection idle between requests closes after idle_timeout_ms; reading a body and
// writing an answer wait at most io_timeout_ms for each step and request_timeout_ms in all.
#pragma once

#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace kforge {

struct ServingOptions {
  size_t threads = 16;                // workers running handlers
  size_t max_connections = 1024;      // open connections; more are answered 503 and closed
  size_t max_head_bytes = 64u << 10;  // request line and headers
  int head_timeout_ms = 10000;        // a started request head must complete within this
  int idle_timeout_ms = 5000;         // an idle keep-alive connection closes after this
  int io_timeout_ms = 10000;          // one read or write of a body/answer waits at most this
  int request_timeout_ms = 300000;    // reading one body and writing one answer in all
  size_t max_requests_per_connection = 1000;

  bool operator==(const ServingOptions&) const = default;
};

// httplib's Server as a request processor: routes, handlers, error handler; never listens.
class RequestProcessor : public httplib::Server {
 public:
  // Reads one request from `stream`, answers it; false when the connection must close.
  bool serve_one(httplib::Stream& stream, bool last, bool& client_closes) {
    return process_request(stream, last, client_closes, {});
  }
};

// Marks the request being processed on this thread as one after which the connection closes
// (its body may be unread). Handlers and the error handler call it.
void close_connection_after_answer();

class ConnectionServer {
 public:
  // Binds host:port (0: the OS chooses) and starts serving `processor`'s routes.
  static Result<std::unique_ptr<ConnectionServer>> start(const std::string& host, int port,
                                                         RequestProcessor& processor,
                                                         const ServingOptions& options);
  ~ConnectionServer();  // stops accepting, finishes requests in flight, closes every connection
  ConnectionServer(const ConnectionServer&) = delete;
  ConnectionServer& operator=(const ConnectionServer&) = delete;

  int port() const { return port_; }
  size_t open_connections() const { return open_.load(); }

 private:
  struct Conn;
  ConnectionServer(RequestProcessor& processor, const ServingOptions& options);
  void loop();
  void work();
  void read_head(Conn& c);
  void dispatch(Conn& c);
  void close_conn(int fd);
  void answer_and_close(int fd, int status, const char* message);

  RequestProcessor& processor_;
  ServingOptions options_;
  UniqueFd listen_fd_, epoll_fd_;
  EventFd wake_;  // workers hand connections back; the destructor stops the loop
  int port_ = 0;
  int64_t accept_paused_until_ms_ = 0;  // > 0: out of descriptors, not accepting until then
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> open_{0};
  std::unordered_map<int, std::unique_ptr<Conn>> conns_;  // the loop thread's
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::deque<Conn*> ready_;     // heads complete, waiting for a worker
  std::deque<Conn*> returned_;  // answered, back to the loop
  std::thread loop_thread_;
  std::vector<std::thread> workers_;
};

}  // namespace kforge
