// The checks every operator API request passes before a handler runs or its body is read
// (docs/security.md, "Operator API"):
//
//   1. Host names this coordinator (loopback names, the listen address, the address the
//      connection arrived on, coordinator.api_hosts): a page on another name that resolves
//      to us (DNS rebinding) is refused.
//   2. Origin, when present, names one of those hosts too: a page elsewhere cannot post here
//      (CSRF), even without reading the answer.
//   3. The token (Authorization: Bearer) on /api/ and /metrics (unless metrics are public).
//   4. Bodies: writes carry Content-Length (no chunked bodies; none at all means no body, as
//      HTTP/1.1 says), at most max_body_bytes, as application/json; reads carry none.
//
// check() only looks at the request line and headers, so a refused request never has its body
// read (the connection is closed after the answer).
#pragma once

#include <string>
#include <vector>

namespace httplib {
struct Request;
}

namespace kforge {

struct GuardOptions {
  std::string token;  // required; compared in constant time
  std::vector<std::string>
      hosts;                    // accepted Host/Origin names besides loopback and the local address
  bool metrics_public = false;  // /metrics answers without the token
  size_t max_body_bytes = 256u << 20;  // Content-Length above it is a 413
};

struct GuardVerdict {
  int status = 0;       // 0: pass; else the status to answer
  std::string message;  // the {"error": ...} text
  bool ok() const { return status == 0; }
};

// Host names (lowercase, without port or IPv6 brackets) always accepted.
bool is_loopback_name(const std::string& host);

// "host[:port]" / "[v6]:port" -> the host, lowercase, without brackets; "" when malformed.
std::string host_of(const std::string& authority);

GuardVerdict check_request(const httplib::Request& req, const GuardOptions& options);

}  // namespace kforge
