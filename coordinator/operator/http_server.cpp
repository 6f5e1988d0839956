#include "coordinator/operator/http_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/fs.h"
#include "coordinator/operator/http_guard.h"

namespace kforge {

extern const char* const kDashboardHtml;  // coordinator/dashboard/index.html, embedded

namespace {

void answer(httplib::Response& res, const ApiReply& reply) {
  res.status = reply.status;
  for (const auto& [name, value] : reply.headers) res.set_header(name, value);
  res.set_content(reply.body, reply.content_type.c_str());
}

void answer_error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_content(nlohmann::json({{"error", message}})
                      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                  "application/json");
}

// The {"error": ...} text of failures httplib answers itself (before any handler ran).
std::string error_text(int status) {
  switch (status) {
    case 400: return "malformed HTTP request";
    case 404:
      return "no such path; the API lives under /api/v1 (schema/api.md), the dashboard at /";
    case 405: return "method not allowed here";
    case 408: return "the request did not arrive in time";
    case 413: return "the request body is too large";
    case 414: return "the request line is too long";
    case 416: return "range not satisfiable";
    case 431: return "the request headers are too large";
    default: return "HTTP " + std::to_string(status);
  }
}

}  // namespace

bool is_loopback_host(const std::string& host) {
  return is_loopback_name(host.size() > 2 && host.front() == '[' && host.back() == ']'
                              ? host.substr(1, host.size() - 2)
                              : host);
}

Result<std::string> read_token_file(const std::filesystem::path& path) {
  auto text = read_file(path);
  if (!text.ok()) return text.status();
  std::string token = *text;
  auto first = token.find_first_not_of(" \t\r\n");
  if (first == std::string::npos)
    return invalid_argument(path.string() + ": the API token file is empty");
  token = token.substr(first, token.find_last_not_of(" \t\r\n") - first + 1);
  return token;
}

Result<std::string> load_or_create_token(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if ((st.st_mode & 077) != 0) {
      return failed_precondition(path.string() +
                                 ": the API token file is readable by others (mode " +
                                 fmt::format("{:04o}", st.st_mode & 07777) + "); chmod 600 it");
    }
    return read_token_file(path);
  }
  if (errno != ENOENT)
    return io_error("cannot stat " + path.string() + ": " + std::strerror(errno));
  auto token = random_hex_secret(32);
  if (!token.ok()) return token.status();
  // Written beside, then linked into place: never a half-written token, and of two starting
  // at once the second reads the first's.
  std::filesystem::path tmp = path;
  tmp += "." + random_hex_id() + ".tmp";
  KF_RETURN_IF_ERROR(atomic_write_file(tmp, *token + "\n", 0600));
  int rc = ::link(tmp.c_str(), path.c_str());
  int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0 && err != EEXIST)
    return io_error("cannot create " + path.string() + ": " + std::strerror(err));
  if (rc != 0) return read_token_file(path);
  spdlog::info("created the operator API token in {}", path.string());
  return *token;
}

namespace {

struct HttpAddress {
  std::string host;  // without IPv6 brackets
  int port = 0;
};

Result<HttpAddress> parse_listen(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return invalid_argument("http_listen: expected host:port (e.g. 127.0.0.1:7780), got '" +
                            listen + "'");
  }
  HttpAddress a;
  a.host = listen.substr(0, colon);
  try {
    size_t used = 0;
    a.port = std::stoi(listen.substr(colon + 1), &used);
    if (used != listen.size() - colon - 1) a.port = -1;
  } catch (const std::exception&) {
    a.port = -1;
  }
  if (a.port < 0 || a.port > 65535) {
    return invalid_argument("http_listen: '" + listen.substr(colon + 1) +
                            "' is not a port (0-65535)");
  }
  if (a.host.size() > 2 && a.host.front() == '[' && a.host.back() == ']')
    a.host = a.host.substr(1, a.host.size() - 2);
  return a;
}

}  // namespace

Result<HttpServerOptions> operator_api_options(const CoordinatorConfig& config) {
  HttpServerOptions options;
  options.listen = config.http_listen;
  if (auto a = parse_listen(options.listen); !a.ok()) return a.status();
  if (!config.api_token_file.empty()) {
    auto token = read_token_file(config.api_token_file);
    if (!token.ok())
      return Status(token.status().code(),
                    "coordinator.api_token_file: " + token.status().message());
    options.token = *token;
    options.token_file = config.api_token_file;
  } else {
    KF_RETURN_IF_ERROR(ensure_private_dir(config.data_dir));
    options.token_file = default_token_path(config.data_dir).string();
    auto token = load_or_create_token(options.token_file);
    if (!token.ok()) return token.status();
    options.token = *token;
  }
  options.hosts = config.api_hosts;
  options.metrics_public = config.metrics_public;
  options.max_body_bytes = static_cast<size_t>(config.api_max_body_mb) << 20;
  options.serving.max_connections = config.api_max_connections;
  options.serving.threads = config.api_threads;
  return options;
}

