-- Migration 0004: each distinct text stored once (issue 21, "tasks cost what they carry").
--
-- A campaign's tasks used to carry their own copy of the reference source (tasks.task_desc)
-- and of the supplied candidate (tasks.candidate): a 100,000-task sweep of a 4 KB task file
-- stored 400 MB. Now a text lives in `blobs`, once per distinct content (SHA-256), and a task
-- points at it, either as it is or with one edit: the text is the blob's first `head` bytes,
-- then `middle`, then its last `tail` bytes. A sweep's tasks are their task file with a few
-- constants rewritten: they share the file's blob and each keeps only the rewritten span.
--
-- coordinator/store/store.cpp moves every stored task_desc and candidate into these columns
-- in the same transaction as this migration; migration 0005 then drops the old columns.

CREATE TABLE blobs (
  id     INTEGER PRIMARY KEY,
  sha256 TEXT NOT NULL UNIQUE,  -- of `data`: 64 lowercase hex digits
  data   BLOB NOT NULL          -- the text's bytes (UTF-8 as submitted)
);

-- task_desc: blob, or blob[0, head) + middle + blob[size - tail, size) when middle is not NULL.
ALTER TABLE tasks ADD COLUMN task_desc_blob INTEGER REFERENCES blobs(id);
ALTER TABLE tasks ADD COLUMN task_desc_head INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN task_desc_tail INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN task_desc_middle BLOB;
-- candidate (verify_only): the same form; candidate_blob NULL: no candidate ('').
ALTER TABLE tasks ADD COLUMN candidate_blob INTEGER REFERENCES blobs(id);
ALTER TABLE tasks ADD COLUMN candidate_head INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN candidate_tail INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN candidate_middle BLOB;
