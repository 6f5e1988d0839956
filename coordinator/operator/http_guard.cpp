#include "coordinator/operator/http_guard.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>

namespace kforge {
namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Compares without an early exit, so the time taken says nothing about the token.
bool same_token(const std::string& a, const std::string& b) {
  if (a.size() != b.size() || b.empty()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

bool host_allowed(const std::string& host, const httplib::Request& req,
                  const GuardOptions& options) {
  if (host.empty()) return false;
  if (is_loopback_name(host)) return true;
  if (host == lower(req.local_addr)) return true;  // the address this connection arrived on
  return std::any_of(options.hosts.begin(), options.hosts.end(),
                     [&](const std::string& h) { return lower(h) == host; });
}

bool is_write(const std::string& method) {
  return method == "POST" || method == "PUT" || method == "PATCH" || method == "DELETE" ||
         method == "PRI";
}

GuardVerdict refuse(int status, std::string message) {
  return GuardVerdict{status, std::move(message)};
}

}  // namespace

bool is_loopback_name(const std::string& host) {
  if (host == "localhost") return true;
  // Address literals only: "127.0.0.1.example.com" is a name anyone can point anywhere.
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  return ::inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

std::string host_of(const std::string& authority) {
  std::string a = lower(authority);
  if (a.empty()) return "";
  if (a.front() == '[') {
    auto close = a.find(']');
    if (close == std::string::npos) return "";
    std::string rest = a.substr(close + 1);
    if (!rest.empty() &&
        (rest[0] != ':' || rest.find_first_not_of("0123456789", 1) != std::string::npos))
      return "";
    return a.substr(1, close - 1);
  }
  auto colon = a.find(':');
  if (colon != std::string::npos) {
    if (a.find(':', colon + 1) != std::string::npos)
      return "";  // a bare IPv6 address is not a Host
    if (a.find_first_not_of("0123456789", colon + 1) != std::string::npos) return "";
    a = a.substr(0, colon);
  }
  if (a.find_first_of("/@ \t") != std::string::npos) return "";
  return a;
}

GuardVerdict check_request(const httplib::Request& req, const GuardOptions& options) {
  for (const char* single : {"Host", "Origin", "Authorization", "Content-Length", "Content-Type"}) {
    if (req.get_header_value_count(single) > 1)
      return refuse(400, std::string("more than one ") + single + " header");
  }
  // 1. Host.
  std::string host_header = req.get_header_value("Host");
  std::string host = host_of(host_header);
  if (!host_allowed(host, req, options)) {
    return refuse(403, "Host '" + host_header.substr(0, 100) +
                           "' is not a name of this coordinator; list the names operators use in "
                           "coordinator.api_hosts");
  }
  // 2. Origin.
  if (req.has_header("Origin")) {
    std::string origin = req.get_header_value("Origin");
    auto scheme = origin.find("://");
    std::string origin_host = scheme == std::string::npos ? "" : host_of(origin.substr(scheme + 3));
    if (!host_allowed(origin_host, req, options)) {
      return refuse(403, "requests from pages of other sites (Origin '" + origin.substr(0, 100) +
                             "') are refused");
    }
  }
  // 3. The token.
  bool guarded = req.path.rfind("/api/", 0) == 0 || req.path == "/api" ||
                 (req.path == "/metrics" && !options.metrics_public);
  if (guarded) {
    std::string auth = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (auth.size() <= prefix.size() || lower(auth.substr(0, prefix.size())) != "bearer " ||
        !same_token(auth.substr(prefix.size()), options.token)) {
      return refuse(
          401,
          auth.empty()
              ? "this coordinator needs its API token: send 'Authorization: Bearer <token>' "
                "(the token is in <data_dir>/api.token, or the file coordinator.api_token_file "
                "names; kforge and the Python client read it from there)"
              : "the API token sent is not this coordinator's");
    }
  }
  // 4. Bodies.
  bool chunked = req.has_header("Transfer-Encoding");
  bool has_length = req.has_header("Content-Length");
  std::string length_text = req.get_header_value("Content-Length");
  if (has_length && (length_text.empty() || length_text.size() > 19 ||
                     length_text.find_first_not_of("0123456789") != std::string::npos)) {
    return refuse(400, "Content-Length: expected a number of bytes");
  }
  unsigned long long length = has_length ? std::stoull(length_text) : 0;
  if (!is_write(req.method)) {
    if (chunked || length > 0) return refuse(400, req.method + " requests carry no body");
    return GuardVerdict{};
  }
  if (chunked)
    return refuse(411, "send the body with Content-Length (chunked bodies are not accepted)");
  if (length > options.max_body_bytes) {
    return refuse(413, "the body has " + std::to_string(length) + " bytes; the limit is " +
                           std::to_string(options.max_body_bytes) +
                           " (coordinator.api_max_body_mb)");
  }
  if (length > 0) {
    std::string type = lower(req.get_header_value("Content-Type"));
    std::string media = type.substr(0, type.find(';'));
    while (!media.empty() && media.back() == ' ') media.pop_back();
    if (media != "application/json") {
      return refuse(415, "a body must be JSON sent as 'Content-Type: application/json', not '" +
                             type.substr(0, 100) + "'");
    }
  }
  return GuardVerdict{};
}

}  // namespace kforge
