// The agent's state directory: what survives an agent restart.
//
//   <state>/
//     agent_id        stable agent id (32 hex digits), written once, atomically
//     outbox.db       finished results not yet acked by the coordinator (SQLite)
//
// Job work directories live elsewhere, under the agent's work root (agent.work_dir, default
// <tmp>/kforge-jobs-<agent id>, mode 0711), because jobs may run as an unprivileged user that
// must reach its directory: <work root>/<job>-<epoch>/, removed once the result is stored.
#pragma once

#include <filesystem>
#include <string>

#include "common/status.h"

namespace kforge {

// Reads <state>/agent_id, creating it (and the directory) on first use: `wanted` when it is
// not empty, else a random id. A state directory that holds another id than a non-empty
// `wanted` is an error (its outbox belongs to that agent).
Result<std::string> load_or_create_agent_id(const std::filesystem::path& state_dir,
                                            const std::string& wanted = "");

}  // namespace kforge
