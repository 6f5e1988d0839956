// kforge run: the all-in-one mode. A coordinator, the Conductor and a local agent in this
// process (jobs still run in their own sandboxed child processes), driving one campaign to
// its end. Run again on the same --data directory it resumes; a finished campaign is not
// run again.
#include "cli/run.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <thread>

#include "agent/agent.h"
#include "agent/devices.h"
#include "agent/state_dir.h"
#include "cli/check.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "common/config.h"
#include "common/curve.h"
#include "common/fs.h"
#include "common/log.h"
#include "coordinator/generation/conductor.h"
#include "coordinator/intake/campaign.h"
#include "coordinator/operator/http_server.h"

namespace kforge {
namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) {
  g_stop = true;
}

// Roles that send an API key, and where it comes from.
bool sends_key(const LlmEndpoint& e) {
  return e.provider != "replay" && (!e.api_key_env.empty() || !e.api_key_file.empty());
}

// Where jobs run as this process's uid (not root, agent.contain = false or no agent.job_uids),
// they can read what this user can: an LLM key in the environment (this process's, the shell's
// that started it) is refused, a key file is warned about.
Status guard_llm_keys(const std::map<LlmRole, LlmEndpoint>& endpoints, const Agent& agent) {
  for (const auto& [llm_role, e] : endpoints) {
    const std::string role(to_string(llm_role));
    if (!sends_key(e) || !agent.jobs_share_uid()) continue;
    if (!e.api_key_env.empty()) {
      return failed_precondition(
          "llm." + role + ": the API key is in the environment ($" + e.api_key_env +
          ") and jobs run as uid " + std::to_string(::getuid()) +
          ", this process's own (not root, agent.contain = false or agent.job_uids "
          "empty): generated code could read it from /proc, here or in the shell that started "
          "kforge. Put the key "
          "in a file only you can read (llm." +
          role +
          ".api_key_file, mode 0600), or run kforge as root, where "
          "each job gets a uid of its own (docs/security.md)");
    }
    std::fprintf(stderr,
                 "kforge: warning: jobs run as uid %u, this process's own: the generated code they "
                 "run can read every "
                 "file this user can, the API key file %s of llm.%s among them; run kforge as root "
                 "(each job gets "
                 "a uid of its own) to keep it from them (docs/security.md)\n",
                 static_cast<unsigned>(::getuid()), e.api_key_file.c_str(), role.c_str());
  }
  return Status();
}

}  // namespace

Result<AllInOneOptions> all_in_one_options(const Config& config,
                                           const std::filesystem::path& config_dir,
                                           const std::filesystem::path& data,
                                           const std::string& http_listen,
                                           const std::string& device_fixtures, bool probe) {
  CoordinatorConfig cc = config.coordinator;
  cc.listen = "tcp://127.0.0.1:*";
  cc.data_dir = data.string();
  cc.http_listen = http_listen;
  cc.restart_grace_ms = 1000;  // the only agent is ours: it registers at once
  cc.secret_key_file.clear();  // keys made below
  cc.agent_keys_file.clear();
  AgentConfig ac = config.agent;
  ac.state_dir = (data / "agent").string();
  ac.secret_key_file.clear();
  ac.coordinator_public_key.clear();
  AllInOneOptions out;
  auto coordinator = coordinator_options(cc);
  if (!coordinator.ok()) return coordinator.status();
  out.coordinator = std::move(*coordinator);
  auto http = operator_api_options(cc);  // the token: api_token_file, else <data>/api.token
  if (!http.ok()) return http.status();
  out.http = std::move(*http);
  out.conductor = conductor_options(config, config_dir);
  auto agent = agent_options(ac, device_fixtures, probe);
  if (!agent.ok()) return agent.status();
  out.agent = std::move(*agent);
  out.agent.coordinator.clear();
  out.agent.hide_dirs.push_back(std::filesystem::absolute(data));  // the coordinator's database
  // The agent link stays on loopback, but other users of this host could reach the port:
  // CURVE with keys made for this run, the local agent's the only one allowed.
  if (curve_available()) {
    auto server = make_curve_keypair();
    auto client = make_curve_keypair();
    auto agent_id = load_or_create_agent_id(ac.state_dir, ac.id);
    if (!server.ok() || !client.ok() || !agent_id.ok()) {
      return Status(Code::internal, "run: cannot set up the agent link's keys: " +
                                        (!server.ok()   ? server.status()
                                         : !client.ok() ? client.status()
                                                        : agent_id.status())
                                            .message());
    }
    out.coordinator.curve_secret_key = server->secret_key;
    if (Status st = out.coordinator.agent_keys.add(*agent_id, client->public_key); !st.ok())
      return st;
    out.agent.curve_secret_key = client->secret_key;
    out.agent.coordinator_public_key = server->public_key;
  }
  return out;
}

