#include "coordinator/generation/conductor_rules.h"

#include <limits>

namespace kforge {
namespace {

Action finish(bool passed, std::string reason) {
  Action a;
  a.kind = ActionKind::finish;
  a.passed = passed;
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
int trailing(const std::vector<StepRow>& steps, const char* verdict, const std::string* role = nullptr) {
  int n = 0;
  for (auto it = steps.rbegin(); it != steps.rend() && it->verdict == verdict && (!role || it->role == *role); ++it) ++n;
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
    if (it->role == "designer") break;
    if (it->role == "verifier" && it->verdict == "precision_mismatch") s.precision_mismatches++;
    if (it->role == "coder") {
      if (!first_code) s.code_fixes++;
      first_code = false;
    }
  }
  return s;
}

std::string last_verdict(const std::vector<StepRow>& steps) {
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    if (it->role == "verifier") return it->verdict;
  }
  return "no verdict";
}

}  // namespace

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
  const bool verify_only = policy.workflow == "verify_only";
  const bool coder_only = policy.workflow == "coder_only";

  // What the steps say should happen next, before the budget is checked.
  Action next;
  if (steps.empty()) {
    next = verify_only ? run(ActionKind::verify, false)
                       : run(coder_only ? ActionKind::code : ActionKind::design, false);
  } else {
    const StepRow& last = steps.back();
    if (last.verdict == kLlmError && trailing(steps, kLlmError) >= policy.max_llm_errors) {
      return finish(false, "the " + last.role + " LLM call kept failing: " + last.output);
    }
    if (last.verdict == kLlmError && (last.role == "designer" || last.role == "coder")) {
      // No answer came (a replay miss, a server error): the same question again, as the steps
      // before the failed calls asked it, not a fix of an answer that never was.
      const std::vector<StepRow> before(steps.begin(), steps.end() - trailing(steps, kLlmError, &last.role));
      next = decide(policy, std::numeric_limits<int>::max(), before);
    } else if (last.role == "designer") {
      if (last.verdict == kGarbled) {
        next = run(ActionKind::design, true, "the previous answer contained no usable AUL design");
      } else {
        next = run(ActionKind::code, false);
      }
    } else if (last.role == "coder") {
      if (last.verdict == kGarbled) {
        next = run(ActionKind::code, true, "the previous answer contained no usable code");
      } else {
        next = run(ActionKind::verify, false);
      }
    } else if (last.role == "verifier") {
      if (last.verdict == "passed") return finish(true, "passed");
      if (last.verdict == "infra_error") {
        if (trailing(steps, "infra_error") >= policy.max_infra_retries) {
          return finish(false, "verification kept failing for infrastructure reasons: " + last.output);
        }
        next = run(ActionKind::verify, false);
      } else if (verify_only) {
        return finish(false, last.verdict);
      } else if (policy.conductor_model) {
        next = run(ActionKind::ask_conductor, false);
      } else {
        SinceDesign s = since_design(steps);
        bool redesign = !coder_only && (s.precision_mismatches >= 2 || s.code_fixes + 1 >= policy.max_code_fixes);
        next = run(redesign ? ActionKind::design : ActionKind::code, true);
      }
    } else if (last.role == "conductor") {
      bool redesign = last.verdict == "fix_design" && !coder_only;
      if (last.verdict == kGarbled || last.verdict == kLlmError) {
        // The conductor could not decide: the rules do.
        SinceDesign s = since_design(steps);
        redesign = !coder_only && (s.precision_mismatches >= 2 || s.code_fixes + 1 >= policy.max_code_fixes);
      }
      next = run(redesign ? ActionKind::design : ActionKind::code, true);
    } else {
      return finish(false, "unknown step role '" + last.role + "'");
    }
  }
  // The conductor's own call does not use the budget; designer, coder and verifier runs do.
  if (next.kind != ActionKind::ask_conductor && used >= limit_steps) {
    return finish(false, "limit_steps (" + std::to_string(limit_steps) + ") used up; last verdict: " +
                             last_verdict(steps));
  }
  return next;
}

}  // namespace kforge
