// One agent driving eight GPUs, on a machine without any: kforge-agent discovers eight H100s
// from a recorded nvidia-smi listing (tests/fixtures/nvidia-smi/h100x8.csv), advertises each
// as its own device, and runs jobs on them as it would on the real host: one job per GPU at a
// time, each process seeing only its own GPU (CUDA_VISIBLE_DEVICES), a crashing or hanging
// job costing its own GPU that job only; and, with agent.devices (--devices), an agent that
// offers only some of them. What this cannot show is a real CUDA context; that needs the GPUs
// (docs/gpu-validation.md).
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "common/process.h"
#include "tests/support/child.h"

using namespace kforge;
using namespace kforge::test;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

// A job's line in the shared log: "<job> <CUDA_VISIBLE_DEVICES> <KFORGE_DEVICE> <start_ns>
// <end_ns>".
struct Span {
  int64_t job = 0;
  std::string visible, device;
  int64_t start = 0, end = 0;
};

std::vector<Span> spans(const std::string& log) {
  std::vector<Span> out;
  std::istringstream in(log);
  Span s;
  while (in >> s.job >> s.visible >> s.device >> s.start >> s.end) out.push_back(s);
  return out;
}

// A coordinator on OS-chosen ports, and the recorded nvidia-smi listing of an eight-H100 host
// for agents to discover.
struct EightGpuHost {
  TempDir dir;
  std::string data = (dir / "data").string();
  Child coordinator{binary_dir() / "coordinator" / "kforge-coordinator",
                    {"--data", data, "--listen", "tcp://127.0.0.1:*", "--http", "127.0.0.1:0"},
                    dir / "coordinator.log",
                    dir.path()};
  std::string endpoint, url;

  EightGpuHost() {
    std::filesystem::create_directories(dir / "fixtures");
    write_file(dir / "fixtures" / "nvidia-smi.csv",
               read_file(source_dir() / "tests" / "fixtures" / "nvidia-smi" / "h100x8.csv"));
    write_file(dir / "kforge.toml", "[agent]\ncontain = false\n");  // jobs write a shared log
    REQUIRE_MESSAGE(wait_until(
                        [&] {
                          return read_file(dir / "coordinator.log").find("api http://") !=
                                 std::string::npos;
                        },
                        20s),
                    read_file(dir / "coordinator.log"));
    std::string clog = read_file(dir / "coordinator.log");
    auto at = clog.find("listening ") + 10;
    endpoint = clog.substr(at, clog.find('\n', at) - at);
    at = clog.find("api http://") + 4;
    url = clog.substr(at, clog.find('\n', at) - at);
  }

