// kforge's closed vocabularies as enums: the words the store, the API and the harness use
// appear as strings only where they cross those edges (to_string / parse_* below, one table
// per enum). Every table lists the names in the enum's order; a static_assert checks it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kforge {

// A verification's outcome (docs/harness.md, "Verdicts"). The list is the harness's
// (agent/harness/kforge_verifier/verdicts.py ALL, same order); tests/verify_result_test checks it.
enum class Verdict : uint8_t {
  passed,              // precision passed (and profiling ran, for profile jobs)
  compile_error,       // the candidate could not be loaded or built
  runtime_error,       // the candidate raised while running
  precision_mismatch,  // outputs differ from the reference
  timeout,             // ran out of time
  crashed,             // process or device crash
  resource_exceeded,   // out of memory, processes or threads
  rejected,            // broke a rule (aliasing, input writes, framework fallback...)
  infra_error,         // the task, the job or the host is at fault: re-run, not counted
};

// A task's or a step's verdict (tasks.verdict, steps.verdict; the API's and the CLI's
// `verdict`): a verification's verdict, in the same order and with the same values, or what
// ended a step or a task without one. The free text that explains it is a separate `reason`.
enum class Outcome : uint8_t {
  passed,
  compile_error,
  runtime_error,
  precision_mismatch,
  timeout,
  crashed,
  resource_exceeded,
  rejected,
  infra_error,  // also: the store failed, or verification kept failing for infrastructure reasons
  llm_error,    // the LLM call failed after its retries (a task: kept failing)
  garbled,      // the LLM's answer held no usable design, code or decision
  cancelled,    // withdrawn by the operator
};
// The outcome that a verification's verdict is (the same value).
constexpr Outcome outcome_of(Verdict v) {
  return static_cast<Outcome>(v);
}

// What an agent runs for a job (proto::Assign::kind, jobs.kind).
enum class JobKind : uint8_t {
  exec,    // a plain command (tests, benchmarks, kforge exec)
  verify,  // the harness: a candidate against its reference
};

// A job's lifecycle (jobs.state).
enum class JobState : uint8_t {
  queued,     // waiting for a device
  assigned,   // leased to (agent, device) under `epoch`
  done,       // a result for the current epoch is recorded
  cancelled,  // withdrawn; results for it are dropped
};

// A task's lifecycle (tasks.state).
enum class TaskState : uint8_t {
  pending,    // not started (or waiting to be resumed)
  running,    // a Conductor drives it
  passed,     // a candidate passed: finished
  failed,     // steps ran out or the Conductor gave up: finished
  cancelled,  // withdrawn by the operator: finished
};
inline bool finished(TaskState s) {
  return s != TaskState::pending && s != TaskState::running;
}

// A campaign's lifecycle (campaigns.state).
enum class CampaignState : uint8_t {
  running,     // some task is pending or running
  finished,    // every task finished
  cancelled,   // withdrawn by the operator
  submitting,  // its tasks are being stored, in batches: none runs yet (store_campaign)
};

// An agent as the coordinator knows it (agents.state).
enum class AgentState : uint8_t {
  live,  // registered, heartbeats arriving
  lost,  // silent past liveness; its jobs were re-queued
  gone,  // said Bye (orderly shutdown); its jobs were re-queued
};

// Which steps a campaign's Conductor takes (campaigns.workflow).
enum class Workflow : uint8_t {
  default_,     // designer -> coder -> verifier, fixing on failure ("default")
  coder_only,   // coder -> verifier, no design step
  verify_only,  // the campaign supplies the candidate: one verification per task
};

// Who took a step of a task (steps.role, llm_calls.role).
enum class Role : uint8_t {
  designer,   // an LLM writing the algorithm sketch
  coder,      // an LLM writing the kernel
  verifier,   // a verification job's verdict
  conductor,  // an LLM deciding what to fix
};

// Who an LLM call asks ([llm.ROLE] in the config, LlmRequest::role, the metrics' `role`): the
// roles of Role that an LLM plays.
enum class LlmRole : uint8_t {
  designer,
  coder,
  conductor,
};

// An LLM call's lifecycle (llm_calls.status).
enum class LlmCallState : uint8_t {
  pending,  // asked, its answer not yet stored: at start-up, a call a crash cut off
  ok,       // answered; the answer is stored
  error,    // failed (rows of older kforge versions: a failed call is no longer stored)
};

// The names of enum E, indexed by its values. Specialised below, once per enum.
template <class E>
struct EnumNames;

