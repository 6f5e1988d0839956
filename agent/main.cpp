// kforge-agent: one per host; advertises devices, runs jobs in sandboxed child processes.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "agent/agent.h"
#include "agent/devices.h"
#include "agent/verify.h"
#include "common/build_info.h"
#include "common/config.h"
#include "common/curve.h"
#include "common/flags.h"
#include "common/log.h"

namespace {

const std::vector<kforge::FlagSpec> kFlags = {
    {"config", true, "TOML configuration file (table [agent])"},
    {"coordinator", true, "coordinator endpoint (default tcp://127.0.0.1:7700)"},
    {"state", true, "state directory: agent id, outbox, work dirs (default kforge-agent)"},
    {"id", true, "agent id for a new state directory (agent.id; the allow-list's name for it)"},
    {"secret-key-file", true, "this agent's CURVE secret key file (agent.secret_key_file)"},
    {"coordinator-key", true,
     "the coordinator's CURVE public key, z85 (agent.coordinator_public_key)"},
    {"cpu-devices", true, "number of CPU devices to offer (default 1)"},
    {"devices", true, "accelerators to offer, e.g. cuda:0,cuda:3 (agent.devices; default all)"},
    {"device-fixtures", true,
     "read nvidia-smi.csv / npu-smi.txt from DIR instead of running the tools"},
    {"no-probe", false, "skip the Python capability probe"},
    {"log-level", true, "trace|debug|info|warn|error"},
    {"log-json", false, "log JSON lines"},
    {"help", false, "show this message"},
    {"version", false, "print the version and the commit it was built from"},
};

kforge::Agent* g_agent = nullptr;
void on_signal(int) {
  if (g_agent) g_agent->stop(true);
}

int fail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "kforge-agent: %s\n", message.c_str());
  return code;
}

// "cuda:0,cuda:3" -> {"cuda:0", "cuda:3"}; "" -> {} (every device).
std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  if (s.empty()) return out;
  for (size_t start = 0;;) {
    size_t comma = s.find(',', start);
    out.push_back(s.substr(start, comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kforge;
  auto flags = parse_flags(argc, argv, 1, kFlags, "kforge-agent");
  if (!flags.ok()) {  // the message names the program already
    std::fprintf(stderr, "%s\n", flags.status().message().c_str());
    return 2;
  }
  if (flags->has("version")) {
    std::printf("%s\n", version_line("kforge-agent").c_str());
    return 0;
  }
  if (flags->has("help")) {
    std::printf("%s", flags_help(kFlags, "usage: kforge-agent [options]").c_str());
    return 0;
  }
  Config config;
  if (auto path = flags->get("config")) {
    auto loaded = load_config(*path);
    if (!loaded.ok()) return fail(loaded.status().message());
    config = *loaded;
  }
  AgentConfig& ac = config.agent;
  if (auto v = flags->get("coordinator")) ac.coordinator = *v;
  if (auto v = flags->get("state")) ac.state_dir = *v;
  if (auto v = flags->get("id")) ac.id = *v;
  if (auto v = flags->get("secret-key-file")) ac.secret_key_file = *v;
  if (auto v = flags->get("coordinator-key")) ac.coordinator_public_key = *v;
  if (ac.secret_key_file.empty() != ac.coordinator_public_key.empty()) {
    return fail(
        "CURVE needs both agent.secret_key_file (--secret-key-file) and "
        "agent.coordinator_public_key (--coordinator-key)",
        2);
  }
  if (auto v = flags->get("cpu-devices")) {
    auto n = parse_uint_flag("cpu-devices", *v);
    if (!n.ok()) return fail(n.status().message(), 2);
    ac.cpu_devices = static_cast<uint32_t>(*n);
  }
  if (auto v = flags->get("devices")) ac.devices = split_commas(*v);
  if (auto v = flags->get("log-level")) ac.log.level = *v;
  if (flags->has("log-json")) ac.log.json = true;
  if (Status st = init_logging(ac.log, "agent"); !st.ok()) return fail(st.message());

  auto configured =
      agent_options(ac, flags->get("device-fixtures").value_or(""), !flags->has("no-probe"));
  if (!configured.ok()) return fail(configured.status().message());
  AgentOptions& options = *configured;
  if (!options.curve_secret_key.empty()) {
    spdlog::info("agent link: CURVE, agent public key {}",
                 curve_public_key(options.curve_secret_key).value_or("?"));
  } else {
    spdlog::warn(
        "agent link is not authenticated (plain TCP): set agent.secret_key_file and "
        "agent.coordinator_public_key (docs/deploy.md)");
  }
  if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES"); visible && ac.devices.empty()) {
    spdlog::warn(
        "the agent advertises every GPU nvidia-smi lists and ignores CUDA_VISIBLE_DEVICES={}; "
        "use agent.devices (--devices) to restrict it",
        visible);
  }
  for (const auto& d : options.devices) {
    spdlog::info("device {}:{} {} ({}{})", d.backend, d.index, d.arch, d.name,
                 d.memory_mb ? ", " + std::to_string(d.memory_mb) + " MiB" : "");
  }

  // Looked up again for each verify job; said once here, so that a missing harness shows at
  // start-up rather than as failed jobs.
  if (auto harness = find_harness_dir(ac.harness_dir); harness.ok()) {
    spdlog::info("verification harness {}", harness->string());
  } else {
    spdlog::warn("{}; verify jobs will fail until it is found", harness.status().message());
  }

  auto agent = Agent::open(options);
  if (!agent.ok()) return fail(agent.status().message());
  g_agent = agent->get();
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  Status st = (*agent)->run();
  g_agent = nullptr;
  // 3: refused for good by the coordinator (protocol version, key, invalid hello, superseded);
  // the unit does not restart on it (RestartPreventExitStatus). Transient refusals never exit.
  if (!st.ok()) return fail(st.message(), 3);
  return 0;
}
