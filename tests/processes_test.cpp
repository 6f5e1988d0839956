// The cluster as an operator runs it: kforge-coordinator and kforge-agent as separate
// processes, killed with real signals. Jobs are put into the coordinator's database before it
// starts (it loads queued jobs at start-up); progress is observed by reading that database.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/protocol.h"
#include "common/zmq_util.h"
#include "coordinator/store/store.h"
#include "tests/support/child.h"
#include "tests/support/support.h"

using namespace kforge;
using namespace kforge::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

// One child process: fork/exec of `exe` in `cwd` with stdout and stderr appended to `log`. Never
// outlives the test: killed in the destructor, and by the kernel should the test process die
// first (PR_SET_PDEATHSIG).

// A coordinator and named agents as processes, on one temporary directory and a fixed port
// (so that a restarted coordinator is found again by its agents).
class ProcessCluster {
 public:
  ProcessCluster() {
    coordinator_exe_ = binary_dir() / "coordinator" / "kforge-coordinator";
    agent_exe_ = binary_dir() / "agent" / "kforge-agent";
    REQUIRE_MESSAGE(fs::exists(coordinator_exe_), coordinator_exe_.string() << " is not built");
    REQUIRE_MESSAGE(fs::exists(agent_exe_), agent_exe_.string() << " is not built");
    {  // A free port: bind it, read it back, let it go.
      zmq::context_t ctx(1);
      zmq::socket_t probe(ctx, zmq::socket_type::router);
      probe.set(zmq::sockopt::linger, 0);
      probe.bind("tcp://127.0.0.1:*");
      int port = endpoint_port(bound_endpoint(probe));
      REQUIRE(port > 0);
      endpoint_ = "tcp://127.0.0.1:" + std::to_string(port);
    }
    fs::create_directories(data_dir());
    fs::create_directories(dir_ / "fixtures");  // empty: agents find no GPUs, run no nvidia-smi
    write_file(
        config(),
        "[coordinator]\n"
        "heartbeat_ms = 200\n"
        "restart_grace_ms = 1000\n"
        "[agent]\n"
        "contain = false  # jobs write into the test's (root-only) directory, report host pids\n");
    auto store = Store::open(db());  // creates the schema; closed again at the end of scope
    REQUIRE_MESSAGE(store.ok(), store.status().to_string());
  }
  ~ProcessCluster() {
    for (auto& [name, agent] : agents_) agent->stop();
    agents_.clear();
    coordinator_.reset();
  }

  const fs::path& dir() const { return dir_.path(); }
  fs::path data_dir() const { return dir_ / "data"; }
  fs::path db() const { return data_dir() / "kforge.db"; }
  fs::path config() const { return dir_ / "kforge.toml"; }
  fs::path coordinator_log() const { return dir_ / "coordinator.log"; }
  fs::path agent_log(const std::string& name) const { return dir_ / ("agent-" + name + ".log"); }
  fs::path agent_state(const std::string& name) const { return dir_ / ("agent-" + name); }

  // Puts `n` exec jobs into the database. REQUIRES: the coordinator is not running (it is
  // the database's one writer and loads queued jobs when it starts).
  std::vector<int64_t> enqueue(int n, const std::vector<std::string>& argv) {
    REQUIRE_FALSE(coordinator_);
    auto store = Store::open(db());
    REQUIRE_MESSAGE(store.ok(), store.status().to_string());
    proto::Assign assign;
    assign.kind = "exec";
    assign.argv = argv;
    NewJob job;
    job.backend = "cpu";
    job.request = request_of(assign);
    std::vector<int64_t> ids;
    for (int i = 0; i < n; ++i) {
      auto id = (*store)->enqueue_job(job);
      REQUIRE_MESSAGE(id.ok(), id.status().to_string());
      ids.push_back(*id);
    }
    return ids;
  }

  // Starts (or restarts, on the same data directory and port) the coordinator and waits
  // until it listens.
  Child& start_coordinator() {
    size_t before = count_of(read_file(coordinator_log()), "listening ");
    coordinator_ = std::make_unique<Child>(
        coordinator_exe_,
        std::vector<std::string>{"--config", config().string(), "--listen", endpoint_, "--data",
                                 data_dir().string(), "--http", "127.0.0.1:0"},
        coordinator_log(), dir());
    bool up = wait_until([&] {
      return count_of(read_file(coordinator_log()), "listening " + endpoint_) > before ||
             !coordinator_->running();
    });
    REQUIRE_MESSAGE(coordinator_->running(), "coordinator exited:\n" << coordinator_->log());
    REQUIRE_MESSAGE(up, "coordinator does not listen:\n" << coordinator_->log());
    return *coordinator_;
  }
  Child& coordinator() { return *coordinator_; }

  Child& start_agent(const std::string& name) {
    agents_[name] = std::make_unique<Child>(
        agent_exe_,
        std::vector<std::string>{"--config", config().string(), "--coordinator", endpoint_,
                                 "--state", agent_state(name).string(), "--cpu-devices", "2",
                                 "--no-probe", "--device-fixtures", (dir_ / "fixtures").string()},
        agent_log(name), dir());
    return *agents_[name];
  }
  Child& agent(const std::string& name) { return *agents_.at(name); }

