// coordinator/store/: all durable state and the only code that speaks SQL -- the Store
// (store.h), a campaign's identity (campaign_hash.h), the embedded migrations (migrations.h),
// WAL checkpoints off the writer's thread (checkpointer.h), the disk reserve (reserve.h) and a
// SQLite VFS that injects faults for tests (fault_vfs.h).
//
// The coordinator's durable state: one SQLite database in WAL mode.
//
// Mutations are named operations. The coordinator's event loop is the one writer: it opens
// a batch at the start of a turn, applies that turn's mutations, and commits before any
// message announcing them leaves (group commit; docs/architecture.md invariant 1). A Store is not
// thread-safe; other threads open their own read-only Store (open_readonly).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/protocol.h"
#include "common/status.h"
#include "common/verify_result.h"
#include "common/vocabulary.h"

namespace kforge {

struct TaskSpec {
  std::string op_name;
  std::string task_id;    // tells shapes or variants of one op apart
  std::string task_desc;  // the reference implementation (harness task format)
  std::string backend;    // ascend | cuda | cpu
  std::string arch;
  std::string impl_type;                     // triton | swft | cuda_c | cpp
  std::string framework;                     // torch | numpy | mindspore
  std::string task_type = "precision_only";  // | profile
  int limit_steps = 10;
  std::string candidate;  // verify_only workflow: the candidate supplied with the campaign
  // The task's own search policy (an op's search table over the campaign's [search]) as JSON
  // (search.h); "": the campaign's.
  std::string search;
};

struct CampaignRow {
  int64_t id = 0;
  std::string name;
  std::string spec;  // the campaign document as submitted
  CampaignState state = CampaignState::running;
  std::string content_hash;  // of the expanded tasks: the same campaign is not added twice
  Workflow workflow = Workflow::default_;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  std::string timing = "kforge";  // kforge | kernelbench: its profile jobs' trials and runs
  std::string search;             // the [search] table as JSON (SearchPolicy); "": fix_loop
};

// One LLM request and its response (stored before the response is used).
struct LlmCallRow {
  std::optional<int64_t> task_id;
  Role role = Role::coder;  // designer | coder | conductor
  std::string model;
  std::string request_key;  // the cache key: a resumed task finds its answer here
  std::string request;
  std::string response;  // the response content (JSON: content, reasoning)
  LlmCallState status = LlmCallState::pending;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  double cost_usd = 0;
  int64_t latency_ms = 0;
};

struct LlmUsage {
  int64_t calls = 0;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  double cost_usd = 0;
};

// LLM usage of one role (designer | coder | conductor).
struct RoleUsage {
  Role role = Role::coder;
  LlmUsage usage;
  int64_t errors = 0;  // calls whose status is error
};

struct TaskRow {
  int64_t id = 0;
  int64_t campaign_id = 0;
  TaskSpec spec;
  TaskState state = TaskState::pending;
  int steps_used = 0;
  std::optional<Outcome> verdict;  // once finished: what ended it (none: nothing did, e.g.
                                   // limit_steps 0)
  std::string reason;              // once finished: why, in words
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
};

struct StepRow {
  int64_t id = 0;
  int64_t task_id = 0;
  int seq = 0;  // 1, 2, ... per task
  Role role = Role::designer;
  std::string input;   // prompt or job reference
  std::string output;  // response, code, decision or verdict document; an LLM error's text
  // Verifier steps: the verification's result, which steps.output holds as its verdict
  // document (record_step writes it there; steps_of reads it back, once). None for other roles
  // and for a verifier step whose text is not a document (one holding only its verdict word);
  // a document that does not parse reads as infra_error, like the judge's own.
  std::optional<VerifyResult> result;
  std::optional<Outcome> verdict;  // verifier steps: the verification's; LLM steps: llm_error
                                   // or garbled, none when the answer was usable
  bool counted = true;             // counts against the task's limit_steps
  int64_t created_ms = 0;
  int64_t sample = 0;  // the chain it belongs to (its sample index); 0 for fix_loop
};

// A judged candidate kernel (schema/sql/0012_search.sql): one per verifier step whose verdict
// is not infra_error, written with it.
struct CandidateRow {
  int64_t id = 0;
  int64_t task_id = 0;
  int64_t sample = 0;                   // its chain
  int64_t step_id = 0;                  // the verifier step that judged it
  std::optional<int64_t> code_step_id;  // the coder step; none: the supplied candidate
  std::optional<int64_t> parent_id;     // the previous candidate of its chain
  int64_t island = 0;
  int64_t generation = 1;             // 1, 2, ... within its chain
  Verdict verdict = Verdict::passed;  // never infra_error
  std::optional<double> speedup;      // none when not profiled
  double score = 0;                   // passed: speedup (1 when not profiled); else 0
  int64_t created_ms = 0;
};

// A candidate that joined another island (schema/sql/0014_evolve.sql): evolve's migrations.
struct MigrantRow {
  int64_t task_id = 0;
  int64_t candidate_id = 0;
  int64_t island = 0;      // the island it joined
  int64_t generation = 0;  // after which it joined
};

// What a job runs, as its columns hold it (migration 0011). The Assign an agent gets is built
// from it at dispatch (assign_for); no protocol frame is stored.
struct JobRequest {
  std::vector<std::string> argv;             // exec: the command; verify: harness arguments
  std::map<std::string, std::string> env;    // added to the agent's scrubbed environment
  std::map<std::string, std::string> files;  // written into the work directory first
  uint64_t timeout_ms = 0;                   // wall clock; 0: the agent's default
  proto::Limits limits;
  bool operator==(const JobRequest&) const = default;
};

struct NewJob {
  std::optional<int64_t> task_id;  // none for plain jobs (tests, benchmarks, kforge exec)
  std::optional<int64_t> step_id;
  JobKind kind = JobKind::exec;
  JobRequest request;
  std::string backend = "cpu";
  std::string arch;             // empty: any arch of the backend
  int priority = 0;             // higher first, then FIFO by id
  bool exclusive = false;       // profile jobs: the device runs nothing else meanwhile
  std::optional<int> task_seq;  // Conductor jobs: the seq after the last step of the chain
                                // they verify (with one chain: the seq of their verdict step)
};

struct JobRow {
  int64_t id = 0;
  std::optional<int64_t> task_id;
  std::optional<int64_t> step_id;
  JobKind kind = JobKind::exec;
  JobRequest request;  // get_job only; listings leave it empty
  std::string backend;
  std::string arch;
  int priority = 0;
  bool exclusive = false;
  JobState state = JobState::queued;
  int64_t epoch = 0;     // bumped by every assign and requeue
  std::string agent_id;  // current lease holder (assigned) or last one (done)
  int device_index = -1;
  int attempts = 0;                        // number of assignments so far
  std::optional<proto::JobResult> result;  // once done: the recorded attempt's result, from
                                           // its typed columns (verify jobs: result->verify)
  int64_t created_ms = 0;
  int64_t assigned_ms = 0;
  int64_t finished_ms = 0;
  std::optional<int> task_seq;
};

// A job's lease without its request and result blobs: what device-time accounting reads.
struct JobLease {
  int64_t id = 0;
  std::optional<int64_t> task_id;
  std::string backend;
  std::string arch;
  JobState state = JobState::queued;
  std::string agent_id;  // as JobRow
  int device_index = -1;
  int64_t assigned_ms = 0;
  int64_t finished_ms = 0;
};

// Which jobs a listing wants (GET /api/v1/jobs); every filter optional.
struct JobFilter {
  std::optional<JobState> state;   // only jobs in this state
  std::optional<int64_t> task_id;  // only this task's jobs
  int64_t after_id = 0;            // keyset paging: only ids above this (the page before's last)
  int64_t offset = 0;              // matching jobs to skip first (pages, with limit)
  std::optional<int64_t> limit;    // at most this many; none: every matching job
};

// Which tasks a listing (GET /api/v1/tasks) or the Conductor's queue wants, by id; every
// filter optional.
struct TaskQuery {
  std::optional<int64_t> campaign_id;  // only this campaign's tasks
  std::optional<TaskState> state;      // only tasks in this state (none: any)
  std::string op_name;                 // only this op ("": any)
  int64_t after_id = 0;  // keyset paging: only ids above this (the last id of the page before)
  int64_t offset = 0;    // matching tasks to skip first (slower: the skipped ones are walked)
  int64_t limit = -1;    // at most this many; -1: every matching task
  // Only tasks the Conductor may start: none of a campaign still being stored in batches
  // (state submitting, docs/decisions.md 21).
  bool startable = false;
};

struct AgentRow {
  std::string id;
  std::string incarnation;
  std::string host;
  AgentState state = AgentState::live;
  bool drained = false;
  std::string capabilities;  // JSON object
  int64_t registered_ms = 0;
  int64_t last_seen_ms = 0;
  std::string drain_reason;  // the operator's words at the drain ("" when not drained)
  int64_t drained_ms = 0;    // when it was drained (0 when not)
};

struct DeviceRow {
  std::string agent_id;
  int index = 0;
  std::string backend;
  std::string arch;
  std::string name;
  int64_t memory_mb = 0;
};

// The request of an Assign (its fields other than the job, the device and the kind).
JobRequest request_of(const proto::Assign& assign);
// The Assign that runs `job` under `epoch` on device `device_index` (of `backend`).
proto::Assign assign_for(const JobRow& job, int64_t epoch, uint32_t device_index,
                         const std::string& backend);

class Store {
 public:
  // Opens (creating if missing) the database at `path`, sets WAL mode and
  // synchronous=NORMAL, and applies pending migrations. A database whose schema version is
  // newer than this build knows is refused with a message naming both versions.
  static Result<std::unique_ptr<Store>> open(const std::filesystem::path& path,
                                             Clock& clock = SystemClock::instance());
  // Opens an existing database read-only (for threads other than the writer). Refuses a
  // schema version other than latest_schema_version(); mutations fail.
  static Result<std::unique_ptr<Store>> open_readonly(const std::filesystem::path& path,
                                                      Clock& clock = SystemClock::instance());
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // The schema version of the open database (PRAGMA user_version).
  int schema_version() const;
  // The newest schema version this build knows.
  static int latest_schema_version();

