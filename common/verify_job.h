// A verify job's files: the contract between whoever asks for a verification (the
// Conductor, kforge verify) and the harness that runs it (docs/harness.md).
#pragma once

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "common/targets.h"

namespace kforge {

struct VerifySpec {
  std::string op_name;
  Target target;
  std::string task_type = "precision_only";  // | profile
  nlohmann::json options = nlohmann::json::object();  // more job.json keys (trials, seed, ...)
};

// The files of a verify job directory: job.json, reference.py, candidate.py.
std::map<std::string, std::string> verify_files(const VerifySpec& spec, const std::string& reference,
                                                const std::string& candidate);

}  // namespace kforge
