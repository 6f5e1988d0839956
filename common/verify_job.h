// A verify job's files: the contract between whoever asks for a verification (the
// Conductor, kforge verify) and the harness that runs it (docs/harness.md).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "common/targets.h"

namespace kforge {

struct VerifySpec {
  std::string op_name;
  Target target;
  std::string task_type = "precision_only";           // | profile
  nlohmann::json options = nlohmann::json::object();  // more job.json keys (trials, seed, ...)
};

// Timing profiles a campaign may name (`timing`, docs/campaigns.md), by name: the job.json keys
// each sets on the campaign's verify jobs. "kforge": none, the harness's defaults (3 precision
// trials, 5 warm-up and 50 timed runs per side); "kernelbench": KernelBench's evaluation
// defaults (5 correctness trials, 3 warm-up and 100 timed runs).
const std::map<std::string, nlohmann::json>& timing_profiles();

// The files of a verify job directory: job.json, reference.py, candidate.py.
std::map<std::string, std::string> verify_files(const VerifySpec& spec,
                                                const std::string& reference,
                                                const std::string& candidate);

}  // namespace kforge
