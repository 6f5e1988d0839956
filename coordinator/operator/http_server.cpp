#include "coordinator/operator/http_server.h"

#include <httplib.h>

#include <chrono>

#include <spdlog/spdlog.h>

#include "common/fs.h"

namespace kforge {

extern const char* const kDashboardHtml;  // coordinator/dashboard/index.html, embedded

namespace {

// Compares without an early exit, so the time taken says nothing about the token.
bool same_token(const std::string& a, const std::string& b) {
  if (a.size() != b.size() || b.empty()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

void answer(httplib::Response& res, const ApiReply& reply) {
  res.status = reply.status;
  res.set_content(reply.body, reply.content_type.c_str());
}

}  // namespace

bool is_loopback_host(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

Result<std::string> read_token_file(const std::filesystem::path& path) {
  auto text = read_file(path);
  if (!text.ok()) return text.status();
  std::string token = *text;
  auto first = token.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return invalid_argument(path.string() + ": the API token file is empty");
  token = token.substr(first, token.find_last_not_of(" \t\r\n") - first + 1);
  return token;
}

namespace {

struct HttpAddress {
  std::string host;  // without IPv6 brackets
  int port = 0;
};

// host:port, and the rule that an address other hosts can reach needs a token.
Result<HttpAddress> parse_listen(const HttpServerOptions& options) {
  auto colon = options.listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return invalid_argument("http_listen: expected host:port (e.g. 127.0.0.1:7780), got '" + options.listen + "'");
  }
  HttpAddress a;
  a.host = options.listen.substr(0, colon);
  try {
    a.port = std::stoi(options.listen.substr(colon + 1));
  } catch (const std::exception&) {
    a.port = -1;
  }
  if (a.port < 0 || a.port > 65535) {
    return invalid_argument("http_listen: '" + options.listen.substr(colon + 1) + "' is not a port (0-65535)");
  }
  if (!is_loopback_host(a.host) && options.token.empty()) {
    return invalid_argument("http_listen: " + options.listen +
                            " is reachable from other hosts; set coordinator.api_token_file (a file holding a "
                            "secret token) or listen on 127.0.0.1");
  }
  if (a.host.size() > 2 && a.host.front() == '[' && a.host.back() == ']') a.host = a.host.substr(1, a.host.size() - 2);
  return a;
}

}  // namespace

Result<HttpServerOptions> operator_api_options(const std::string& listen, const std::string& token_file) {
  HttpServerOptions options;
  options.listen = listen;
  if (!token_file.empty()) {
    auto token = read_token_file(token_file);
    if (!token.ok()) return Status(token.status().code(), "coordinator.api_token_file: " + token.status().message());
    options.token = *token;
  }
  if (auto a = parse_listen(options); !a.ok()) return a.status();
  return options;
}

Result<std::unique_ptr<HttpServer>> HttpServer::start(const HttpServerOptions& options, ApiBackend& backend) {
  auto address = parse_listen(options);
  if (!address.ok()) return address.status();
  const std::string& host = address->host;
  int port = address->port;

  std::unique_ptr<HttpServer> s(new HttpServer());
  s->server_ = std::make_unique<httplib::Server>();
  httplib::Server& server = *s->server_;
  server.set_payload_max_length(256u << 20);  // a 100,000-task campaign fits
  std::string token = options.token;
  server.set_pre_routing_handler([token](const httplib::Request& req, httplib::Response& res) {
    bool protected_path = req.path.rfind("/api/", 0) == 0 || req.path == "/metrics";
    if (!protected_path || token.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string auth = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (auth.rfind(prefix, 0) == 0 && same_token(auth.substr(prefix.size()), token)) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    res.status = 401;
    res.set_header("WWW-Authenticate", "Bearer");
    res.set_content(R"({"error": "this coordinator needs its API token: pass --token-file FILE (or [cli] token_file) or send 'Authorization: Bearer <token>'"})",
                    "application/json");
    return httplib::Server::HandlerResponse::Handled;
  });
  server.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    res.set_content(kDashboardHtml, "text/html; charset=utf-8");
  });
  auto api = [&backend](const httplib::Request& req, httplib::Response& res) {
    ApiRequest r;
    r.method = req.method;
    r.path = req.path;
    for (const auto& [k, v] : req.params) r.query[k] = v;
    r.body = req.body;
    answer(res, handle_api(r, backend));
  };
  server.Get(R"(/api/.*)", api);
  server.Post(R"(/api/.*)", api);
  server.Get("/metrics", api);
  server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    res.status = 500;
    res.set_content(R"({"error": "internal error"})", "application/json");
  });

  if (port == 0) {
    port = server.bind_to_any_port(host);
    if (port < 0) return io_error("http_listen: cannot bind " + options.listen);
  } else if (!server.bind_to_port(host, port)) {
    return io_error("http_listen: cannot bind " + options.listen +
                    " (in use by another process, or not an address of this host)");
  }
  s->port_ = port;
  std::string shown = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  s->url_ = "http://" + shown + ":" + std::to_string(port);
  s->thread_ = std::thread([&server] { server.listen_after_bind(); });
  // stop() is a no-op until the accept loop runs: a server stopped right after start would
  // otherwise serve forever.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!server.is_running() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  spdlog::info("operator API and dashboard on {}{}", s->url_, token.empty() ? "" : " (token required)");
  return s;
}

HttpServer::~HttpServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

CoordinatorApiBackend::CoordinatorApiBackend(Coordinator& coordinator, std::filesystem::path db_path,
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
  auto answer = coordinator_.call_async([this, &fn](Coordinator& c) -> Result<nlohmann::json> {
    auto r = fn(c.store());
    if (r.ok() && after_write_) after_write_();
    return r;
  });
  // The loop may stop before it runs the write (SIGTERM): say so instead of hanging.
  while (answer.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
    if (coordinator_.stopped() && answer.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      return Status(Code::unavailable, "the coordinator is stopping; try again when it is back");
    }
  }
  return answer.get();
}

std::string CoordinatorApiBackend::live_metrics() {
  auto text = coordinator_.call_async([this](Coordinator&) {
    std::string out;
    if (metrics_) metrics_(out);
    return out;
  });
  while (text.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
    if (coordinator_.stopped()) return "";
  }
  return text.get();
}

Result<OperatorApi> serve_operator_api(Coordinator& coordinator, Conductor& conductor, const HttpServerOptions& options) {
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
