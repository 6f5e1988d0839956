#include "cli/cli.h"

#include <cstdio>
#include <cstring>
#include <string>

namespace kforge {
namespace {

constexpr const char* kUsage =
    "usage: kforge <command> [options]\n"
    "\n"
    "commands:\n"
    "  version       print the version\n"
    "  help          show this message\n"
    "\n"
    "Run `kforge <command> --help` for a command's options.\n";

}  // namespace

int run_cli(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "help") == 0 || std::strcmp(argv[1], "--help") == 0) {
    std::fputs(kUsage, stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1];
  if (cmd == "version" || cmd == "--version") {
    std::puts("kforge 0.1.0");
    return 0;
  }
  std::fprintf(stderr, "kforge: unknown command '%s'; run `kforge help` for the list\n", cmd.c_str());
  return 2;
}

}  // namespace kforge