  // Group commit. REQUIRES: no batch open (begin) / a batch open (commit, rollback).
  // Mutations outside a batch run in their own transaction. A failed mutation inside a
  // batch leaves the batch as it was. If a failure took the whole transaction with it (I/O
  // error), or a write was refused for lack of space (Code::no_space: disk full, a failed
  // write or sync), later mutations and commit() fail until rollback(), and commit() says
  // no_space for the latter: a batch is committed whole or not at all. A failed commit()
  // rolls the batch back. Destroying the Store with a batch open discards the batch.
  Status begin();
  Status commit();
  void rollback();
  bool in_batch() const;
  // Copies the WAL into the database and truncates it to nothing (TRUNCATE checkpoint), so
  // that the WAL's space is free again; what readers still use stays. The no-space alarm
  // runs it after giving the reserve back. REQUIRES: no batch open.
  Status checkpoint();
  // Rewrites the database header unchanged: a batch holding only this still writes a page,
  // so its commit proves that writes succeed (the no-space alarm's probe).
  Status write_probe();
  // Runs `fn` as one unit: inside a batch under a savepoint, outside one in a transaction of
  // its own. When `fn` fails none of its writes stay (the rest of the batch does).
  Status atomically(const std::function<Status()>& fn);

  // Fault injection for tests: `hook` is called with the name of every mutation
  // ("record_step", "set_task_state", ...) before it writes, and with "commit" before a
  // batch commits. A Status other than ok makes that operation fail with it and write
  // nothing; a failed "commit" rolls the batch back, as a COMMIT that fails does. An empty
  // hook removes it. Called on the Store's thread.
  using FaultHook = std::function<Status(std::string_view op)>;
  void inject_fault_for_test(FaultHook hook);

