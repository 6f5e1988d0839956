-- Migration 0013 (0017 reserved: renumber on merge): how many tasks each campaign has in each state, kept by triggers, so that
-- a campaign's counts (the listing `kforge submit` reads every second while it stores, the
-- status page, a cancel's answer) cost a few rows whatever the campaign's size, instead of a
-- walk over every task (a million index entries per campaign per request; issue 21).
-- Rows whose count fell to 0 stay (the readers skip them).
CREATE TABLE campaign_task_counts (
  campaign_id INTEGER NOT NULL,
  state       TEXT NOT NULL,     -- pending | running | passed | failed | cancelled
  n           INTEGER NOT NULL,
  PRIMARY KEY (campaign_id, state)
) WITHOUT ROWID;

INSERT INTO campaign_task_counts(campaign_id, state, n)
  SELECT campaign_id, state, COUNT(*) FROM tasks GROUP BY campaign_id, state;

CREATE TRIGGER tasks_counted_insert AFTER INSERT ON tasks BEGIN
  INSERT INTO campaign_task_counts(campaign_id, state, n) VALUES (NEW.campaign_id, NEW.state, 1)
    ON CONFLICT(campaign_id, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER tasks_counted_update AFTER UPDATE OF state, campaign_id ON tasks
  WHEN OLD.state IS NOT NEW.state OR OLD.campaign_id IS NOT NEW.campaign_id BEGIN
  UPDATE campaign_task_counts SET n = n - 1 WHERE campaign_id = OLD.campaign_id AND state = OLD.state;
  INSERT INTO campaign_task_counts(campaign_id, state, n) VALUES (NEW.campaign_id, NEW.state, 1)
    ON CONFLICT(campaign_id, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER tasks_counted_delete AFTER DELETE ON tasks BEGIN
  UPDATE campaign_task_counts SET n = n - 1 WHERE campaign_id = OLD.campaign_id AND state = OLD.state;
END;
