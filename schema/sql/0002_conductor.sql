-- What the Conductor needs to resume a task without repeating work (issue: Task lifecycle).

-- The step seq a Conductor job will be recorded as. A verify job exists before its verifier
-- step does (steps are written when they complete), so jobs.step_id cannot name it; a
-- resumed task finds its job by (task_id, task_seq) instead of submitting a second one.
ALTER TABLE jobs ADD COLUMN task_seq INTEGER;
CREATE INDEX jobs_by_task_seq ON jobs(task_id, task_seq);

-- Submitting the same campaign twice must not duplicate it: campaigns are found by the
-- hash of their expanded tasks.
ALTER TABLE campaigns ADD COLUMN content_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE campaigns ADD COLUMN workflow TEXT NOT NULL DEFAULT 'default';  -- default | coder_only | verify_only
CREATE INDEX campaigns_by_hash ON campaigns(content_hash);

-- verify_only workflow: the candidate supplied with the campaign.
ALTER TABLE tasks ADD COLUMN candidate TEXT NOT NULL DEFAULT '';
-- "tasks of a campaign" (results, progress).
CREATE INDEX tasks_by_campaign ON tasks(campaign_id, id);
