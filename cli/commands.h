// The kforge subcommands, one function each; cli.cpp dispatches to them.
#pragma once

#include <string>

#include "common/flags.h"
#include "coordinator/store.h"

namespace kforge {

// Exit codes (docs/cli.md): 0 success (for verify: a verdict was reached, passed or not),
// 1 the command failed or its inputs are unusable, 2 usage error.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

// Prints "kforge: <message>" to stderr and returns `code`.
int cli_fail(const std::string& message, int code = kExitFailed);

int cmd_verify(const ParsedFlags& flags);
int cmd_run(const ParsedFlags& flags);
int cmd_submit(const ParsedFlags& flags);
int cmd_results(const ParsedFlags& flags);

// Prints a campaign's tasks (campaign_id 0: every campaign) as a table or JSON.
bool print_results(Store& store, int64_t campaign_id, bool json);

}  // namespace kforge
