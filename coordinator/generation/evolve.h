// The evolve strategy (search.h, docs/campaigns.md "evolve"): a task's population in islands,
// as a pure function of what is recorded (steps, candidates, migrants), so that a restarted
// coordinator goes on with the same search.
//
// Children. Each generation has `islands * island_size` children; each child is a chain of
// its own sample index: child c (0, 1, ...) is sample sample_offset + c, of generation
// c / (islands * island_size) + 1, island (c / island_size) % islands and slot c % island_size.
// A child asks the Coder (in generation 1, or without a parent: as a fix_loop chain starts,
// the Designer first under workflow default), verifies the code once, and ends with that
// verdict (an infra_error is verified again; garbled answers are asked again, within
// limit_steps). Generations run one after another: a generation's children start once every
// child of the previous one has ended, so their verify jobs run in parallel.
//
// Parents. An island's population before generation g is its candidates of earlier
// generations and the migrants it received before g. They are ranked by score (the
// candidate's speedup when passed, 1 when passed without a profile, 0 when failed), ties by
// earlier generation, then lower sample. The child in slot k takes the (k mod n)-th of the n
// ranked: no randomness, so the same recorded state gives the same parents. A passing parent
// gets the "make it faster" prompt (coder_improve), a failing one the fix prompt (coder_fix);
// the first `inspirations` passing candidates of the ranking other than the parent are shown
// with their profiles and code.
//
// Migration. After generation g (g a multiple of migrate_every, g < generations), the best
// `migrants` passing candidates of each island i join island (i + 1) % islands (a ring),
// recorded as migrants rows (store.h).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "coordinator/generation/conductor_rules.h"
#include "coordinator/generation/search.h"
#include "coordinator/store/store.h"

namespace kforge {

struct EvolveChild {
  int64_t sample = 0;
  int64_t generation = 1;  // 1, 2, ...
  int64_t island = 0;
  int64_t slot = 0;
};

class EvolvePlan {
 public:
  // `steps`: every step of the task; `base`: the campaign's rules; limit_steps: per child.
  EvolvePlan(const SearchPolicy& search, const ConductorPolicy& base, int limit_steps,
             const std::vector<StepRow>& steps, std::vector<CandidateRow> candidates,
             std::vector<MigrantRow> migrants);

  EvolveChild child(int64_t sample) const;
  // The generation running now: the first with a child that has not ended; generations + 1
  // when every child has.
  int64_t generation() const { return generation_; }
  // The child's next action (decide() on its chain, under coder_only when it has a parent);
  // finish once its candidate is judged; none while its generation has not come.
  std::optional<Action> action(int64_t sample) const;
  // The migrations due after the completed generations and not recorded yet.
  std::vector<MigrantRow> due_migrants(int64_t task_id) const;
  // The child's parent (none: its island has no candidate before its generation) and its
  // inspirations, best first.
  const CandidateRow* parent(int64_t sample) const;
  std::vector<const CandidateRow*> inspirations(int64_t sample) const;
  // The Coder template for the child's question: coder_improve (passing parent), coder_fix
  // (failing parent); "" when it has no parent (the usual prompts).
  std::string coder_template(int64_t sample) const;
  // The step of this id, or null.
  const StepRow* step(int64_t id) const;
  // The last usable design of the candidate's chain, else of its parent's, and so on; null
  // when none has one (coder_only).
  const StepRow* design_of(const CandidateRow& candidate) const;
  // The code of a candidate ("" when none).
  std::string code(const CandidateRow& candidate, const std::string& impl_type) const;
  // The inspirations of the child as the prompt shows them: profile, verdict and code each.
  std::string inspirations_text(int64_t sample, const std::string& impl_type) const;
  // Completed generations, at the end, whose best score did not beat the best before them.
  int64_t stagnant_generations() const;
  // How the task ends (every generation done, or `stop`, a stop rule's reason, holds):
  // passed when a candidate passed.
  Action finish(const std::string& stop) const;

 private:
  bool ended(int64_t sample) const;
  // The island's population, ranked best first: its candidates of generations before
  // `generation` and the migrants it received after generations before `migrated_before`.
  std::vector<const CandidateRow*> ranked(int64_t island, int64_t generation,
                                          int64_t migrated_before) const;

  SearchPolicy search_;
  ConductorPolicy base_;
  int limit_steps_;
  std::vector<StepRow> steps_;
  std::map<int64_t, std::vector<StepRow>> chains_;  // by sample
  std::vector<CandidateRow> candidates_;
  std::vector<MigrantRow> migrants_;
  int64_t generation_ = 1;
};

}  // namespace kforge
