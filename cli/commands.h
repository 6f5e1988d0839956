// The kforge subcommands, one function each; cli.cpp dispatches to them.
#pragma once

#include <string>

#include "common/flags.h"

namespace kforge {

// Exit codes (docs/cli.md): 0 success (for verify: a verdict was reached, passed or not),
// 1 the command failed or its inputs are unusable, 2 usage error.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

// Prints "kforge: <message>" to stderr and returns `code`.
int cli_fail(const std::string& message, int code = kExitFailed);

int cmd_verify(const ParsedFlags& flags);

}  // namespace kforge