  // Campaigns and tasks.
  Result<int64_t> create_campaign(const std::string& name, const std::string& spec,
                                  const std::string& content_hash = "",
                                  Workflow workflow = Workflow::default_,
                                  const std::string& timing = "kforge",
                                  const std::string& search = "");
  Result<std::optional<CampaignRow>> campaign_by_hash(const std::string& content_hash);
  Result<CampaignRow> get_campaign(int64_t campaign_id);
  Result<std::vector<CampaignRow>> campaigns();  // every campaign, oldest first
  Status set_campaign_state(int64_t campaign_id, CampaignState state);
  Result<std::vector<TaskRow>> tasks_of_campaign(int64_t campaign_id);
  // The ids of the campaign's tasks, in order (read from an index: no task row is read).
  Result<std::vector<int64_t>> task_ids_of_campaign(int64_t campaign_id);
  // Tasks still pending or running, by id (what a restarted coordinator resumes); not those
  // of a campaign still being submitted.
  Result<std::vector<TaskRow>> unfinished_tasks();
  // Submissions (store_campaign) this Store is making: a campaign is claimed when this Store
  // sets it `submitting` and released when it sets any other state or release_submission().
  bool submitting_here(int64_t campaign_id) const;
  void release_submission(int64_t campaign_id);
  // The campaigns still `submitting` that this Store is not storing: submissions that
  // stopped mid-way (their process died, or a batch failed). Submitting the same campaign
  // again resumes one (store_campaign).
  Result<std::vector<int64_t>> interrupted_submissions();
  // The newest job a Conductor submitted for (task, step seq), if any.
  Result<std::optional<JobRow>> job_for_task_seq(int64_t task_id, int seq);

