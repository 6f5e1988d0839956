// The LLM client: OpenAI-compatible chat completions for the designer, coder and conductor.
//
// One LlmClient serves every role. Each role maps to an LlmEndpoint (a server, a model and
// its parameters). submit() never blocks on the network: requests go to one worker thread
// that drives all transfers through a libcurl multi handle, keeps a per-endpoint concurrency
// limit with a FIFO of waiting requests, retries transient failures with exponential
// backoff, and calls `done` once per request on that thread.
//
// The client does not store anything durable. Invariant 3 ("nothing paid twice") is the
// caller's: look request_key() up in llm_calls before submitting, store the response before
// using it. docs/llm.md describes the configuration, retries, costs and the replay format.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "common/vocabulary.h"

namespace kforge {

struct ChatMessage {
  std::string role;  // system | user | assistant
  std::string content;
};

// One per role (designer, coder, conductor).
struct LlmEndpoint {
  std::string provider =
      "openai";          // openai | replay | record (record = openai + append to `recording`)
  std::string base_url;  // e.g. http://127.0.0.1:8000/v1 ; POST {base_url}/chat/completions
  std::string model;
  std::string api_key_env;   // env var holding the key ("" = no Authorization header)
  std::string api_key_file;  // or a file holding it (read_secret_file: not readable by
                             // others); at most one of the two
  double temperature = 0.2;
  int max_tokens = 4096;
  int timeout_s = 120;                   // per attempt, the whole transfer
  int concurrency = 4;                   // requests in flight; endpoints with the same
                                         // base_url+model share one limit (the smallest)
  int max_retries = 5;                   // extra attempts on 429, 5xx, timeouts, connection errors
  double price_prompt_per_mtok = 0;      // USD per million prompt tokens
  double price_completion_per_mtok = 0;  // USD per million completion tokens
  std::string recording;                 // replay/record: a JSONL file
  int64_t replay_latency_ms = 0;         // replay only: > 0 answers this long after the request
                                         // gets a `concurrency` slot, as a server would; 0: at once

  bool operator==(const LlmEndpoint&) const = default;
};

struct LlmRequest {
  LlmRole role = LlmRole::coder;
  std::vector<ChatMessage> messages;
  std::string replay_key;  // stable id for replay/record, e.g. "softmax/N=1024/coder/2";
                           // empty: request_key() stands in for it
  // The sample index (search.h): a request of sample k != 0 carries "seed": k in its body and
  // in its request_key, so that another sample draws another answer and the same sample
  // replays its stored one. Sample 0 leaves body and key as they were before samples.
  int64_t sample = 0;
};

struct LlmResponse {
  bool ok = false;
  std::string content;    // may be empty or whitespace with ok = true: the caller judges it
  std::string reasoning;  // reasoning_content when the server sends it
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  double cost_usd = 0;        // from the endpoint's prices; 0 for replayed answers
  int64_t latency_ms = 0;     // first attempt's start to the final answer (backoff included);
                              // replay: the simulated replay_latency_ms
  int attempts = 0;           // HTTP requests sent (0 for replay and for errors before sending)
  int http_status = 0;        // of the last attempt; 0 when none came back
  std::string error;          // when !ok: what went wrong, for the task's log
  std::string request_key;    // = request_key(endpoint, request)
  std::string model;          // as the server names it, else the endpoint's
  std::string response_body;  // the last attempt's raw body (for llm_calls.response)
};

// sha256 (hex) over a canonical JSON of (base_url, model, messages, temperature,
// max_tokens): the cache key. Equal requests to the same model get the same key whatever
// the role, provider, prices or replay_key.
std::string request_key(const LlmEndpoint& endpoint, const LlmRequest& request);

// The JSON body POSTed to {base_url}/chat/completions (stored as llm_calls.request).
std::string request_body(const LlmEndpoint& endpoint, const LlmRequest& request);

struct LlmClientOptions {
  int64_t backoff_base_ms = 1000;        // first retry delay; doubles per attempt, with jitter
  int64_t backoff_max_ms = 60'000;       // cap of the exponential backoff
  int64_t retry_after_max_ms = 120'000;  // cap on a server's Retry-After
  int64_t connect_timeout_ms = 10'000;   // TCP/TLS connect, per attempt (bounded by timeout_s)
  size_t max_response_bytes = 64 << 20;  // a larger body fails the attempt
};

class LlmClient {
 public:
  // Validates the endpoints (provider, URL, model, limits, the API key's env var being
  // set), loads replay recordings (an error names the file and line) and opens record files
  // for appending, then starts the worker thread.
  static Result<std::unique_ptr<LlmClient>> create(std::map<LlmRole, LlmEndpoint> by_role,
                                                   LlmClientOptions options = {},
                                                   Clock& clock = SystemClock::instance());
  // Stops the worker thread, aborting transfers; requests not yet answered get their `done`
  // (ok = false, "llm client stopped") before the destructor returns.
  ~LlmClient();
  LlmClient(const LlmClient&) = delete;
  LlmClient& operator=(const LlmClient&) = delete;

  // Thread-safe, never blocks on the network. `done` is called exactly once, on the
  // client's worker thread (it must not call ~LlmClient). A role without an endpoint -> done
  // with ok = false and an error naming the role and the configured ones.
  void submit(LlmRequest request, std::function<void(LlmResponse)> done);

  // Requests submitted whose `done` has not been called yet (it drops before `done` runs).
  size_t in_flight() const;

 private:
  class Impl;
  explicit LlmClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kforge
