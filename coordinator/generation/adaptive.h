// Campaign budgets and the adaptive strategy (issue 17; docs/campaigns.md, [search]): pure
// rules over what a campaign has recorded, so that a resumed campaign decides as the one that
// stopped would have, and tests drive them without a Coordinator (tests/adaptive_test.cpp).
// The Conductor asks them before it starts an action (Conductor::gate).
//
// Budgets. Every campaign_max_* of the policy bounds all the campaign's tasks together, read
// from the store (Store::campaign_spend), never from memory alone: a restarted coordinator
// counts what was spent before. Once one is spent, no new LLM call starts; once
// campaign_max_device_s or campaign_max_wall_s is, no new verify job either (the code a verify
// job judges is paid for already: an LLM budget lets it be judged). What is in flight finishes
// and is recorded; each task then ends with the budget as its reason.
//
// The adaptive rule. A task's progress after each judged candidate is
//   passed: 1 + score (its speedup; 1 when not profiled)
//   precision_mismatch: 0.5    runtime_error, crashed, timeout, resource_exceeded: 0.25
//   anything else (compile_error, rejected): 0
// and best(n) is the best progress of the candidates judged within its first n LLM calls.
// Over its last w = min(patience, calls) calls a task improved
//   gain = (best(calls) - best(calls - w)) / w           (per LLM call)
// and its index is the UCB
//   index = gain + exploration * sqrt(ln(1 + N) / (1 + calls))
// with N the LLM calls of the campaign's running tasks. When a task wants to ask the LLM:
//   - it stops when stagnant: at least `patience` calls, and best(calls) is no better than
//     best(calls - patience) (its reason says so; passed when a candidate passed);
//   - else it asks when fewer than `parallel` of the campaign's tasks are asking and it ranks
//     among the first (parallel - asking) waiting tasks by index (ties: the lower task id);
//     waiting tasks are the running ones with no action in flight, stagnant ones aside;
//   - else it waits, and is asked again when another task of the campaign moves on.
// Everything it reads is recorded (steps, candidates) or in flight, so given the recorded
// state the choice is the same; with parallel = 1 the whole allocation is.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/generation/search.h"
#include "coordinator/store/store.h"

namespace kforge {

// The campaign budget of `policy` that `spend` has used up, in the words its tasks end with
// (e.g. "campaign_max_llm_calls (20) spent: 20 LLM calls"), or none. `in_flight_llm`: the
// campaign's LLM calls asked and not answered (they count as calls). `asks`: the action asks
// the LLM; false: a verify job, held back by device-seconds and wall time only.
std::optional<std::string> spent_budget(const SearchPolicy& policy,
                                        const Store::CampaignSpend& spend, int64_t in_flight_llm,
                                        bool asks);

// A judged candidate's progress (the table above).
double progress(Verdict verdict, double score);

// A running task as the rule sees it.
struct AdaptiveTask {
  int64_t task_id = 0;
  int64_t calls = 0;  // LLM calls recorded and in flight
  // Per judged candidate, in order: the task's LLM calls before it was judged, its progress.
  std::vector<std::pair<int64_t, double>> judged;
  bool busy = false;  // an action in flight: not waiting for a turn
};

// The campaign's running tasks from their steps (Store::running_search_steps), by task id.
std::vector<AdaptiveTask> adaptive_tasks(const std::vector<Store::SearchStep>& steps);

// best(n): the best progress judged within the task's first `calls` LLM calls (0: none).
double best_progress(const AdaptiveTask& task, int64_t calls);
// The task's UCB index; `campaign_calls` is N.
double adaptive_index(const AdaptiveTask& task, int64_t campaign_calls, const SearchPolicy& policy);
// Why the task stops (its last `patience` calls improved nothing), or none.
std::optional<std::string> stagnant(const AdaptiveTask& task, const SearchPolicy& policy);

enum class Turn { go, wait, stop };
struct Gate {
  Turn turn = Turn::go;
  std::string reason;  // stop: why
};

// The waiting tasks (not busy) the rule moves now, with `asking` of the campaign's tasks
// asking already and `slots` allowed at once (parallel, resolved): the stagnant ones (to stop)
// and the first (slots - asking) of the others by index.
std::vector<int64_t> adaptive_movers(const SearchPolicy& policy,
                                     const std::vector<AdaptiveTask>& tasks, int64_t asking,
                                     int64_t slots);
// Whether task `asker` (one of `tasks`) may ask the LLM now: stop when stagnant, go when it
// is one of adaptive_movers, else wait.
Gate adaptive_turn(const SearchPolicy& policy, std::vector<AdaptiveTask> tasks, int64_t asker,
                   int64_t asking, int64_t slots);

}  // namespace kforge
