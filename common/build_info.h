// What was built: the version (KFORGE_VERSION, from CMake's project()) and the git commit of
// the source tree at build time, for `--version` and the kforge_build_info metric.
#pragma once

#include <string>

namespace kforge {

// The commit's abbreviated hash, or "unknown" when the tree was not a git checkout.
const char* build_commit();

// "PROGRAM VERSION (commit HASH)": what `--version` prints, the program named once.
inline std::string version_line(const std::string& program) {
  return program + " " + KFORGE_VERSION + " (commit " + build_commit() + ")";
}

}  // namespace kforge
