// A whole kforge cluster in one test process: a coordinator and any number of agents, each
// on its own thread, talking over real ZeroMQ sockets on loopback, with state on disk under
// a temporary directory. Components can be killed (as if by kill -9: no goodbye, nothing
// flushed beyond what was committed) and restarted on the same state directory.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/agent.h"
#include "common/zmq_util.h"
#include "coordinator/scheduling/coordinator.h"
#include "tests/support/raw_peer.h"
#include "tests/support/support.h"

namespace kforge::test {

// The agent link of a TestCluster: CURVE with keys made for the test (the default, so the
// secure path is the tested one) or plain TCP.
enum class Link { curve, plain };

class TestCluster {
 public:
  // Heartbeats of 100 ms, liveness 3, restart grace 1 s: loss is detected in ~0.3 s.
  static CoordinatorOptions fast_options();
  static AgentOptions fast_agent_options();

  // With Link::curve the coordinator gets a fresh key pair and an allow-list file under the
  // test's directory; every agent started here gets a key bound to its id.
  explicit TestCluster(CoordinatorOptions options = fast_options(),
                       Clock& clock = SystemClock::instance(), Link link = Link::curve);
  ~TestCluster();

  // Starts (or restarts, on the same data directory and port) the coordinator.
  void start_coordinator();
  // Stops the coordinator's loop and destroys it without any orderly shutdown.
  void kill_coordinator();
  Coordinator& coordinator() { return *coordinator_; }
  const std::string& endpoint() const { return endpoint_; }

  // Starts an agent with `cpu_devices` CPU devices on its own state directory
  // (restarting it if it runs already under this name).
  Agent& start_agent(const std::string& name, uint32_t cpu_devices = 1,
                     AgentOptions options = fast_agent_options());
  // As if by kill -9: no Bye, running jobs killed, their results never stored.
  void kill_agent(const std::string& name);
  Agent& agent(const std::string& name) { return *agents_.at(name).agent; }
  std::filesystem::path agent_state(const std::string& name) const {
    return dir_ / ("agent-" + name);
  }
  // The status run() returned when an agent stopped by itself (refused).
  Status agent_exit(const std::string& name);

  // Submits a plain command as a job for any CPU device.
  int64_t submit(const std::vector<std::string>& argv, int priority = 0, bool exclusive = false);
  // How many times each job's result was recorded (counted by a result listener; survives
  // coordinator restarts).
  std::map<int64_t, int> recorded() const;
  size_t recorded_jobs() const;
  // Waits until every listed job is done in the store, with a deadline.
  bool wait_all_done(const std::vector<int64_t>& jobs, std::chrono::milliseconds deadline);
  // Waits until `n` of the agents started here are registered on the connection they use now:
  // the agent has its Welcome and the coordinator routes its id to that connection. (A Hello
  // unanswered within the agent's backoff is said again on a fresh connection; the coordinator
  // may register the abandoned one first, and what it sends there before the next Hello
  // reconciles is lost. Counting live agents in the coordinator would stop there.)
  bool wait_live(size_t n, std::chrono::milliseconds deadline = std::chrono::seconds(20));

  const std::filesystem::path& dir() const { return dir_.path(); }

  bool curve() const { return link_ == Link::curve; }
  // CURVE: keys for a client bound to `agent_id` on the allow-list (made on first use,
  // written to the allow-list file and reloaded by the coordinator). Plain: empty keys.
  CurveClientKeys client_keys(const std::string& agent_id);
  // CURVE: keys of a client the allow-list does not know.
  CurveClientKeys unlisted_keys() const;
  const std::string& coordinator_public_key() const { return server_keys_.public_key; }
  std::filesystem::path agent_keys_file() const { return dir_ / "agent-keys.toml"; }

 private:
  struct RunningAgent {
    std::unique_ptr<Agent> agent;
    std::thread thread;
    Status exit;
  };
  TempDir dir_;
  Link link_;
  CurveKeyPair server_keys_;
  AgentKeys allowed_;                                // what the allow-list file holds
  std::map<std::string, CurveKeyPair> client_keys_;  // by agent id
  CoordinatorOptions options_;
  Clock& clock_;
  std::string endpoint_;
  std::unique_ptr<Coordinator> coordinator_;
  std::thread coordinator_thread_;
  std::map<std::string, RunningAgent> agents_;
  mutable std::mutex mu_;
  std::map<int64_t, int> recorded_;
};

}  // namespace kforge::test
