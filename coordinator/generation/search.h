// How a task searches for its kernel: the campaign's [search] table (docs/campaigns.md).
//
//   fix_loop   one chain: design, code, verify, fix until it passes or limit_steps is used
//              up (the default; today's behaviour, byte for byte).
//   best_of_n  `samples` independent chains per task, each a fix_loop with its own sample
//              index (so its own LLM answers), driven in parallel: their verify jobs spread
//              over every free device. The best passing candidate wins. The task ends when
//              every chain has ended, when a passing candidate reaches target_speedup, or
//              when max_llm_calls are used up.
//
// Chains are told apart by the sample index on each step (steps.sample): sample_offset,
// sample_offset + 1, ... The sample index is part of every LLM request of its chain (the
// request's seed and its cache key, llm.h), so a campaign submitted again with the same
// sample_offset replays the answers it paid for, and one with another sample_offset draws
// fresh ones. Sample 0 leaves requests exactly as they were before samples existed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/vocabulary.h"

namespace kforge {

struct SearchPolicy {
  std::string strategy = "fix_loop";  // fix_loop | best_of_n
  int64_t samples = 1;                // chains per task (best_of_n: 1..kMaxSamples)
  int64_t sample_offset = 0;          // the first chain's sample index (>= 0)
  double target_speedup = 0;          // > 0: a passing candidate this fast ends the task
  int64_t max_llm_calls = 0;          // > 0: LLM calls per task, all chains together

  bool operator==(const SearchPolicy&) const = default;
  // The sample indices of the task's chains, in order.
  std::vector<int64_t> chains() const;
};

inline constexpr int64_t kMaxSamples = 64;

// The strategies a campaign may name.
const std::vector<std::string>& search_strategies();

// A policy as stored (campaigns.search): "" for the default policy, else a JSON object of the
// fields that differ from it (so a campaign without [search] hashes and stores as before).
std::string search_text(const SearchPolicy& policy);
// The stored text back; "" is the default. invalid_argument naming the field when bad.
Result<SearchPolicy> parse_search_text(std::string_view text);
// The rules every policy must follow, whatever wrote it; the message names the field
// (e.g. "search.samples: expected 1..64, got 0").
Status validate_search(const SearchPolicy& policy, Workflow workflow);

}  // namespace kforge