  // Waits until the agent's log shows its `n`th registration.
  bool wait_registered(const std::string& name, size_t n = 1,
                       std::chrono::milliseconds deadline = 20s) {
    return wait_until(
        [&] { return count_of(read_file(agent_log(name)), "registered with coordinator") >= n; },
        deadline);
  }

  // The agent's stable id, from its state directory.
  std::string agent_id(const std::string& name) const {
    std::string id = read_file(agent_state(name) / "agent_id");
    while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
    return id;
  }

  // Every job in the database, read through a read-only connection (the coordinator keeps
  // writing meanwhile: WAL).
  std::vector<JobRow> jobs() const {
    auto store = Store::open_readonly(db());
    REQUIRE_MESSAGE(store.ok(), store.status().to_string());
    std::vector<JobRow> all;
    for (JobState s : {JobState::queued, JobState::assigned, JobState::done, JobState::cancelled}) {
      auto rows = (*store)->jobs_in_state(s);
      REQUIRE_MESSAGE(rows.ok(), rows.status().to_string());
      all.insert(all.end(), rows->begin(), rows->end());
    }
    return all;
  }
  int64_t count(JobState state) const {
    auto store = Store::open_readonly(db());
    REQUIRE_MESSAGE(store.ok(), store.status().to_string());
    auto n = (*store)->count_jobs(state);
    REQUIRE_MESSAGE(n.ok(), n.status().to_string());
    return *n;
  }
  JobRow job(int64_t id) const {
    auto store = Store::open_readonly(db());
    REQUIRE_MESSAGE(store.ok(), store.status().to_string());
    auto row = (*store)->get_job(id);
    REQUIRE_MESSAGE(row.ok(), row.status().to_string());
    return *row;
  }

  // Every log, for a failure message.
  std::string logs() const {
    std::string all = "--- coordinator\n" + read_file(coordinator_log());
    for (const auto& [name, agent] : agents_)
      all += "--- agent " + name + "\n" + read_file(agent_log(name));
    return all;
  }

 private:
  TempDir dir_;  // first member: removed after every process is gone
  fs::path coordinator_exe_, agent_exe_;
  std::string endpoint_;
  std::unique_ptr<Child> coordinator_;
  std::map<std::string, std::unique_ptr<Child>> agents_;
};

// The recorded result of a done job; it must belong to the job's current epoch.
void check_result(const JobRow& row) {
  INFO("job " << row.id);
  CHECK(row.state == JobState::done);
  REQUIRE(row.result);
  const proto::JobResult* result = &*row.result;
  CHECK(result->job.job_id == static_cast<uint64_t>(row.id));
  CHECK(result->job.epoch == static_cast<uint64_t>(row.epoch));
  CHECK(result->agent_id == row.agent_id);
  CHECK(result->exit_code == 0);
  CHECK(result->infra_error.empty());
}

bool exited_with(int status, int code) {
  return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == code;
}

}  // namespace

TEST_CASE("processes: two agents run 40 jobs, each recorded once with its result") {
  ProcessCluster cluster;
  auto ids = cluster.enqueue(40, {"sh", "-c", "sleep 0.05"});
  cluster.start_coordinator();
  cluster.start_agent("a");
  cluster.start_agent("b");
  REQUIRE_MESSAGE(wait_until([&] { return cluster.count(JobState::done) == 40; }, 30s),
                  cluster.logs());

  auto rows = cluster.jobs();
  REQUIRE(rows.size() == ids.size());
  std::set<std::string> agents_used;
  for (const JobRow& row : rows) {
    check_result(row);
    CHECK(row.attempts >= 1);
    agents_used.insert(row.agent_id);
  }
  CHECK(agents_used == std::set<std::string>{cluster.agent_id("a"), cluster.agent_id("b")});

  // What an operator greps for.
  std::string coordinator_log = cluster.coordinator().log();
  CHECK(count_of(coordinator_log, "registered") >= 2);
  CHECK(count_of(coordinator_log, "listening") == 1);
  for (const char* name : {"a", "b"}) {
    std::string log = cluster.agent(name).log();
    CHECK(log.find("registered with coordinator") != std::string::npos);
    CHECK(log.find("finished job=") != std::string::npos);
  }
}