  // LLM calls. A call is recorded as `pending` when it is asked and again with its answer
  // (`ok`) when that arrives. Recording a key whose answer is stored changes nothing; a
  // pending one is replaced.
  Status record_llm_call(const LlmCallRow& call);
  // The answered call (status ok) with this key, if any: pending ones are not answers.
  Result<std::optional<LlmCallRow>> find_llm_call(const std::string& request_key);
  // Removes a pending call (its request failed: nothing to keep).
  Status forget_pending_llm_call(const std::string& request_key);
  // Removes every pending call and returns how many there were: at start-up, the calls that
  // were in flight when the previous process ended (their answers, if any, never arrived).
  Result<int64_t> take_pending_llm_calls();
  Result<LlmUsage> llm_usage_of_task(int64_t task_id);
  // The device time of the task's done jobs, each its final lease's assignment to its result
  // (as campaign_spend and the report count it), in ms.
  Result<int64_t> device_ms_of_task(int64_t task_id);
  // Every call of the campaign's tasks (campaign_id 0: of every task).
  Result<LlmUsage> llm_usage_of_campaign(int64_t campaign_id);
  // The same calls per role, by role name (roles without calls are absent).
  Result<std::vector<RoleUsage>> llm_usage_by_role(int64_t campaign_id);
  // Tasks by state (every state, 0 where none) of a campaign; campaign_id 0: of every
  // campaign. Read from counts the store keeps (campaign_task_counts, migration 0013): a few
  // rows, whatever the number of tasks.
  Result<std::map<TaskState, int64_t>> task_counts(int64_t campaign_id);
  Result<int64_t> create_task(int64_t campaign_id, const TaskSpec& spec);
  // Many tasks as one unit: `feed` calls the function it is given once per task, in order,
  // and stops at its first error; then none of them is stored. Errors as create_task's.
  // Faster than create_task in a loop (issue 21, a campaign's batches): inside a transaction
  // every savepoint copies each page it is first to touch into SQLite's statement journal
  // (a temporary file), and a savepoint per task wrote ~20 KB of it per task.
  using TaskFeed = std::function<Status(const std::function<Status(const TaskSpec&)>& add)>;
  Status create_tasks(int64_t campaign_id, const TaskFeed& feed);
  Result<TaskRow> get_task(int64_t task_id);
  // A finished task has its verdict and reason; pending and running ones have none.
  Status set_task_state(int64_t task_id, TaskState state,
                        std::optional<Outcome> verdict = std::nullopt,
                        const std::string& reason = "");
  // A campaign's unfinished (pending or running) tasks become cancelled with `reason`, in one
  // UPDATE through the index by campaign and state: no task row is read. Returns how many.
  Result<int64_t> cancel_campaign_tasks(int64_t campaign_id, const std::string& reason);
  // A campaign's cancelled tasks become pending again (verdict and reason cleared). Returns how
  // many.
  Result<int64_t> resume_campaign_tasks(int64_t campaign_id);
  // Whether any task of the campaign is cancelled with exactly `reason`.
  Result<bool> any_cancelled_with(int64_t campaign_id, const std::string& reason);
  // Appends a step (seq = last + 1, created_ms = now; step.id, seq and created_ms are
  // ignored); a counted step increments the task's steps_used. A step with a `result` stores
  // its verdict document as steps.output, in place of `output`.
  Result<int64_t> record_step(const StepRow& step);
  Result<std::vector<StepRow>> steps_of(int64_t task_id);
  Result<int64_t> record_candidate(const CandidateRow& candidate);
  Result<std::vector<CandidateRow>> candidates_of(int64_t task_id);  // in the order recorded
  // Recording a migrant again (same task, island, candidate) changes nothing.
  Status record_migrant(const MigrantRow& migrant);
  Result<std::vector<MigrantRow>> migrants_of(int64_t task_id);  // by generation, island

