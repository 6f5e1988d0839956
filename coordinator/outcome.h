// A task's outcome as its recorded steps tell it: the verdict an operator sees, the speedup
// of the code that passed, which step wrote it, and what the LLM cost. One derivation for
// `kforge results`, the operator API, reports and the dashboard.
#pragma once

#include <string>

#include "common/status.h"
#include "coordinator/store.h"

namespace kforge {

struct TaskOutcome {
  TaskRow task;
  std::string verdict;       // "passed", else the last verifier verdict, else the task's reason
  std::string last_verdict;  // of the last verifier step ("" when none ran)
  double speedup = 0;        // reference time / candidate time of the passing profile run; 0: none
  int best_step = 0;         // seq of the coder step whose code passed (0: none)
  LlmUsage usage;            // the task's LLM calls
};

Result<TaskOutcome> task_outcome(Store& store, const TaskRow& task);

}  // namespace kforge
