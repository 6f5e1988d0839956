#include "coordinator/generation/llm.h"

#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <unordered_map>

#include "common/fs.h"
#include "common/sha256.h"

namespace kforge {

using nlohmann::json;

namespace {

// The longest the worker sleeps without looking at the clock: a ManualClock moved by a test
// is noticed within this, and so is a stop request whose wakeup was lost.
constexpr int k_idle_poll_ms = 250;
// How much of a server's error body goes into an error message.
constexpr size_t k_error_excerpt = 300;

std::string trim_slashes(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

// Invalid UTF-8 (a trimmed compiler log cut inside a character) is replaced, not fatal.
std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json messages_json(const std::vector<ChatMessage>& messages) {
  json out = json::array();
  for (const auto& m : messages) out.push_back({{"role", m.role}, {"content", m.content}});
  return out;
}

std::string excerpt(const std::string& text) {
  std::string out = text.substr(0, k_error_excerpt);
  for (char& c : out) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  if (text.size() > k_error_excerpt) out += "...";
  return out;
}

// The message of an OpenAI-style error body ({"error":{"message":...}}, {"error":"..."},
// {"message":...} or {"detail":...}), else an excerpt of the body.
std::string server_error_message(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_object()) {
    auto str = [](const json& v) -> std::string {
      if (v.is_string()) return v.get<std::string>();
      if (v.is_null()) return "";
      return dump(v);
    };
    if (auto e = j.find("error"); e != j.end()) {
      if (e->is_object()) {
        if (auto m = e->find("message"); m != e->end()) return str(*m);
      }
      return str(*e);
    }
    if (auto m = j.find("message"); m != j.end()) return str(*m);
    if (auto d = j.find("detail"); d != j.end()) return str(*d);
  }
  return body.empty() ? "(empty body)" : excerpt(body);
}

std::string joined_roles(const std::map<LlmRole, LlmEndpoint>& by_role) {
  std::string out;
  for (const auto& [role, ep] : by_role) {
    out += (out.empty() ? "" : ", ") + std::string(to_string(role));
  }
  return out.empty() ? "none" : out;
}

struct ReplayEntry {
  std::string content;
  std::string reasoning;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};
using Recording = std::unordered_map<std::string, ReplayEntry>;

// Loads a replay recording: one JSON object per line (blank lines are skipped); a later line
// for the same replay_key replaces an earlier one.
Result<std::shared_ptr<Recording>> load_recording(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return io_error("cannot open llm recording " + path);
  auto rec = std::make_shared<Recording>();
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::string where = path + ":" + std::to_string(line_no) + ": ";
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded()) return invalid_argument(where + "not a JSON object");
    if (!j.is_object()) return invalid_argument(where + "expected a JSON object");
    auto string_field = [&](const char* key, bool required, std::string* out) -> Status {
      auto it = j.find(key);
      if (it == j.end() || it->is_null()) {
        if (required) return invalid_argument(where + "missing string '" + key + "'");
        return Status();
      }
      if (!it->is_string()) return invalid_argument(where + "'" + key + "' must be a string");
      *out = it->get<std::string>();
      return Status();
    };
    auto int_field = [&](const char* key, int64_t* out) -> Status {
      auto it = j.find(key);
      if (it == j.end() || it->is_null()) return Status();
      if (!it->is_number_integer() || it->get<int64_t>() < 0) {
        return invalid_argument(where + "'" + key + "' must be a non-negative integer");
      }
      *out = it->get<int64_t>();
      return Status();
    };
    std::string key;
    ReplayEntry e;
    KF_RETURN_IF_ERROR(string_field("replay_key", true, &key));
    KF_RETURN_IF_ERROR(string_field("content", true, &e.content));
    KF_RETURN_IF_ERROR(string_field("reasoning", false, &e.reasoning));
    KF_RETURN_IF_ERROR(int_field("prompt_tokens", &e.prompt_tokens));
    KF_RETURN_IF_ERROR(int_field("completion_tokens", &e.completion_tokens));
    if (key.empty()) return invalid_argument(where + "'replay_key' is empty");
    (*rec)[key] = std::move(e);
  }
  if (in.bad()) return io_error("error reading llm recording " + path);
  return rec;
}

