// The design's Task API: one kernel to generate, run by the Conductor on the DevicePool.
//
//   kforge::Task task(spec, conductor);     // op_name, task_desc, task_id, backend, arch,
//   std::future<bool> ok = task.run();      // impl_type, framework, task_type, limit_steps
//   bool success = ok.get();
//
// `conductor` drives tasks on a running Coordinator (its DevicePool holds the devices of
// every live agent). run() may be called from any thread but the coordinator's loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <future>
#include <string_view>
#include <utility>

#include "coordinator/generation/conductor.h"

namespace kforge {

// An op name: 1..kMaxOpName letters, digits, '_', '-' or '.' (it names directories and files
// of exports and reports).
inline constexpr size_t kMaxOpName = 128;
bool valid_op_name(std::string_view name);

// A task's limit_steps lies in 1..kMaxLimitSteps (TOML campaigns, the API and the Python
// client check it before narrowing the value to TaskSpec's int).
inline constexpr int64_t kMaxLimitSteps = 100;

// A task_desc is a task file's text: it must define Model and get_inputs (the harness
// checks the task properly; this catches the wrong file or a stray string at submission).
// The error says what is missing; callers prefix where the text came from.
Status check_task_desc(std::string_view text);

// The workflow named `name` (the API's and the campaign file's "workflow"); invalid_argument
// naming the field and the workflows when it is none of them.
Result<Workflow> parse_workflow(std::string_view name);

// The one check of a task before it is stored, whatever creates it (TOML campaigns, the
// API, the Python client through the API, the Task class). An invalid field is refused
// with its name and what is valid: op_name, task_desc (check_task_desc), the target
// (backend/arch/impl_type/framework), task_type, limit_steps, the workflow (default,
// coder_only, verify_only) and the candidate (required by verify_only, refused otherwise).
Status validate_task_spec(const TaskSpec& spec, Workflow workflow = Workflow::default_);

// Stores a task in a campaign of its own, found again by the task's content (spec and
// workflow): storing the same task twice gives the same id. Returns (task id, true if it
// was created now).
Result<std::pair<int64_t, bool>> store_task(Store& store, const TaskSpec& spec, Workflow workflow);

class Task {
 public:
  Task(TaskSpec spec, Coordinator& coordinator, Conductor& conductor,
       Workflow workflow = Workflow::default_);

  // Checks the parameters (an invalid combination is refused with what is valid), records
  // the task (in a campaign of its own, found again by its content: running the same Task
  // twice resumes it) and starts it. The future becomes true when it passes, false when it
  // fails or is refused; error() then says why.
  std::future<bool> run();
  int64_t id() const { return id_; }
  const std::string& error() const { return error_; }

 private:
  TaskSpec spec_;
  Coordinator& coordinator_;
  Conductor& conductor_;
  Workflow workflow_;
  int64_t id_ = 0;
  std::string error_;
};

}  // namespace kforge
