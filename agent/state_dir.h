// The agent's state directory: what survives an agent restart.
//
//   <state>/
//     agent_id        stable agent id (32 hex digits), written once, atomically
//     outbox.db       finished results not yet acked by the coordinator (SQLite)
//
// Job work directories live elsewhere, under the agent's work root (agent.work_dir, default
// <tmp>/kforge-jobs-<agent id>, mode 0711), because jobs run as unprivileged uids that must
// reach their directory:
//
//   <work root>/
//     harness/        the agent's copy of the verification harness (root, 0755/0644),
//                     made at start so that any job uid can read it
//     job-<random>/   one job's directory: mode 0700, owned by its slot uid, a tmpfs of
//                     agent.job_disk_mb when boxed; removed once the job's result is read
//
// At start the agent removes everything else it finds there (an earlier agent's jobs).
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
