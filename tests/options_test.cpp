// One config, one set of options: the daemons (kforge-coordinator, kforge-agent) and
// `kforge run` configure their parts through the same functions.
#include <doctest/doctest.h>

#include "cli/run.h"
#include "tests/support/support.h"

using namespace kforge;
using test::TempDir;

namespace {

// Every table with values other than the defaults, so that a key one path drops shows.
Config every_key(const TempDir& dir) {
  auto config = parse_config(R"(
[coordinator]
heartbeat_ms = 250
liveness = 5
precision_jobs_per_device = 3
verify_timeout_s = 45
disk_reserve_mb = 0
api_hosts = ["head-node"]
metrics_public = true
api_max_body_mb = 8
api_max_connections = 99
api_threads = 3

[agent]
host = "box7"
cpu_devices = 2
cpu_arch = "aarch64"
python = "/opt/py/bin/python3"
harness_dir = "/opt/kforge/harness"
work_dir = "/scratch/kforge-jobs"
job_uids = ""
allow_uncontained = true
job_disk_mb = 77
hide_dirs = ["/secrets"]
job_timeout_s = 42
output_cap_kb = 7
warm_workers = 5
env_allow = ["PATH", "CUDA_HOME"]

[agent.limits]
address_space_mb = 1000
cpu_s = 60
open_files = 99
processes = 11
file_size_mb = 12
memory_mb = 2048
pids = 64
cpu_percent = 150
io_mbps = 9

[llm.designer]
provider = "replay"
recording = "designer.jsonl"
model = "m1"

[llm.coder]
provider = "openai"
base_url = "http://127.0.0.1:1/v1"
model = "m2"
max_tokens = 123
)",
                             (dir / "kforge.toml").string());
  REQUIRE(config.ok());
  return *config;
}

}  // namespace

TEST_CASE(
    "kforge run gives its parts the daemons' options, changed only where one process differs") {
  TempDir dir;
  const Config config = every_key(dir);
  const std::filesystem::path data = dir / "data";
  const std::string no_gpus = (dir / "no-gpus").string();  // discovery reads no tool output
  auto run = all_in_one_options(config, dir.path(), data, "127.0.0.1:0", no_gpus, /*probe=*/false);
  REQUIRE(run.ok());

  // The daemons, on the same data directory.
  Config daemon = config;
  daemon.coordinator.data_dir = data.string();
  daemon.coordinator.http_listen = "127.0.0.1:0";
  daemon.agent.state_dir = (data / "agent").string();
  auto coordinator = coordinator_options(daemon.coordinator);
  REQUIRE(coordinator.ok());
  auto http = operator_api_options(daemon.coordinator);
  REQUIRE(http.ok());
  auto agent = agent_options(daemon.agent, no_gpus, /*probe=*/false);
  REQUIRE(agent.ok());

  // What kforge run changes on purpose: a loopback link with its own keys, a short grace.
  CoordinatorOptions expected_coordinator = *coordinator;
  expected_coordinator.listen = "tcp://127.0.0.1:*";
  expected_coordinator.restart_grace_ms = 1000;
  expected_coordinator.curve_secret_key = run->coordinator.curve_secret_key;
  expected_coordinator.agent_keys = run->coordinator.agent_keys;
  CHECK(run->coordinator == expected_coordinator);
  CHECK(run->http == *http);
  CHECK(run->conductor == conductor_options(daemon, dir.path()));
  AgentOptions expected_agent = *agent;
  expected_agent.coordinator = "";  // the loop's endpoint, once bound
  expected_agent.curve_secret_key = run->agent.curve_secret_key;
  expected_agent.coordinator_public_key = run->agent.coordinator_public_key;
  expected_agent.hide_dirs.push_back(std::filesystem::absolute(data));  // the database
  CHECK(run->agent == expected_agent);

  // And the config's values arrived (the keys kforge run once dropped among them).
  CHECK(run->coordinator.heartbeat_ms == 250);
  CHECK(run->coordinator.disk_reserve_bytes == 0);
  CHECK(run->http.serving.threads == 3);
  CHECK(run->conductor.verify_timeout_s == 45);
  CHECK(run->conductor.endpoints.at(LlmRole::designer).recording ==
        (dir / "designer.jsonl").string());
  CHECK(run->conductor.endpoints.at(LlmRole::coder).max_tokens == 123);
  CHECK(run->agent.output_cap == 7 * 1024);
  CHECK(run->agent.warm_workers == 5);
  CHECK(run->agent.work_root == "/scratch/kforge-jobs");
  CHECK(run->agent.host == "box7");
  CHECK(run->agent.job_timeout_ms == 42'000);
  CHECK(run->agent.limits == ResourceLimits{1000, 60, 99, 11, 12});
  CHECK(run->agent.job_memory_mb == 2048);
  CHECK(run->agent.job_disk_mb == 77);
  REQUIRE(run->agent.devices.size() == 2);
  CHECK(run->agent.devices[1].arch == "aarch64");
}

TEST_CASE("a secret key file that cannot be read is an error naming its key") {
  TempDir dir;
  CoordinatorConfig coordinator;
  coordinator.secret_key_file = (dir / "missing.key").string();
  auto options = coordinator_options(coordinator);
  REQUIRE_FALSE(options.ok());
  CHECK(options.status().message().rfind("coordinator.secret_key_file: ", 0) == 0);
  AgentConfig agent;
  agent.state_dir = (dir / "agent").string();
  agent.secret_key_file = (dir / "missing.key").string();
  agent.coordinator_public_key = std::string(40, 'a');
  auto agent_opts = agent_options(agent, (dir / "no-gpus").string(), /*probe=*/false);
  REQUIRE_FALSE(agent_opts.ok());
  CHECK(agent_opts.status().message().rfind("agent.secret_key_file: ", 0) == 0);
}
