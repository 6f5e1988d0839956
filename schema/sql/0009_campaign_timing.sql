-- Migration 0009: how a campaign's profile jobs are timed (docs/campaigns.md "timing"):
-- 'kforge' (the harness's defaults: 3 precision trials, 5 warm-up and 50 timed runs) or
-- 'kernelbench' (KernelBench's: 5 trials, 3 warm-up and 100 timed runs).
ALTER TABLE campaigns ADD COLUMN timing TEXT NOT NULL DEFAULT 'kforge';
