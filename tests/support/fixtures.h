// Builders of the rows and specs tests store: each returns a complete value with plain
// defaults, and a test changes only the fields its case is about.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "coordinator/store/store.h"

namespace kforge::test {

// A task on cuda/h100 in Triton over torch, precision_only, 10 steps, whose task_desc is a
// placeholder Model (nothing runs it unless the test sets a real one).
inline TaskSpec task_spec(const std::string& op_name = "relu", const std::string& task_id = "s0") {
  TaskSpec s;
  s.op_name = op_name;
  s.task_id = task_id;
  s.task_desc = "class Model: ...";
  s.backend = "cuda";
  s.arch = "h100";
  s.impl_type = "triton";
  s.framework = "torch";
  return s;
}

// An answered LLM call (status ok) of model "m" with the request "{}", under `request_key`.
inline LlmCallRow llm_call(std::optional<int64_t> task_id, Role role,
                           const std::string& request_key) {
  LlmCallRow call;
  call.task_id = task_id;
  call.role = role;
  call.model = "m";
  call.request_key = request_key;
  call.request = "{}";
  call.status = LlmCallState::ok;
  return call;
}

}  // namespace kforge::test
