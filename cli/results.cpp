// kforge results and the table kforge run prints: every task's outcome, read from the store.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "coordinator/conductor.h"

namespace kforge {
namespace {

struct TaskResult {
  TaskRow task;
  double speedup = 0;       // reference time / candidate time, profile tasks that passed
  int best_step = 0;        // seq of the coder step whose code passed (0: none)
  std::string last_verdict;
  LlmUsage usage;
};

Result<TaskResult> result_of(Store& store, const TaskRow& task) {
  TaskResult r{task};
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
  auto usage = store.llm_usage_of_task(task.id);
  if (usage.ok()) r.usage = *usage;
  return r;
}

}  // namespace

bool print_results(Store& store, int64_t campaign_id, bool json) {
  std::vector<TaskRow> tasks;
  if (campaign_id > 0) {
    auto t = store.tasks_of_campaign(campaign_id);
    if (!t.ok()) return cli_fail(t.status().message()) == kExitOk;
    tasks = std::move(*t);
  } else {
    for (int64_t id = 1;; ++id) {  // every campaign, in order
      auto c = store.get_campaign(id);
      if (!c.ok()) break;
      auto t = store.tasks_of_campaign(id);
      if (!t.ok()) return cli_fail(t.status().message()) == kExitOk;
      tasks.insert(tasks.end(), t->begin(), t->end());
    }
  }
  nlohmann::json out = nlohmann::json::array();
  if (!json) {
    std::printf("%-20s %-28s %-8s %-20s %5s %8s %9s\n", "OP", "TASK_ID", "STATE", "VERDICT", "STEPS",
                "SPEEDUP", "COST_USD");
  }
  for (const TaskRow& t : tasks) {
    auto r = result_of(store, t);
    if (!r.ok()) return cli_fail(r.status().message()) == kExitOk;
    std::string verdict = t.state == "passed" ? "passed" : r->last_verdict.empty() ? t.verdict : r->last_verdict;
    if (json) {
      out.push_back({{"task", t.id},
                     {"campaign", t.campaign_id},
                     {"op_name", t.spec.op_name},
                     {"task_id", t.spec.task_id},
                     {"backend", t.spec.backend},
                     {"arch", t.spec.arch},
                     {"impl_type", t.spec.impl_type},
                     {"state", t.state},
                     {"verdict", verdict},
                     {"reason", t.verdict},
                     {"steps", t.steps_used},
                     {"limit_steps", t.spec.limit_steps},
                     {"speedup", r->speedup > 0 ? nlohmann::json(r->speedup) : nlohmann::json(nullptr)},
                     {"best_step", r->best_step > 0 ? nlohmann::json(r->best_step) : nlohmann::json(nullptr)},
                     {"llm_calls", r->usage.calls},
                     {"prompt_tokens", r->usage.prompt_tokens},
                     {"completion_tokens", r->usage.completion_tokens},
                     {"cost_usd", r->usage.cost_usd}});
    } else {
      std::string speedup = r->speedup > 0 ? std::to_string(r->speedup).substr(0, 5) + "x" : "-";
      std::printf("%-20s %-28s %-8s %-20s %5d %8s %9.4f\n", t.spec.op_name.c_str(), t.spec.task_id.c_str(),
                  t.state.c_str(), verdict.substr(0, 20).c_str(), t.steps_used, speedup.c_str(), r->usage.cost_usd);
    }
  }
  if (json) std::printf("%s\n", out.dump(2).c_str());
  return true;
}

int cmd_results(const ParsedFlags& flags) {
  std::filesystem::path db = std::filesystem::path(flags.get("data").value_or("kforge-data")) / "kforge.db";
  if (!std::filesystem::exists(db)) {
    return cli_fail("no kforge database at " + db.string() + "; pass --data with the run's data directory");
  }
  auto store = Store::open_readonly(db);
  if (!store.ok()) return cli_fail(store.status().message());
  return print_results(**store, 0, flags.has("json")) ? kExitOk : kExitFailed;
}

}  // namespace kforge
