// A task's outcome as its recorded steps tell it: the verdict an operator sees, the speedup
// of the code that passed, which step wrote it, and what the LLM cost. One derivation for
// `kforge results`, the operator API, reports and the dashboard.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/store/store.h"

namespace kforge {

struct TaskOutcome {
  TaskRow task;
  // A finished task's verdict; an unfinished one's last verifier verdict (none before one ran).
  std::optional<Outcome> verdict;
  std::optional<Outcome> last_verdict;  // of the last verifier step (none when none ran)
  double speedup = 0;  // reference time / candidate time of the passing profile run; 0: none
                       // (also when the harness wrote a non-number such as "inf")
  int best_step = 0;   // seq of the coder step whose code passed (0: none)
  int64_t best_verdict_step_id = 0;  // id of the verifier step that passed it (0: none); the
                                     // winning candidate is the one with this step_id
  LlmUsage usage;                    // the task's LLM calls
  // From the passing profile run (docs/harness.md, result.json `profile`); 0 / false: none.
  double candidate_us = 0;          // candidate median, microseconds
  double reference_us = 0;          // reference median, microseconds
  bool harness_suspicious = false;  // profile.suspicious: the harness flagged the speedup
  // Every verifier step's verdict, in step order (infra_error retries included).
  std::vector<std::optional<Outcome>> verifier_verdicts;
};

Result<TaskOutcome> task_outcome(Store& store, const TaskRow& task);
// The same from the task's steps already read. REQUIRES: `steps` is store.steps_of(task.id).
Result<TaskOutcome> task_outcome(Store& store, const TaskRow& task,
                                 const std::vector<StepRow>& steps);

}  // namespace kforge
