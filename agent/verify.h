// Verification jobs from the C++ side: the harness contract of docs/harness.md.
//
// A verify job is a directory holding job.json, reference.py and candidate.py, a run of
// `<python> <harness>/kforge_harness.py --job-dir DIR` in it, and DIR/result.json. The
// same pieces serve `kforge verify` (local, no coordinator) and the agent's "verify" jobs.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/process.h"
#include "common/status.h"
#include "common/targets.h"
#include "common/verify_job.h"

namespace kforge {

// The harness directory: `configured` if set, else $KFORGE_HARNESS_DIR, else
// <executable>/../share/kforge/harness, else the source tree this binary was built from.
Result<std::filesystem::path> find_harness_dir(const std::string& configured = "");

// The harness process for a job directory. `token` goes to the harness on stdin and must
// come back in result.json: a candidate that writes result.json itself cannot know it.
ProcessSpec harness_process(const std::string& python, const std::filesystem::path& harness_dir,
                            const std::filesystem::path& job_dir, const std::string& token);

// The final result document: the harness's own verdict when it wrote a genuine one, else a
// verdict derived from how the process ended (timeout, signal, exit status) and from the
// stage it had reached.
nlohmann::json finalize_verdict(const ProcessResult& process, const std::filesystem::path& job_dir,
                                const std::string& token);

// Gives a job directory and its files to the user a job runs as.
Status hand_over(const std::filesystem::path& dir, const std::optional<UserIds>& user);

}  // namespace kforge
