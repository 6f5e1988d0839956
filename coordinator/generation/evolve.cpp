#include "coordinator/generation/evolve.h"

#include <algorithm>
#include <sstream>

#include "common/verify_result.h"
#include "coordinator/generation/prompts.h"

namespace kforge {
namespace {

// Best first: higher score, then earlier generation, then lower sample (never the order
// verdicts happened to arrive in).
bool better(const CandidateRow* a, const CandidateRow* b) {
  if (a->score != b->score) return a->score > b->score;
  if (a->generation != b->generation) return a->generation < b->generation;
  return a->sample < b->sample;
}

bool judged(const std::vector<StepRow>& chain) {
  return std::any_of(chain.begin(), chain.end(), [](const StepRow& s) {
    return s.role == Role::verifier && s.verdict && *s.verdict != Outcome::infra_error;
  });
}

std::string fixed(double v, int digits) {
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(digits);
  out << v;
  return out.str();
}

}  // namespace

EvolvePlan::EvolvePlan(const SearchPolicy& search, const ConductorPolicy& base, int limit_steps,
                       const std::vector<StepRow>& steps, std::vector<CandidateRow> candidates,
                       std::vector<MigrantRow> migrants)
    : search_(search),
      base_(base),
      limit_steps_(limit_steps),
      steps_(steps),
      candidates_(std::move(candidates)),
      migrants_(std::move(migrants)) {
  for (int64_t sample : search_.chains()) chains_[sample];
  for (const StepRow& s : steps_) {
    if (auto chain = chains_.find(s.sample); chain != chains_.end()) chain->second.push_back(s);
  }
  generation_ = search_.generations + 1;
  for (const auto& [sample, chain] : chains_) {  // by sample: generation by generation
    if (!ended(sample)) {
      generation_ = child(sample).generation;
      break;
    }
  }
}

EvolveChild EvolvePlan::child(int64_t sample) const {
  const int64_t c = sample - search_.sample_offset;
  const int64_t per_generation = search_.islands * search_.island_size;
  return EvolveChild{sample, c / per_generation + 1, (c / search_.island_size) % search_.islands,
                     c % search_.island_size};
}

std::vector<const CandidateRow*> EvolvePlan::ranked(int64_t island, int64_t generation,
                                                    int64_t migrated_before) const {
  std::vector<const CandidateRow*> out;
  for (const CandidateRow& c : candidates_) {
    if (c.island == island && c.generation < generation) out.push_back(&c);
  }
  for (const MigrantRow& m : migrants_) {
    if (m.island != island || m.generation >= migrated_before) continue;
    for (const CandidateRow& c : candidates_) {
      if (c.id == m.candidate_id) out.push_back(&c);
    }
  }
  std::sort(out.begin(), out.end(), better);
  return out;
}

const CandidateRow* EvolvePlan::parent(int64_t sample) const {
  const EvolveChild c = child(sample);
  const auto population = ranked(c.island, c.generation, c.generation);
  if (population.empty()) return nullptr;
  return population[static_cast<size_t>(c.slot) % population.size()];
}

std::vector<const CandidateRow*> EvolvePlan::inspirations(int64_t sample) const {
  const EvolveChild c = child(sample);
  const CandidateRow* p = parent(sample);
  std::vector<const CandidateRow*> out;
  for (const CandidateRow* r : ranked(c.island, c.generation, c.generation)) {
    if (static_cast<int64_t>(out.size()) >= search_.inspirations) break;
    if (r != p && r->verdict == Verdict::passed) out.push_back(r);
  }
  return out;
}

std::string EvolvePlan::coder_template(int64_t sample) const {
  const CandidateRow* p = parent(sample);
  if (p == nullptr) return "";
  return p->verdict == Verdict::passed ? "coder_improve" : "coder_fix";
}

bool EvolvePlan::ended(int64_t sample) const {
  const std::vector<StepRow>& chain = chains_.at(sample);
  if (judged(chain)) return true;
  ConductorPolicy policy = base_;
  if (parent(sample) != nullptr) policy.workflow = Workflow::coder_only;  // it starts from code
  return decide(policy, limit_steps_, chain).kind == ActionKind::finish;
}

std::optional<Action> EvolvePlan::action(int64_t sample) const {
  if (child(sample).generation > generation_) return std::nullopt;
  const std::vector<StepRow>& chain = chains_.at(sample);
  if (judged(chain)) {
    Action done;
    done.verdict = last_verdict(chain);
    done.passed = done.verdict == Outcome::passed;
    done.reason = "judged";
    return done;
  }
  ConductorPolicy policy = base_;
  if (parent(sample) != nullptr) policy.workflow = Workflow::coder_only;
  return decide(policy, limit_steps_, chain);
}

std::vector<MigrantRow> EvolvePlan::due_migrants(int64_t task_id) const {
  std::vector<MigrantRow> out;
  if (search_.migrate_every <= 0 || search_.islands < 2) return out;
  for (int64_t g = search_.migrate_every; g < generation_ && g < search_.generations;
       g += search_.migrate_every) {
    for (int64_t island = 0; island < search_.islands; ++island) {
      const int64_t to = (island + 1) % search_.islands;
      // The source as generation g left it (without this migration's arrivals); the
      // destination with them (a migrant is not sent twice).
      const auto from = ranked(island, g + 1, g);
      const auto there = ranked(to, g + 1, g + 1);
      int64_t sent = 0;
      for (const CandidateRow* c : from) {
        if (sent >= search_.migrants || c->verdict != Verdict::passed) break;
        ++sent;
        const bool recorded = std::find(there.begin(), there.end(), c) != there.end();
        if (!recorded) out.push_back(MigrantRow{task_id, c->id, to, g});
      }
    }
  }
  return out;
}

const StepRow* EvolvePlan::step(int64_t id) const {
  for (const StepRow& s : steps_) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

const StepRow* EvolvePlan::design_of(const CandidateRow& candidate) const {
  auto chain = chains_.find(candidate.sample);
  if (chain == chains_.end()) return nullptr;
  for (auto it = chain->second.rbegin(); it != chain->second.rend(); ++it) {
    if (it->role == Role::designer && !it->verdict) return &*it;  // a usable answer has no verdict
  }
  for (const CandidateRow& c : candidates_) {  // none in its chain: its parent's
    if (candidate.parent_id && c.id == *candidate.parent_id) return design_of(c);
  }
  return nullptr;
}

std::string EvolvePlan::code(const CandidateRow& candidate, const std::string& impl_type) const {
  const StepRow* coder = candidate.code_step_id ? step(*candidate.code_step_id) : nullptr;
  if (coder == nullptr) return "";
  auto code = extract_code(coder->output, impl_type);
  return code.ok() ? *code : "";
}

std::string EvolvePlan::inspirations_text(int64_t sample, const std::string& impl_type) const {
  std::string out;
  int n = 0;
  for (const CandidateRow* c : inspirations(sample)) {
    out += "### Inspiration " + std::to_string(++n) + ": verdict " +
           std::string(to_string(c->verdict));
    const StepRow* verifier = step(c->step_id);
    if (verifier && verifier->result && verifier->result->profile) {
      const Profile& p = *verifier->result->profile;
      out += ", speedup " + fixed(p.speedup, 2) + "x (candidate median " +
             fixed(p.candidate.median_us, 1) + " us, reference median " +
             fixed(p.reference.median_us, 1) + " us)";
    }
    out += ", island " + std::to_string(c->island) + ", generation " +
           std::to_string(c->generation) + "\n\n```python\n" + code(*c, impl_type) + "\n```\n\n";
  }
  return out.empty() ? "(none yet: no other passing kernel in this island)\n" : out;
}

int64_t EvolvePlan::stagnant_generations() const {
  const int64_t completed = generation_ - 1;
  auto best_until = [&](int64_t g) {
    double best = -1;
    for (const CandidateRow& c : candidates_) {
      if (c.generation <= g) best = std::max(best, c.score);
    }
    return best;
  };
  int64_t n = 0;
  for (int64_t g = completed; g >= 2 && best_until(g) <= best_until(g - 1); --g) ++n;
  return n;
}

Action EvolvePlan::finish(const std::string& stop) const {
  std::vector<const CandidateRow*> all;
  for (const CandidateRow& c : candidates_) all.push_back(&c);
  std::sort(all.begin(), all.end(), better);
  Action done;
  const int64_t completed = std::min(generation_ - 1, search_.generations);
  const std::string ran =
      std::to_string(completed) + " of " + std::to_string(search_.generations) + " generations";
  if (!all.empty() && all.front()->verdict == Verdict::passed) {
    const CandidateRow& best = *all.front();
    done.passed = true;
    done.verdict = Outcome::passed;
    done.reason = "passed (evolve, " + ran + ": best score " + fixed(best.score, 2) +
                  " from island " + std::to_string(best.island) + ", generation " +
                  std::to_string(best.generation) + (stop.empty() ? "" : "; stopped by " + stop) +
                  ")";
    return done;
  }
  done.verdict = last_verdict(steps_);
  done.reason = (stop.empty() ? "no candidate passed in " + ran : stop) +
                "; last verdict: " + std::string(done.verdict ? to_string(*done.verdict) : "none");
  return done;
}

}  // namespace kforge
