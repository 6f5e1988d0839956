// The Conductor's decisions as a pure function of a task's recorded steps.
//
// A task's steps are its log: the Conductor never keeps state a restart could lose. After
// every event it asks decide() what to do next, given everything recorded so far.
//
//   last step            outcome                          next
//   (none)                                                design (coder_only: code; verify_only:
//   verify) designer             design found                     code
//                        garbled / LLM error              design again (with a note)
//   coder                code found                       verify
//                        garbled / LLM error              fix code (with a note)
//   verifier             passed                           finish: passed
//                        infra_error (counts nothing)     verify again, at most max_infra_retries
//                        in a row any other failure                ask the conductor model if
//                        configured, else rules:
//                                                         precision_mismatch twice since the last
//                                                         design, or max_code_fixes fixes in a row
//                                                         -> fix design; else fix code
//   conductor            fix_code / fix_design            that (coder_only: always fix code); the
//                                                         decision is read from the step's output
//
// Designer, Coder and Verifier runs count against limit_steps (LLM errors and
// infrastructure failures do not); when it is used up the task fails with the last verdict.
// Two LLM errors in a row fail the task with llm_error. A finished task's verdict is one of
// Outcome's (common/vocabulary.h), its reason the words that explain it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "coordinator/store/store.h"

namespace kforge {

enum class ActionKind {
  design,         // Designer writes the AUL design (fix: with the failure and suggestions)
  code,           // Coder writes the candidate (fix: with the previous code and the verdict)
  verify,         // run the Verifier on the latest code
  ask_conductor,  // the conductor model decides fix_code or fix_design
  finish,         // the task ends: passed or failed
};

struct Action {
  ActionKind kind = ActionKind::finish;
  bool fix = false;                // design/code: a fix of an earlier attempt
  bool passed = false;             // finish
  std::optional<Outcome> verdict;  // finish: the task's verdict (none: no step had one)
  std::string reason;  // finish: why; design/code: a note for the prompt (garbled answer)
};

struct ConductorPolicy {
  Workflow workflow = Workflow::default_;
  bool conductor_model = false;  // a conductor role is configured
  int max_code_fixes = 3;        // code fixes in a row before the design is revisited
  int max_infra_retries = 3;     // infrastructure failures in a row before the task fails
  int max_llm_errors = 2;        // LLM errors in a row before the task fails
};

Action decide(const ConductorPolicy& policy, int limit_steps, const std::vector<StepRow>& steps);

// The last verifier step's verdict, else the last step verdict there is (garbled), else none:
// the verdict of a task (or a chain) that ran out of steps.
std::optional<Outcome> last_verdict(const std::vector<StepRow>& steps);

const char* action_name(const Action& action);

}  // namespace kforge
