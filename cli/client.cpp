#include "cli/client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstdlib>

#include "common/config.h"
#include "coordinator/operator/api.h"
#include "coordinator/operator/http_server.h"

namespace kforge {
namespace {

using json = nlohmann::json;

// The answer's JSON, or a Status carrying the server's {"error": ...}.
Result<json> parse_answer(int status, const std::string& body, const std::string& where) {
  json doc = json::parse(body, nullptr, false);
  if (status >= 200 && status < 300) {
    if (doc.is_discarded()) return internal_error(where + " answered something that is not JSON");
    return doc;
  }
  std::string message = doc.is_object() && doc.contains("error") && doc["error"].is_string()
                            ? doc["error"].get<std::string>()
                            : "HTTP " + std::to_string(status) + " from " + where;
  Code code = status == 400   ? Code::invalid_argument
              : status == 401 ? Code::failed_precondition
              : status == 404 ? Code::not_found
              : status == 409 ? Code::failed_precondition
              : status == 503 ? Code::unavailable
                              : Code::internal;
  return Status(code, message);
}

class LocalClient : public ApiClient {
 public:
  explicit LocalClient(std::filesystem::path data)
      : data_(std::move(data)), backend_(data_ / "kforge.db") {}

  Result<json> get(const std::string& path) override { return call("GET", path, ""); }
  Result<json> post(const std::string& path, const json& body) override {
    return call("POST", path, body.dump());
  }
  std::string where() const override { return (data_ / "kforge.db").string(); }

 private:
  Result<json> call(const std::string& method, const std::string& path, const std::string& body) {
    ApiRequest r;
    r.method = method;
    std::string p = "/api/v1/" + path;
    auto q = p.find('?');
    r.path = p.substr(0, q);
    if (q != std::string::npos) {
      std::string query = p.substr(q + 1);
      size_t i = 0;
      while (i <= query.size()) {
        size_t amp = query.find('&', i);
        if (amp == std::string::npos) amp = query.size();
        std::string pair = query.substr(i, amp - i);
        auto eq = pair.find('=');
        if (!pair.empty()) {
          std::string key = pair.substr(0, eq),
                      value = eq == std::string::npos ? "" : pair.substr(eq + 1);
          int n = 0;
          char* raw =
              curl_easy_unescape(nullptr, value.c_str(), static_cast<int>(value.size()), &n);
          r.query[key] = raw ? std::string(raw, static_cast<size_t>(n)) : value;
          curl_free(raw);
        }
        i = amp + 1;
      }
    }
    r.body = body;
    ApiReply reply = handle_api(r, backend_);
    return parse_answer(reply.status, reply.body, where());
  }

  std::filesystem::path data_;
  LocalApiBackend backend_;
};

size_t collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

class HttpClient : public ApiClient {
 public:
  HttpClient(std::string url, std::string token, std::string token_source, long timeout_ms)
      : url_(std::move(url)),
        token_(std::move(token)),
        token_source_(std::move(token_source)),
        timeout_ms_(timeout_ms) {
    while (!url_.empty() && url_.back() == '/') url_.pop_back();
  }
  Result<json> get(const std::string& path) override { return call("GET", path, nullptr); }
  Result<json> post(const std::string& path, const json& body) override {
    std::string text = body.dump(-1, ' ', false, json::error_handler_t::replace);
    return call("POST", path, &text);
  }
  std::string where() const override { return url_; }

 private:
  Result<json> call(const char* method, const std::string& path, const std::string* body) {
    CURL* curl = curl_easy_init();
    if (curl == nullptr) return internal_error("libcurl: cannot create a handle");
    std::string url = url_ + "/api/v1/" + path, answer;
    curl_slist* headers = curl_slist_append(nullptr, "Accept: application/json");
    std::string auth = "Authorization: Bearer " + token_;
    if (!token_.empty()) headers = curl_slist_append(headers, auth.c_str());
    if (body) headers = curl_slist_append(headers, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
    // 0: no limit (libcurl's own meaning); connecting takes at most 5 s, or the whole limit if
    // less.
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                     timeout_ms_ > 0 ? std::min(timeout_ms_, 5000L) : 5000L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms_);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    if (body) {
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body->data());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
    }
    CURLcode rc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    if (rc == CURLE_OPERATION_TIMEDOUT) {
      return Status(Code::unavailable, "the coordinator at " + url_ + " did not answer within " +
                                           std::to_string(timeout_ms_ / 1000) +
                                           " s; is it overloaded or hung? "
                                           "(--timeout SECONDS waits longer, 0 without a limit)");
    }
    if (rc != CURLE_OK) {
      return Status(Code::unavailable,
                    "cannot reach the coordinator at " + url_ + " (" + curl_easy_strerror(rc) +
                        "); is kforge-coordinator running there? Pass --coordinator URL, or "
                        "--data DIR to read a stopped coordinator's database");
    }
    if (status == 401) {
      if (!token_.empty()) {
        return Status(Code::failed_precondition,
                      url_ + " refused the API token from " + token_source_ +
                          "; is it this coordinator's (<data_dir>/api.token, or the "
                          "file coordinator.api_token_file names)?");
      }
      return Status(
          Code::failed_precondition,
          url_ +
              " needs its API token: pass --token-file FILE (<data_dir>/api.token of the "
              "coordinator, "
              "or the file coordinator.api_token_file names), set KFORGE_TOKEN_FILE, or [cli] "
              "token_file in --config");
    }
    return parse_answer(static_cast<int>(status), answer, url_);
  }

