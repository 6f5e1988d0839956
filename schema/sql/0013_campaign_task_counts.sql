-- Migration 0013: how many tasks each campaign has in
-- each state, kept by the store's writes of tasks.state (coordinator/store/store.cpp: every
-- insert, set_task_state, a campaign's cancel and resume), so that a campaign's
-- counts (the listing `kforge submit` reads every second while it stores, the status page, a
-- cancel's answer) cost a few rows whatever the campaign's size, instead of a
-- walk over every task (a million index entries per campaign per request; issue 21).
-- Rows whose count fell to 0 stay (the readers skip them). Not triggers: a trigger on tasks
-- made each insert 3-5 times slower (a statement journal per statement), a 100,000-task
-- submission 2.6 s to 10.3 s.
CREATE TABLE campaign_task_counts (
  campaign_id INTEGER NOT NULL,
  state       TEXT NOT NULL,     -- pending | running | passed | failed | cancelled
  n           INTEGER NOT NULL,
  PRIMARY KEY (campaign_id, state)
) WITHOUT ROWID;

INSERT INTO campaign_task_counts(campaign_id, state, n)
  SELECT campaign_id, state, COUNT(*) FROM tasks GROUP BY campaign_id, state;
