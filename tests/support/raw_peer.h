// A raw DEALER speaking the agent protocol by hand, for rogue, forged and stale peers.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <zmq.hpp>

#include "common/protocol.h"
#include "common/zmq_util.h"

namespace kforge::test {

struct RawPeer {
  zmq::context_t ctx{1};
  zmq::socket_t socket;
  std::string endpoint;
  // `routing_id` "" leaves it to zmq; `curve` enabled makes it a CURVE client. Without
  // `connect_now` it connects on connect() (after a monitor is attached, say).
  RawPeer(const std::string& to, const std::string& routing_id, const CurveClientKeys& curve = {},
          bool connect_now = true)
      : socket(ctx, zmq::socket_type::dealer), endpoint(to) {
    socket.set(zmq::sockopt::linger, 0);
    if (!routing_id.empty()) socket.set(zmq::sockopt::routing_id, routing_id);
    if (curve.enabled()) {
      socket.set(zmq::sockopt::curve_serverkey, curve.server_key);
      socket.set(zmq::sockopt::curve_publickey, curve.public_key);
      socket.set(zmq::sockopt::curve_secretkey, curve.secret_key);
    }
    if (connect_now) connect();
  }
  void connect() { socket.connect(endpoint); }
  void send_bytes(const std::string& bytes) {
    socket.send(zmq::buffer(bytes), zmq::send_flags::none);
  }
  void send(const proto::Message& m) { send_bytes(proto::encode(m)); }
  // The next message of type T within the deadline (others are skipped).
  template <typename T>
  std::optional<T> receive(std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
    auto end = std::chrono::steady_clock::now() + deadline;
    while (std::chrono::steady_clock::now() < end) {
      zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(50));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      zmq::message_t msg;
      if (!socket.recv(msg, zmq::recv_flags::dontwait)) continue;
      auto frame = proto::decode(msg.to_string());
      if (!frame.ok()) continue;
      if (auto* t = std::get_if<T>(&frame->message)) return *t;
    }
    return std::nullopt;
  }
  // Whatever arrived already, without waiting: true when any message is queued.
  bool has_message() {
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(0));
    return (item.revents & ZMQ_POLLIN) != 0;
  }
};

// A Hello as an agent with one CPU device would send it.
inline proto::Hello raw_hello(const std::string& id, const std::string& incarnation) {
  proto::Hello h;
  h.agent_id = id;
  h.incarnation = incarnation;
  h.host = "raw";
  h.devices.push_back(proto::DeviceInfo{0, "cpu", "x86_64", "raw cpu", 0});
  return h;
}

}  // namespace kforge::test
