// How the command line reaches a coordinator: its operator API over HTTP, or (--data DIR)
// the same API answered in this process from the database file.
//
// Which one: --coordinator URL (or HOST:PORT, read as http://HOST:PORT), else --data DIR, else
// $KFORGE_COORDINATOR, else [cli] coordinator in --config FILE, else http://127.0.0.1:7780. The
// token (every API request needs one) comes from the first of: --token, --token-file FILE,
// $KFORGE_TOKEN, $KFORGE_TOKEN_FILE, [cli] token_file, [coordinator] api_token_file, and, for a
// coordinator on this host only, <data_dir>/api.token ([coordinator] data_dir in --config, else
// kforge-data) where the coordinator created it.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/flags.h"
#include "common/status.h"

namespace kforge {

class ApiClient {
 public:
  virtual ~ApiClient() = default;
  // `path` is under /api/v1 and may carry a query ("tasks?state=failed"). An error answer
  // becomes a Status with the server's message; an unreachable coordinator is `unavailable`
  // with what to do.
  virtual Result<nlohmann::json> get(const std::string& path) = 0;
  virtual Result<nlohmann::json> post(const std::string& path, const nlohmann::json& body) = 0;
  // What this client talks to, for messages: the URL or the database path.
  virtual std::string where() const = 0;
};

// The client the flags (and config file) name. Over HTTP each request waits at most --timeout
// seconds (0 or absent: no limit) for its whole answer; a request that runs out is
// `unavailable`, saying so.
Result<std::unique_ptr<ApiClient>> connect_api(const ParsedFlags& flags);

// The coordinator's URL and token as the flags, environment and config name them (HTTP only).
struct ApiTarget {
  std::string url;           // without a trailing '/'
  std::string token;         // "" when none was found
  std::string token_source;  // the flag, variable or file it came from, for messages
};
Result<ApiTarget> resolve_api_target(const ParsedFlags& flags);

// Percent-encodes a query value.
std::string url_escape(const std::string& text);

}  // namespace kforge
