// No peer message stops the coordinator (issue 16): a real kforge-coordinator process, with
// queued jobs for fake agents to be assigned, receives thousands of messages from peers over
// loopback: well-formed messages of every type with hostile field values (ids and epochs of
// real, unknown and extreme jobs, a device listed twice, ids with '/' or control bytes,
// coordinator-only types, large outputs, verdict documents that are not JSON or nest 120,000
// deep), mutations of
// their bytes (tests/fuzz/mutator.h), and frames in the wrong number. Afterwards the process
// still runs, said nothing about stopping, and registers a real agent.
//
// KFORGE_PEER_FUZZ_MESSAGES (default 4000) and KFORGE_PEER_FUZZ_SEED (default 1) scale and
// vary the run; KFORGE_PEER_FUZZ_COORDINATOR runs another build's kforge-coordinator.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/protocol.h"
#include "common/zmq_util.h"
#include "coordinator/store/store.h"
#include "tests/fuzz/mutator.h"
#include "tests/support/child.h"
#include "tests/support/raw_peer.h"
#include "tests/support/support.h"

using namespace kforge;
using namespace kforge::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

uint64_t env_or(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

// Well-formed messages with values a broken or hostile peer might send. `agent_id` is the
// id the sending connection's routing id names (a Hello under another id is a forgery).
class MessageMaker {
 public:
  MessageMaker(fuzz::Mutator& m, uint64_t max_job) : m_(m), max_job_(max_job) {}

  proto::Message make(const std::string& agent_id) {
    switch (m_.below(10)) {
      case 0:
      case 1: return hello(agent_id);
      case 2: return proto::Heartbeat{refs(), refs()};
      case 3:
      case 4:
      case 5: return result(agent_id);
      case 6: return proto::Bye{text()};
      case 7:
        return proto::Welcome{text(), static_cast<uint32_t>(number()),
                              static_cast<uint32_t>(number())};
      case 8:
        return proto::Refused{text(), static_cast<uint32_t>(number()),
                              static_cast<uint32_t>(number())};
      default: {
        proto::Assign a;
        a.job = ref();
        a.kind = pick<std::string>({"exec", "verify", ""});
        a.argv = {text()};
        return a;
      }
    }
  }

 private:
  template <class T>
  T pick(std::initializer_list<T> values) {
    return *(values.begin() + m_.below(values.size()));
  }
  uint64_t number() {
    return pick<uint64_t>({0, 1, 2, 3, max_job_, max_job_ + 1, 1u << 31,
                           std::numeric_limits<uint32_t>::max(),
                           std::numeric_limits<uint64_t>::max()});
  }
  std::string text() {
    switch (m_.below(6)) {
      case 0: return "";
      case 1: return std::string(m_.below(100'000), 'x');
      case 2: return std::string("a\0b\xff/\n", 6);
      case 3: return "{\"verdict\": \"passed\", \"profile\": {\"speedup\": 1e999}}";
      case 4: return "{\"verdict\": 7}";
      default: return "ok";
    }
  }
  proto::JobRef ref() {
    uint64_t job = m_.below(3) == 0 ? number() : 1 + m_.below(max_job_);
    return {job, m_.below(3) == 0 ? number() : 1 + m_.below(3)};
  }
  std::vector<proto::JobRef> refs() {
    std::vector<proto::JobRef> out(m_.below(4));
    for (auto& r : out) r = ref();
    return out;
  }
  proto::Hello hello(const std::string& agent_id) {
    proto::Hello h;
    h.agent_id = m_.below(4) == 0
                     ? pick<std::string>({"", "x/y", "bad\x01id", "other", std::string(200, 'a')})
                     : agent_id;
    h.incarnation = m_.below(4) == 0 ? text() : "inc";
    h.host = text();
    for (size_t i = m_.below(4); i > 0; --i) {
      h.devices.push_back(proto::DeviceInfo{
          static_cast<uint32_t>(m_.below(2)), pick<std::string>({"cpu", "cuda", "", "bogus"}),
          pick<std::string>({"x86_64", "h100", ""}), text(), number()});
    }
    if (m_.below(2)) h.capabilities = {{text(), text()}};
    h.running = refs();
    h.outbox = refs();
    return h;
  }
  proto::JobResult result(const std::string& agent_id) {
    proto::JobResult r;
    r.job = ref();
    r.agent_id = m_.below(4) == 0 ? text() : agent_id;
    r.exit_code = static_cast<int32_t>(number());
    r.signal = static_cast<int32_t>(m_.below(3) == 0 ? number() : 0);
    r.timed_out = m_.below(2);
    r.cancelled = m_.below(2);
    r.infra_error = m_.below(3) == 0 ? text() : "";
    r.stdout_data = text();
    r.stderr_data = text();
    // Sometimes a verdict document nested too deep to copy or print by recursion.
    r.result_json = m_.below(8) == 0
                        ? "{\"verdict\": \"passed\", \"x\": " + std::string(120'000, '[') +
                              std::string(120'000, ']') + "}"
                        : text();
    if (m_.below(3) == 0) {
      VerifyResult v;
      v.verdict = static_cast<Verdict>(m_.below(static_cast<size_t>(Verdict::infra_error) + 1));
      v.message = text();
      v.details = text();
      if (m_.below(2))
        v.profile =
            Profile{{}, {}, std::numeric_limits<double>::quiet_NaN(), false, text(), 0, text()};
      r.verify = v;
    }
    r.started_ms = static_cast<int64_t>(number());
    r.finished_ms = static_cast<int64_t>(number());
    return r;
  }

  fuzz::Mutator& m_;
  uint64_t max_job_;
};

}  // namespace

TEST_CASE("thousands of hostile and mutated peer messages never stop the coordinator") {
  const uint64_t messages = env_or("KFORGE_PEER_FUZZ_MESSAGES", 4000);
  const uint64_t seed = env_or("KFORGE_PEER_FUZZ_SEED", 1);
  TempDir dir;
  const char* other =
      std::getenv("KFORGE_PEER_FUZZ_COORDINATOR");  // another build's, for a baseline
  const fs::path exe =
      other && *other ? fs::path(other) : binary_dir() / "coordinator" / "kforge-coordinator";
  REQUIRE_MESSAGE(fs::exists(exe), exe.string() << " is not built");
  const fs::path data = dir / "data", log = dir / "coordinator.log";
  std::string endpoint;
  {  // A free port: bind it, read it back, let it go.
    zmq::context_t ctx(1);
    zmq::socket_t probe(ctx, zmq::socket_type::router);
    probe.set(zmq::sockopt::linger, 0);
    probe.bind("tcp://127.0.0.1:*");
    endpoint = "tcp://127.0.0.1:" + std::to_string(endpoint_port(bound_endpoint(probe)));
  }
  // Queued jobs, so that fake agents are assigned some and their results meet real leases.
  // (With the fake agents' devices and the jobs' backend both cpu, any of them may get one.)
  constexpr uint64_t kJobs = 12;
  {
    fs::create_directories(data);
    auto store = Store::open(data / "kforge.db");
    REQUIRE_MESSAGE(store.ok(), store.status().to_string());
    proto::Assign assign;
    assign.kind = "exec";
    assign.argv = {"true"};
    NewJob job;
    job.backend = "cpu";
    job.request = request_of(assign);
    for (uint64_t i = 0; i < kJobs; ++i) {
      job.kind = i % 2 ? JobKind::verify
                       : JobKind::exec;  // a verify job's result carries a verdict document
      REQUIRE((*store)->enqueue_job(job).ok());
    }
  }
  write_file(dir / "kforge.toml", "[coordinator]\nheartbeat_ms = 200\n");
  Child coordinator(exe,
                    {"--config", (dir / "kforge.toml").string(), "--listen", endpoint, "--data",
                     data.string(), "--http", "127.0.0.1:0"},
                    log, dir.path());
  REQUIRE_MESSAGE(
      wait_until([&] { return read_file(log).find("listening " + endpoint) != std::string::npos; }),
      "the coordinator does not listen:\n"
          << read_file(log));

  // Peers: most name an agent id their Hellos use; two have routing ids no agent would.
  zmq::context_t ctx(1);
  std::vector<std::pair<std::string, zmq::socket_t>> peers;
  for (int i = 0; i < 16; ++i) {
    std::string agent = "fz-" + std::to_string(i);
    std::string routing = i == 0   ? std::string("\x01\xff/x", 4)
                          : i == 1 ? "no-slash"
                                   : agent + "/inc/" + std::to_string(i);
    auto s = make_dealer(ctx, endpoint, routing);
    REQUIRE_MESSAGE(s.ok(), s.status().to_string());
    peers.emplace_back(agent, std::move(s.value()));
  }
  fuzz::Mutator mutator(seed);
  MessageMaker maker(mutator, kJobs);
  std::vector<std::string> corpus;  // well-formed frames sent so far, for mutations
  uint64_t sent = 0;
  for (uint64_t i = 0; i < messages; ++i) {
    auto& [agent, socket] = peers[mutator.below(peers.size())];
    std::string frame = proto::encode(maker.make(agent));
    if (corpus.size() < 256) corpus.push_back(frame);
    switch (mutator.below(8)) {
      case 0:
      case 1: frame = mutator.mutated(corpus); break;
      case 2:  // two frames in one message
        (void)socket.send(zmq::buffer(frame), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
        break;
      default: break;
    }
    if (socket.send(zmq::buffer(frame), zmq::send_flags::dontwait)) sent++;
    if (i % 500 == 0) {
      REQUIRE_MESSAGE(coordinator.running(), "the coordinator exited (wait status "
                                                 << coordinator.wait_status() << "):\n"
                                                 << read_file(log));
    }
  }
  MESSAGE(sent << " of " << messages << " peer messages sent (seed " << seed << ")");

  // A real agent registers after all of them: the loop is alive and serving.
  RawPeer agent(endpoint, "real-agent/1/a");
  agent.send(raw_hello("real-agent", "1"));
  CHECK_MESSAGE(agent.receive<proto::Welcome>(30s).has_value(), read_file(log));
  CHECK_MESSAGE(coordinator.running(), "the coordinator exited (wait status "
                                           << coordinator.wait_status() << "):\n"
                                           << read_file(log));
  CHECK(read_file(log).find("coordinator stopping") == std::string::npos);
}