template <>
struct EnumNames<Verdict> {
  static constexpr std::string_view what = "verdict";
  static constexpr std::array<std::string_view, 9> names = {
      "passed",  "compile_error",     "runtime_error", "precision_mismatch", "timeout",
      "crashed", "resource_exceeded", "rejected",      "infra_error"};
};
template <>
struct EnumNames<Outcome> {
  static constexpr std::string_view what = "verdict";
  static constexpr std::array<std::string_view, 12> names = {
      "passed",      "compile_error", "runtime_error",     "precision_mismatch",
      "timeout",     "crashed",       "resource_exceeded", "rejected",
      "infra_error", "llm_error",     "garbled",           "cancelled"};
};
template <>
struct EnumNames<JobKind> {
  static constexpr std::string_view what = "job kind";
  static constexpr std::array<std::string_view, 2> names = {"exec", "verify"};
};
template <>
struct EnumNames<JobState> {
  static constexpr std::string_view what = "job state";
  static constexpr std::array<std::string_view, 4> names = {"queued", "assigned", "done",
                                                            "cancelled"};
};
template <>
struct EnumNames<TaskState> {
  static constexpr std::string_view what = "task state";
  static constexpr std::array<std::string_view, 5> names = {"pending", "running", "passed",
                                                            "failed", "cancelled"};
};
template <>
struct EnumNames<CampaignState> {
  static constexpr std::string_view what = "campaign state";
  static constexpr std::array<std::string_view, 4> names = {"running", "finished", "cancelled",
                                                            "submitting"};
};
template <>
struct EnumNames<AgentState> {
  static constexpr std::string_view what = "agent state";
  static constexpr std::array<std::string_view, 3> names = {"live", "lost", "gone"};
};
template <>
struct EnumNames<Workflow> {
  static constexpr std::string_view what = "workflow";
  static constexpr std::array<std::string_view, 3> names = {"default", "coder_only", "verify_only"};
};
template <>
struct EnumNames<Role> {
  static constexpr std::string_view what = "role";
  static constexpr std::array<std::string_view, 4> names = {"designer", "coder", "verifier",
                                                            "conductor"};
};
template <>
struct EnumNames<LlmRole> {
  static constexpr std::string_view what = "LLM role";
  static constexpr std::array<std::string_view, 3> names = {"designer", "coder", "conductor"};
};
template <>
struct EnumNames<LlmCallState> {
  static constexpr std::string_view what = "LLM call state";
  static constexpr std::array<std::string_view, 3> names = {"pending", "ok", "error"};
};

// Each table has one name per enumerator: the last enumerator indexes the last name.
static_assert(EnumNames<Verdict>::names.size() == size_t(Verdict::infra_error) + 1);
static_assert(EnumNames<Outcome>::names.size() == size_t(Outcome::cancelled) + 1);
static_assert(EnumNames<JobKind>::names.size() == size_t(JobKind::verify) + 1);
static_assert(EnumNames<JobState>::names.size() == size_t(JobState::cancelled) + 1);
static_assert(EnumNames<TaskState>::names.size() == size_t(TaskState::cancelled) + 1);
static_assert(EnumNames<CampaignState>::names.size() == size_t(CampaignState::submitting) + 1);
static_assert(EnumNames<AgentState>::names.size() == size_t(AgentState::gone) + 1);
static_assert(EnumNames<Workflow>::names.size() == size_t(Workflow::verify_only) + 1);
static_assert(EnumNames<Role>::names.size() == size_t(Role::conductor) + 1);
static_assert(EnumNames<LlmRole>::names.size() == size_t(LlmRole::conductor) + 1);
static_assert(EnumNames<LlmCallState>::names.size() == size_t(LlmCallState::error) + 1);

// An Outcome begins with the verdicts, value for value (outcome_of relies on it).
constexpr bool outcome_extends_verdict() {
  for (size_t i = 0; i < EnumNames<Verdict>::names.size(); ++i) {
    if (EnumNames<Verdict>::names[i] != EnumNames<Outcome>::names[i]) return false;
  }
  return true;
}
static_assert(outcome_extends_verdict());

// The step role (steps.role, llm_calls.role) of an LLM role: the one of the same name.
constexpr Role role_of(LlmRole r) {
  switch (r) {
    case LlmRole::designer: return Role::designer;
    case LlmRole::coder: return Role::coder;
    case LlmRole::conductor: return Role::conductor;
  }
  return Role::conductor;  // not reached: every LlmRole is listed
}

// The name of `e` ("?" for a value outside the enum, which only a cast can make).
template <class E>
constexpr std::string_view to_string(E e) {
  const auto i = static_cast<size_t>(e);
  return i < EnumNames<E>::names.size() ? EnumNames<E>::names[i] : std::string_view("?");
}

// The name of `e`, or "" for none (a verdict not given, in the store's and the API's words).
template <class E>
constexpr std::string_view to_string(const std::optional<E>& e) {
  return e ? to_string(*e) : std::string_view();
}

// The enumerator named `s`; none for any other string (the caller names the field).
template <class E>
constexpr std::optional<E> parse_enum(std::string_view s) {
  for (size_t i = 0; i < EnumNames<E>::names.size(); ++i) {
    if (EnumNames<E>::names[i] == s) return static_cast<E>(i);
  }
  return std::nullopt;
}

// The names of E, comma-separated, for messages ("pending, running, ...").
template <class E>
std::string names_of() {
  std::string out;
  for (std::string_view n : EnumNames<E>::names) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

// JSON (nlohmann, found by argument-dependent lookup) spells an enumerator by its name, as the
// API does, never by its number: `json{{"state", row.state}}` is {"state": "running"}.
#define KF_JSON_AS_NAME(E)            \
  template <class Json>               \
  void to_json(Json& j, const E& e) { \
    j = std::string(to_string(e));    \
  }
KF_JSON_AS_NAME(Verdict)
KF_JSON_AS_NAME(Outcome)
KF_JSON_AS_NAME(JobKind)
KF_JSON_AS_NAME(JobState)
KF_JSON_AS_NAME(TaskState)
KF_JSON_AS_NAME(CampaignState)
KF_JSON_AS_NAME(AgentState)
KF_JSON_AS_NAME(Workflow)
KF_JSON_AS_NAME(Role)
KF_JSON_AS_NAME(LlmRole)
KF_JSON_AS_NAME(LlmCallState)
#undef KF_JSON_AS_NAME

// Every enumerator of E, in order.
template <class E>
constexpr auto all_of() {
  std::array<E, EnumNames<E>::names.size()> out{};
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<E>(i);
  return out;
}

// An LLM role is the step role of the same name (role_of).
constexpr bool llm_roles_are_roles() {
  for (LlmRole r : all_of<LlmRole>()) {
    if (to_string(role_of(r)) != to_string(r)) return false;
  }
  return true;
}
static_assert(llm_roles_are_roles());

}  // namespace kforge
