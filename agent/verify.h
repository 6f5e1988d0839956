// Verification jobs from the C++ side: finding the harness (docs/harness.md) and handing a
// job directory to the user a job runs as. The judge and the candidate workers that run a
// verify job are agent/verifier/verifier.h.
#pragma once

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/process.h"
#include "common/status.h"
#include "common/targets.h"
#include "common/verify_job.h"

namespace kforge {

// The harness directory: `configured` if set, else $KFORGE_HARNESS_DIR, else
// <executable>/../share/kforge/harness, else the source tree this binary was built from.
Result<std::filesystem::path> find_harness_dir(const std::string& configured = "");

// Gives a job directory and its files to the user a job runs as.
Status hand_over(const std::filesystem::path& dir, const std::optional<UserIds>& user);

}  // namespace kforge
