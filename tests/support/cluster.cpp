#include "tests/support/cluster.h"

#include <doctest/doctest.h>

#include "agent/state_dir.h"
#include "common/zmq_util.h"

namespace kforge::test {

CoordinatorOptions TestCluster::fast_options() {
  CoordinatorOptions o;
  o.listen = "tcp://127.0.0.1:*";
  o.heartbeat_ms = 100;
  o.liveness = 3;
  o.restart_grace_ms = 1000;
  o.disk_reserve_bytes = 1 << 20;
  return o;
}

AgentOptions TestCluster::fast_agent_options() {
  AgentOptions o;
  o.heartbeat_ms = 100;
  o.liveness = 3;
  o.backoff_initial_ms = 100;
  o.backoff_max_ms = 400;
  o.job_timeout_ms = 60'000;
  return o;
}

TestCluster::TestCluster(CoordinatorOptions options, Clock& clock, Link link)
    : link_(link), options_(std::move(options)), clock_(clock) {
  options_.data_dir = dir_ / "coordinator";
  if (curve()) {
    auto keys = make_curve_keypair();
    REQUIRE_MESSAGE(keys.ok(), keys.status().to_string());
    server_keys_ = *keys;
    options_.curve_secret_key = server_keys_.secret_key;
    options_.agent_keys_file = agent_keys_file();
    write_file(agent_keys_file(), "# agent id = public key\n");
  }
  start_coordinator();
}

CurveClientKeys TestCluster::client_keys(const std::string& agent_id) {
  if (!curve()) return {};
  auto it = client_keys_.find(agent_id);
  if (it == client_keys_.end()) {
    auto keys = make_curve_keypair();
    REQUIRE_MESSAGE(keys.ok(), keys.status().to_string());
    it = client_keys_.emplace(agent_id, *keys).first;
    Status added = allowed_.add(agent_id, keys->public_key);
    REQUIRE_MESSAGE(added.ok(), added.to_string());
    write_file(agent_keys_file(), allowed_.to_toml());
    if (coordinator_) {
      Status st = coordinator_->call([](Coordinator& c) { return c.reload_agent_keys(); });
      REQUIRE_MESSAGE(st.ok(), st.to_string());
    }
  }
  return CurveClientKeys{it->second.public_key, it->second.secret_key, server_keys_.public_key};
}

CurveClientKeys TestCluster::unlisted_keys() const {
  auto keys = make_curve_keypair();
  REQUIRE_MESSAGE(keys.ok(), keys.status().to_string());
  return CurveClientKeys{keys->public_key, keys->secret_key, server_keys_.public_key};
}

TestCluster::~TestCluster() {
  for (auto& [name, a] : agents_) {
    a.agent->stop(false);
    if (a.thread.joinable()) a.thread.join();
  }
  agents_.clear();
  kill_coordinator();
}

void TestCluster::start_coordinator() {
  kill_coordinator();
  CoordinatorOptions o = options_;
  if (!endpoint_.empty()) o.listen = endpoint_;  // restart on the same port
  // A restart binds the same port, which an agent's job forked just then still holds: fork
  // copies every descriptor, the old listening socket too, and close-on-exec acts only at the
  // exec (a moment that the sanitizers' slower fork makes long enough to hit).
  auto busy = [](const Result<std::unique_ptr<Coordinator>>& r) {
    return !r.ok() && r.status().message().find("Address already in use") != std::string::npos;
  };
  auto c = Coordinator::open(o, clock_);
  if (busy(c)) {
    wait_until(
        [&] {
          c = Coordinator::open(o, clock_);
          return !busy(c);
        },
        std::chrono::seconds(10));
  }
  REQUIRE_MESSAGE(c.ok(), c.status().to_string());
  coordinator_ = std::move(c.value());
  endpoint_ = coordinator_->endpoint();
  coordinator_->add_result_listener([this](const JobRow& job, const proto::JobResult&) {
    std::lock_guard lock(mu_);
    recorded_[job.id]++;
  });
  coordinator_thread_ = std::thread([c = coordinator_.get()] {
    Status st = c->run();
    if (!st.ok()) FAIL_CHECK("coordinator loop failed: " << st.to_string());
  });
}

void TestCluster::kill_coordinator() {
  if (!coordinator_) return;
  coordinator_->stop();
  if (coordinator_thread_.joinable()) coordinator_thread_.join();
  coordinator_.reset();
}

Agent& TestCluster::start_agent(const std::string& name, uint32_t cpu_devices,
                                AgentOptions options) {
  if (agents_.count(name)) kill_agent(name);
  options.coordinator = endpoint_;
  options.state_dir = agent_state(name);
  options.host = name;
  options.devices.clear();
  for (uint32_t i = 0; i < cpu_devices; ++i) {
    options.devices.push_back(proto::DeviceInfo{i, "cpu", "x86_64", "test cpu", 0});
  }
  if (curve() && options.curve_secret_key.empty()) {
    // The key is bound to the agent's id, which its state directory decides.
    auto id = load_or_create_agent_id(options.state_dir, options.id);
    REQUIRE_MESSAGE(id.ok(), id.status().to_string());
    CurveClientKeys keys = client_keys(*id);
    options.curve_secret_key = keys.secret_key;
    options.coordinator_public_key = keys.server_key;
  }
  auto a = Agent::open(options, clock_);
  REQUIRE_MESSAGE(a.ok(), a.status().to_string());
  RunningAgent& ra = agents_[name];
  ra.agent = std::move(a.value());
  ra.thread = std::thread([&ra] { ra.exit = ra.agent->run(); });
  return *ra.agent;
}

void TestCluster::kill_agent(const std::string& name) {
  auto it = agents_.find(name);
  if (it == agents_.end()) return;
  it->second.agent->stop(false);
  if (it->second.thread.joinable()) it->second.thread.join();
  agents_.erase(it);
}

Status TestCluster::agent_exit(const std::string& name) {
  auto& ra = agents_.at(name);
  if (ra.thread.joinable()) ra.thread.join();
  return ra.exit;
}

int64_t TestCluster::submit(const std::vector<std::string>& argv, int priority, bool exclusive) {
  auto id = coordinator_->call([&](Coordinator& c) {
    NewJob job;
    job.backend = "cpu";
    job.priority = priority;
    job.exclusive = exclusive;
    proto::Assign assign;
    assign.kind = "exec";
    assign.argv = argv;
    return c.submit(job, assign);
  });
  REQUIRE_MESSAGE(id.ok(), id.status().to_string());
  return *id;
}

std::map<int64_t, int> TestCluster::recorded() const {
  std::lock_guard lock(mu_);
  return recorded_;
}

size_t TestCluster::recorded_jobs() const {
  std::lock_guard lock(mu_);
  return recorded_.size();
}

bool TestCluster::wait_all_done(const std::vector<int64_t>& jobs,
                                std::chrono::milliseconds deadline) {
  return wait_until(
      [&] {
        return coordinator_->call([&](Coordinator& c) {
          for (int64_t id : jobs) {
            auto row = c.store().get_job(id);
            if (!row.ok() || row->state != JobState::done) return false;
          }
          return true;
        });
      },
      deadline);
}

bool TestCluster::wait_live(size_t n, std::chrono::milliseconds deadline) {
  return wait_until(
      [&] {
        size_t settled = 0;
        for (const auto& [name, a] : agents_) {
          if (!a.agent->registered()) continue;
          std::string routing =
              coordinator_->call([&](Coordinator& c) { return c.agent_routing_id(a.agent->id()); });
          if (routing == a.agent->routing_id()) settled++;
        }
        return settled >= n;
      },
      deadline);
}

}  // namespace kforge::test
