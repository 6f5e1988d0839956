#include "coordinator/generation/conductor_rules.h"

#include <doctest/doctest.h>

using namespace kforge;

namespace {

// A step of `role` with `verdict` ("": none), both by name.
StepRow step(const std::string& role, const std::string& verdict = "", bool counted = true) {
  StepRow s;
  s.role = parse_enum<Role>(role).value();
  if (!verdict.empty()) s.verdict = parse_enum<Outcome>(verdict).value();
  s.counted = counted;
  return s;
}

std::string next(const std::vector<StepRow>& steps, ConductorPolicy policy = {}, int limit = 10) {
  return action_name(decide(policy, limit, steps));
}

}  // namespace

TEST_CASE("the default workflow goes designer, coder, verifier") {
  CHECK(next({}) == "design");
  CHECK(next({step("designer")}) == "code");
  CHECK(next({step("designer"), step("coder")}) == "verify");
  CHECK(next({step("designer"), step("coder"), step("verifier", "passed")}) == "finish_passed");
}

TEST_CASE("other workflows start elsewhere") {
  ConductorPolicy coder_only;
  coder_only.workflow = Workflow::coder_only;
  CHECK(next({}, coder_only) == "code");
  ConductorPolicy verify_only;
  verify_only.workflow = Workflow::verify_only;
  CHECK(next({}, verify_only) == "verify");
  Action failed = decide(verify_only, 10, {step("verifier", "precision_mismatch")});
  CHECK(std::string(action_name(failed)) == "finish_failed");
  CHECK(failed.verdict == Outcome::precision_mismatch);
  CHECK(next({step("verifier", "passed")}, verify_only) == "finish_passed");
}

TEST_CASE("every failure verdict leads to a fix of the code first") {
  for (const char* v : {"compile_error", "runtime_error", "precision_mismatch", "timeout",
                        "crashed", "resource_exceeded", "rejected"}) {
    CAPTURE(v);
    CHECK(next({step("designer"), step("coder"), step("verifier", v)}) == "fix_code");
  }
}

TEST_CASE("repeated precision mismatches send the task back to the designer") {
  std::vector<StepRow> steps = {step("designer"), step("coder"),
                                step("verifier", "precision_mismatch"), step("coder"),
                                step("verifier", "precision_mismatch")};
  CHECK(next(steps) == "fix_design");
  ConductorPolicy coder_only;
  coder_only.workflow = Workflow::coder_only;
  CHECK(next(steps, coder_only) == "fix_code");
}

TEST_CASE("too many code fixes in a row revisit the design") {
  std::vector<StepRow> steps = {step("designer"),
                                step("coder"),
                                step("verifier", "compile_error"),
                                step("coder"),
                                step("verifier", "runtime_error"),
                                step("coder"),
                                step("verifier", "compile_error")};
  CHECK(next(steps) == "fix_design");
}

TEST_CASE("infrastructure failures re-run the verifier without using the budget") {
  std::vector<StepRow> steps = {step("designer"), step("coder"),
                                step("verifier", "infra_error", false)};
  CHECK(next(steps, {}, 3) == "verify");  // 2 of 3 used: the failed run did not count
}

TEST_CASE("infrastructure failures in a row end the task") {
  std::vector<StepRow> steps = {
      step("designer"), step("coder"), step("verifier", "infra_error", false),
      step("verifier", "infra_error", false), step("verifier", "infra_error", false)};
  Action a = decide({}, 10, steps);
  CHECK(std::string(action_name(a)) == "finish_failed");
  CHECK(a.verdict == Outcome::infra_error);
}

TEST_CASE("a conductor model decides when configured") {
  ConductorPolicy policy;
  policy.conductor_model = true;
  std::vector<StepRow> steps = {step("designer"), step("coder"),
                                step("verifier", "precision_mismatch")};
  CHECK(next(steps, policy) == "ask_conductor");
  // The decision is the step's output (the model's JSON); its verdict is none.
  steps.push_back(step("conductor", "", false));
  steps.back().output = R"({"action": "fix_design", "suggestions": "tile it"})";
  CHECK(next(steps, policy) == "fix_design");
  steps.back().output = R"({"action": "fix_code"})";
  CHECK(next(steps, policy) == "fix_code");
  steps.back().output = "no decision";
  steps.back().verdict = Outcome::garbled;  // undecided: the rules decide
  CHECK(next(steps, policy) == "fix_code");
}

TEST_CASE("garbled answers become fix requests with a note") {
  Action a = decide({}, 10, {step("designer"), step("coder", "garbled")});
  CHECK(std::string(action_name(a)) == "fix_code");
  CHECK(a.reason.find("no usable code") != std::string::npos);
  CHECK(next({step("designer", "garbled")}) == "fix_design");
}

TEST_CASE("limit_steps ends the task with the last verdict") {
  std::vector<StepRow> steps = {step("designer"), step("coder"), step("verifier", "compile_error")};
  Action a = decide({}, 3, steps);
  CHECK(std::string(action_name(a)) == "finish_failed");
  CHECK(a.verdict == Outcome::compile_error);
  CHECK(a.reason.find("limit_steps (3)") != std::string::npos);
  steps.back().verdict = Outcome::passed;
  CHECK(next(steps, {}, 3) == "finish_passed");  // a pass on the last step still counts
}

TEST_CASE("limit_steps used up without a verification ends the task with the last step verdict") {
  Action a = decide({}, 2, {step("designer"), step("coder", "garbled")});
  CHECK(std::string(action_name(a)) == "finish_failed");
  CHECK(a.verdict == Outcome::garbled);
  CHECK_FALSE(decide({}, 0, {}).verdict.has_value());  // nothing ran: no verdict
}

TEST_CASE("an LLM that keeps failing ends the task with llm_error and the error as its reason") {
  StepRow err = step("coder", "llm_error", false);
  err.output = "HTTP 500 after 5 attempts";
  CHECK(next({step("designer"), err}) == "code");
  Action a = decide({}, 10, {step("designer"), err, err});
  CHECK(std::string(action_name(a)) == "finish_failed");
  CHECK(a.verdict == Outcome::llm_error);
  CHECK(a.reason == "the coder LLM call kept failing: HTTP 500 after 5 attempts");
}

TEST_CASE(
    "after an LLM error (a replay miss) the same question is asked again, not a fix of an answer "
    "that never came") {
  StepRow coder_err = step("coder", "llm_error", false);
  StepRow designer_err = step("designer", "llm_error", false);
  ConductorPolicy policy;
  policy.max_llm_errors = 5;
  // A first design or code that got no answer: asked again as a first design or code.
  CHECK(next({designer_err}, policy) == "design");
  CHECK(next({designer_err, designer_err}, policy) == "design");
  CHECK(next({step("designer"), coder_err, coder_err}, policy) == "code");
  ConductorPolicy coder_only = policy;
  coder_only.workflow = Workflow::coder_only;
  CHECK(next({coder_err}, coder_only) == "code");
  // A fix that got no answer is still the fix the verdict asked for.
  std::vector<StepRow> fixing = {step("designer"), step("coder"), step("verifier", "compile_error"),
                                 coder_err};
  CHECK(next(fixing, policy) == "fix_code");
  std::vector<StepRow> redesign = {step("designer"),
                                   step("coder"),
                                   step("verifier", "precision_mismatch"),
                                   step("coder"),
                                   step("verifier", "precision_mismatch"),
                                   designer_err};
  CHECK(next(redesign, policy) == "fix_design");
  // The budget still counts every step.
  CHECK(next({step("designer"), coder_err}, policy, 1) == "finish_failed");
}
