// What one gate decision costs the Conductor in a large budgeted adaptive campaign
// (coordinator/generation/adaptive.h): Store::campaign_spend, Store::running_search_steps and
// adaptive_turn over a campaign of --tasks running tasks with --steps recorded steps each
// (coder and verifier in turn, every verifier step a candidate).
//
//   kforge-bench-adaptive [--tasks 1000] [--steps 20] [--decisions 200]
//
// Prints `name: value` lines.
#include "coordinator/generation/adaptive.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

using namespace kforge;

int main(int argc, char** argv) {
  int64_t tasks = 1000, steps = 20, decisions = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    const int64_t v = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--tasks"))
      tasks = v;
    else if (!std::strcmp(argv[i], "--steps"))
      steps = v;
    else if (!std::strcmp(argv[i], "--decisions"))
      decisions = v;
  }
  const auto dir = std::filesystem::temp_directory_path() /
                   ("kforge-bench-adaptive-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto store = Store::open(dir / "kforge.db");
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().to_string().c_str());
    return 1;
  }
  Store& s = **store;
  SearchPolicy policy;
  policy.strategy = "adaptive";
  policy.samples = 8;
  policy.parallel = 8;
  policy.campaign_max_llm_calls = 1'000'000;
  const int64_t campaign =
      s.create_campaign("bench", "", "bench", Workflow::coder_only, "kforge", search_text(policy))
          .value();
  std::vector<int64_t> ids;
  for (int64_t t = 0; t < tasks; ++t) {
    TaskSpec spec;
    spec.op_name = "op" + std::to_string(t);
    spec.task_id = "s0";
    spec.task_desc = "class Model: ...";
    spec.backend = "cuda";
    spec.arch = "h100";
    spec.impl_type = "triton";
    spec.framework = "torch";
    const int64_t id = s.create_task(campaign, spec).value();
    (void)s.set_task_state(id, TaskState::running);
    ids.push_back(id);
    for (int64_t k = 0; k < steps; ++k) {
      StepRow step;
      step.task_id = id;
      step.role = k % 2 == 0 ? Role::coder : Role::verifier;
      step.output = "x";
      if (step.role == Role::verifier) step.verdict = Outcome::compile_error;
      const int64_t step_id = s.record_step(step).value();
      if (step.role != Role::verifier) continue;
      CandidateRow c;
      c.task_id = id;
      c.step_id = step_id;
      c.generation = k / 2 + 1;
      c.verdict = (k / 2) % 3 == 2 ? Verdict::passed : Verdict::compile_error;
      c.score = c.verdict == Verdict::passed ? 1.0 + static_cast<double>(t % 7) / 7.0 : 0;
      (void)s.record_candidate(c).value();
    }
  }
  // A budgeted campaign of any strategy reads what it spent; an adaptive one also its tasks.
  auto start = std::chrono::steady_clock::now();
  for (int64_t d = 0; d < decisions; ++d) {
    if (spent_budget(policy, s.campaign_spend(campaign).value(), 0, true)) return 1;
  }
  const double spend_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  start = std::chrono::steady_clock::now();
  int64_t go = 0;
  for (int64_t d = 0; d < decisions; ++d) {
    const std::vector<AdaptiveTask> view = adaptive_tasks(s.running_search_steps(campaign).value());
    go +=
        adaptive_turn(policy, view, ids[static_cast<size_t>(d % tasks)], 0, policy.parallel).turn ==
                Turn::go
            ? 1
            : 0;
  }
  const double rule_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("tasks: %lld\nsteps_per_task: %lld\ndecisions: %lld\ngranted: %lld\n",
              static_cast<long long>(tasks), static_cast<long long>(steps),
              static_cast<long long>(decisions), static_cast<long long>(go));
  std::printf("budget_ms_per_decision: %.3f\n", spend_ms / static_cast<double>(decisions));
  std::printf("adaptive_ms_per_decision: %.3f\n", rule_ms / static_cast<double>(decisions));
  std::filesystem::remove_all(dir);
  return 0;
}
