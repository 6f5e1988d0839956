#include "coordinator/generation/task.h"

#include <algorithm>
#include <cctype>

#include "common/sha256.h"
#include "common/targets.h"
#include "coordinator/intake/campaign.h"

namespace kforge {

bool valid_op_name(std::string_view s) {
  return !s.empty() && s.size() <= kMaxOpName && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

Status check_task_desc(std::string_view text) {
  if (text.find("Model") == std::string_view::npos ||
      text.find("get_inputs") == std::string_view::npos) {
    return invalid_argument(
        "defines no Model and get_inputs(); expected a task file's text "
        "(class Model, def get_inputs(): docs/harness.md)");
  }
  return Status();
}

Result<Workflow> parse_workflow(std::string_view name) {
  if (std::optional<Workflow> w = parse_enum<Workflow>(name)) return *w;
  std::string shown(name.substr(0, 64));
  for (char& c : shown) {
    if (!std::isprint(static_cast<unsigned char>(c))) c = '?';
  }
  return invalid_argument("workflow: '" + shown + "' is not one of " + names_of<Workflow>());
}

Status validate_task_spec(const TaskSpec& spec, Workflow workflow) {
  if (!valid_op_name(spec.op_name)) {
    std::string shown =
        spec.op_name.size() > 64 ? spec.op_name.substr(0, 64) + "..." : spec.op_name;
    for (char& c : shown) {
      if (!std::isprint(static_cast<unsigned char>(c))) c = '?';
    }
    return invalid_argument("op_name: expected 1 to " + std::to_string(kMaxOpName) +
                            " letters, digits, '_', '-' or '.', got '" + shown + "' (" +
                            std::to_string(spec.op_name.size()) + " bytes)");
  }
  if (spec.task_desc.empty())
    return invalid_argument("task_desc: a task needs its reference implementation");
  if (Status st = check_task_desc(spec.task_desc); !st.ok())
    return invalid_argument("task_desc: " + st.message());
  KF_RETURN_IF_ERROR(
      validate_target(Target{spec.backend, spec.arch, spec.impl_type, spec.framework}));
  if (spec.task_type != "precision_only" && spec.task_type != "profile") {
    return invalid_argument("task_type '" + spec.task_type +
                            "' is not one of precision_only, profile");
  }
  if (spec.limit_steps < 1 || spec.limit_steps > kMaxLimitSteps) {
    return invalid_argument("limit_steps must be 1.." + std::to_string(kMaxLimitSteps) + ", not " +
                            std::to_string(spec.limit_steps));
  }
  if (workflow == Workflow::verify_only && spec.candidate.empty()) {
    return invalid_argument(
        "candidate: missing; workflow verify_only verifies a supplied candidate (the code of a "
        "candidate file)");
  }
  if (workflow != Workflow::verify_only && !spec.candidate.empty()) {
    return invalid_argument(
        "candidate: a candidate is used only by workflow verify_only (this task's workflow is '" +
        std::string(to_string(workflow)) + "')");
  }
  return Status();
}

Result<std::pair<int64_t, bool>> store_task(Store& store, const TaskSpec& spec, Workflow workflow) {
  // The task's own campaign, named by its content so that running it again resumes it.
  std::string hash = sha256_hex(spec.op_name + "\n" + spec.task_id + "\n" + spec.backend + "\n" +
                                spec.arch + "\n" + spec.impl_type + "\n" + spec.framework + "\n" +
                                spec.task_type + "\n" + std::to_string(spec.limit_steps) + "\n" +
                                std::string(to_string(workflow)) + "\n" + spec.task_desc);
  auto existing = store.campaign_by_hash(hash);
  if (!existing.ok()) return existing.status();
  if (existing->has_value()) {
    auto tasks = store.tasks_of_campaign((*existing)->id);
    if (!tasks.ok()) return tasks.status();
    if (tasks->empty())
      return internal_error("campaign " + std::to_string((*existing)->id) + " has no task");
    return std::pair<int64_t, bool>{tasks->front().id, false};
  }
  auto campaign =
      store.create_campaign("task " + spec.op_name + "/" + spec.task_id, "", hash, workflow);
  if (!campaign.ok()) return campaign.status();
  auto created = store.create_task(*campaign, spec);
  if (!created.ok()) return created.status();
  return std::pair<int64_t, bool>{*created, true};
}

Task::Task(TaskSpec spec, Coordinator& coordinator, Conductor& conductor, Workflow workflow)
    : spec_(std::move(spec)),
      coordinator_(coordinator),
      conductor_(conductor),
      workflow_(workflow) {}

std::future<bool> Task::run() {
  auto promise = std::make_shared<std::promise<bool>>();
  std::future<bool> result = promise->get_future();
  if (Status valid = validate_task_spec(spec_, workflow_); !valid.ok()) {
    error_ = valid.message();
    promise->set_value(false);
    return result;
  }
  auto id = coordinator_.call([&](Coordinator& c) -> Result<int64_t> {
    Store& store = c.store();
    auto stored = store_task(store, spec_, workflow_);
    if (!stored.ok()) return stored.status();
    int64_t task_id = stored->first;
    auto row = store.get_task(task_id);
    if (!row.ok()) return row.status();
    if (finished(row->state)) {
      promise->set_value(row->state == TaskState::passed);
    } else {
      conductor_.on_finish(task_id, [promise](bool passed) { promise->set_value(passed); });
      conductor_.start(task_id);
    }
    return task_id;
  });
  if (!id.ok()) {
    error_ = id.status().message();
    promise->set_value(false);
  } else {
    id_ = *id;
  }
  return result;
}

}  // namespace kforge
