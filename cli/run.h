// kforge run's parts and their options: the daemons' options, changed only where one process
// differs from a deployment.
#pragma once

#include <filesystem>
#include <string>

#include "agent/agent.h"
#include "common/config.h"
#include "common/status.h"
#include "coordinator/generation/conductor.h"
#include "coordinator/operator/http_server.h"
#include "coordinator/scheduling/coordinator.h"

namespace kforge {

struct AllInOneOptions {
  CoordinatorOptions coordinator;
  HttpServerOptions http;
  ConductorOptions conductor;
  AgentOptions agent;  // agent.coordinator is empty: the loop's endpoint, known once it binds
};

// What `kforge run` gives its parts for `config` (read from `config_dir`): the options
// coordinator_options, operator_api_options, conductor_options and agent_options give the
// daemons, except that the agent link is on a loopback port the OS picks, with CURVE keys
// made for this run (when this libzmq has CURVE) that admit the local agent only; the
// coordinator's files are under `data`, the agent's state in <data>/agent, and jobs cannot
// see `data`; the operator API listens on `http_listen`; and agents get 1 s to come back
// after a restart (the only one is ours). Creates the API token and the agent id in `data`.
[[nodiscard]] Result<AllInOneOptions> all_in_one_options(const Config& config,
                                                         const std::filesystem::path& config_dir,
                                                         const std::filesystem::path& data,
                                                         const std::string& http_listen,
                                                         const std::string& device_fixtures = "",
                                                         bool probe = true);

}  // namespace kforge
