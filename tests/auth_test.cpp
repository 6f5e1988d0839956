// Authenticated agents: CURVE keys, the allow-list, who may register which agent id, who may
// report which attempt, and what plain TCP still guarantees (schema/protocol.md, Security).
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <atomic>
#include <cstring>
#include <nlohmann/json.hpp>
#include <regex>

#include "agent/state_dir.h"
#include "common/config.h"
#include "common/curve.h"
#include "tests/support/child.h"
#include "tests/support/cluster.h"

using namespace kforge;
using namespace kforge::test;
using namespace std::chrono_literals;

namespace {

// Handshake outcomes of a client socket, read from its zmq monitor.
class HandshakeWatch {
 public:
  explicit HandshakeWatch(RawPeer& peer) : pair_(peer.ctx, zmq::socket_type::pair) {
    std::string endpoint = "inproc://monitor-" + std::to_string(reinterpret_cast<uintptr_t>(this));
    int rc = zmq_socket_monitor(
        peer.socket.handle(), endpoint.c_str(),
        ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
            ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
    REQUIRE(rc == 0);
    pair_.connect(endpoint);
  }
  // The first handshake event within the deadline (0 when none came).
  uint16_t next(std::chrono::milliseconds deadline = 10s) {
    zmq::pollitem_t item{pair_.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, deadline);
    if (!(item.revents & ZMQ_POLLIN)) return 0;
    zmq::message_t event, endpoint;
    if (!pair_.recv(event)) return 0;
    if (pair_.get(zmq::sockopt::rcvmore)) (void)pair_.recv(endpoint);
    uint16_t id = 0;
    std::memcpy(&id, event.data(), sizeof id);
    return id;
  }

 private:
  zmq::socket_t pair_;
};

JobRow job_row(TestCluster& cluster, int64_t id) {
  auto row = cluster.coordinator().call([&](Coordinator& c) { return c.store().get_job(id); });
  REQUIRE_MESSAGE(row.ok(), row.status().to_string());
  return *row;
}

// A job that runs until `gate` exists, then prints "real".
std::vector<std::string> gated_job(const std::filesystem::path& gate) {
  return {"sh", "-c", "while [ ! -e '" + gate.string() + "' ]; do sleep 0.02; done; echo real"};
}

double metric(TestCluster& cluster, const std::string& line_prefix) {
  std::string text = cluster.coordinator().call([](Coordinator& c) {
    std::string out;
    c.render_metrics(out);
    return out;
  });
  size_t at = text.find(line_prefix);
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + line_prefix.size()));
}

std::string job_stdout(TestCluster& cluster, int64_t id) {
  auto result = job_row(cluster, id).result;
  REQUIRE(result);
  return result->stdout_data;
}

// A registered agent with no devices, holding `keys`, that can speak for `id`.
std::unique_ptr<RawPeer> registered_peer(TestCluster& cluster, const std::string& id) {
  auto peer = std::make_unique<RawPeer>(cluster.endpoint(), id + "/1/c", cluster.client_keys(id));
  proto::Hello hello = raw_hello(id, "1");
  hello.devices.clear();
  peer->send(hello);
  REQUIRE(peer->receive<proto::Welcome>());
  return peer;
}

}  // namespace

// --- keys ------------------------------------------------------------------------------------

TEST_CASE("a secret key file is written 0600 and read back with its public key") {
  TempDir dir;
  auto keys = make_curve_keypair();
  REQUIRE(keys.ok());
  CHECK(is_z85_key(keys->public_key));
  CHECK(is_z85_key(keys->secret_key));
  auto path = dir / "agent.key";
  ::umask(022);
  REQUIRE(write_secret_key_file(path, *keys, false).ok());
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto back = read_secret_key_file(path);
  REQUIRE_MESSAGE(back.ok(), back.status().to_string());
  CHECK(back->public_key == keys->public_key);
  CHECK(back->secret_key == keys->secret_key);
  // Not replaced by accident.
  CHECK_FALSE(write_secret_key_file(path, *keys, false).ok());
  CHECK(write_secret_key_file(path, *keys, true).ok());
}

