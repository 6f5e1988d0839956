-- Migration 0006: why and when an operator drained an agent (kforge drain --reason), and an
-- index for the cluster summary's throughput (tasks finished since a time, by state).
ALTER TABLE agents ADD COLUMN drain_reason TEXT NOT NULL DEFAULT '';  -- '' when not drained
ALTER TABLE agents ADD COLUMN drained_ms INTEGER NOT NULL DEFAULT 0;  -- when drained; 0 when not
CREATE INDEX tasks_by_state_updated ON tasks(state, updated_ms);
