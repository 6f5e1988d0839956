-- Migration 0010: a task's and a step's verdict is one of a fixed set (common/vocabulary.h,
-- Outcome): passed | compile_error | runtime_error | precision_mismatch | timeout | crashed |
-- resource_exceeded | rejected | infra_error | llm_error | garbled | cancelled, or '' (none).
-- The words that explain a finished task's verdict go in tasks.reason (issue 18, "Typed
-- outcomes"). Before this migration tasks.verdict held either a verdict or that free text,
-- and a conductor step's verdict held its decision (fix_code | fix_design | finish), which
-- its output (the decision's JSON) still holds.

ALTER TABLE tasks ADD COLUMN reason TEXT NOT NULL DEFAULT '';  -- why it ended, in words

-- Old finished tasks: the text becomes the reason; the verdict is what the text names.
UPDATE tasks SET reason = verdict WHERE verdict <> '' AND verdict <> 'passed';
UPDATE tasks SET reason = 'passed' WHERE verdict = 'passed';
UPDATE tasks SET verdict =
  CASE
    WHEN reason = 'passed' THEN 'passed'
    WHEN state = 'cancelled' THEN 'cancelled'
    WHEN reason LIKE 'the % LLM call kept failing: %' THEN 'llm_error'
    WHEN reason LIKE 'verification kept failing for infrastructure reasons%' THEN 'infra_error'
    WHEN reason LIKE 'store error: %' THEN 'infra_error'
    -- "limit_steps (N) used up; last verdict: V": V, when it is one of the set
    WHEN reason LIKE 'limit_steps (%) used up; last verdict: %'
         AND substr(reason, instr(reason, 'last verdict: ') + 14) IN
             ('passed', 'compile_error', 'runtime_error', 'precision_mismatch', 'timeout',
              'crashed', 'resource_exceeded', 'rejected', 'infra_error', 'llm_error', 'garbled')
      THEN substr(reason, instr(reason, 'last verdict: ') + 14)
    -- verify_only tasks ended with the verifier's verdict itself
    WHEN reason IN ('compile_error', 'runtime_error', 'precision_mismatch', 'timeout', 'crashed',
                    'resource_exceeded', 'rejected', 'infra_error') THEN reason
    ELSE ''
  END
WHERE verdict <> '';
-- A verify_only task's reason was its verdict alone: say it in words.
UPDATE tasks SET reason = 'the supplied candidate failed verification: ' || verdict
WHERE reason = verdict AND verdict <> 'passed' AND verdict <> '';

-- Old conductor steps: the decision is in the output; the verdict keeps only the set's words.
UPDATE steps SET verdict = '' WHERE verdict IN ('fix_code', 'fix_design', 'finish');