// CURLcodes that say the request can never work (retrying would fail the same way).
bool permanent_curl_error(CURLcode code) {
  switch (code) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_FILESIZE_EXCEEDED: return true;
    default: return false;
  }
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

std::string request_key(const LlmEndpoint& endpoint, const LlmRequest& request) {
  // Keys of a json object are sorted, so the text is canonical. "v" versions the key's shape.
  json canonical = {
      {"v", 1},
      {"base_url", trim_slashes(endpoint.base_url)},
      {"model", endpoint.model},
      {"messages", messages_json(request.messages)},
      {"temperature", endpoint.temperature},
      {"max_tokens", endpoint.max_tokens},
  };
  if (request.sample != 0) canonical["seed"] = request.sample;
  return sha256_hex(dump(canonical));
}

std::string request_body(const LlmEndpoint& endpoint, const LlmRequest& request) {
  json body = {
      {"model", endpoint.model},
      {"messages", messages_json(request.messages)},
      {"temperature", endpoint.temperature},
      {"max_tokens", endpoint.max_tokens},
  };
  if (request.sample != 0) body["seed"] = request.sample;
  return dump(body);
}

// ---------------------------------------------------------------------------------------
// The worker.

namespace {

struct Call;

// Endpoints with the same base_url+model: one concurrency limit, one FIFO.
struct Group {
  std::string name;  // base_url model, for logs
  int limit = 1;
  int active = 0;
  std::map<uint64_t, std::unique_ptr<Call>> waiting;  // by submission order
};

struct Endpoint {
  LlmRole role = LlmRole::coder;
  LlmEndpoint cfg;
  std::string url;                        // {base_url}/chat/completions
  std::string auth_header;                // "Authorization: Bearer ..." or ""
  Group* group = nullptr;                 // openai | record | replay with latency
  std::shared_ptr<Recording> replay;      // replay
  std::shared_ptr<std::ofstream> record;  // record
};

struct Call {
  uint64_t seq = 0;
  LlmRequest request;
  std::function<void(LlmResponse)> done;
  Endpoint* ep = nullptr;
  LlmResponse response;
  std::string body;
  int64_t first_start_ms = -1;
  const ReplayEntry* replayed = nullptr;  // replay with latency: the answer, once due
  // The attempt in progress.
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  std::string rx;
  int64_t retry_after_ms = -1;
  bool too_large = false;
  size_t max_bytes = 0;
  char errbuf[CURL_ERROR_SIZE] = {};
};

size_t on_body(char* data, size_t size, size_t nmemb, void* user) {
  auto* call = static_cast<Call*>(user);
  size_t n = size * nmemb;
  if (call->rx.size() + n > call->max_bytes) {
    call->too_large = true;
    return 0;  // aborts the transfer with CURLE_WRITE_ERROR
  }
  call->rx.append(data, n);
  return n;
}

size_t on_header(char* data, size_t size, size_t nmemb, void* user) {
  auto* call = static_cast<Call*>(user);
  size_t n = size * nmemb;
  std::string line(data, n);
  if (line.rfind("HTTP/", 0) == 0) {  // a new response (e.g. after 100 Continue)
    call->retry_after_ms = -1;
    return n;
  }
  auto colon = line.find(':');
  if (colon == std::string::npos) return n;
  std::string name = line.substr(0, colon);
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (name != "retry-after") return n;
  std::string value = line.substr(colon + 1);
  value.erase(0, value.find_first_not_of(" \t"));
  value.erase(value.find_last_not_of(" \t\r\n") + 1);
  // Only delay-seconds; an HTTP-date falls back to the exponential backoff.
  if (!value.empty() && value.size() < 10 &&
      std::all_of(value.begin(), value.end(), [](unsigned char c) { return std::isdigit(c); })) {
    call->retry_after_ms = std::stoll(value) * 1000;
  }
  return n;
}

// Fills `r` from a 2xx body; returns "" or what is wrong with the body.
std::string parse_completion(const std::string& body, LlmResponse& r) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) {
    return body.empty() ? "empty body" : "not JSON: " + excerpt(body);
  }
  try {
    if (!j.is_object()) return "not a JSON object: " + excerpt(body);
    auto choices = j.find("choices");
    if (choices == j.end() || !choices->is_array() || choices->empty()) {
      if (j.contains("error")) return "error in body: " + server_error_message(body);
      return "no choices: " + excerpt(body);
    }
    const json& first = (*choices)[0];
    auto message = first.find("message");
    if (!first.is_object() || message == first.end() || !message->is_object()) {
      return "choices[0] has no message: " + excerpt(body);
    }
    auto content = message->find("content");
    if (content != message->end() && content->is_string()) {
      r.content = content->get<std::string>();
    } else if (content != message->end() && !content->is_null()) {
      return "choices[0].message.content is not a string";
    } else {
      r.content.clear();  // null or absent: an empty answer, for the caller to judge
    }
    r.reasoning.clear();
    for (const char* key : {"reasoning_content", "reasoning"}) {
      auto it = message->find(key);
      if (it != message->end() && it->is_string()) {
        r.reasoning = it->get<std::string>();
        break;
      }
    }
    if (auto usage = j.find("usage"); usage != j.end() && usage->is_object()) {
      auto tokens = [&](const char* key) -> int64_t {
        auto it = usage->find(key);
        return it != usage->end() && it->is_number() ? it->get<int64_t>() : 0;
      };
      r.prompt_tokens = tokens("prompt_tokens");
      r.completion_tokens = tokens("completion_tokens");
    }
    if (auto model = j.find("model");
        model != j.end() && model->is_string() && !model->get<std::string>().empty()) {
      r.model = model->get<std::string>();
    }
  } catch (const json::exception& e) {
    return std::string("unexpected shape: ") + e.what();
  }
  return "";
}

}  // namespace

