// The coordinator's HTTP server: the operator API (schema/api.md), /metrics and the dashboard.
//
// cpp-httplib serves requests on its own thread pool; each request is answered by
// handle_api() (coordinator/api.h). Reads use a read-only Store per server thread; writes
// run on the coordinator's loop thread inside a turn and are answered after that turn
// commits (durable before visible).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"
#include "coordinator/operator/api.h"
#include "coordinator/generation/conductor.h"
#include "coordinator/scheduling/coordinator.h"

namespace httplib {
class Server;
}

namespace kforge {

struct HttpServerOptions {
  std::string listen = "127.0.0.1:7780";  // host:port; port 0 lets the OS choose
  std::string token;  // required as "Authorization: Bearer <token>" when set
};

// True for 127.0.0.0/8, ::1 and localhost.
bool is_loopback_host(const std::string& host);

// Reads a token file (whitespace around the token ignored); an empty or unreadable file is
// an error naming it.
Result<std::string> read_token_file(const std::filesystem::path& path);

class HttpServer {
 public:
  // Binds and starts serving. A listen address that is not loopback without a token is
  // refused: there is no open endpoint that queues work for anyone.
  static Result<std::unique_ptr<HttpServer>> start(const HttpServerOptions& options, ApiBackend& backend);
  ~HttpServer();  // stops serving and waits for requests in flight
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }
  const std::string& url() const { return url_; }  // http://host:port

 private:
  HttpServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::string url_;
};

// ApiBackend of a running coordinator: reads from the database file, writes on the loop.
class CoordinatorApiBackend : public ApiBackend {
 public:
  // `after_write` runs on the loop thread after every write (the Conductor reconciles);
  // `metrics` appends live Prometheus lines there too.
  CoordinatorApiBackend(Coordinator& coordinator, std::filesystem::path db_path,
                        std::function<void()> after_write, std::function<void(std::string&)> metrics);
  Result<Store*> reader() override;
  Result<nlohmann::json> write(const WriteFn& fn) override;
  std::string live_metrics() override;

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
// The server's options from the configuration: `listen` (host:port) and the token in
// `token_file` ("" = none). Checked here, so that a daemon can refuse a bad address (or one
// reachable from other hosts without a token) before it opens anything.
Result<HttpServerOptions> operator_api_options(const std::string& listen, const std::string& token_file);
// Serves the API of `coordinator` and `conductor`.
Result<OperatorApi> serve_operator_api(Coordinator& coordinator, Conductor& conductor, const HttpServerOptions& options);

}  // namespace kforge
