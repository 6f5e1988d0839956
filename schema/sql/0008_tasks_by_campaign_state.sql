-- Migration 0008: the dashboard's campaign progress (GET /api/v1/campaigns/{id}/progress)
-- reads a campaign's ended tasks by state and time, and its latest change, from this index
-- alone: no task row is read, whatever the campaign's size.
CREATE INDEX tasks_by_campaign_state ON tasks(campaign_id, state, updated_ms);