Result<std::unique_ptr<HttpServer>> HttpServer::start(const HttpServerOptions& options,
                                                      ApiBackend& backend) {
  auto address = parse_listen(options.listen);
  if (!address.ok()) return address.status();
  if (options.token.empty()) {
    return invalid_argument(
        "the operator API needs a token (coordinator.api_token_file, or <data_dir>/api.token)");
  }
  std::unique_ptr<HttpServer> s(new HttpServer());
  s->processor_ = std::make_unique<RequestProcessor>();
  RequestProcessor& server = *s->processor_;
  server.set_payload_max_length(options.max_body_bytes);
  server.set_keep_alive_timeout(std::max(1, options.serving.idle_timeout_ms / 1000));
  server.set_keep_alive_max_count(options.serving.max_requests_per_connection);
  server.set_default_headers({{"X-Content-Type-Options", "nosniff"},
                              {"X-Frame-Options", "DENY"},
                              {"Referrer-Policy", "no-referrer"}});

  GuardOptions guard;
  guard.token = options.token;
  guard.hosts = options.hosts;
  guard.metrics_public = options.metrics_public;
  guard.max_body_bytes = options.max_body_bytes;
  if (!is_loopback_host(address->host) && address->host != "0.0.0.0" && address->host != "::" &&
      !address->host.empty()) {
    guard.hosts.push_back(address->host);
  }
  // This host's own name (and its short form): a page can only send it as Host from a URL
  // that names this host, which is not a rebinding.
  if (char name[256] = {}; ::gethostname(name, sizeof name - 1) == 0 && name[0] != '\0') {
    std::string own = name;
    guard.hosts.push_back(own);
    if (auto dot = own.find('.'); dot != std::string::npos)
      guard.hosts.push_back(own.substr(0, dot));
  }
  // Refusals close the connection after the answer: the body, if any, was never read.
  auto refuse = [](const GuardVerdict& v, const httplib::Request& req, httplib::Response& res) {
    spdlog::debug("operator api: {} {} from {} refused: {} {}", req.method, req.path,
                  req.remote_addr, v.status, v.message);
    answer_error(res, v.status, v.message);
    if (v.status == 401) res.set_header("WWW-Authenticate", "Bearer");
    close_connection_after_answer();
  };
  server.set_expect_100_continue_handler(
      [guard, refuse](const httplib::Request& req, httplib::Response& res) {
        GuardVerdict v = check_request(req, guard);
        if (v.ok()) return 100;
        refuse(v, req, res);
        return v.status;
      });
  server.set_pre_routing_handler(
      [guard, refuse](const httplib::Request& req, httplib::Response& res) {
        GuardVerdict v = check_request(req, guard);
        if (v.ok()) {
          // A request without Content-Length has no body (RFC 9112 6.3); httplib would read one
          // until the client closes. The request is httplib's own non-const object.
          if (!req.has_header("Content-Length"))
            const_cast<httplib::Request&>(req).set_header("Content-Length", "0");
          return httplib::Server::HandlerResponse::Unhandled;
        }
        refuse(v, req, res);
        return httplib::Server::HandlerResponse::Handled;
      });
  server.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
        close_connection_after_answer();  // after a failure the connection's state is unknown
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        answer_error(res, res.status, error_text(res.status));
        return httplib::Server::HandlerResponse::Handled;
      }));
  server.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        answer_error(res, 500, "internal error; the coordinator's log has the details");
      });
  server.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    res.set_header("Content-Security-Policy", "frame-ancestors 'none'");
    res.set_content(kDashboardHtml, "text/html; charset=utf-8");
  });
  auto api = [&backend](const httplib::Request& req, httplib::Response& res) {
    ApiRequest r;
    r.method = req.method;
    r.path = req.path;
    for (const auto& [k, v] : req.params) r.query[k] = v;
    r.body = req.body;
    res.set_header("Cache-Control", "no-store");
    answer(res, handle_api(r, backend));
  };
  for (const char* pattern : {R"(/api(/.*)?)", "/metrics"}) {
    server.Get(pattern, api);
    server.Post(pattern, api);
    server.Put(pattern, api);
    server.Patch(pattern, api);
    server.Delete(pattern, api);
    server.Options(pattern, api);
  }

  auto connections = ConnectionServer::start(address->host, address->port, server, options.serving);
  if (!connections.ok()) {
    return io_error(connections.status().message() +
                    " (in use by another process, or not an address of this host)");
  }
  s->connections_ = std::move(connections.value());
  s->port_ = s->connections_->port();
  const std::string& host = address->host;
  std::string shown = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  s->url_ = "http://" + shown + ":" + std::to_string(s->port_);
  s->token_ = options.token;
  s->token_file_ = options.token_file;
  spdlog::info(
      "operator API and dashboard on {} (token in {}; `kforge dashboard` prints the dashboard's "
      "URL)",
      s->url_, options.token_file.empty() ? std::string("the configuration") : options.token_file);
  return s;
}

