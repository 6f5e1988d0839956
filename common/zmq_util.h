// Socket set-up for the coordinator (ROUTER) and agent (DEALER) links, over cppzmq.
//
// These helpers apply the options that schema/protocol.md promises (message size cap,
// handshake timeout, routing ids, reconnect backoff) in one place, and turn zmq's
// exceptions into Status values that name the endpoint.
#pragma once

#include <cstddef>
#include <string>
#include <zmq.hpp>

#include "common/protocol.h"
#include "common/status.h"

namespace kforge {

// Inbound frames larger than this are refused by zmq itself (the connection is dropped
// before the bytes are buffered): the protocol's largest legal frame.
inline constexpr size_t kDefaultMaxMsgBytes = proto::DecodeLimits{}.max_frame_bytes;

// Reconnect backoff of an agent's DEALER: 1 s, doubling up to 32 s.
inline constexpr int kReconnectIvlMs = 1000;
inline constexpr int kReconnectIvlMaxMs = 32000;

// A peer must finish the ZMTP handshake within this time or is disconnected.
inline constexpr int kHandshakeIvlMs = 5000;

// Options every kforge socket gets: linger 0 (close never blocks; everything unsent is
// re-sent after re-registration), ZMQ_MAXMSGSIZE = max_msg_bytes, ZMQ_HANDSHAKE_IVL and
// TCP keepalive. Throws zmq::error_t only on a closed socket.
void set_common_options(zmq::socket_t& socket, size_t max_msg_bytes);

// The ZAP domain the coordinator's CURVE ROUTER asks its handler about.
inline constexpr const char* kZapDomain = "kforge";
// Where libzmq sends ZAP requests (RFC 27): an inproc endpoint of the socket's context.
inline constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";

// A ROUTER bound to `endpoint` ("tcp://0.0.0.0:5555", "tcp://127.0.0.1:*", "ipc://...").
// ROUTER_MANDATORY is on (a send to an unknown routing id fails with EHOSTUNREACH instead
// of vanishing). ROUTER_HANDOVER is off: a connection can never take over the routing id of
// another live connection (a reconnecting agent uses a new routing id instead).
// With `curve_secret_key` (z85) the socket is a CURVE server in ZAP domain kZapDomain: the
// context must have a ZAP handler bound at kZapEndpoint first, or every client is accepted.
[[nodiscard]] Result<zmq::socket_t> make_router(zmq::context_t& ctx, const std::string& endpoint,
                                                size_t max_msg_bytes = kDefaultMaxMsgBytes,
                                                const std::string& curve_secret_key = "");

// The keys of a CURVE client (an agent), all z85; empty: plain TCP.
struct CurveClientKeys {
  std::string public_key;  // this agent's
  std::string secret_key;  // this agent's
  std::string server_key;  // the coordinator's public key
  bool enabled() const { return !secret_key.empty(); }
};

// A DEALER with routing id `identity` (conventionally "<agent_id>/<incarnation>"),
// connecting to `endpoint`. ZMQ_IMMEDIATE is off: a message sent before the connection is
// up (the agent's Hello) waits for it. The agent makes a fresh socket for every
// registration attempt, so nothing queues behind a dead connection for long.
// REQUIRES: identity is 1..255 bytes and does not start with a zero byte.
// With `curve` enabled, the socket is a CURVE client that accepts only that server key.
[[nodiscard]] Result<zmq::socket_t> make_dealer(zmq::context_t& ctx, const std::string& endpoint,
                                                const std::string& identity,
                                                size_t max_msg_bytes = kDefaultMaxMsgBytes,
                                                const CurveClientKeys& curve = {});

// The endpoint the socket last bound or connected to, with a wildcard port resolved
// ("tcp://127.0.0.1:*" -> "tcp://127.0.0.1:41234"). Empty when there is none.
std::string bound_endpoint(zmq::socket_t& socket);

// zmq::poll that treats a signal (EINTR) as a wake-up with nothing ready, so a SIGTERM
// handler that asks the loop to stop is seen on the next iteration.
void poll_interruptible(zmq::pollitem_t* items, size_t count, long timeout_ms);

// The TCP port of "tcp://host:port", or -1 when the endpoint has no numeric port.
int endpoint_port(const std::string& endpoint);

}  // namespace kforge
