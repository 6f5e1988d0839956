#include "coordinator/generation/conductor_rules.h"

#include <limits>

#include "coordinator/generation/prompts.h"

namespace kforge {
namespace {

Action finish(std::optional<Outcome> verdict, std::string reason) {
  Action a;
  a.kind = ActionKind::finish;
  a.passed = verdict == Outcome::passed;
  a.verdict = verdict;
  a.reason = std::move(reason);
  return a;
}

Action run(ActionKind kind, bool fix, std::string note = "") {
  Action a;
  a.kind = kind;
  a.fix = fix;
  a.reason = std::move(note);
  return a;
}

// How many steps at the end have `verdict` (and `role`, when given).
int trailing(const std::vector<StepRow>& steps, Outcome verdict, const Role* role = nullptr) {
  int n = 0;
  for (auto it = steps.rbegin();
       it != steps.rend() && it->verdict == verdict && (!role || it->role == *role); ++it)
    ++n;
  return n;
}

// Failures with the current design: precision mismatches and code fixes since the last
// designer step.
struct SinceDesign {
  int precision_mismatches = 0;
  int code_fixes = 0;
};

SinceDesign since_design(const std::vector<StepRow>& steps) {
  SinceDesign s;
  bool first_code = true;
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    if (it->role == Role::designer) break;
    if (it->role == Role::verifier && it->verdict == Outcome::precision_mismatch)
      s.precision_mismatches++;
    if (it->role == Role::coder) {
      if (!first_code) s.code_fixes++;
      first_code = false;
    }
  }
  return s;
}

// An LLM step that gave nothing usable: its call failed, or its answer was garbled.
bool unusable(const StepRow& s) {
  return s.verdict == Outcome::llm_error || s.verdict == Outcome::garbled;
}

}  // namespace

std::optional<Outcome> last_verdict(const std::vector<StepRow>& steps) {
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    if (it->role == Role::verifier) return it->verdict;
  }
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    if (it->verdict) return it->verdict;
  }
  return std::nullopt;
}

const char* action_name(const Action& a) {
  switch (a.kind) {
    case ActionKind::design: return a.fix ? "fix_design" : "design";
    case ActionKind::code: return a.fix ? "fix_code" : "code";
    case ActionKind::verify: return "verify";
    case ActionKind::ask_conductor: return "ask_conductor";
    case ActionKind::finish: return a.passed ? "finish_passed" : "finish_failed";
  }
  return "unknown";
}

Action decide(const ConductorPolicy& policy, int limit_steps, const std::vector<StepRow>& steps) {
  int used = 0;
  for (const auto& s : steps) used += s.counted ? 1 : 0;
  const bool verify_only = policy.workflow == Workflow::verify_only;
  const bool coder_only = policy.workflow == Workflow::coder_only;

  // What the steps say should happen next, before the budget is checked.
  Action next;
  if (steps.empty()) {
    next = verify_only ? run(ActionKind::verify, false)
                       : run(coder_only ? ActionKind::code : ActionKind::design, false);
  } else {
    const StepRow& last = steps.back();
    if (last.verdict == Outcome::llm_error &&
        trailing(steps, Outcome::llm_error) >= policy.max_llm_errors) {
      return finish(Outcome::llm_error, "the " + std::string(to_string(last.role)) +
                                            " LLM call kept failing: " + last.output);
    }
    if (last.verdict == Outcome::llm_error &&
        (last.role == Role::designer || last.role == Role::coder)) {
      // No answer came (a replay miss, a server error): the same question again, as the steps
      // before the failed calls asked it, not a fix of an answer that never was.
      const std::vector<StepRow> before(
          steps.begin(), steps.end() - trailing(steps, Outcome::llm_error, &last.role));
      next = decide(policy, std::numeric_limits<int>::max(), before);
    } else if (last.role == Role::designer) {
      if (last.verdict == Outcome::garbled) {
        next = run(ActionKind::design, true, "the previous answer contained no usable AUL design");
      } else {
        next = run(ActionKind::code, false);
      }
    } else if (last.role == Role::coder) {
      if (last.verdict == Outcome::garbled) {
        next = run(ActionKind::code, true, "the previous answer contained no usable code");
      } else {
        next = run(ActionKind::verify, false);
      }
    } else if (last.role == Role::verifier) {
      if (last.verdict == Outcome::passed) return finish(Outcome::passed, "passed");
      if (last.verdict == Outcome::infra_error) {
        if (trailing(steps, Outcome::infra_error) >= policy.max_infra_retries) {
          return finish(Outcome::infra_error,
                        "verification kept failing for infrastructure reasons: " + last.output);
        }
        next = run(ActionKind::verify, false);
      } else if (verify_only) {
        return finish(last.verdict,
                      "the supplied candidate failed verification: " +
                          std::string(last.verdict ? to_string(*last.verdict) : "no verdict"));
      } else if (policy.conductor_model) {
        next = run(ActionKind::ask_conductor, false);
      } else {
        SinceDesign s = since_design(steps);
        bool redesign = !coder_only &&
                        (s.precision_mismatches >= 2 || s.code_fixes + 1 >= policy.max_code_fixes);
        next = run(redesign ? ActionKind::design : ActionKind::code, true);
      }
    } else {  // Role::conductor: its decision is the step's output
      auto decision = parse_conductor(last.output);
      bool redesign = decision.ok() && decision->action == "fix_design" && !coder_only;
      if (unusable(last) || !decision.ok()) {
        // The conductor could not decide: the rules do.
        SinceDesign s = since_design(steps);
        redesign = !coder_only &&
                   (s.precision_mismatches >= 2 || s.code_fixes + 1 >= policy.max_code_fixes);
      }
      next = run(redesign ? ActionKind::design : ActionKind::code, true);
    }
  }
  // The conductor's own call does not use the budget; designer, coder and verifier runs do.
  if (next.kind != ActionKind::ask_conductor && used >= limit_steps) {
    const std::optional<Outcome> verdict = last_verdict(steps);
    return finish(verdict, "limit_steps (" + std::to_string(limit_steps) +
                               ") used up; last verdict: " +
                               std::string(verdict ? to_string(*verdict) : "none"));
  }
  return next;
}

}  // namespace kforge
