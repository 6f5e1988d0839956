-- Migration 0001: the initial kforge schema.
--
-- Applied by coordinator/store.cpp inside one transaction, which then sets
-- PRAGMA user_version = 1. Never edit a migration that has shipped: add NNNN_*.sql instead.
-- Retired columns or tables are not reused under the same name; leave a comment where they
-- were.
--
-- Conventions: times are milliseconds since the Unix epoch (the coordinator's wall clock);
-- booleans are INTEGER 0/1; empty text means "none" unless a column says NULL does.

-- One row per submitted campaign (a campaign file expanded into tasks).
CREATE TABLE campaigns (
  id         INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  spec       TEXT NOT NULL,     -- the campaign document as submitted, kept for resume/audit
  state      TEXT NOT NULL,     -- running | finished | cancelled (set by the coordinator)
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);

-- One kernel to generate: a TaskSpec plus the Conductor's progress on it.
CREATE TABLE tasks (
  id          INTEGER PRIMARY KEY,
  campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
  op_name     TEXT NOT NULL,
  task_id     TEXT NOT NULL,    -- the harness's task id (shape/variant of the op), not a row id
  task_desc   TEXT NOT NULL,    -- the reference implementation (KernelBench/AIKG format)
  backend     TEXT NOT NULL,    -- ascend | cuda | cpu
  arch        TEXT NOT NULL,
  impl_type   TEXT NOT NULL,    -- triton | swft | cuda_c | cpp
  framework   TEXT NOT NULL,    -- torch | numpy | mindspore
  task_type   TEXT NOT NULL,    -- precision_only | profile
  limit_steps INTEGER NOT NULL,
  state       TEXT NOT NULL,    -- pending | running | passed | failed | cancelled
  steps_used  INTEGER NOT NULL DEFAULT 0,  -- counted steps so far (compared with limit_steps)
  verdict     TEXT NOT NULL DEFAULT '',    -- the final verdict once passed/failed
  created_ms  INTEGER NOT NULL,
  updated_ms  INTEGER NOT NULL,
  UNIQUE (campaign_id, op_name, task_id, backend, arch, impl_type)  -- also: tasks by campaign
);
-- Resume after a restart: find the tasks still pending or running.
CREATE INDEX tasks_by_state ON tasks(state, id);

-- The append-only log of what the Conductor did for a task: one row per LLM role turn or
-- verification. A resumed task replays its steps instead of redoing them.
CREATE TABLE steps (
  id         INTEGER PRIMARY KEY,
  task_id    INTEGER NOT NULL REFERENCES tasks(id),
  seq        INTEGER NOT NULL,  -- 1, 2, ... per task, no gaps
  role       TEXT NOT NULL,     -- designer | coder | verifier | conductor
  input      TEXT NOT NULL,     -- prompt or job reference
  output     TEXT NOT NULL,     -- response, code or verdict document
  verdict    TEXT NOT NULL DEFAULT '',  -- verifier steps: passed | compile_error | ...
  counted    INTEGER NOT NULL CHECK (counted IN (0, 1)),  -- 0: an infrastructure retry that
                                                          -- does not consume limit_steps
  created_ms INTEGER NOT NULL,
  UNIQUE (task_id, seq)         -- its index serves "steps of a task, in order"
);

-- Work for agents: one verification/profiling/exec run on one device, leased under an epoch.
-- AUTOINCREMENT: a job id is never reused, even after rows are pruned, so a late result
-- carrying (id, epoch) can never be mistaken for a result of a newer job.
CREATE TABLE jobs (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  task_id      INTEGER REFERENCES tasks(id),  -- NULL for plain jobs (tests, bench, kforge exec)
  step_id      INTEGER REFERENCES steps(id),  -- the step that asked for it, if any
  kind         TEXT NOT NULL,    -- exec | verify
  spec         BLOB NOT NULL,    -- encoded proto::Assign body template (opaque to the store)
  backend      TEXT NOT NULL,    -- the device backend it needs
  arch         TEXT NOT NULL DEFAULT '',  -- empty: any arch of the backend
  priority     INTEGER NOT NULL DEFAULT 0,  -- higher first, then FIFO by id
  exclusive    INTEGER NOT NULL DEFAULT 0 CHECK (exclusive IN (0, 1)),  -- profile jobs: the
                                 -- device runs nothing else meanwhile
  state        TEXT NOT NULL DEFAULT 'queued'
               CHECK (state IN ('queued', 'assigned', 'done', 'cancelled')),
  epoch        INTEGER NOT NULL DEFAULT 0,  -- lease generation, bumped by every assign and
                                 -- requeue; a result is recorded only for the current epoch
  agent_id     TEXT,             -- lease holder (assigned) or last one (done/cancelled); NULL
                                 -- when queued. No foreign key: agent rows come and go.
  device_index INTEGER NOT NULL DEFAULT -1,  -- the agent's device index; -1 when none
  attempts     INTEGER NOT NULL DEFAULT 0,   -- number of assignments so far
  result       BLOB,             -- encoded result for the current epoch, once done
  created_ms   INTEGER NOT NULL,
  assigned_ms  INTEGER NOT NULL DEFAULT 0,  -- start of the current lease; 0 when queued
  finished_ms  INTEGER NOT NULL DEFAULT 0   -- when it became done or cancelled
);
-- The dispatcher: "queued jobs, highest priority first, then FIFO" (also count by state).
CREATE INDEX jobs_by_state ON jobs(state, priority DESC, id);
-- Reconciling an agent: "the jobs this agent holds".
CREATE INDEX jobs_by_agent ON jobs(agent_id, state);

-- Every LLM request and its response, stored before the response is used (invariant 3).
CREATE TABLE llm_calls (
  id                INTEGER PRIMARY KEY,
  task_id           INTEGER REFERENCES tasks(id),
  step_id           INTEGER REFERENCES steps(id),
  role              TEXT NOT NULL,  -- designer | coder | conductor
  model             TEXT NOT NULL,
  request_key       TEXT NOT NULL UNIQUE,  -- hash of the full request (model, messages,
                                  -- parameters): a resumed task looks its question up here
                                  -- and never pays for the same answer twice
  request           TEXT NOT NULL,  -- the request body as sent
  response          TEXT,           -- the response body; NULL until it arrives
  status            TEXT NOT NULL,  -- pending | ok | error
  prompt_tokens     INTEGER NOT NULL DEFAULT 0,
  completion_tokens INTEGER NOT NULL DEFAULT 0,
  cost_usd          REAL NOT NULL DEFAULT 0,
  latency_ms        INTEGER NOT NULL DEFAULT 0,
  created_ms        INTEGER NOT NULL
);
-- Cost and history per task (dashboard, reports).
CREATE INDEX llm_calls_by_task ON llm_calls(task_id);

-- One row per agent ever registered; the row outlives the agent's process.
CREATE TABLE agents (
  id            TEXT PRIMARY KEY,  -- stable agent id (survives restarts of the agent)
  incarnation   TEXT NOT NULL,     -- per-process id; a new one means the agent restarted
  host          TEXT NOT NULL,
  state         TEXT NOT NULL,     -- live | lost | gone
  drained       INTEGER NOT NULL DEFAULT 0 CHECK (drained IN (0, 1)),  -- operator: assign it
                                   -- nothing new; survives the agent's re-registration
  capabilities  TEXT NOT NULL DEFAULT '{}',  -- JSON object (python, torch, triton versions...)
  registered_ms INTEGER NOT NULL,  -- the latest registration (hello)
  last_seen_ms  INTEGER NOT NULL   -- the latest message or heartbeat
);

-- The devices an agent reported in its latest registration (replaced as a whole each time).
CREATE TABLE devices (
  agent_id  TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
  idx       INTEGER NOT NULL,    -- the agent's device index (cuda:N, npu:N; 0 for cpu)
  backend   TEXT NOT NULL,       -- ascend | cuda | cpu
  arch      TEXT NOT NULL,
  name      TEXT NOT NULL,       -- the product name the agent reported
  memory_mb INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (agent_id, idx, backend)
) WITHOUT ROWID;