TEST_CASE("a secret key file other users can read, or a malformed one, is refused") {
  TempDir dir;
  auto keys = make_curve_keypair();
  REQUIRE(keys.ok());
  auto path = dir / "k";
  write_file(path, keys->secret_key + "\n");
  ::chmod(path.c_str(), 0644);
  auto open = read_secret_key_file(path);
  REQUIRE_FALSE(open.ok());
  CHECK(open.status().message().find("other users") != std::string::npos);
  ::chmod(path.c_str(), 0640);
  CHECK(read_secret_key_file(path).ok());
  write_file(path, "# two keys\n" + keys->secret_key + "\n" + keys->secret_key + "\n");
  CHECK_FALSE(read_secret_key_file(path).ok());
  write_file(path, "not a key\n");
  auto bad = read_secret_key_file(path);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find(":1:") != std::string::npos);
}

TEST_CASE(
    "the allow-list binds keys to agent ids, several during a rotation, never one key to two") {
  auto k1 = make_curve_keypair(), k2 = make_curve_keypair(), k3 = make_curve_keypair();
  REQUIRE((k1.ok() && k2.ok() && k3.ok()));
  std::string text = "gpu1 = \"" + k1->public_key + "\"\n\"gpu-2.x\" = [\"" + k2->public_key +
                     "\", \"" + k3->public_key + "\"]\n";
  auto keys = AgentKeys::parse(text, "keys.toml");
  REQUIRE_MESSAGE(keys.ok(), keys.status().to_string());
  CHECK(keys->size() == 3);
  REQUIRE(keys->agent_of(k1->public_key));
  CHECK(*keys->agent_of(k1->public_key) == "gpu1");
  CHECK(*keys->agent_of(k3->public_key) == "gpu-2.x");
  auto again = AgentKeys::parse(keys->to_toml(), "round-trip");
  REQUIRE(again.ok());
  CHECK(again->size() == 3);

  auto twice = AgentKeys::parse("a = \"" + k1->public_key + "\"\nb = \"" + k1->public_key + "\"\n",
                                "keys.toml");
  REQUIRE_FALSE(twice.ok());
  CHECK(twice.status().message().find("keys.toml:2:") != std::string::npos);
  auto short_key = AgentKeys::parse("a = \"abc\"\n", "keys.toml");
  REQUIRE_FALSE(short_key.ok());
  CHECK(short_key.status().message().find("keys.toml:1:5: a: expected a CURVE public key") !=
        std::string::npos);
  CHECK_FALSE(AgentKeys::parse("\"a/b\" = \"" + k1->public_key + "\"\n", "keys.toml").ok());
}