class LlmClient::Impl {
 public:
  Impl(LlmClientOptions options, Clock& clock)
      : options_(options), clock_(clock), rng_(std::random_device{}()) {}

  ~Impl() {
    stop();
    if (multi_ != nullptr) curl_multi_cleanup(multi_);
  }

  Status init(std::map<LlmRole, LlmEndpoint> by_role);

  void start() {
    worker_ = std::thread([this] { run(); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    if (multi_ != nullptr) curl_multi_wakeup(multi_);
    if (worker_.joinable()) worker_.join();
  }

  void submit(LlmRequest request, std::function<void(LlmResponse)> done) {
    auto call = std::make_unique<Call>();
    call->request = std::move(request);
    call->done = std::move(done);
    call->max_bytes = options_.max_response_bytes;
    in_flight_.fetch_add(1);
    {
      std::lock_guard<std::mutex> lock(mu_);
      call->seq = next_seq_++;
      inbox_.push_back(std::move(call));
    }
    curl_multi_wakeup(multi_);
  }

  size_t in_flight() const { return in_flight_.load(); }

 private:
  void run();
  void admit(std::unique_ptr<Call> call);
  void start_ready(int64_t now);
  void start_attempt(std::unique_ptr<Call> call);
  void start_replay(std::unique_ptr<Call> call, int64_t now);
  void deliver_replays(int64_t now);
  void finish_replay(std::unique_ptr<Call> call);
  bool reap();
  void complete(std::unique_ptr<Call> call, CURLcode code);
  void finish(std::unique_ptr<Call> call);
  void fail(std::unique_ptr<Call> call, std::string error);
  void append_record(const Call& call);
  int64_t backoff_ms(int attempts);
  void abort_all(std::vector<std::unique_ptr<Call>> incoming);

  const LlmClientOptions options_;
  Clock& clock_;
  std::map<LlmRole, Endpoint> endpoints_;
  std::map<std::string, std::unique_ptr<Group>> groups_;
  std::string roles_;  // "designer, coder": the configured roles, for errors

  CURLM* multi_ = nullptr;
  std::thread worker_;
  std::atomic<size_t> in_flight_{0};

  std::mutex mu_;  // guards inbox_, next_seq_, stopping_
  std::vector<std::unique_ptr<Call>> inbox_;
  uint64_t next_seq_ = 0;
  bool stopping_ = false;

  // Worker-thread state.
  std::map<CURL*, std::unique_ptr<Call>> active_;
  std::multimap<int64_t, std::unique_ptr<Call>> retrying_;  // by due time (clock_.now_ms)
  // Replayed answers with a latency, holding their group's slot until due (clock_.now_ms);
  // equal due times keep their start order.
  std::multimap<int64_t, std::unique_ptr<Call>> replaying_;
  std::mt19937_64 rng_;
};

Status LlmClient::Impl::init(std::map<LlmRole, LlmEndpoint> by_role) {
  global_init();
  roles_ = joined_roles(by_role);
  // Endpoints with the same base_url+model share one group, its limit the smallest.
  auto join_group = [&](const LlmEndpoint& cfg) {
    std::string group_key = trim_slashes(cfg.base_url) + "\n" + cfg.model;
    auto& group = groups_[group_key];
    if (!group) {
      group = std::make_unique<Group>();
      group->name = trim_slashes(cfg.base_url) + " " + cfg.model;
      group->limit = cfg.concurrency;
    }
    group->limit = std::min(group->limit, cfg.concurrency);
    return group.get();
  };
  std::map<std::string, std::shared_ptr<Recording>> recordings;
  std::map<std::string, std::shared_ptr<std::ofstream>> record_files;
  for (auto& [role, cfg] : by_role) {
    std::string where = "llm." + std::string(to_string(role)) + ": ";
    Endpoint ep;
    ep.role = role;
    ep.cfg = cfg;
    const std::string& p = cfg.provider;
    if (p != "openai" && p != "replay" && p != "record") {
      return invalid_argument(where + "unknown provider '" + p +
                              "' (expected openai, replay or record)");
    }
    if (p == "replay" || p == "record") {
      if (cfg.recording.empty())
        return invalid_argument(where + "provider " + p + " needs 'recording'");
    }
    if (p != "replay" && cfg.replay_latency_ms != 0) {
      return invalid_argument(where +
                              "'replay_latency_ms' is only valid with provider replay, not " + p);
    }
    if (p == "replay") {
      if (cfg.replay_latency_ms < 0)
        return invalid_argument(where + "'replay_latency_ms' must be >= 0");
      if (cfg.replay_latency_ms > 0) {
        // Simulated answers take slots like real ones (docs/llm.md, capacity planning).
        if (cfg.concurrency < 1) return invalid_argument(where + "'concurrency' must be >= 1");
        ep.group = join_group(cfg);
      }
      auto& rec = recordings[cfg.recording];
      if (!rec) {
        auto loaded = load_recording(cfg.recording);
        if (!loaded.ok()) return loaded.status();
        rec = *loaded;
      }
      ep.replay = rec;
      endpoints_.emplace(role, std::move(ep));
      continue;
    }
    if (cfg.base_url.empty()) return invalid_argument(where + "'base_url' is empty");
    if (cfg.base_url.rfind("http://", 0) != 0 && cfg.base_url.rfind("https://", 0) != 0) {
      return invalid_argument(where + "'base_url' must start with http:// or https://, got '" +
                              cfg.base_url + "'");
    }
    if (cfg.model.empty()) return invalid_argument(where + "'model' is empty");
    if (cfg.concurrency < 1) return invalid_argument(where + "'concurrency' must be >= 1");
    if (cfg.max_retries < 0) return invalid_argument(where + "'max_retries' must be >= 0");
    if (cfg.timeout_s < 1) return invalid_argument(where + "'timeout_s' must be >= 1");
    if (cfg.max_tokens < 1) return invalid_argument(where + "'max_tokens' must be >= 1");
    if (cfg.price_prompt_per_mtok < 0 || cfg.price_completion_per_mtok < 0) {
      return invalid_argument(where + "prices must be >= 0");
    }
    if (!cfg.api_key_env.empty() && !cfg.api_key_file.empty()) {
      return invalid_argument(where + "set api_key_env or api_key_file, not both");
    }
    if (!cfg.api_key_env.empty()) {
      const char* key = std::getenv(cfg.api_key_env.c_str());
      if (key == nullptr || *key == '\0') {
        return failed_precondition(where + "api_key_env names " + cfg.api_key_env +
                                   ", which is not set");
      }
      ep.auth_header = std::string("Authorization: Bearer ") + key;
    }
    if (!cfg.api_key_file.empty()) {
      auto key = read_secret_file(cfg.api_key_file, "api_key_file");
      if (!key.ok()) return Status(key.status().code(), where + key.status().message());
      ep.auth_header = "Authorization: Bearer " + *key;
    }
    ep.url = trim_slashes(cfg.base_url) + "/chat/completions";
    if (p == "record") {
      auto& file = record_files[cfg.recording];
      if (!file) {
        file = std::make_shared<std::ofstream>(cfg.recording, std::ios::binary | std::ios::app);
        if (!*file)
          return io_error(where + "cannot open recording " + cfg.recording + " for appending");
      }
      ep.record = file;
    }
    ep.group = join_group(cfg);
    endpoints_.emplace(role, std::move(ep));
  }
  multi_ = curl_multi_init();
  if (multi_ == nullptr) return internal_error("curl_multi_init failed");
  return Status();
}

void LlmClient::Impl::run() {
  for (;;) {
    std::vector<std::unique_ptr<Call>> incoming;
    bool stopping;
    {
      std::lock_guard<std::mutex> lock(mu_);
      incoming.swap(inbox_);
      stopping = stopping_;
    }
    if (stopping) {
      abort_all(std::move(incoming));
      return;
    }
    // One reading of the clock per pass: replayed answers due by `now` are delivered, and
    // the slots they free are taken, at `now`. Delivered before `incoming` is admitted, so a
    // request submitted after the clock passed T sees every answer due by T already given.
    int64_t now = clock_.now_ms();
    deliver_replays(now);
    for (auto& call : incoming) admit(std::move(call));
    // Due retries rejoin their FIFO at their original place (by submission order).
    while (!retrying_.empty() && retrying_.begin()->first <= now) {
      auto call = std::move(retrying_.begin()->second);
      retrying_.erase(retrying_.begin());
      Group* g = call->ep->group;
      g->waiting.emplace(call->seq, std::move(call));
    }
    start_ready(now);
    int running = 0;
    CURLMcode mc = curl_multi_perform(multi_, &running);
    if (mc != CURLM_OK) spdlog::error("llm curl_multi_perform: {}", curl_multi_strerror(mc));
    if (reap()) continue;  // slots freed or retries scheduled: look again before sleeping
    int timeout = k_idle_poll_ms;
    for (const auto* timed : {&retrying_, &replaying_}) {
      if (timed->empty()) continue;
      int64_t wait =
          std::clamp<int64_t>(timed->begin()->first - clock_.now_ms(), 0, k_idle_poll_ms);
      timeout = std::min(timeout, static_cast<int>(wait));
    }
    mc = curl_multi_poll(multi_, nullptr, 0, timeout, nullptr);
    if (mc != CURLM_OK) spdlog::error("llm curl_multi_poll: {}", curl_multi_strerror(mc));
  }
}

void LlmClient::Impl::admit(std::unique_ptr<Call> call) {
  auto it = endpoints_.find(call->request.role);
  if (it == endpoints_.end()) {
    std::string role(to_string(call->request.role));
    fail(std::move(call), "no llm endpoint for role '" + role + "' (configured: " + roles_ + ")");
    return;
  }
  Endpoint& ep = it->second;
  call->ep = &ep;
  LlmResponse& r = call->response;
  r.request_key = request_key(ep.cfg, call->request);
  r.model = ep.cfg.model;
  if (ep.replay) {
    const std::string& key =
        call->request.replay_key.empty() ? r.request_key : call->request.replay_key;
    auto found = ep.replay->find(key);
    if (found == ep.replay->end()) {
      fail(std::move(call), "no recorded response for " + key + " in " + ep.cfg.recording);
      return;
    }
    call->replayed = &found->second;  // the recording outlives the calls
    if (ep.cfg.replay_latency_ms > 0) {
      ep.group->waiting.emplace(call->seq, std::move(call));  // answered once it has a slot
      return;
    }
    finish_replay(std::move(call));
    return;
  }
  ep.group->waiting.emplace(call->seq, std::move(call));  // its body is built when it gets a slot
}

void LlmClient::Impl::start_ready(int64_t now) {
  for (auto& [key, group] : groups_) {
    while (group->active < group->limit && !group->waiting.empty()) {
      auto call = std::move(group->waiting.begin()->second);
      group->waiting.erase(group->waiting.begin());
      if (call->ep->replay) {
        start_replay(std::move(call), now);
      } else {
        start_attempt(std::move(call));
      }
    }
  }
}

// REQUIRES: call->replayed is set and the call's endpoint has a latency.
void LlmClient::Impl::start_replay(std::unique_ptr<Call> call, int64_t now) {
  call->first_start_ms = now;
  call->ep->group->active++;
  int64_t due = now + call->ep->cfg.replay_latency_ms;
  replaying_.emplace(due, std::move(call));
}

void LlmClient::Impl::deliver_replays(int64_t now) {
  while (!replaying_.empty() && replaying_.begin()->first <= now) {
    auto call = std::move(replaying_.begin()->second);
    replaying_.erase(replaying_.begin());
    call->ep->group->active--;
    finish_replay(std::move(call));
  }
}

void LlmClient::Impl::finish_replay(std::unique_ptr<Call> call) {
  LlmResponse& r = call->response;
  const ReplayEntry& e = *call->replayed;
  r.ok = true;
  r.content = e.content;
  r.reasoning = e.reasoning;
  r.prompt_tokens = e.prompt_tokens;
  r.completion_tokens = e.completion_tokens;
  finish(std::move(call));
}

void LlmClient::Impl::start_attempt(std::unique_ptr<Call> call) {
  const Endpoint& ep = *call->ep;
  CURL* easy = curl_easy_init();
  if (easy == nullptr) {
    fail(std::move(call), "curl_easy_init failed");
    return;
  }
  call->easy = easy;
  if (call->body.empty()) call->body = request_body(ep.cfg, call->request);  // kept for retries
  call->rx.clear();
  call->retry_after_ms = -1;
  call->too_large = false;
  call->errbuf[0] = '\0';
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Accept: application/json");
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip for big prompts
  if (!ep.auth_header.empty()) headers = curl_slist_append(headers, ep.auth_header.c_str());
  call->headers = headers;
  long timeout_ms = static_cast<long>(ep.cfg.timeout_s) * 1000;
  curl_easy_setopt(easy, CURLOPT_URL, ep.url.c_str());
  curl_easy_setopt(easy, CURLOPT_POST, 1L);
  curl_easy_setopt(easy, CURLOPT_POSTFIELDS, call->body.data());
  curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(call->body.size()));
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, call.get());
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, call.get());
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::min<int64_t>(options_.connect_timeout_ms, timeout_ms)));
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, call->errbuf);
  curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(easy, CURLOPT_PRIVATE, call.get());
  if (call->first_start_ms < 0) call->first_start_ms = clock_.now_ms();
  call->response.attempts++;
  CURLMcode mc = curl_multi_add_handle(multi_, easy);
  if (mc != CURLM_OK) {
    curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
    call->easy = nullptr;
    call->headers = nullptr;
    fail(std::move(call), std::string("curl_multi_add_handle: ") + curl_multi_strerror(mc));
    return;
  }
  ep.group->active++;
  active_.emplace(easy, std::move(call));
}

