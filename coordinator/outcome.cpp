#include "coordinator/outcome.h"

#include <nlohmann/json.hpp>

namespace kforge {

Result<TaskOutcome> task_outcome(Store& store, const TaskRow& task) {
  TaskOutcome r;
  r.task = task;
  auto steps = store.steps_of(task.id);
  if (!steps.ok()) return steps.status();
  int last_coder = 0;
  for (const StepRow& s : *steps) {
    if (s.role == "coder" && s.verdict.empty()) last_coder = s.seq;
    if (s.role != "verifier") continue;
    r.last_verdict = s.verdict;
    if (s.verdict == "passed") {
      r.best_step = last_coder;
      auto doc = nlohmann::json::parse(s.output, nullptr, false);
      if (doc.is_object() && doc.contains("profile") && doc["profile"].is_object()) {
        r.speedup = doc["profile"].value("speedup", 0.0);
      }
    }
  }
  r.verdict = task.state == "passed" ? "passed" : r.last_verdict.empty() ? task.verdict : r.last_verdict;
  auto usage = store.llm_usage_of_task(task.id);
  if (!usage.ok()) return usage.status();
  r.usage = *usage;
  return r;
}

}  // namespace kforge