HttpServer::~HttpServer() {
  connections_.reset();  // stops serving and waits for requests in flight
}

CoordinatorApiBackend::CoordinatorApiBackend(Coordinator& coordinator,
                                             std::filesystem::path db_path,
                                             std::function<void()> after_write,
                                             std::function<void(std::string&)> metrics)
    : coordinator_(coordinator),
      db_path_(std::move(db_path)),
      after_write_(std::move(after_write)),
      metrics_(std::move(metrics)) {}

Result<Store*> CoordinatorApiBackend::reader() {
  // One read-only connection per server thread, kept for the thread's life.
  thread_local std::map<std::string, std::unique_ptr<Store>> stores;
  auto& slot = stores[db_path_.string()];
  if (!slot) {
    auto s = Store::open_readonly(db_path_);
    if (!s.ok()) return s.status();
    slot = std::move(s.value());
  }
  return slot.get();
}

Result<nlohmann::json> CoordinatorApiBackend::write(const WriteFn& fn) {
  // During the no-space alarm the loop runs no turns: say so at once instead of waiting.
  if (coordinator_.storage_alarm().raised) {
    return Status(Code::no_space,
                  "the coordinator's disk is full: changes are refused until space "
                  "returns (GET /api/v1/health shows the alarm); retry then");
  }
  auto answer = coordinator_.call_async([this, &fn](Coordinator& c) -> Result<nlohmann::json> {
    // One unit inside the turn's batch: a write that fails leaves none of its rows behind
    // (a campaign whose tenth task is refused stores no campaign and no task).
    Result<nlohmann::json> r = internal_error("not run");
    Status st = c.store().atomically([&]() -> Status {
      r = fn(c.store());
      return r.ok() ? Status() : r.status();
    });
    if (!st.ok()) return st;
    if (after_write_) after_write_();
    return r;
  });
  // The loop may stop before it runs the write (SIGTERM): say so instead of hanging.
  while (answer.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
    if (coordinator_.stopped() &&
        answer.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      return Status(Code::unavailable, "the coordinator is stopping; try again when it is back");
    }
  }
  return answer.get();
}

std::string CoordinatorApiBackend::live_metrics() {
  std::string out;
  coordinator_.render_storage_metrics(out);
  // The loop's own metrics need a turn, and none runs during the no-space alarm.
  if (coordinator_.storage_alarm().raised) return out;
  auto text = coordinator_.call_async([this](Coordinator&) {
    std::string lines;
    if (metrics_) metrics_(lines);
    return lines;
  });
  while (text.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
    if (coordinator_.stopped() || coordinator_.storage_alarm().raised) return out;
  }
  return out + text.get();
}

nlohmann::json CoordinatorApiBackend::alarms() {
  nlohmann::json out = nlohmann::json::array();
  Coordinator::StorageAlarm a = coordinator_.storage_alarm();
  if (a.raised) {
    // Not the store's message, which names the database's path (the log has it).
    out.push_back({{"name", "nospace"},
                   {"message",
                    "writes to the database fail for lack of space: reads are served, "
                    "nothing is dispatched and no LLM call starts; the coordinator "
                    "resumes by itself when space returns"},
                   {"since_ms", a.since_ms}});
  }
  return out;
}

Result<OperatorApi> serve_operator_api(Coordinator& coordinator, Conductor& conductor,
                                       const HttpServerOptions& options) {
  OperatorApi api;
  api.backend = std::make_unique<CoordinatorApiBackend>(
      coordinator, coordinator.store_path(), [&conductor] { conductor.resume_all().ok(); },
      [&coordinator, &conductor](std::string& out) {
        coordinator.render_metrics(out);
        conductor.render_metrics(out);
      });
  auto server = HttpServer::start(options, *api.backend);
  if (!server.ok()) return server.status();
  api.server = std::move(server.value());
  return api;
}

}  // namespace kforge