bool LlmClient::Impl::reap() {
  bool any = false;
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL* easy = msg->easy_handle;
    CURLcode code = msg->data.result;
    auto it = active_.find(easy);
    if (it == active_.end()) continue;
    auto call = std::move(it->second);
    active_.erase(it);
    complete(std::move(call), code);
    any = true;
  }
  return any;
}

void LlmClient::Impl::complete(std::unique_ptr<Call> call, CURLcode code) {
  const Endpoint& ep = *call->ep;
  long status = 0;
  curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_multi_remove_handle(multi_, call->easy);
  curl_easy_cleanup(call->easy);
  curl_slist_free_all(call->headers);
  call->easy = nullptr;
  call->headers = nullptr;
  ep.group->active--;

  LlmResponse& r = call->response;
  r.http_status = static_cast<int>(status);
  r.response_body = std::move(call->rx);
  call->rx.clear();
  std::string error;
  bool retryable = false;
  if (code != CURLE_OK) {
    if (call->too_large) {
      error = "response from " + ep.url + " is larger than " +
              std::to_string(options_.max_response_bytes) + " bytes";
    } else {
      std::string what = call->errbuf[0] != '\0' ? call->errbuf : curl_easy_strerror(code);
      if (code == CURLE_OPERATION_TIMEDOUT) {
        error = "request to " + ep.url + " timed out after " + std::to_string(ep.cfg.timeout_s) +
                " s (" + what + ")";
      } else {
        error = "request to " + ep.url + " failed: " + what;
      }
      retryable = !permanent_curl_error(code);
    }
  } else if (status >= 200 && status < 300) {
    std::string bad = parse_completion(r.response_body, r);
    if (bad.empty()) {
      r.ok = true;
      r.error.clear();
      r.cost_usd = (static_cast<double>(r.prompt_tokens) * ep.cfg.price_prompt_per_mtok +
                    static_cast<double>(r.completion_tokens) * ep.cfg.price_completion_per_mtok) /
                   1e6;
      if (ep.record) append_record(*call);
      finish(std::move(call));
      return;
    }
    error = "malformed response from " + ep.url + " (HTTP " + std::to_string(status) + "): " + bad;
    retryable = true;
  } else {
    error = "HTTP " + std::to_string(status) + " from " + ep.url + ": " +
            server_error_message(r.response_body);
    retryable = status == 429 || status == 408 || status >= 500;
  }

  if (!retryable || r.attempts > ep.cfg.max_retries) {
    if (retryable) error = "gave up after " + std::to_string(r.attempts) + " attempts: " + error;
    fail(std::move(call), std::move(error));
    return;
  }
  int64_t delay = backoff_ms(r.attempts);
  if (call->retry_after_ms >= 0 && (status == 429 || status == 503)) {
    delay = std::max(delay, std::min(call->retry_after_ms, options_.retry_after_max_ms));
  }
  spdlog::warn(
      "llm retry role={} key={} attempt={} delay_ms={} error={}", to_string(ep.role),
      call->request.replay_key.empty() ? r.request_key.substr(0, 16) : call->request.replay_key,
      r.attempts, delay, error);
  r.error = std::move(error);
  int64_t due = clock_.now_ms() + delay;
  retrying_.emplace(due, std::move(call));
}

