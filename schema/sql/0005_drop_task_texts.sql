-- Migration 0005: tasks.task_desc and tasks.candidate are retired (their texts moved to
-- `blobs` in migration 0004). The names are not reused.
ALTER TABLE tasks DROP COLUMN task_desc;
ALTER TABLE tasks DROP COLUMN candidate;
