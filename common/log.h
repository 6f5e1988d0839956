// Logging setup: spdlog's default logger, configured from a LogConfig.
//
// Code logs through spdlog's free functions (spdlog::info(...)). Text lines look like
//   2026-11-25T13:00:00.123Z info coordinator: agent registered agent=3f2a...
// and with json = true each line is one object
//   {"ts":"2026-11-25T13:00:00.123Z","level":"info","component":"coordinator","msg":"..."}
// Timestamps are UTC with milliseconds. Lines at warn and above are flushed at once, the
// rest at least once a second.
#pragma once

#include <spdlog/common.h>

#include <array>
#include <string>
#include <string_view>

#include "common/config.h"
#include "common/status.h"

namespace kforge {

// The accepted values of LogConfig::level, least to most severe.
inline constexpr std::array<std::string_view, 6> log_level_names = {"trace", "debug", "info",
                                                                    "warn",  "error", "off"};

// Maps a name from log_level_names to spdlog's level; invalid_argument otherwise.
Result<spdlog::level::level_enum> parse_log_level(std::string_view name);

// Replaces spdlog's default logger with one named `component` writing to stderr (coloured
// when it is a terminal) and, when cfg.file is set, appending to that file (parent
// directories are created). On error the previous default logger stays in place.
Status init_logging(const LogConfig& cfg, const std::string& component);

}  // namespace kforge
