-- Migration 0003: job results in typed columns, not encoded protocol frames (issue 19).
--
-- A done job's outcome is these columns; jobs.result (the encoded proto::JobResult frame of
-- migrations 1-2) is retired: coordinator/store/store.cpp converts the rows that hold one
-- into these columns in the same transaction as this migration, and sets it to NULL. It is
-- never written again; the name is not reused.
--
-- A result exists when run_exit_code is not NULL (the job is done). verdict is not NULL when
-- the result holds a verification (verify jobs).

-- How the attempt's process ended (proto::JobResult).
ALTER TABLE jobs ADD COLUMN run_exit_code INTEGER;  -- exit status; -1 when it did not exit
ALTER TABLE jobs ADD COLUMN run_signal INTEGER NOT NULL DEFAULT 0;  -- the signal that killed it
ALTER TABLE jobs ADD COLUMN run_timed_out INTEGER NOT NULL DEFAULT 0 CHECK (run_timed_out IN (0, 1));
ALTER TABLE jobs ADD COLUMN run_cancelled INTEGER NOT NULL DEFAULT 0 CHECK (run_cancelled IN (0, 1));
ALTER TABLE jobs ADD COLUMN run_infra_error TEXT NOT NULL DEFAULT '';  -- the agent could not run it
ALTER TABLE jobs ADD COLUMN run_stdout BLOB NOT NULL DEFAULT x'';    -- captured, capped by the agent
ALTER TABLE jobs ADD COLUMN run_stderr BLOB NOT NULL DEFAULT x'';
ALTER TABLE jobs ADD COLUMN run_output_truncated INTEGER NOT NULL DEFAULT 0
    CHECK (run_output_truncated IN (0, 1));
ALTER TABLE jobs ADD COLUMN run_result_json TEXT NOT NULL DEFAULT '';  -- exec jobs: their result.json
ALTER TABLE jobs ADD COLUMN run_agent_id TEXT NOT NULL DEFAULT '';     -- the agent that reported it
ALTER TABLE jobs ADD COLUMN run_started_ms INTEGER NOT NULL DEFAULT 0;  -- the agent's wall clock
ALTER TABLE jobs ADD COLUMN run_finished_ms INTEGER NOT NULL DEFAULT 0;

-- The verification (docs/harness.md, "The verdict document"; common/verify_result.h).
ALTER TABLE jobs ADD COLUMN verdict TEXT;  -- passed | compile_error | ... ; NULL: none
ALTER TABLE jobs ADD COLUMN verdict_message TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN input_error TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN stage TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN trials INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN checks TEXT NOT NULL DEFAULT '';   -- JSON object (verdict document
                                                               -- `checks`); empty: none
ALTER TABLE jobs ADD COLUMN profile TEXT NOT NULL DEFAULT '';  -- JSON object (`profile`); empty: none
ALTER TABLE jobs ADD COLUMN verdict_details TEXT NOT NULL DEFAULT '';  -- JSON object: the
                                 -- document's other keys (versions, phases_ms, job, ...)
