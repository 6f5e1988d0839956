-- Migration 0011: a job's request in its own columns, not an encoded protocol frame (issue 19).
--
-- jobs.spec (the encoded proto::Assign body of migrations 1-10) is retired: coordinator/store/
-- store.cpp converts the rows that hold one into these columns and job_files in the same
-- transaction as this migration, and empties it (x''). It is never written again; the name is
-- not reused. The coordinator builds each Assign at dispatch from these columns (with the
-- job's id, epoch, kind and the device it was placed on), so resuming after a restart never
-- decodes a frame from the database.
ALTER TABLE jobs ADD COLUMN argv TEXT NOT NULL DEFAULT '[]';  -- JSON array of strings: exec,
                                                             -- the command; verify, harness arguments
ALTER TABLE jobs ADD COLUMN env TEXT NOT NULL DEFAULT '{}';   -- JSON object: added to the
                                                             -- agent's scrubbed environment
ALTER TABLE jobs ADD COLUMN timeout_ms INTEGER NOT NULL DEFAULT 0;  -- wall clock; 0: agent default
-- Resource limits (proto::Limits); 0: the agent's default.
ALTER TABLE jobs ADD COLUMN limit_address_space_mb INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN limit_cpu_s INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN limit_open_files INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN limit_processes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN limit_file_size_mb INTEGER NOT NULL DEFAULT 0;

-- The files a job writes into its work directory before it runs (verify jobs: the task, the
-- candidate and the verification spec).
CREATE TABLE job_files (
  job_id INTEGER NOT NULL REFERENCES jobs(id),
  name   TEXT NOT NULL,  -- relative path in the work directory
  data   BLOB NOT NULL,
  PRIMARY KEY (job_id, name)
) WITHOUT ROWID;
