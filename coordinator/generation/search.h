// How a task searches for its kernel: the campaign's [search] table (docs/campaigns.md), or
// its op's own search table over it (docs/campaigns.md "Per-op search"; TaskSpec::search).
//
//   fix_loop   one chain: design, code, verify, fix until it passes or limit_steps is used
//              up (the default; today's behaviour, byte for byte).
//   best_of_n  `samples` independent chains per task, each a fix_loop with its own sample
//              index (so its own LLM answers), driven in parallel: their verify jobs spread
//              over every free device. The best passing candidate wins. The task ends when
//              every chain has ended, when a passing candidate reaches target_speedup, or
//              when max_llm_calls are used up.
//   evolve     a population per task in `islands` islands of `island_size` children a
//              generation, for `generations` generations (evolve.h): each child improves
//              (or fixes) a parent chosen by score from its island, shown the island's best
//              `inspirations`; every `migrate_every` generations the best of each island joins
//              the next (a ring). Each child is a chain of its own sample index.
//
//   adaptive   up to `samples` chains per task, run one after another, while the campaign's
//              LLM calls go to the tasks whose last calls improved most (a UCB rule over each
//              task's improvement per call, `exploration`), at most `parallel` tasks asking at
//              once; a task whose last `patience` calls improved nothing stops (adaptive.h).
//
// Stop rules (every strategy): target_speedup, max_llm_calls, max_tokens, max_cost_usd,
// max_device_seconds, max_wall_s; stagnation (evolve: generations without a better
// candidate). A budget used up starts nothing more of its kind (LLM calls, verify jobs);
// the task ends when nothing is left in flight, its reason naming the rule.
//
// Campaign budgets (campaign_max_*: LLM calls, tokens, cost, device-seconds, wall time) bound
// all the campaign's tasks together, whatever the strategy: once one is spent no task of the
// campaign starts a new LLM call (device-seconds and wall time: nor a verify job), and each
// ends with the budget as its reason (adaptive.h).
//
// Chains are told apart by the sample index on each step (steps.sample): sample_offset,
// sample_offset + 1, ... The sample index is part of every LLM request of its chain (the
// request's seed and its cache key, llm.h), so a campaign submitted again with the same
// sample_offset replays the answers it paid for, and one with another sample_offset draws
// fresh ones. Sample 0 leaves requests exactly as they were before samples existed.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/vocabulary.h"

namespace kforge {

struct SearchPolicy {
  std::string strategy = "fix_loop";  // fix_loop | best_of_n | evolve | adaptive
  int64_t samples = 1;                // chains per task (best_of_n: 1..kMaxSamples)
  int64_t sample_offset = 0;          // the first chain's sample index (>= 0)
  double target_speedup = 0;          // > 0: a passing candidate this fast ends the task
  int64_t max_llm_calls = 0;          // > 0: LLM calls per task, all chains together
  // evolve only (evolve.h).
  int64_t islands = 2;        // islands of the population
  int64_t island_size = 2;    // children per island and generation
  int64_t generations = 3;    // generations at most
  int64_t inspirations = 2;   // the island's best candidates shown to each child (0: none)
  int64_t migrate_every = 2;  // generations between migrations (0: never)
  int64_t migrants = 1;       // candidates each island sends to the next per migration
  int64_t stagnation = 0;     // > 0: generations without a better candidate end the task
  // Budgets per task, every strategy (0: none).
  int64_t max_tokens = 0;         // prompt + completion tokens of the task's LLM answers
  double max_cost_usd = 0;        // cost of the task's LLM answers (llm_calls.cost_usd)
  double max_device_seconds = 0;  // its verify jobs' device time (lease to result)
  double max_wall_s = 0;          // seconds since the task's first step
  // Campaign budgets, all its tasks together, every strategy (0: none).
  int64_t campaign_max_llm_calls = 0;  // LLM calls recorded and in flight
  int64_t campaign_max_tokens = 0;     // prompt + completion tokens of the answers paid for
  double campaign_max_cost_usd = 0;    // cost of the answers paid for (the endpoints' prices)
  double campaign_max_device_s = 0;    // run time of its verify jobs (assigned to done)
  double campaign_max_wall_s = 0;      // since the campaign was submitted
  // adaptive only (adaptive.h).
  double exploration = 1.0;  // the UCB rule's exploration weight (>= 0)
  int64_t patience = 4;      // LLM calls of a task without improvement before it stops (>= 1)
  int64_t parallel = 0;      // tasks asking the LLM at once (0: the live devices, at least 1)

  bool operator==(const SearchPolicy&) const = default;
  // The sample indices of the task's chains, in order (evolve: one per child, generation
  // by generation, island by island).
  std::vector<int64_t> chains() const;
  // Whether any campaign_max_* is set.
  bool budgeted() const;
};

inline constexpr int64_t kMaxSamples = 64;
inline constexpr int64_t kMaxEvolveChildren = 4096;  // islands * island_size * generations

// What a task has used so far, for the budgets (the caller reads only those the policy sets).
struct SearchUsage {
  int64_t llm_calls = 0;  // asked, answered or in flight
  int64_t tokens = 0;
  double cost_usd = 0;
  double device_seconds = 0;
  double wall_s = 0;
};

// The budget that forbids starting an action now, as the reason the task gives ("max_tokens
// (1000) used up: 1203 tokens"), or "" when none does. `asks`: the action is an LLM call;
// else a verify job.
std::string budget_used_up(const SearchPolicy& policy, const SearchUsage& usage, bool asks);
// Whether the policy sets any budget needing usage beyond llm_calls.
bool needs_usage(const SearchPolicy& policy);

// The strategies a campaign may name.
const std::vector<std::string>& search_strategies();

// The [search] keys a campaign may set, and the policy's numeric field of that name (null
// for "strategy" or an unknown name): the campaign reader types each by this.
const std::vector<std::string>& search_keys();
int64_t* search_int(SearchPolicy& policy, std::string_view name);
double* search_real(SearchPolicy& policy, std::string_view name);
// The policy as a JSON object: every field (defaults = true, the API's view) or only those
// that differ from the default policy.
nlohmann::json search_json(const SearchPolicy& policy, bool defaults);

// Per op (an [[ops]] entry's own search table, docs/campaigns.md "Per-op search"): the keys
// that only the campaign's [search] may set, because they rule all its tasks together
// (campaign_max_*, and adaptive's exploration, patience and parallel).
bool campaign_only_search_key(std::string_view name);
// Where an op's policy starts: the campaign's. An op that names another strategy than the
// campaign's starts from the campaign's policy with the fields of the campaign's strategy
// (samples and evolve's keys) back at their defaults, so that they do not apply to a strategy
// that refuses them.
SearchPolicy op_search_base(const SearchPolicy& campaign, std::string_view strategy);

// A policy as stored (campaigns.search): "" for the default policy, else a JSON object of the
// fields that differ from it (so a campaign without [search] hashes and stores as before).
std::string search_text(const SearchPolicy& policy);
// The stored text back; "" is the default. invalid_argument naming the field when bad.
Result<SearchPolicy> parse_search_text(std::string_view text);
// The rules every policy must follow, whatever wrote it; the message names the field
// (e.g. "search.samples: expected 1..64, got 0").
Status validate_search(const SearchPolicy& policy, Workflow workflow);

}  // namespace kforge
