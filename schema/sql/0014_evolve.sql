-- The evolve strategy (issue 17, coordinator/generation/evolve.h): migrations between islands.
-- A candidate belongs to the island that produced it (candidates.island); every
-- `migrate_every` generations the best `migrants` of each island also join the next island
-- (a ring), one row here each, written in the same transaction as the verifier step that
-- completed the generation. A restarted coordinator reads the islands back from candidates
-- and these rows.
CREATE TABLE migrants (
  task_id      INTEGER NOT NULL REFERENCES tasks(id),
  candidate_id INTEGER NOT NULL REFERENCES candidates(id),
  island       INTEGER NOT NULL,  -- the island it joined
  generation   INTEGER NOT NULL,  -- the generation after which it joined (its children's
                                  -- generations are later ones)
  created_ms   INTEGER NOT NULL,
  PRIMARY KEY (task_id, island, candidate_id)
);
