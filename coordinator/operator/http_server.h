// The coordinator's HTTP server: the operator API (schema/api.md), /metrics and the dashboard.
//
// Connections are served by ConnectionServer (http_serving.h: idle and slow connections hold
// no thread), requests parsed by cpp-httplib, checked by check_request() (http_guard.h:
// Host, Origin, token, body limits, before any body is read) and answered by handle_api()
// (api.h). Every failure, httplib's own included, answers {"error": ...}. Reads use a
// read-only Store per server thread; writes run on the coordinator's loop thread inside a
// turn and are answered after that turn commits (durable before visible).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/config.h"
#include "common/status.h"
#include "coordinator/generation/conductor.h"
#include "coordinator/operator/api.h"
#include "coordinator/operator/http_serving.h"
#include "coordinator/scheduling/coordinator.h"

namespace kforge {

struct HttpServerOptions {
  std::string listen = "127.0.0.1:7780";  // host:port; port 0 lets the OS choose
  std::string token;       // required as "Authorization: Bearer <token>"; never empty
  std::string token_file;  // where the token is, for messages ("" when given directly)
  std::vector<std::string>
      hosts;                    // Host/Origin names accepted besides loopback and the local address
  bool metrics_public = false;  // /metrics without the token
  size_t max_body_bytes = 256u << 20;  // a 100,000-task campaign fits
  ServingOptions serving;              // threads, connection cap, deadlines

  bool operator==(const HttpServerOptions&) const = default;
};

// True for 127.0.0.0/8, ::1 and localhost.
bool is_loopback_host(const std::string& host);

// Reads a token file (whitespace around the token ignored); an empty or unreadable file is
// an error naming it.
Result<std::string> read_token_file(const std::filesystem::path& path);

// The token in `path`; when the file does not exist, a new random one (256 bits, hex) written
// there first, mode 0600. A file others can read is refused: the token is a password.
Result<std::string> load_or_create_token(const std::filesystem::path& path);

// Where the API token of a coordinator with data directory `data_dir` is kept by default.
inline std::filesystem::path default_token_path(const std::filesystem::path& data_dir) {
  return data_dir / "api.token";
}

class HttpServer {
 public:
  // Binds and starts serving. An empty token is refused: every request under /api/ (and
  // /metrics unless public) needs it, on every address, loopback included.
  static Result<std::unique_ptr<HttpServer>> start(const HttpServerOptions& options,
                                                   ApiBackend& backend);
  ~HttpServer();  // stops serving and waits for requests in flight
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }
  const std::string& url() const { return url_; }  // http://host:port
  // The dashboard with the token in the fragment (#token=...): the page keeps it in
  // sessionStorage and drops it from the address bar; a fragment never reaches a server.
  std::string dashboard_url() const { return url_ + "/#token=" + token_; }
  const std::string& token_file() const { return token_file_; }
  size_t open_connections() const { return connections_ ? connections_->open_connections() : 0; }

 private:
  HttpServer() = default;
  std::unique_ptr<RequestProcessor> processor_;
  std::unique_ptr<ConnectionServer> connections_;
  int port_ = 0;
  std::string url_;
  std::string token_;
  std::string token_file_;
};

// ApiBackend of a running coordinator: reads from the database file, writes on the loop.
class CoordinatorApiBackend : public ApiBackend {
 public:
  // `after_write` runs on the loop thread after every write (the Conductor reconciles);
  // `metrics` appends live Prometheus lines there too.
  CoordinatorApiBackend(Coordinator& coordinator, std::filesystem::path db_path,
                        std::function<void()> after_write,
                        std::function<void(std::string&)> metrics);
  Result<Store*> reader() override;
  Result<nlohmann::json> write(const WriteFn& fn) override;
  std::string live_metrics() override;
  nlohmann::json alarms() override;
  std::filesystem::path database_path() const override { return db_path_; }

 private:
  Coordinator& coordinator_;
  std::filesystem::path db_path_;
  std::function<void()> after_write_;
  std::function<void(std::string&)> metrics_;
};

// The operator API of a running coordinator and its Conductor: the backend and the server.
// Destroy it (or reset `server`) before the coordinator's loop stops.
struct OperatorApi {
  std::unique_ptr<CoordinatorApiBackend> backend;
  std::unique_ptr<HttpServer> server;
};
// The server's options from the configuration: http_listen (host:port), the token (the file
// api_token_file names, else <data_dir>/api.token, created at the first start), api_hosts,
// metrics_public, api_max_body_mb, api_max_connections, api_threads. Checked here, so that a
// daemon refuses a bad address before it opens anything. Creates data_dir (0700) if needed.
Result<HttpServerOptions> operator_api_options(const CoordinatorConfig& config);
// Serves the API of `coordinator` and `conductor`.
Result<OperatorApi> serve_operator_api(Coordinator& coordinator, Conductor& conductor,
                                       const HttpServerOptions& options);

}  // namespace kforge