int cmd_run(const ParsedFlags& flags) {
  if (flags.positional.size() != 1)
    return cli_fail("run: give one campaign file, e.g. kforge run campaign.toml", kExitUsage);
  // This process will hold the LLM keys, the agent link's keys and the API token: processes
  // of its uid (jobs, where they share it) may not read its memory.
  if (Status st = hide_process_memory(); !st.ok()) return cli_fail(st.message());
  // Every problem of the campaign and the config first, before anything is created.
  auto checked = check_inputs(flags.positional[0], flags.get("config"), CheckFor::run);
  if (!checked.ok()) return check_failed(checked.status());
  const CampaignPlan& campaign = checked->plan;
  Config& config = checked->config;
  const std::filesystem::path& config_dir = checked->config_dir;

  LogConfig log = config.log;
  if (auto level = flags.get("log-level")) log.level = *level;
  if (!flags.has("log-level") && !flags.has("config")) log.level = "warn";
  if (Status st = init_logging(log, "kforge"); !st.ok()) return cli_fail(st.message());

  std::filesystem::path data = flags.get("data").value_or("kforge-data");
  if (auto n = flags.get("cpu-devices")) {
    auto v = parse_uint_flag("cpu-devices", *n);
    if (!v.ok()) return cli_fail(v.status().message(), kExitUsage);
    config.agent.cpu_devices = static_cast<uint32_t>(*v);
  }
  // The LLM client before the data directory: a recording it cannot read stops the run here.
  const ConductorOptions conductor_opts = conductor_options(config, config_dir);
  std::unique_ptr<LlmClient> llm;
  if (!conductor_opts.endpoints.empty()) {
    auto client = LlmClient::create(conductor_opts.endpoints);
    if (!client.ok()) return cli_fail("llm: " + client.status().message());
    llm = std::move(client.value());
  }
  auto prompt_dir = find_prompt_dir(flags.get("prompts").value_or(""));
  if (!prompt_dir.ok()) return cli_fail(prompt_dir.status().message());
  auto prompts = PromptLibrary::load(*prompt_dir);
  if (!prompts.ok()) return cli_fail(prompts.status().message());

  auto options =
      all_in_one_options(config, config_dir, data, flags.get("http").value_or("127.0.0.1:0"),
                         flags.get("device-fixtures").value_or(""));
  if (!options.ok()) return cli_fail(options.status().message());
  auto coordinator = Coordinator::open(options->coordinator);
  if (!coordinator.ok()) return cli_fail(coordinator.status().message());
  Coordinator& coord = **coordinator;
  Conductor conductor(coord, llm.get(), std::move(prompts.value()), options->conductor);

  Store& store = coord.store();
  auto write = [&](const std::function<Status(Store&)>& fn) {
    return store.atomically([&] { return fn(store); });
  };
  auto stored = store_campaign(write, campaign, checked->campaign_text);
  if (!stored.ok()) return cli_fail(stored.status().message());
  const int64_t campaign_id = stored->first;
  auto row = coord.store().get_campaign(campaign_id);
  if (!row.ok()) return cli_fail(row.status().message());

  // The local agent: this host's devices, jobs in sandboxed child processes.
  AgentOptions& aopts = options->agent;
  aopts.coordinator = coord.endpoint();
  auto agent = Agent::open(aopts);
  if (!agent.ok()) return cli_fail(agent.status().message());
  if (Status st = guard_llm_keys(options->conductor.endpoints, **agent); !st.ok())
    return cli_fail(st.message());

  coord.add_change_listener([&] { conductor.resume_all().ok(); });  // tasks `kforge submit` adds
  // The operator API and dashboard, so that `kforge status --coordinator URL` works meanwhile.
  auto api = serve_operator_api(coord, conductor, options->http);
  if (!api.ok()) return cli_fail(api.status().message());
  // The dashboard's URL carries the token: on a terminal only, never into a captured log.
  if (::isatty(STDERR_FILENO)) {
    std::fprintf(stderr, "kforge: dashboard on %s\n", api->server->dashboard_url().c_str());
  } else {
    std::fprintf(stderr, "kforge: operator API and dashboard on %s (token in %s)\n",
                 api->server->url().c_str(), api->server->token_file().c_str());
  }
  g_stop = false;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::thread coordinator_thread([&] {
    Status st = coord.run();
    if (!st.ok()) spdlog::critical("{}", st.to_string());
    g_stop = true;
  });
  std::thread agent_thread([&] { (*agent)->run().ok(); });
  if (row->state != CampaignState::finished)
    coord.call([&](Coordinator&) { return conductor.resume_all(); }).ok();

  // Progress until the campaign finishes (or a signal stops us; a later run resumes).
  size_t last_done = SIZE_MAX;
  bool finished = false;
  while (!g_stop) {
    auto tasks =
        coord.call([&](Coordinator& c) { return c.store().tasks_of_campaign(campaign_id); });
    if (!tasks.ok()) break;
    size_t done = 0, passed = 0;
    for (const TaskRow& t : *tasks) {
      done += kforge::finished(t.state) ? 1 : 0;
      passed += t.state == TaskState::passed ? 1 : 0;
    }
    if (done != last_done) {
      std::fprintf(stderr, "kforge: %s: %zu/%zu tasks done, %zu passed\n", campaign.name().c_str(),
                   done, tasks->size(), passed);
      last_done = done;
    }
    if (done == tasks->size()) {
      finished = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // progress display only
  }
  api->server.reset();  // no request waits on the loop once it stops
  (*agent)->stop(true);
  agent_thread.join();
  coord.stop();
  coordinator_thread.join();
  if (!finished) return cli_fail("run: interrupted; run the same command again to resume");
  ParsedFlags local;
  local.values["data"] = data.string();
  auto client = connect_api(local);
  if (!client.ok()) return cli_fail(client.status().message());
  auto tasks = (*client)->get("tasks?campaign=" + std::to_string(campaign_id));
  if (!tasks.ok()) return cli_fail(tasks.status().message());
  print_tasks(*tasks, flags.has("json") ? "json" : "table");
  return kExitOk;
}

}  // namespace kforge
