#include "coordinator/task.h"

#include "common/sha256.h"
#include "common/targets.h"

namespace kforge {

Task::Task(TaskSpec spec, Coordinator& coordinator, Conductor& conductor, std::string workflow)
    : spec_(std::move(spec)), coordinator_(coordinator), conductor_(conductor), workflow_(std::move(workflow)) {}

std::future<bool> Task::run() {
  auto promise = std::make_shared<std::promise<bool>>();
  std::future<bool> result = promise->get_future();
  Status valid = validate_target(Target{spec_.backend, spec_.arch, spec_.impl_type, spec_.framework});
  if (valid.ok() && spec_.task_type != "precision_only" && spec_.task_type != "profile") {
    valid = invalid_argument("task_type '" + spec_.task_type + "' is not one of precision_only, profile");
  }
  if (valid.ok() && (spec_.limit_steps < 1 || spec_.limit_steps > 100)) {
    valid = invalid_argument("limit_steps must be 1..100, not " + std::to_string(spec_.limit_steps));
  }
  if (!valid.ok()) {
    error_ = valid.message();
    promise->set_value(false);
    return result;
  }
  // The task's own campaign, named by its content so that running it again resumes it.
  std::string hash = sha256_hex(spec_.op_name + "\n" + spec_.task_id + "\n" + spec_.backend + "\n" + spec_.arch +
                                "\n" + spec_.impl_type + "\n" + spec_.framework + "\n" + spec_.task_type + "\n" +
                                std::to_string(spec_.limit_steps) + "\n" + workflow_ + "\n" + spec_.task_desc);
  auto id = coordinator_.call([&](Coordinator& c) -> Result<int64_t> {
    Store& store = c.store();
    auto existing = store.campaign_by_hash(hash);
    if (!existing.ok()) return existing.status();
    int64_t task_id = 0;
    if (existing->has_value()) {
      auto tasks = store.tasks_of_campaign((*existing)->id);
      if (!tasks.ok()) return tasks.status();
      if (tasks->empty()) return internal_error("campaign " + std::to_string((*existing)->id) + " has no task");
      task_id = tasks->front().id;
    } else {
      auto campaign = store.create_campaign("task " + spec_.op_name + "/" + spec_.task_id, "", hash, workflow_);
      if (!campaign.ok()) return campaign.status();
      auto created = store.create_task(*campaign, spec_);
      if (!created.ok()) return created.status();
      task_id = *created;
    }
    auto row = store.get_task(task_id);
    if (!row.ok()) return row.status();
    if (row->state == "passed" || row->state == "failed") {
      promise->set_value(row->state == "passed");
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