  // Jobs and leases.
  // invalid_argument when the request's argv or env is not UTF-8 text.
  Result<int64_t> enqueue_job(const NewJob& job);
  // The job with its request (argv, env, files, timeout, limits).
  Result<JobRow> get_job(int64_t job_id);
  // queued -> assigned to (agent, device); bumps the epoch and attempts; returns the new
  // epoch. failed_precondition if the job is not queued.
  Result<int64_t> assign_job(int64_t job_id, const std::string& agent_id, int device_index);
  // assigned -> queued with a new epoch (agent lost, coordinator reconciling). Returns the
  // new epoch; failed_precondition if the job is not assigned.
  Result<int64_t> requeue_job(int64_t job_id);
  // Records `result` if (job, epoch) is current and the job is assigned: assigned -> done.
  // Returns false (and changes nothing) for a stale epoch, a job already done/cancelled or
  // a job that does not exist: the caller acks and drops such a result (docs/architecture.md
  // invariant 2). A verify job's result without `verify` (an agent from before typed results)
  // has its result_json read as the verdict document.
  Result<bool> record_result(int64_t job_id, int64_t epoch, const proto::JobResult& result);
  // queued | assigned -> cancelled (agent_id kept, so the holder can be told to stop).
  // Cancelling a cancelled job is ok; a done job is failed_precondition.
  Status cancel_job(int64_t job_id);
  // Jobs in a state, ordered by priority (desc) then id.
  Result<std::vector<JobRow>> jobs_in_state(JobState state, int limit = 1'000'000);
  // Queued jobs with id > after_id, by id: jobs other processes (kforge enqueue) inserted.
  Result<std::vector<JobRow>> queued_after(int64_t after_id, int limit = 10'000);
  Result<std::vector<JobRow>> jobs_of_agent(const std::string& agent_id, JobState state);
  // Every job submitted for a task, oldest first.
  Result<std::vector<JobRow>> jobs_of_task(int64_t task_id);
  // The lease of every job of the campaign's tasks (campaign_id 0: of every job), by id;
  // the request and result are not read.
  Result<std::vector<JobLease>> job_leases(int64_t campaign_id);
  // Calls `each` with every job matching `filter`, by id, one row at a time (a listing of
  // every job holds one result blob at a time, not all of them). For listings: the request is
  // not read (left empty); the result is (a done job's outcome is in it). Filters, order,
  // offset and limit are applied in SQL, through an index: a page costs what it returns, not
  // what the table holds. REQUIRES: `each` does not use this Store.
  Status list_jobs(const JobFilter& filter, const std::function<void(const JobRow&)>& each);
  Result<int64_t> count_jobs(JobState state);
  // Tasks that reached passed or failed at or after `since_ms` (their updated_ms), through
  // the index tasks_by_state_updated: the cluster summary's throughput.
  Result<int64_t> tasks_finished_since(int64_t since_ms);

  // A campaign's progress as the dashboard shows it (GET /api/v1/campaigns/{id}/progress),
  // each part through an index (tasks_by_campaign_state, jobs_by_state): no task row is read.
  struct CampaignActivity {
    int64_t finished_since = 0;  // tasks that became passed or failed at or after since_ms
    int64_t queued_jobs = 0;     // jobs of its tasks waiting for a device
    int64_t running_jobs = 0;    // jobs of its tasks on a device
    int64_t last_change_ms =
        0;  // latest updated_ms of its tasks, or step of a running one (0: none)
  };
  Result<CampaignActivity> campaign_activity(int64_t campaign_id, int64_t since_ms);
  // How many of the campaign's tasks ended (passed, failed, cancelled: updated_ms) in each
  // of `buckets` buckets of `bucket_ms` from `origin_ms` (the first and last also count those
  // before and after); buckets without any are absent. Costs a walk of the index entries of
  // the campaign's ended tasks.
  struct EndedBucket {
    TaskState state = TaskState::passed;  // passed | failed | cancelled
    int64_t bucket = 0;  // (updated_ms - origin_ms) / bucket_ms, within [0, buckets)
    int64_t count = 0;
  };
  Result<std::vector<EndedBucket>> ended_by_bucket(int64_t campaign_id, int64_t origin_ms,
                                                   int64_t bucket_ms, int64_t buckets);
  // Two campaigns side by side: campaign `a`'s tasks with ids above `after_id`, by id, at
  // most `limit`, each with the id of campaign `b`'s task of the same op_name, task_id,
  // backend, arch and impl_type (0: b has none). Through the tasks' unique index.
  Result<std::vector<std::pair<int64_t, int64_t>>> paired_tasks(int64_t a, int64_t b,
                                                                int64_t after_id, int64_t limit);
  // How many of campaign `a`'s tasks have such a twin in `b`.
  Result<int64_t> paired_count(int64_t a, int64_t b);

  // The queue of tasks, paged (issue 21). The ids of the tasks matching `query`, ascending.
  // With a state or campaign filter the walk goes through that index and a page costs what
  // it returns, at any depth (after_id); with only op_name the rows from after_id on are
  // walked until the page is full. Never reads task rows.
  Result<std::vector<int64_t>> task_ids(const TaskQuery& query);
  // True while a task of the campaign is pending or running.
  Result<bool> campaign_unfinished(int64_t campaign_id);
  // What a campaign has spent, all its tasks together (its campaign_max_* budgets, search.h).
  struct CampaignSpend {
    int64_t llm_calls = 0;  // LLM steps recorded (answers, failures and garbled ones)
    int64_t tokens = 0;     // prompt + completion tokens of the answers its tasks paid for
    double cost_usd = 0;    // their cost
    int64_t device_ms = 0;  // run time of its done jobs (assigned_ms to finished_ms)
    int64_t wall_ms = 0;    // since the campaign was created, by the store's clock
  };
  Result<CampaignSpend> campaign_spend(int64_t campaign_id);
  // The steps of the campaign's running tasks (a row with no step for a task without any),
  // by task then seq, each with its candidate's
  // verdict and score when it judged one (the adaptive strategy's view, adaptive.h).
  struct SearchStep {
    int64_t task_id = 0;
    bool llm = false;                // a designer, coder or conductor step
    std::optional<Verdict> verdict;  // the candidate it judged, if any
    double score = 0;                // that candidate's score
  };
  Result<std::vector<SearchStep>> running_search_steps(int64_t campaign_id);
  // True when another connection (another process, or another Store on this file) committed
  // since the last call (the first call: true). Costs a PRAGMA, no scan: the coordinator
  // checks it every second to adopt what `kforge submit` or `kforge enqueue` wrote.
  Result<bool> changed_elsewhere();

  // Agents and devices. upsert_agent registers an agent (registered_ms = last_seen_ms =
  // now) and replaces its device list with `devices` (their agent_id is taken from
  // `agent`). An existing agent keeps its drained flag: a drain outlives re-registration.
  Status upsert_agent(const AgentRow& agent, const std::vector<DeviceRow>& devices);
  Status set_agent_state(const std::string& agent_id, AgentState state);
  // A drain records `reason` and the time; an undrain clears both (`reason` is ignored).
  Status set_agent_drained(const std::string& agent_id, bool drained,
                           const std::string& reason = "");
  Status touch_agent(const std::string& agent_id);  // last_seen_ms = now
  Result<std::vector<AgentRow>> agents();
  Result<std::optional<AgentRow>> agent(const std::string& agent_id);  // none: never registered
  Result<std::vector<DeviceRow>> devices_of(const std::string& agent_id);

 private:
  // Ids held only by tasks of submitting campaigns, as sorted [first, last] ranges.
  Result<std::vector<std::pair<int64_t, int64_t>>> submitting_ranges();
  struct Impl;
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kforge
