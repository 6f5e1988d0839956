#include "coordinator/operator/outcome.h"

#include <cmath>
#include <nlohmann/json.hpp>

namespace kforge {
namespace {

// A finite positive number at doc[key], else 0 (the harness writes "inf"/"nan" as strings).
double positive_number(const nlohmann::json& doc, const char* key) {
  auto it = doc.find(key);
  if (it == doc.end() || !it->is_number()) return 0;
  double v = it->get<double>();
  return std::isfinite(v) && v > 0 ? v : 0;
}

double median_us(const nlohmann::json& profile, const char* side) {
  auto it = profile.find(side);
  return it != profile.end() && it->is_object() ? positive_number(*it, "median_us") : 0;
}

}  // namespace

Result<TaskOutcome> task_outcome(Store& store, const TaskRow& task) {
  auto steps = store.steps_of(task.id);
  if (!steps.ok()) return steps.status();
  return task_outcome(store, task, *steps);
}

Result<TaskOutcome> task_outcome(Store& store, const TaskRow& task,
                                 const std::vector<StepRow>& steps) {
  TaskOutcome r;
  r.task = task;
  int last_coder = 0;
  for (const StepRow& s : steps) {
    if (s.role == "coder" && s.verdict.empty()) last_coder = s.seq;
    if (s.role != "verifier") continue;
    r.last_verdict = s.verdict;
    r.verifier_verdicts.push_back(s.verdict);
    if (s.verdict == "passed") {
      r.best_step = last_coder;
      auto doc = nlohmann::json::parse(s.output, nullptr, false);
      if (doc.is_object() && doc.contains("profile") && doc["profile"].is_object()) {
        const nlohmann::json& profile = doc["profile"];
        r.speedup = positive_number(profile, "speedup");
        r.candidate_us = median_us(profile, "candidate");
        r.reference_us = median_us(profile, "reference");
        auto flag = profile.find("suspicious");
        r.harness_suspicious = flag != profile.end() && flag->is_boolean() && flag->get<bool>();
      }
    }
  }
  r.verdict = task.state == "passed"   ? "passed"
              : r.last_verdict.empty() ? task.verdict
                                       : r.last_verdict;
  auto usage = store.llm_usage_of_task(task.id);
  if (!usage.ok()) return usage.status();
  r.usage = *usage;
  return r;
}

}  // namespace kforge
