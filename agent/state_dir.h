// The agent's state directory: what survives an agent restart.
//
//   <state>/
//     agent_id        stable agent id (32 hex digits), written once, atomically
//     outbox.db       finished results not yet acked by the coordinator (SQLite)
//     jobs/<job>-<epoch>/   one work directory per job attempt
#pragma once

#include <filesystem>
#include <string>

#include "common/status.h"

namespace kforge {

// Reads <state>/agent_id, creating it (and the directory) on first use.
Result<std::string> load_or_create_agent_id(const std::filesystem::path& state_dir);

}  // namespace kforge