TEST_CASE("kforge keygen writes the secret key 0600 and prints the public key") {
  TempDir dir;
  auto out = dir / "gpu1.key";
  Ran ran = kforge_cli({"keygen", "--out", out.string(), "--agent-id", "gpu1"});
  REQUIRE_MESSAGE(ran.code == 0, ran.err);
  std::smatch m;
  REQUIRE(std::regex_match(ran.out, m, std::regex("\"gpu1\" = \"([^\"]{40})\"\n")));
  std::string pub = m[1];
  struct stat st {};
  REQUIRE(::stat(out.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto keys = read_secret_key_file(out);
  REQUIRE(keys.ok());
  CHECK(keys->public_key == pub);
  // The printed line is an allow-list entry as it stands.
  auto list = AgentKeys::parse(ran.out, "stdout");
  REQUIRE(list.ok());
  CHECK(*list->agent_of(pub) == "gpu1");

  Ran public_only = kforge_cli({"keygen", "--public", out.string()});
  CHECK(public_only.code == 0);
  CHECK(public_only.out == pub + "\n");
  Ran again = kforge_cli({"keygen", "--out", out.string()});
  CHECK(again.code == 1);
  CHECK(again.err.find("exists") != std::string::npos);
  CHECK(kforge_cli({"keygen"}).code == 2);
}

TEST_CASE("config: CURVE keys come in pairs, the coordinator's public key must be z85") {
  auto ok = parse_config(
      "[coordinator]\nsecret_key_file = \"c.key\"\nagent_keys_file = \"agents.toml\"\n"
      "[agent]\nid = \"gpu1\"\nsecret_key_file = \"a.key\"\n"
      "coordinator_public_key = \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n",
      "k.toml");
  REQUIRE_MESSAGE(ok.ok(), ok.status().to_string());
  CHECK(ok->agent.id == "gpu1");
  auto half = parse_config("[coordinator]\nsecret_key_file = \"c.key\"\n", "k.toml");
  REQUIRE_FALSE(half.ok());
  CHECK(half.status().message().find(
            "k.toml:2:19: coordinator.secret_key_file: needs coordinator.agent_keys_file") !=
        std::string::npos);
  auto bad = parse_config(
      "[agent]\nsecret_key_file = \"a.key\"\ncoordinator_public_key = \"short\"\n", "k.toml");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("agent.coordinator_public_key: expected a CURVE public key") !=
        std::string::npos);
  CHECK_FALSE(parse_config("[agent]\nid = \"a/b\"\n", "k.toml").ok());
}

TEST_CASE("agent.id names a new state directory and refuses one of another agent") {
  TempDir dir;
  auto id = load_or_create_agent_id(dir / "s", "gpu1");
  REQUIRE(id.ok());
  CHECK(*id == "gpu1");
  CHECK(*load_or_create_agent_id(dir / "s") == "gpu1");
  auto other = load_or_create_agent_id(dir / "s", "gpu2");
  REQUIRE_FALSE(other.ok());
  CHECK(other.status().message().find("belongs to agent gpu1") != std::string::npos);
}

// --- who may connect -------------------------------------------------------------------------

TEST_CASE("a fake agent without a key cannot connect to a CURVE coordinator") {
  TestCluster cluster;
  RawPeer plain(cluster.endpoint(), "gpu1/1/c", {}, false);
  HandshakeWatch watch(plain);
  plain.connect();
  plain.send(raw_hello("gpu1", "1"));
  uint16_t event = watch.next();
  CHECK(event != 0);
  CHECK(event != ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
  cluster.start_agent("a");
  int64_t job = cluster.submit({"true"});
  REQUIRE(cluster.wait_all_done({job}, 30s));
  CHECK(cluster.coordinator().call([](Coordinator& c) { return c.live_agents(); }) == 1);
  CHECK_FALSE(plain.has_message());
}

TEST_CASE("a fake agent with a key not on the allow-list is refused at the handshake") {
  TestCluster cluster;
  RawPeer stranger(cluster.endpoint(), "gpu1/1/c", cluster.unlisted_keys(), false);
  HandshakeWatch watch(stranger);
  stranger.connect();
  stranger.send(raw_hello("gpu1", "1"));
  CHECK(watch.next() == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
  CHECK(cluster.coordinator().call([](Coordinator& c) { return c.live_agents(); }) == 0);
  // A listed key is admitted.
  RawPeer listed(cluster.endpoint(), "gpu1/1/c", cluster.client_keys("gpu1"));
  listed.send(raw_hello("gpu1", "1"));
  CHECK(listed.receive<proto::Welcome>());
}

TEST_CASE("an agent whose key is not on the allow-list says so, and is not registered") {
  TestCluster cluster;
  AgentOptions options = TestCluster::fast_agent_options();
  CurveClientKeys keys = cluster.unlisted_keys();
  options.curve_secret_key = keys.secret_key;
  options.coordinator_public_key = keys.server_key;
  Agent& agent = cluster.start_agent("a", 1, options);
  REQUIRE(wait_until([&] { return agent.link_problem().find("allow-list") != std::string::npos; }));
  CHECK(agent.link_problem().find(keys.public_key) != std::string::npos);
  CHECK_FALSE(agent.registered());
  CHECK(cluster.coordinator().call([](Coordinator& c) { return c.live_agents(); }) == 0);
}

TEST_CASE("an agent with the wrong coordinator key says so") {
  TestCluster cluster;
  AgentOptions options = TestCluster::fast_agent_options();
  auto id = load_or_create_agent_id(cluster.agent_state("a"));
  REQUIRE(id.ok());
  CurveClientKeys keys = cluster.client_keys(*id);
  options.curve_secret_key = keys.secret_key;
  options.coordinator_public_key = cluster.unlisted_keys().public_key;  // not the coordinator's
  Agent& agent = cluster.start_agent("a", 1, options);
  REQUIRE(wait_until(
      [&] { return agent.link_problem().find("coordinator_public_key") != std::string::npos; }));
  CHECK_FALSE(agent.registered());
}

TEST_CASE("a plain agent cannot join a CURVE coordinator and says why") {
  TestCluster cluster;
  AgentOptions options = TestCluster::fast_agent_options();
  options.coordinator_public_key = "";
  options.curve_secret_key = "";
  // start_agent gives keys to agents without; this one is opened by hand.
  options.coordinator = cluster.endpoint();
  options.state_dir = cluster.agent_state("plain");
  options.devices = {proto::DeviceInfo{0, "cpu", "x86_64", "test cpu", 0}};
  auto agent = Agent::open(options);
  REQUIRE(agent.ok());
  std::thread t([&] { (void)(*agent)->run(); });
  bool said =
      wait_until([&] { return (*agent)->link_problem().find("CURVE") != std::string::npos; });
  (*agent)->stop(false);
  t.join();
  CHECK(said);
  CHECK(cluster.coordinator().call([](Coordinator& c) { return c.live_agents(); }) == 0);
}

TEST_CASE("a key added to the allow-list file is admitted without a restart") {
  TestCluster cluster;
  auto keys = make_curve_keypair();
  REQUIRE(keys.ok());
  CurveClientKeys late{keys->public_key, keys->secret_key, cluster.coordinator_public_key()};
  // The handshake's outcome for a fresh connection with that key (libzmq does not retry a
  // connection whose key was refused; the agent opens a new socket for every attempt).
  auto handshake = [&] {
    RawPeer peer(cluster.endpoint(), "late/1/c", late, false);
    HandshakeWatch watch(peer);
    peer.connect();
    return watch.next();
  };
  CHECK(handshake() == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
  // The operator edits the file; the coordinator notices (modification time and size).
  write_file(cluster.agent_keys_file(),
             read_file(cluster.agent_keys_file()) + "late = \"" + keys->public_key + "\"\n");
  CHECK(wait_until([&] { return handshake() == ZMQ_EVENT_HANDSHAKE_SUCCEEDED; }));
}

TEST_CASE("a key may register only the agent id it is bound to") {
  TestCluster cluster;
  RawPeer peer(cluster.endpoint(), "gpu2/1/c", cluster.client_keys("gpu1"));
  peer.send(raw_hello("gpu2", "1"));
  auto refused = peer.receive<proto::Refused>();
  REQUIRE(refused);
  CHECK(refused->code == static_cast<uint32_t>(proto::RefusalCode::not_authorized));
  CHECK(refused->reason.find("belongs to agent gpu1") != std::string::npos);
}

TEST_CASE("a key removed from the allow-list drops its live agent at once") {
  TestCluster cluster;
  auto peer = registered_peer(cluster, "gpu1");
  REQUIRE(cluster.coordinator().call([](Coordinator& c) { return c.agent_live("gpu1"); }));
  write_file(cluster.agent_keys_file(), "");
  REQUIRE(cluster.coordinator().call([](Coordinator& c) { return c.reload_agent_keys(); }).ok());
  CHECK_FALSE(cluster.coordinator().call([](Coordinator& c) { return c.agent_live("gpu1"); }));
  // Its next Hello on the open connection is refused for good.
  peer->send(raw_hello("gpu1", "1"));
  auto refused = peer->receive<proto::Refused>();
  REQUIRE(refused);
  CHECK(refused->code == static_cast<uint32_t>(proto::RefusalCode::not_authorized));
}

// --- who may report what ---------------------------------------------------------------------

void forged_result_is_not_recorded(Link link) {
  TestCluster cluster(TestCluster::fast_options(), SystemClock::instance(), link);
  Agent& real = cluster.start_agent("a");
  REQUIRE(cluster.wait_live(1));
  auto mallory = registered_peer(cluster, "mallory");
  auto gate = cluster.dir() / "gate";
  int64_t job = cluster.submit(gated_job(gate));
  REQUIRE(wait_until([&] { return real.running_jobs() == 1; }));
  JobRow running = job_row(cluster, job);
  REQUIRE(running.state == JobState::assigned);
  proto::JobResult forged;
  forged.job = {static_cast<uint64_t>(job), static_cast<uint64_t>(running.epoch)};
  forged.agent_id = real.id();
  forged.exit_code = 0;
  forged.stdout_data = "forged";
  forged.result_json = R"({"verdict":"passed"})";
  mallory->send(forged);
  REQUIRE(wait_until(
      [&] { return metric(cluster, "kforge_results_total{outcome=\"refused\"} ") == 1; }));
  CHECK(job_row(cluster, job).state == JobState::assigned);
  CHECK(cluster.recorded()[job] == 0);
  CHECK(real.running_jobs() == 1);  // not cancelled
  write_file(gate, "");
  REQUIRE(cluster.wait_all_done({job}, 30s));
  CHECK(job_stdout(cluster, job) == "real\n");
  CHECK(cluster.recorded()[job] == 1);
  CHECK(job_row(cluster, job).epoch == running.epoch);
  CHECK_FALSE(mallory->receive<proto::ResultAck>(0ms));
}

TEST_CASE(
    "a forged result from another agent is not recorded and does not cancel the real attempt") {
  forged_result_is_not_recorded(Link::curve);
}

TEST_CASE("plain TCP: a forged result from another peer is not recorded either") {
  forged_result_is_not_recorded(Link::plain);
}

TEST_CASE(
    "a hello reusing a live agent's id with another key is refused; the agent keeps working") {
  TestCluster cluster;
  Agent& real = cluster.start_agent("a");
  REQUIRE(cluster.wait_live(1));
  std::string before =
      cluster.coordinator().call([&](Coordinator& c) { return c.agent_routing_id(real.id()); });
  RawPeer impostor(cluster.endpoint(), real.id() + "/evil/c", cluster.client_keys("mallory"));
  impostor.send(raw_hello(real.id(), "evil"));
  auto refused = impostor.receive<proto::Refused>();
  REQUIRE(refused);
  CHECK(refused->code == static_cast<uint32_t>(proto::RefusalCode::not_authorized));
  int64_t job = cluster.submit({"true"});
  REQUIRE(cluster.wait_all_done({job}, 30s));
  CHECK(real.registered());
  CHECK(cluster.coordinator().call([&](Coordinator& c) { return c.agent_routing_id(real.id()); }) ==
        before);
}

TEST_CASE(
    "plain TCP: a hello reusing a live agent's id is refused as transient; the agent keeps "
    "working") {
  TestCluster cluster(TestCluster::fast_options(), SystemClock::instance(), Link::plain);
  Agent& real = cluster.start_agent("a");
  REQUIRE(cluster.wait_live(1));
  RawPeer impostor(cluster.endpoint(), real.id() + "/evil/c");
  impostor.send(raw_hello(real.id(), "evil"));
  auto refused = impostor.receive<proto::Refused>();
  REQUIRE(refused);
  CHECK(refused->code == static_cast<uint32_t>(proto::RefusalCode::id_in_use));
  CHECK(proto::refusal_is_transient(refused->code));
  int64_t job = cluster.submit({"true"});
  REQUIRE(cluster.wait_all_done({job}, 30s));
  CHECK(real.registered());
}

TEST_CASE(
    "plain TCP: an agent whose id is held by a live process waits, then takes over when it is "
    "gone") {
  TestCluster cluster(TestCluster::fast_options(), SystemClock::instance(), Link::plain);
  Agent& first = cluster.start_agent("a");
  REQUIRE(cluster.wait_live(1));
  AgentOptions same_id = TestCluster::fast_agent_options();
  same_id.id = first.id();
  Agent& second = cluster.start_agent("a2", 1, same_id);
  std::string first_incarnation = first.incarnation();
  // The second is refused for now and keeps trying; the first keeps its id.
  int64_t job = cluster.submit({"true"});
  REQUIRE(cluster.wait_all_done({job}, 30s));
  CHECK(first.registered());
  CHECK_FALSE(second.registered());
  cluster.kill_agent("a");
  REQUIRE(wait_until([&] { return second.registered(); }, 30s));
  CHECK(cluster.coordinator().call([&](Coordinator& c) {
    return c.agent_routing_id(second.id());
  }) == second.routing_id());
}

TEST_CASE("a connection cannot take over a live agent's routing id") {
  TestCluster cluster;
  Agent& real = cluster.start_agent("a");
  REQUIRE(cluster.wait_live(1));
  std::string routing =
      cluster.coordinator().call([&](Coordinator& c) { return c.agent_routing_id(real.id()); });
  REQUIRE(routing == real.routing_id());
  auto gate = cluster.dir() / "gate";
  int64_t job = cluster.submit(gated_job(gate));
  REQUIRE(wait_until([&] { return real.running_jobs() == 1; }));
  JobRow running = job_row(cluster, job);
  // Another allowed key, the live agent's routing id.
  RawPeer thief(cluster.endpoint(), routing, cluster.client_keys("mallory"), false);
  HandshakeWatch watch(thief);
  thief.connect();
  REQUIRE(watch.next() == ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
  proto::JobResult forged;
  forged.job = {static_cast<uint64_t>(job), static_cast<uint64_t>(running.epoch)};
  forged.agent_id = real.id();
  forged.exit_code = 0;
  forged.stdout_data = "forged";
  thief.send(forged);
  thief.send(proto::Heartbeat{});
  write_file(gate, "");
  REQUIRE(cluster.wait_all_done({job}, 30s));
  CHECK(job_stdout(cluster, job) == "real\n");
  CHECK(cluster.recorded()[job] == 1);
  // The real agent kept its connection and gets the next job; the thief got nothing.
  int64_t next = cluster.submit({"true"});
  REQUIRE(cluster.wait_all_done({next}, 30s));
  CHECK(job_row(cluster, next).agent_id == real.id());
  CHECK(real.registered());
  CHECK(cluster.coordinator().call([&](Coordinator& c) { return c.agent_routing_id(real.id()); }) ==
        routing);
  CHECK_FALSE(thief.has_message());
}

TEST_CASE("a routing id is its key's: another agent's routing id is refused whatever it sends") {
  TestCluster cluster;
  Agent& real = cluster.start_agent("a");
  REQUIRE(cluster.wait_live(1));
  auto gate = cluster.dir() / "gate";
  int64_t job = cluster.submit(gated_job(gate));
  REQUIRE(wait_until([&] { return real.running_jobs() == 1; }));
  JobRow running = job_row(cluster, job);
  // An allowed key (mallory's) presenting a routing id in the real agent's name, one not in
  // use (so ROUTER_HANDOVER does not stop it): the key, not the peer, says whose it is.
  RawPeer thief(cluster.endpoint(), real.id() + "/" + real.incarnation() + "/stolen",
                cluster.client_keys("mallory"));
  proto::JobResult forged;
  forged.job = {static_cast<uint64_t>(job), static_cast<uint64_t>(running.epoch)};
  forged.agent_id = real.id();
  forged.exit_code = 0;
  forged.stdout_data = "forged";
  for (const proto::Message& m : {proto::Message(proto::Heartbeat{}), proto::Message(forged),
                                  proto::Message(raw_hello(real.id(), real.incarnation()))}) {
    thief.send(m);
    auto refused = thief.receive<proto::Refused>();
    REQUIRE(refused);
    CHECK(refused->code == static_cast<uint32_t>(proto::RefusalCode::not_authorized));
    CHECK(refused->reason.find("belongs to agent mallory, not " + real.id()) != std::string::npos);
  }
  write_file(gate, "");
  REQUIRE(cluster.wait_all_done({job}, 30s));
  CHECK(job_stdout(cluster, job) == "real\n");
  CHECK(cluster.recorded()[job] == 1);
  CHECK(real.registered());
  CHECK(cluster.coordinator().call([&](Coordinator& c) { return c.agent_routing_id(real.id()); }) ==
        real.routing_id());
}

// --- a peer's message is that peer's problem --------------------------------------------------

TEST_CASE("a hello listing a device twice is refused and the coordinator keeps serving") {
  TestCluster cluster;
  RawPeer peer(cluster.endpoint(), "dup/1/c", cluster.client_keys("dup"));
  proto::Hello hello = raw_hello("dup", "1");
  hello.devices.push_back(hello.devices[0]);
  hello.capabilities["python"] = "3\"}{";  // not JSON-safe as it stands
  peer.send(hello);
  auto refused = peer.receive<proto::Refused>();
  REQUIRE(refused);
  CHECK(refused->code == static_cast<uint32_t>(proto::RefusalCode::invalid_hello));
  CHECK(refused->reason.find("cpu:0 is listed twice") != std::string::npos);
  CHECK_FALSE(proto::refusal_is_transient(refused->code));
  // The same peer with a sound hello is welcome; its odd capability is stored as JSON.
  hello.devices.pop_back();
  peer.send(hello);
  REQUIRE(peer.receive<proto::Welcome>());
  auto caps = cluster.coordinator().call([](Coordinator& c) {
    auto rows = c.store().agents();
    return rows.ok() && !rows->empty() ? rows->front().capabilities : std::string();
  });
  CHECK(nlohmann::json::parse(caps)["python"] == "3\"}{");
  cluster.start_agent("a");
  int64_t job = cluster.submit({"true"});
  REQUIRE(cluster.wait_all_done({job}, 30s));
}

// Issue 16, F8: an agent id outside the documented charset (1 to 128 printable ASCII
// characters, no '/') is that peer's problem: Refused invalid_hello, never stored, never a stop.
TEST_CASE(
    "a hello with an agent id containing '/' or a control character is refused and the coordinator "
    "keeps serving") {
  TestCluster cluster;
  for (const std::string& id :
       {std::string("rack1/gpu7"), std::string("gpu\x01"), std::string(129, 'g')}) {
    CAPTURE(id.size());
    RawPeer peer(cluster.endpoint(), id + "/1/c", cluster.client_keys("good"));
    peer.send(raw_hello(id, "1"));
    auto refused = peer.receive<proto::Refused>();
    REQUIRE(refused);
    CHECK(refused->code == static_cast<uint32_t>(proto::RefusalCode::invalid_hello));
    CHECK(refused->reason.find("is not valid (1 to 128 printable characters, no '/')") !=
          std::string::npos);
    CHECK_FALSE(proto::refusal_is_transient(refused->code));
  }
  auto stored = cluster.coordinator().call([](Coordinator& c) {
    auto rows = c.store().agents();
    return rows.ok() ? rows->size() : size_t{999};
  });
  CHECK(stored == 0);
  cluster.start_agent("good");
  int64_t job = cluster.submit({"true"});
  REQUIRE(cluster.wait_all_done({job}, 30s));
}

TEST_CASE("an agent refused for good stops; one refused for now keeps trying") {
  zmq::context_t ctx(1);
  auto router = make_router(ctx, "tcp://127.0.0.1:*");
  REQUIRE(router.ok());
  TempDir dir;
  AgentOptions options = TestCluster::fast_agent_options();
  options.coordinator = bound_endpoint(*router);
  options.state_dir = dir / "agent";
  auto agent = Agent::open(options);
  REQUIRE(agent.ok());
  Status exit;
  std::atomic<bool> done{false};
  std::thread t([&] {
    exit = (*agent)->run();
    done = true;
  });
  auto answer_next_hello = [&](const proto::Refused& refused) {
    zmq::pollitem_t item{router->handle(), 0, ZMQ_POLLIN, 0};
    REQUIRE(wait_until([&] {
      zmq::poll(&item, 1, 10ms);
      return (item.revents & ZMQ_POLLIN) != 0;
    }));
    zmq::message_t id, body;
    REQUIRE(router->recv(id));
    REQUIRE(router->recv(body));
    auto frame = proto::decode(body.to_string());
    REQUIRE(frame.ok());
    REQUIRE(std::holds_alternative<proto::Hello>(frame->message));
    router->send(id, zmq::send_flags::sndmore);
    router->send(zmq::buffer(proto::encode(refused)));
  };
  answer_next_hello({"agent id is held by live incarnation x", 1,
                     static_cast<uint32_t>(proto::RefusalCode::id_in_use)});
  // It says Hello again (on a fresh connection) instead of stopping.
  answer_next_hello({"protocol version 1 is not supported", 7,
                     static_cast<uint32_t>(proto::RefusalCode::protocol_version)});
  t.join();
  CHECK(done);
  CHECK_FALSE(exit.ok());
  CHECK(exit.message().find("protocol version 1 is not supported") != std::string::npos);
}

TEST_CASE("after a coordinator restart the agent re-registers and reports no link problem") {
  for (Link link : {Link::plain, Link::curve}) {
    CAPTURE(link == Link::curve);
    TestCluster cluster(TestCluster::fast_options(), SystemClock::instance(), link);
    Agent& agent = cluster.start_agent("a");
    REQUIRE(cluster.wait_live(1));
    std::string before = agent.routing_id();
    cluster.kill_coordinator();
    cluster.start_coordinator();
    REQUIRE(cluster.wait_live(1));
    REQUIRE(wait_until([&] { return agent.registered(); }));
    CHECK(agent.routing_id() != before);  // a new connection, a new routing id
    CHECK(agent.link_problem() == "");
    int64_t job = cluster.submit({"true"});
    REQUIRE(cluster.wait_all_done({job}, 30s));
  }
}
