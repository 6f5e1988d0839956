// A fake OpenAI-compatible chat-completions server on 127.0.0.1 (OS-chosen port) for tests.
//
// It speaks real HTTP/1.1 (keep-alive) on a plain socket served by one thread. Each request
// to POST /v1/chat/completions takes the next scripted behaviour from a queue; when the
// queue is empty the responder makes an ok answer. Every request is recorded, so tests can
// assert what was sent and that nothing was asked twice.
//
// Token counts of ok answers are predictable: prompt_tokens is the total byte length of the
// request's message contents, completion_tokens the byte length of the answer's content.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kforge::test {

struct FakeBehaviour {
  enum class Kind {
    ok,              // 200 with `content` (and `reasoning` as reasoning_content when not empty)
    status,          // `code` with an OpenAI error body carrying `message`; Retry-After if >= 0
    malformed_json,  // 200 whose body is not JSON
    truncated_body,  // 200 whose Content-Length promises more than is sent, then close
    slow,            // an ok answer (from the responder) after `delay_ms`
  };
  Kind kind = Kind::ok;
  std::string content;
  std::string reasoning;
  int code = 200;
  int retry_after_s = -1;
  std::string message;
  int delay_ms = 0;

  static FakeBehaviour ok(std::string content, std::string reasoning = "");
  static FakeBehaviour status(int code, int retry_after_s = -1, std::string message = "");
  static FakeBehaviour malformed_json();
  static FakeBehaviour truncated_body();
  static FakeBehaviour slow(int delay_ms);
};

struct FakeRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // names lowercased
  nlohmann::json body;                         // null when the body was not JSON
  std::chrono::steady_clock::time_point received;
};

class FakeLlmServer {
 public:
  // Returns the answer's content for a request body (the default echoes the last message).
  using Responder = std::function<std::string(const nlohmann::json& request_body)>;

  // Binds and starts serving; throws std::runtime_error when the socket cannot be set up.
  FakeLlmServer();
  ~FakeLlmServer();
  FakeLlmServer(const FakeLlmServer&) = delete;
  FakeLlmServer& operator=(const FakeLlmServer&) = delete;

  // "http://127.0.0.1:PORT/v1"
  std::string base_url() const;

  // Appends to the queue of behaviours; each request consumes one.
  void push(FakeBehaviour behaviour);
  void set_responder(Responder responder);
  // Called on the server's thread with each request (and its index in arrival order) as it
  // arrives, before it is answered: a test can act at that moment (kill the client).
  using RequestHook = std::function<void(size_t index, const FakeRequest& request)>;
  void set_on_request(RequestHook hook);

  // Every request received, in arrival order.
  std::vector<FakeRequest> requests() const;
  size_t request_count() const;
  // The most requests received and not yet fully answered at one moment.
  int max_concurrent() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace kforge::test