int64_t LlmClient::Impl::backoff_ms(int attempts) {
  int shift = std::clamp(attempts - 1, 0, 30);
  int64_t full = std::min(options_.backoff_max_ms, options_.backoff_base_ms << shift);
  full = std::max<int64_t>(full, 0);
  // Equal jitter: half fixed, half random, so retries of a burst spread out.
  std::uniform_int_distribution<int64_t> jitter(0, full / 2);
  return full - full / 2 + jitter(rng_);
}

void LlmClient::Impl::append_record(const Call& call) {
  const LlmResponse& r = call.response;
  json line = {
      {"replay_key", call.request.replay_key.empty() ? r.request_key : call.request.replay_key},
      {"request_key", r.request_key},
      {"model", r.model},
      {"content", r.content},
      {"reasoning", r.reasoning},
      {"prompt_tokens", r.prompt_tokens},
      {"completion_tokens", r.completion_tokens},
  };
  // Only the worker thread writes, so lines never interleave.
  std::ofstream& out = *call.ep->record;
  out << dump(line) << '\n';
  out.flush();
  if (!out) {
    spdlog::error("llm cannot append to recording {} role={}", call.ep->cfg.recording,
                  to_string(call.ep->role));
    out.clear();
  }
}

void LlmClient::Impl::fail(std::unique_ptr<Call> call, std::string error) {
  call->response.ok = false;
  call->response.error = std::move(error);
  finish(std::move(call));
}

