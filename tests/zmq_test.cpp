// ROUTER/DEALER helpers over real loopback TCP. Waiting is always zmq_poll with a deadline.
#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/protocol.h"
#include "common/zmq_util.h"

using namespace kforge;
using namespace std::chrono_literals;

namespace {

// Waits up to `deadline` for `socket` to be readable.
bool readable(zmq::socket_t& socket, std::chrono::milliseconds deadline) {
  zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}};
  return zmq::poll(items, 1, deadline) > 0;
}

// All parts of the next message, or nothing within `deadline`.
std::optional<std::vector<std::string>> receive(zmq::socket_t& socket,
                                                std::chrono::milliseconds deadline = 5s) {
  if (!readable(socket, deadline)) return std::nullopt;
  std::vector<std::string> parts;
  do {
    zmq::message_t part;
    if (!socket.recv(part, zmq::recv_flags::dontwait)) return std::nullopt;
    parts.push_back(part.to_string());
  } while (socket.get(zmq::sockopt::rcvmore));
  return parts;
}

void send_parts(zmq::socket_t& socket, const std::vector<std::string>& parts) {
  for (size_t i = 0; i < parts.size(); ++i) {
    auto flags = i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
    REQUIRE(socket.send(zmq::buffer(parts[i]), flags));
  }
}

struct Loopback {
  zmq::context_t ctx;
  zmq::socket_t router;
  std::string endpoint;

  explicit Loopback(size_t max_msg_bytes = kDefaultMaxMsgBytes) {
    Result<zmq::socket_t> r = make_router(ctx, "tcp://127.0.0.1:*", max_msg_bytes);
    REQUIRE_MESSAGE(r.ok(), r.status().to_string());
    router = std::move(r).value();
    endpoint = bound_endpoint(router);
  }

  zmq::socket_t dealer(const std::string& identity) {
    Result<zmq::socket_t> d = make_dealer(ctx, endpoint, identity);
    REQUIRE_MESSAGE(d.ok(), d.status().to_string());
    return std::move(d).value();
  }
};

}  // namespace

TEST_CASE("endpoint_port reads the port of a tcp endpoint") {
  CHECK(endpoint_port("tcp://127.0.0.1:5555") == 5555);
  CHECK(endpoint_port("tcp://[::1]:80") == 80);
  CHECK(endpoint_port("tcp://127.0.0.1:*") == -1);
  CHECK(endpoint_port("tcp://host") == -1);
  CHECK(endpoint_port("inproc://x") == -1);
  CHECK(endpoint_port("tcp://h:99999") == -1);
  CHECK(endpoint_port("") == -1);
}

TEST_CASE("binding a wildcard port reports the chosen port") {
  Loopback net;
  CHECK(net.endpoint.rfind("tcp://127.0.0.1:", 0) == 0);
  CHECK(endpoint_port(net.endpoint) > 0);
}

TEST_CASE("a message round-trips router and dealer, addressed by routing id") {
  Loopback net;
  zmq::socket_t dealer = net.dealer("agent-1/inc-7");

  std::string hello = proto::encode(proto::Hello{.agent_id = "agent-1", .incarnation = "inc-7"});
  send_parts(dealer, {hello});
  auto in = receive(net.router);
  REQUIRE(in.has_value());
  REQUIRE(in->size() == 2);
  CHECK((*in)[0] == "agent-1/inc-7");
  Result<proto::Frame> frame = proto::decode((*in)[1]);
  REQUIRE(frame.ok());
  CHECK(std::get<proto::Hello>(frame->message).agent_id == "agent-1");

  send_parts(net.router, {"agent-1/inc-7", proto::encode(proto::Welcome{"coord-1", 1000, 3})});
  auto out = receive(dealer);
  REQUIRE(out.has_value());
  REQUIRE(out->size() == 1);
  Result<proto::Frame> welcome = proto::decode((*out)[0]);
  REQUIRE(welcome.ok());
  CHECK(std::get<proto::Welcome>(welcome->message).coordinator_incarnation == "coord-1");
}

TEST_CASE("sending to an unknown routing id fails instead of vanishing") {
  Loopback net;
  std::string id = "nobody/0";
  CHECK_THROWS_AS(net.router.send(zmq::buffer(id), zmq::send_flags::sndmore), zmq::error_t);
}

TEST_CASE("binding a port in use is an error naming the endpoint") {
  Loopback net;
  zmq::context_t ctx;
  Result<zmq::socket_t> second = make_router(ctx, net.endpoint);
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == Code::io_error);
  CHECK(second.status().message().find(net.endpoint) != std::string::npos);
  CHECK(second.status().message().find("Address already in use") != std::string::npos);
}

TEST_CASE("bad endpoints and routing ids are errors") {
  zmq::context_t ctx;
  Result<zmq::socket_t> r = make_router(ctx, "nonsense://x");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("nonsense://x") != std::string::npos);
  CHECK_FALSE(make_dealer(ctx, "tcp://127.0.0.1:1", "").ok());
  CHECK_FALSE(make_dealer(ctx, "tcp://127.0.0.1:1", std::string("\0x", 2)).ok());
  CHECK_FALSE(make_dealer(ctx, "tcp://127.0.0.1:1", std::string(256, 'a')).ok());
}

TEST_CASE("a message over MAXMSGSIZE is dropped with the connection, not delivered") {
  Loopback net(1024);
  // Watch the router's connections come and go.
  const std::string monitor_endpoint = "inproc://zmq-test-monitor";
  REQUIRE(zmq_socket_monitor(net.router.handle(), monitor_endpoint.c_str(),
                             ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) == 0);
  zmq::socket_t monitor(net.ctx, zmq::socket_type::pair);
  monitor.connect(monitor_endpoint);
  auto next_event = [&]() -> int {
    auto parts = receive(monitor);
    REQUIRE(parts.has_value());
    REQUIRE(parts->size() == 2);
    REQUIRE((*parts)[0].size() >= 2);
    uint16_t event = 0;
    std::memcpy(&event, (*parts)[0].data(), sizeof event);
    return event;
  };

  zmq::socket_t dealer = net.dealer("agent-big/1");
  CHECK(next_event() == ZMQ_EVENT_ACCEPTED);
  send_parts(dealer, {"small"});
  auto first = receive(net.router);
  REQUIRE(first.has_value());
  CHECK((*first)[1] == "small");

  send_parts(dealer, {std::string(4096, 'x')});
  CHECK(next_event() == ZMQ_EVENT_DISCONNECTED);
  CHECK_FALSE(readable(net.router, 0ms));

  // The router keeps serving. A new connection comes with a new routing id, as the agent's
  // does: without ROUTER_HANDOVER the dealer's own reconnect under "agent-big/1" is attached
  // only once the router has let go of the old connection.
  dealer.close();
  zmq::socket_t again = net.dealer("agent-big/2");
  int event = next_event();
  while (event != ZMQ_EVENT_ACCEPTED)
    event = next_event();  // the old socket's reconnect may come and go first
  send_parts(again, {"after"});
  auto next = receive(net.router);
  REQUIRE(next.has_value());
  CHECK((*next)[0] == "agent-big/2");
  CHECK((*next)[1] == "after");
}
