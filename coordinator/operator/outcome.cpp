#include "coordinator/operator/outcome.h"

#include <cmath>
#include <map>

#include "common/verify_result.h"

namespace kforge {
namespace {

// A finite positive number, else 0 (the harness may report "inf" or "nan").
double positive(double v) {
  return std::isfinite(v) && v > 0 ? v : 0;
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
  // Several chains (best_of_n) may pass: the best is the fastest (the first of equals).
  std::map<int64_t, int> last_coder;  // by sample (chain)
  bool found = false;
  for (const StepRow& s : steps) {
    if (s.role == Role::coder && !s.verdict) last_coder[s.sample] = s.seq;
    if (s.role != Role::verifier) continue;
    r.last_verdict = s.verdict;
    r.verifier_verdicts.push_back(s.verdict);
    if (s.verdict != Outcome::passed) continue;
    const Profile* profile = s.result && s.result->profile ? &*s.result->profile : nullptr;
    const double speedup = profile ? positive(profile->speedup) : 0;
    if (found && speedup <= r.speedup) continue;
    found = true;
    r.best_step = last_coder[s.sample];
    r.best_verdict_step_id = s.id;
    r.speedup = speedup;
    if (profile) {
      r.candidate_us = positive(profile->candidate.median_us);
      r.reference_us = positive(profile->reference.median_us);
      r.harness_suspicious = profile->suspicious;
    }
  }
  r.verdict = finished(task.state) && task.verdict ? task.verdict : r.last_verdict;
  auto usage = store.llm_usage_of_task(task.id);
  if (!usage.ok()) return usage.status();
  r.usage = *usage;
  return r;
}

}  // namespace kforge