TEST_CASE("processes: SIGKILL of the agent running a job; the other agent completes it") {
  ProcessCluster cluster;
  fs::path pid_file = cluster.dir() / "hang.pid";
  // The first attempt (epoch 1) records its process group and hangs; later ones finish.
  auto ids = cluster.enqueue(
      1, {"sh", "-c",
          "if [ \"$KFORGE_EPOCH\" = 1 ]; then echo $$ > " + pid_file.string() + "; sleep 60; fi"});
  cluster.start_coordinator();
  cluster.start_agent("a");
  cluster.start_agent("b");
  REQUIRE_MESSAGE(cluster.wait_registered("a"), cluster.logs());
  REQUIRE_MESSAGE(cluster.wait_registered("b"), cluster.logs());
  REQUIRE_MESSAGE(wait_until([&] { return !read_file(pid_file).empty(); }), cluster.logs());

  JobRow first = cluster.job(ids[0]);
  REQUIRE(first.state == JobState::assigned);
  REQUIRE(first.epoch == 1);
  std::string holder = first.agent_id == cluster.agent_id("a") ? "a" : "b";
  std::string other = holder == "a" ? "b" : "a";
  REQUIRE(first.agent_id == cluster.agent_id(holder));

  REQUIRE(cluster.agent(holder).kill(SIGKILL));
  // The job ran in its own process group, which the agent's death leaves behind (under systemd,
  // KillMode=control-group takes it down); end it here.
  pid_t job_group = std::stoi(read_file(pid_file));
  REQUIRE(job_group > 1);
  ::kill(-job_group, SIGKILL);

  REQUIRE_MESSAGE(wait_until([&] { return cluster.job(ids[0]).state == JobState::done; }, 20s),
                  cluster.logs());
  JobRow done = cluster.job(ids[0]);
  check_result(done);
  CHECK(done.agent_id == cluster.agent_id(other));
  CHECK(done.epoch > 1);
  CHECK(done.attempts >= 2);
  CHECK(cluster.coordinator().log().find("lost") != std::string::npos);
}

TEST_CASE("processes: SIGKILL of the coordinator mid-run; restarted, every job is done once") {
  ProcessCluster cluster;
  auto ids = cluster.enqueue(60, {"sh", "-c", "sleep 0.1"});
  cluster.start_coordinator();
  cluster.start_agent("a");
  cluster.start_agent("b");
  REQUIRE_MESSAGE(wait_until([&] { return cluster.count(JobState::done) >= 10; }, 30s),
                  cluster.logs());

  REQUIRE(cluster.coordinator().kill(SIGKILL));
  CHECK(WIFSIGNALED(cluster.coordinator().wait_status()));
  cluster.start_coordinator();  // same --data, same port
  REQUIRE_MESSAGE(wait_until([&] { return cluster.count(JobState::done) == 60; }, 40s),
                  cluster.logs());

  auto rows = cluster.jobs();
  REQUIRE(rows.size() == ids.size());
  std::set<int64_t> distinct;
  for (const JobRow& row : rows) {
    check_result(row);
    distinct.insert(row.id);
  }
  CHECK(distinct == std::set<int64_t>(ids.begin(), ids.end()));

  // Both agents noticed the silence and registered with the new coordinator.
  CHECK_MESSAGE(cluster.wait_registered("a", 2), cluster.logs());
  CHECK_MESSAGE(cluster.wait_registered("b", 2), cluster.logs());
  std::string coordinator_log = cluster.coordinator().log();
  CHECK(count_of(coordinator_log, "listening") == 2);
  CHECK(coordinator_log.find("recovered") != std::string::npos);
  for (const char* name : {"a", "b"}) CHECK(cluster.agent(name).running());
}

// SIGTERM (systemctl stop) is the orderly path: agents kill their jobs and say goodbye, the
// coordinator finishes its turn; all exit 0.
TEST_CASE("processes: SIGTERM stops agents with a goodbye, then the coordinator") {
  ProcessCluster cluster;
  cluster.start_coordinator();
  cluster.start_agent("a");
  cluster.start_agent("b");
  REQUIRE_MESSAGE(cluster.wait_registered("a"), cluster.logs());
  REQUIRE_MESSAGE(cluster.wait_registered("b"), cluster.logs());
  for (const char* name : {"a", "b"}) {
    REQUIRE(cluster.agent(name).kill(SIGTERM));
    CHECK_MESSAGE(exited_with(cluster.agent(name).wait_status(), 0), cluster.logs());
  }
  CHECK_MESSAGE(
      wait_until([&] { return count_of(cluster.coordinator().log(), "said goodbye") == 2; }, 5s),
      cluster.logs());
  REQUIRE(cluster.coordinator().kill(SIGTERM));
  CHECK_MESSAGE(exited_with(cluster.coordinator().wait_status(), 0), cluster.logs());
  CHECK(cluster.coordinator().log().find("stopped") != std::string::npos);
}

// warm_start (on by default): the agent starts each device's Verifier (judge, worker zygote,
// warm workers) as it starts, so the first job does not wait seconds for them; and a stop
// during that start is prompt (the SIGTERM case above stops agents in the middle of it).
TEST_CASE("processes: the agent starts each device's verifier before any job arrives") {
  ProcessCluster cluster;
  cluster.start_coordinator();
  cluster.start_agent("a");
  REQUIRE_MESSAGE(cluster.wait_registered("a"), cluster.logs());
  CHECK_MESSAGE(wait_until(
                    [&] {
                      return cluster.agent("a").log().find("verifier for cpu:0 started") !=
                             std::string::npos;
                    },
                    120s),
                cluster.logs());
  REQUIRE(cluster.agent("a").kill(SIGTERM));
  CHECK_MESSAGE(exited_with(cluster.agent("a").wait_status(), 0), cluster.logs());
}
