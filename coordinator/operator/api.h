// coordinator/operator/: what operators see and do -- the API router (this file), the HTTP
// server and its guards (http_server.h, http_serving.h, http_guard.h), task outcomes
// (outcome.h), reports (report.h, report.html, report_parts.html) and the dashboard
// (dashboard/index.html).
//
// The operator API (schema/api.md): one router for every caller.
//
// The router turns a request (method, path, query, body) into a JSON answer. It reads through
// a read-only Store and changes state only through ApiBackend::write, so the same router
// serves the coordinator's HTTP server (writes run on the loop thread, inside a turn) and the
// command line on a data directory with no coordinator running (writes in a transaction of
// their own, which a running coordinator adopts within a second).
#pragma once

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "coordinator/store/store.h"

namespace kforge {

struct ApiRequest {
  std::string method;  // GET | POST
  std::string path;    // without the query string, e.g. /api/v1/tasks/7
  std::map<std::string, std::string> query;
  std::string body;
};

struct ApiReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers = {};  // extra (X-Next-After)
};

class ApiBackend {
 public:
  virtual ~ApiBackend() = default;
  // The store this request reads (read-only; valid until the request is answered).
  virtual Result<Store*> reader() = 0;
  // Applies `fn` to the writable store as one unit of work and returns its value. The
  // coordinator's Conductor sees the change before the answer goes out.
  using WriteFn = std::function<Result<nlohmann::json>(Store&)>;
  virtual Result<nlohmann::json> write(const WriteFn& fn) = 0;
  // Prometheus lines only a running coordinator knows (devices, dispatch, LLM client).
  virtual std::string live_metrics() { return ""; }
  // Alarms the health endpoint lists (a running coordinator's no-space alarm): a JSON array.
  virtual nlohmann::json alarms() { return nlohmann::json::array(); }
  // The database file, which error answers then never name (nor its directory), and 500s
  // answer without details (logged instead). Empty: the caller owns the files (the command
  // line's --data mode) and sees every message whole.
  virtual std::filesystem::path database_path() const = 0;
};

// Answers one request. Never throws; failures are {"error": ...} with the status codes of
// schema/api.md, and name no path of the server (a 500 says only that it failed; the log has
// the details).
ApiReply handle_api(const ApiRequest& request, ApiBackend& backend);

// The backend of the command line's --data mode: the database file, no coordinator.
class LocalApiBackend : public ApiBackend {
 public:
  explicit LocalApiBackend(std::filesystem::path db_path) : db_path_(std::move(db_path)) {}
  Result<Store*> reader() override;
  Result<nlohmann::json> write(const WriteFn& fn) override;
  std::filesystem::path database_path() const override { return {}; }  // its owner asks

 private:
  std::filesystem::path db_path_;
  std::unique_ptr<Store> reader_;
};

}  // namespace kforge
