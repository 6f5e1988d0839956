-- Search across a task (issue 17): a campaign's search strategy, the sample (chain) of each
-- step, and every candidate kernel a task produced.

-- The campaign's [search] table as JSON text (SearchPolicy, coordinator/generation/search.h);
-- '' is the default: fix_loop, one chain, sample 0.
ALTER TABLE campaigns ADD COLUMN search TEXT NOT NULL DEFAULT '';

-- The chain a step belongs to: its sample index (sample_offset + 0 .. samples-1). Steps of one
-- chain are decided on alone (conductor_rules.h); a fix_loop task has one chain.
ALTER TABLE steps ADD COLUMN sample INTEGER NOT NULL DEFAULT 0;

-- One row per judged candidate kernel (a verifier step whose verdict is not infra_error),
-- written in the same transaction as that verifier step: a restarted coordinator reads the
-- search's population back from here.
CREATE TABLE candidates (
  id           INTEGER PRIMARY KEY,
  task_id      INTEGER NOT NULL REFERENCES tasks(id),
  sample       INTEGER NOT NULL,        -- the chain (steps.sample) that produced it
  step_id      INTEGER NOT NULL UNIQUE REFERENCES steps(id),  -- the verifier step that judged it
  code_step_id INTEGER REFERENCES steps(id),  -- the coder step whose code it is; NULL: the
                                        -- task's supplied candidate (verify_only)
  parent_id    INTEGER REFERENCES candidates(id),  -- the candidate it was derived from (the
                                        -- previous one of its chain); NULL: the first
  island       INTEGER NOT NULL DEFAULT 0,  -- population island; 0 for fix_loop and best_of_n
  generation   INTEGER NOT NULL,        -- 1, 2, ... within its chain
  verdict      TEXT NOT NULL,           -- passed | compile_error | ...
  speedup      REAL,                    -- the profile's speedup; NULL when not profiled
  score        REAL NOT NULL,           -- passed: speedup (1 when not profiled); else 0
  created_ms   INTEGER NOT NULL
);
CREATE INDEX candidates_by_task ON candidates(task_id, id);
