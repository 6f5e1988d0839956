// The `kforge` command line: subcommand dispatch. main.cpp only calls run_cli.
#pragma once

namespace kforge {

// Runs the command line; returns the process exit code (see docs/cli.md).
int run_cli(int argc, char** argv);

}  // namespace kforge