  // kforge-agent's arguments for an agent of this host, then `extra`.
  std::vector<std::string> agent_args(const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> args = {
        "--config",          (dir / "kforge.toml").string(), "--coordinator", endpoint,
        "--state",           (dir / "agent").string(),       "--cpu-devices", "0",
        "--device-fixtures", (dir / "fixtures").string(),    "--no-probe"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  // Waits until the coordinator lists one agent and it is live; its `kforge agents --json` entry.
  json live_agent() const {
    json agents;
    bool live = wait_until(
        [&] {
          auto a = kforge_cli(
              {"agents", "--json", "--coordinator", url, "--token-file", data + "/api.token"});
          if (a.code != 0) return false;
          agents = json::parse(a.out);
          return agents.size() == 1 && agents[0]["state"] == "live";
        },
        20s);
    REQUIRE_MESSAGE(live, read_file(dir / "agent.log"));
    return agents[0];
  }
};

}  // namespace

TEST_CASE(
    "one agent, eight simulated GPUs: one job per GPU at a time, each sees only its own, a crash "
    "or hang costs one job") {
  EightGpuHost host;
  const TempDir& dir = host.dir;
  const std::string& data = host.data;
  const std::string& url = host.url;
  const std::string log = (dir / "jobs.log").string();

  Child agent(binary_dir() / "agent" / "kforge-agent", host.agent_args(), dir / "agent.log",
              dir.path());
  json devices = host.live_agent()["devices"];
  REQUIRE(devices.size() == 8);
  for (int i = 0; i < 8; ++i) {
    CHECK(devices[i]["backend"] == "cuda");
    CHECK(devices[i]["index"] == i);
    CHECK(devices[i]["arch"] == "h100");
  }

  // One job that crashes and one that hangs past its timeout first, 24 jobs of ~0.3 s beside
  // them; then 8 more, which the pool places one per free GPU: the two GPUs of the hostile
  // jobs among them.
  auto line = [&](const char* sleep_s) {
    return "s=$(date +%s%N); sleep " + std::string(sleep_s) +
           "; echo \"$KFORGE_JOB_ID $CUDA_VISIBLE_DEVICES $KFORGE_DEVICE $s $(date +%s%N)\" >> " +
           log;
  };
  auto enqueue = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"enqueue", "--data", data, "--backend", "cuda"});
    Ran r = kforge_cli(args);
    REQUIRE_MESSAGE(r.code == 0, r.err);
  };
  auto done = [&] {
    auto j = kforge_cli({"jobs", "--json", "--state", "done", "--coordinator", url, "--token-file",
                         data + "/api.token"});
    return j.code == 0 ? json::parse(j.out) : json::array();
  };
  enqueue({"--priority", "1", "--", "sh", "-c", "kill -SEGV $$"});
  enqueue({"--priority", "1", "--timeout", "2", "--", "sh", "-c", "sleep 600"});
  enqueue({"--count", "24", "--", "sh", "-c", line("0.3")});
  REQUIRE_MESSAGE(wait_until([&] { return done().size() == 26; }, 120s),
                  read_file(dir / "agent.log"));
  size_t first_batch = spans(read_file(log)).size();
  enqueue({"--count", "8", "--", "sh", "-c", line("0.5")});
  REQUIRE_MESSAGE(wait_until([&] { return done().size() == 34; }, 120s),
                  read_file(dir / "agent.log"));

  std::map<std::string, int> outcomes;
  std::map<std::string, std::string> hostile_device;  // outcome -> device
  for (const json& j : done()) {
    std::string outcome = j["outcome"];
    outcomes[outcome]++;
    if (outcome != "exit 0") hostile_device[outcome] = j["device"];
  }
  CHECK(outcomes["exit 0"] == 32);
  CHECK(outcomes["signal 11"] == 1);
  CHECK(outcomes["timed out"] == 1);

  std::vector<Span> all = spans(read_file(log));
  REQUIRE(first_batch == 24);
  REQUIRE(all.size() == 32);
  std::map<std::string, std::vector<Span>> by_device;
  for (const Span& s : all) {
    CHECK_MESSAGE(
        s.device == "cuda:" + s.visible,
        "job " << s.job << " on " << s.device << " saw CUDA_VISIBLE_DEVICES=" << s.visible);
    by_device[s.device].push_back(s);
  }
  std::set<std::string> second;  // the GPUs of the last 8 jobs
  for (size_t i = first_batch; i < all.size(); ++i) second.insert(all[i].device);
  CHECK(second.size() == 8);
  CHECK(second.count(hostile_device["signal 11"]) ==
        1);  // the GPUs of the crash and the hang work on
  CHECK(second.count(hostile_device["timed out"]) == 1);
  for (const auto& [device, list] : by_device) {
    for (size_t i = 0; i < list.size(); ++i) {
      for (size_t k = i + 1; k < list.size(); ++k) {
        bool overlap = list[i].start < list[k].end && list[k].start < list[i].end;
        CHECK_MESSAGE(!overlap, "jobs " << list[i].job << " and " << list[k].job
                                        << " ran together on " << device);
      }
    }
  }
  bool parallel = false;
  for (size_t i = first_batch; i < all.size(); ++i) {
    for (size_t k = i + 1; k < all.size(); ++k) {
      if (all[i].start < all[k].end && all[k].start < all[i].end) parallel = true;
    }
  }
  CHECK_MESSAGE(parallel, "no two GPUs ever ran jobs at the same time");

  // The metrics see eight devices of one backend.
  ProcessSpec curl;
  curl.argv = {
      "/usr/bin/python3", "-c",
      "import urllib.request,sys; r = urllib.request.Request(sys.argv[1], "
      "headers={'Authorization': 'Bearer ' + "
      "open(sys.argv[2]).read().strip()}); print(urllib.request.urlopen(r).read().decode())",
      url + "/metrics", data + "/api.token"};
  auto m = run_process(curl);
  REQUIRE(m.ok());
  CHECK(m->stdout_data.find("kforge_devices{backend=\"cuda\"} 8\n") != std::string::npos);
}

TEST_CASE("agent.devices: an agent offers only the GPUs named, by their nvidia-smi index") {
  EightGpuHost host;
  Child agent(binary_dir() / "agent" / "kforge-agent",
              host.agent_args({"--devices", "cuda:2,cuda:5"}), host.dir / "agent.log",
              host.dir.path());
  json devices = host.live_agent()["devices"];
  REQUIRE(devices.size() == 2);
  CHECK(devices[0]["backend"] == "cuda");
  CHECK(devices[0]["index"] == 2);
  CHECK(devices[1]["backend"] == "cuda");
  CHECK(devices[1]["index"] == 5);
}

TEST_CASE("agent.devices: an agent asked for a GPU the host lacks refuses to start") {
  EightGpuHost host;
  ProcessSpec spec;
  spec.argv = {(binary_dir() / "agent" / "kforge-agent").string()};
  for (const std::string& a : host.agent_args({"--devices", "cuda:9"})) spec.argv.push_back(a);
  spec.env_allow = {"PATH", "HOME", "TMPDIR"};
  spec.timeout = std::chrono::milliseconds(60000);
  auto r = run_process(spec);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  CHECK_FALSE(r->timed_out);
  CHECK(r->exit_code != 0);
  CHECK_MESSAGE(r->stderr_data.find("cuda:9 is not on this host") != std::string::npos,
                r->stderr_data);
  CHECK_MESSAGE(r->stderr_data.find("cuda:0, cuda:1") != std::string::npos, r->stderr_data);
}
