#include "common/zmq_util.h"

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <utility>

namespace kforge {
namespace {

// zmq's error as a Status naming what was being done to which endpoint.
Status zmq_status(const char* action, const std::string& endpoint, const zmq::error_t& e) {
  std::string message = std::string(action) + " " + endpoint + ": " + e.what();
  switch (e.num()) {
    case EINVAL:
    case EPROTONOSUPPORT:
    case ENOCOMPATPROTO: return invalid_argument(std::move(message));
    default: return io_error(std::move(message));
  }
}

}  // namespace

void set_common_options(zmq::socket_t& socket, size_t max_msg_bytes) {
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(max_msg_bytes));
  socket.set(zmq::sockopt::handshake_ivl, kHandshakeIvlMs);
  socket.set(zmq::sockopt::tcp_keepalive, 1);
}

Result<zmq::socket_t> make_router(zmq::context_t& ctx, const std::string& endpoint,
                                  size_t max_msg_bytes, const std::string& curve_secret_key) {
  try {
    zmq::socket_t socket(ctx, zmq::socket_type::router);
    set_common_options(socket, max_msg_bytes);
    socket.set(zmq::sockopt::router_mandatory, true);
    socket.set(zmq::sockopt::router_handover, false);
    if (!curve_secret_key.empty()) {
      socket.set(zmq::sockopt::curve_server, true);
      socket.set(zmq::sockopt::curve_secretkey, curve_secret_key);
      socket.set(zmq::sockopt::zap_domain, kZapDomain);
    }
    try {
      socket.bind(endpoint);
    } catch (const zmq::error_t& e) {
      return zmq_status("bind", endpoint, e);
    }
    return socket;
  } catch (const zmq::error_t& e) {
    return zmq_status("router for", endpoint, e);
  }
}

Result<zmq::socket_t> make_dealer(zmq::context_t& ctx, const std::string& endpoint,
                                  const std::string& identity, size_t max_msg_bytes,
                                  const CurveClientKeys& curve) {
  if (identity.empty() || identity.size() > 255 || identity[0] == '\0') {
    return invalid_argument("dealer for " + endpoint + ": routing id must be 1..255 bytes " +
                            "and not start with a zero byte");
  }
  try {
    zmq::socket_t socket(ctx, zmq::socket_type::dealer);
    set_common_options(socket, max_msg_bytes);
    socket.set(zmq::sockopt::routing_id, identity);
    if (curve.enabled()) {
      socket.set(zmq::sockopt::curve_serverkey, curve.server_key);
      socket.set(zmq::sockopt::curve_publickey, curve.public_key);
      socket.set(zmq::sockopt::curve_secretkey, curve.secret_key);
    }
    // Not ZMQ_IMMEDIATE: the agent sends Hello right after connecting, and that message
    // must wait for the connection instead of being refused.
    socket.set(zmq::sockopt::reconnect_ivl, kReconnectIvlMs);
    socket.set(zmq::sockopt::reconnect_ivl_max, kReconnectIvlMaxMs);
    try {
      socket.connect(endpoint);
    } catch (const zmq::error_t& e) {
      return zmq_status("connect", endpoint, e);
    }
    return socket;
  } catch (const zmq::error_t& e) {
    return zmq_status("dealer for", endpoint, e);
  }
}

std::string bound_endpoint(zmq::socket_t& socket) {
  return socket.get(zmq::sockopt::last_endpoint);
}

int endpoint_port(const std::string& endpoint) {
  size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos || colon + 1 >= endpoint.size()) return -1;
  // "tcp://host" has its only colon in the scheme.
  if (endpoint.compare(colon, 3, "://") == 0) return -1;
  const char* first = endpoint.data() + colon + 1;
  const char* last = endpoint.data() + endpoint.size();
  int port = 0;
  auto [ptr, ec] = std::from_chars(first, last, port);
  if (ec != std::errc() || ptr != last || port < 0 || port > 65535) return -1;
  return port;
}

void poll_interruptible(zmq::pollitem_t* items, size_t count, long timeout_ms) {
  try {
    zmq::poll(items, count, std::chrono::milliseconds(timeout_ms));
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) throw;
    for (size_t i = 0; i < count; ++i) items[i].revents = 0;
  }
}

}  // namespace kforge