void LlmClient::Impl::finish(std::unique_ptr<Call> call) {
  LlmResponse& r = call->response;
  r.latency_ms = call->first_start_ms < 0 ? 0 : clock_.now_ms() - call->first_start_ms;
  if (!r.ok) {
    spdlog::debug("llm call failed role={} attempts={} error={}", to_string(call->request.role),
                  r.attempts, r.error);
  }
  auto done = std::move(call->done);
  LlmResponse response = std::move(call->response);
  call.reset();
  in_flight_.fetch_sub(1);
  try {
    if (done) done(std::move(response));
  } catch (const std::exception& e) {
    spdlog::error("llm completion callback threw: {}", e.what());
  } catch (...) {
    spdlog::error("llm completion callback threw a non-exception");
  }
}

void LlmClient::Impl::abort_all(std::vector<std::unique_ptr<Call>> incoming) {
  const std::string stopped = "llm client stopped";
  for (auto& [easy, call] : active_) {
    curl_multi_remove_handle(multi_, easy);
    curl_easy_cleanup(easy);
    curl_slist_free_all(call->headers);
    call->easy = nullptr;
    call->headers = nullptr;
    call->ep->group->active--;
    fail(std::move(call), stopped);
  }
  active_.clear();
  for (auto& [due, call] : replaying_) {
    call->ep->group->active--;
    fail(std::move(call), stopped);
  }
  replaying_.clear();
  for (auto& [due, call] : retrying_) fail(std::move(call), stopped);
  retrying_.clear();
  for (auto& [key, group] : groups_) {
    for (auto& [seq, call] : group->waiting) fail(std::move(call), stopped);
    group->waiting.clear();
  }
  for (auto& call : incoming) fail(std::move(call), stopped);
  // Requests submitted while this ran (a `done` that submits) are answered too.
  for (;;) {
    std::vector<std::unique_ptr<Call>> late;
    {
      std::lock_guard<std::mutex> lock(mu_);
      late.swap(inbox_);
    }
    if (late.empty()) break;
    for (auto& call : late) fail(std::move(call), stopped);
  }
}

// ---------------------------------------------------------------------------------------

Result<std::unique_ptr<LlmClient>> LlmClient::create(std::map<LlmRole, LlmEndpoint> by_role,
                                                     LlmClientOptions options, Clock& clock) {
  if (options.backoff_base_ms < 0 || options.backoff_max_ms < 0 || options.retry_after_max_ms < 0) {
    return invalid_argument("llm client: backoff and retry-after limits must be >= 0");
  }
  if (options.max_response_bytes == 0)
    return invalid_argument("llm client: max_response_bytes must be > 0");
  auto impl = std::make_unique<Impl>(options, clock);
  KF_RETURN_IF_ERROR(impl->init(std::move(by_role)));
  impl->start();
  return std::unique_ptr<LlmClient>(new LlmClient(std::move(impl)));
}

LlmClient::LlmClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

LlmClient::~LlmClient() = default;

void LlmClient::submit(LlmRequest request, std::function<void(LlmResponse)> done) {
  impl_->submit(std::move(request), std::move(done));
}

size_t LlmClient::in_flight() const {
  return impl_->in_flight();
}

}  // namespace kforge
