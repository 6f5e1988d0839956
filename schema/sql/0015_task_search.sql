-- Search strategies per op (issue 17, docs/campaigns.md "Per-op search"): an [[ops]] entry's
-- own search table, resolved over the campaign's [search] (coordinator/generation/search.h),
-- stored with each task expanded from that op as the policy's JSON (search_text's form). ''
-- (every task of earlier databases, and every task of a campaign without per-op search):
-- the task runs its campaign's policy (campaigns.search).
ALTER TABLE tasks ADD COLUMN search TEXT NOT NULL DEFAULT '';