  std::string url_;
  std::string token_;
  std::string token_source_;
  long timeout_ms_;
};

}  // namespace

std::string url_escape(const std::string& text) {
  char* raw = curl_easy_escape(nullptr, text.c_str(), static_cast<int>(text.size()));
  std::string out = raw ? raw : "";
  curl_free(raw);
  return out;
}

namespace {

bool loopback_url(const std::string& url) {
  auto start = url.find("://");
  std::string rest = url.substr(start == std::string::npos ? 0 : start + 3);
  std::string authority = rest.substr(0, rest.find('/'));
  std::string host = authority.front() == '[' ? authority.substr(1, authority.find(']') - 1)
                                              : authority.substr(0, authority.find(':'));
  return is_loopback_host(host);
}

Result<std::string> token_from(const std::string& file, const std::string& what) {
  auto t = read_token_file(file);
  if (!t.ok()) return Status(t.status().code(), what + ": " + t.status().message());
  return t;
}

}  // namespace

Result<ApiTarget> resolve_api_target(const ParsedFlags& flags) {
  Config config;
  if (auto path = flags.get("config")) {
    auto loaded = load_config(*path);
    if (!loaded.ok()) return loaded.status();
    config = *loaded;
  }
  const CliConfig& cli = config.cli;
  ApiTarget target;
  if (auto c = flags.get("coordinator")) {
    target.url = *c;
  } else if (const char* env = std::getenv("KFORGE_COORDINATOR"); env && *env) {
    target.url = env;
  } else if (!cli.coordinator.empty()) {
    target.url = cli.coordinator;
  } else {
    target.url = "http://127.0.0.1:7780";
  }
  while (!target.url.empty() && target.url.back() == '/') target.url.pop_back();
  // HOST:PORT is the API over plain HTTP, as curl reads it; another scheme is a mistake
  // (tcp://HOST:7700 is the agents' endpoint, not the API).
  if (!target.url.empty() && target.url.find("://") == std::string::npos)
    target.url = "http://" + target.url;
  if (target.url.rfind("http://", 0) != 0 && target.url.rfind("https://", 0) != 0) {
    return invalid_argument(
        "--coordinator: expected the API's URL or HOST:PORT, e.g. http://head-node:7780 or "
        "head-node:7780, got '" +
        target.url + "'");
  }
  const char* env_token = std::getenv("KFORGE_TOKEN");
  const char* env_file = std::getenv("KFORGE_TOKEN_FILE");
  Result<std::string> token = std::string();
  if (auto t = flags.get("token")) {
    token = *t;
    target.token_source = "--token";
  } else if (auto f = flags.get("token-file")) {
    token = token_from(*f, "--token-file");
    target.token_source = *f;
  } else if (env_token && *env_token) {
    token = std::string(env_token);
    target.token_source = "$KFORGE_TOKEN";
  } else if (env_file && *env_file) {
    token = token_from(env_file, "$KFORGE_TOKEN_FILE");
    target.token_source = env_file;
  } else if (!cli.token_file.empty()) {
    token = token_from(cli.token_file, "cli.token_file");
    target.token_source = cli.token_file;
  } else if (!config.coordinator.api_token_file.empty()) {
    token = token_from(config.coordinator.api_token_file, "coordinator.api_token_file");
    target.token_source = config.coordinator.api_token_file;
  } else if (loopback_url(target.url)) {
    // The coordinator on this host keeps its token in its data directory; a token found
    // there by default is never sent to another host.
    auto file = default_token_path(config.coordinator.data_dir);
    std::error_code ec;
    if (std::filesystem::exists(file, ec)) {
      token = token_from(file.string(), "the coordinator's token");
      target.token_source = file.string();
    }
  }
  if (!token.ok()) return token.status();
  target.token = *token;
  return target;
}

Result<std::unique_ptr<ApiClient>> connect_api(const ParsedFlags& flags) {
  if (auto d = flags.get("data"); d && !flags.get("coordinator")) {
    if (auto path = flags.get("config")) {  // still checked: a bad file is an error, not ignored
      auto loaded = load_config(*path);
      if (!loaded.ok()) return loaded.status();
    }
    return std::unique_ptr<ApiClient>(new LocalClient(*d));
  }
  auto target = resolve_api_target(flags);
  if (!target.ok()) return target.status();
  long timeout_ms = 0;
  if (auto t = flags.get("timeout")) {
    auto seconds = parse_uint_flag("timeout", *t);
    if (!seconds.ok()) return seconds.status();
    if (*seconds > 86400)
      return invalid_argument("flag '--timeout': expected at most 86400 seconds, got " + *t);
    timeout_ms = static_cast<long>(*seconds) * 1000;
  }
  return std::unique_ptr<ApiClient>(
      new HttpClient(target->url, target->token, target->token_source, timeout_ms));
}

}  // namespace kforge
