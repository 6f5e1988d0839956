#include "common/verify_job.h"

namespace kforge {

const std::map<std::string, nlohmann::json>& timing_profiles() {
  static const std::map<std::string, nlohmann::json> all = {
      {"kforge", nlohmann::json::object()},
      {"kernelbench", {{"trials", 5}, {"warmup", 3}, {"runs", 100}}},
  };
  return all;
}

std::map<std::string, std::string> verify_files(const VerifySpec& spec,
                                                const std::string& reference,
                                                const std::string& candidate) {
  nlohmann::json job = spec.options;
  job["op_name"] = spec.op_name;
  job["backend"] = spec.target.backend;
  job["arch"] = spec.target.arch;
  job["impl_type"] = spec.target.impl_type;
  job["framework"] = spec.target.framework;
  job["task_type"] = spec.task_type;
  job["reference"] = "reference.py";
  job["candidate"] = "candidate.py";
  job["token_stdin"] = true;
  return {
      {"job.json", job.dump(2) + "\n"}, {"reference.py", reference}, {"candidate.py", candidate}};
}

}  // namespace kforge
