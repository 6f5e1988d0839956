// Store: the coordinator's SQLite database (see store.h and schema/sql/).
//
// Every statement is prepared once per Store (Statements below) and reset after each use;
// mutations run inside the open batch or, outside one, inside their own BEGIN IMMEDIATE
// transaction. An operation of several statements runs under a savepoint inside a batch,
// so a failed operation never leaves half its writes in the batch. The SQLite plumbing this
// builds on (Db, Stmt, Tx) is common/sqlite.h, shared with the agent's outbox; its WAL
// checkpoints run on a thread of their own (checkpointer.h).
#include "coordinator/store/store.h"

#include <algorithm>
#include <iterator>
#include <limits>
#include <set>
#include <string_view>
#include <utility>

#include "common/sha256.h"
#include "common/sqlite.h"
#include "common/verify_result.h"
#include "coordinator/store/campaign_hash.h"
#include "coordinator/store/checkpointer.h"
#include "coordinator/store/migrations.h"

namespace kforge {

namespace {

using sqlite::Prepared;
using sqlite::Stmt;
using sqlite::Tx;

constexpr int kBusyTimeoutMs = 5000;

// The vocabulary words of one row, as to_string stored them (common/vocabulary.h; migration
// 0010 made every stored word one of its enum's). A word this build does not know is not
// guessed at: it makes the row an error naming its table.column and the value.
class StoredWords {
 public:
  // The word in column `col`, which holds `column` ("tasks.state").
  template <class E>
  E word(const Stmt& s, int col, std::string_view column) {
    const std::string text = s.str(col);
    if (std::optional<E> e = parse_enum<E>(text)) return *e;
    if (error_.empty()) {
      error_ = std::string(column) + " holds '" + text.substr(0, 64) + "'; the " +
               std::string(EnumNames<E>::what) + "s this kforge knows are " + names_of<E>();
    }
    return E{};
  }
  // As word; '' is none.
  template <class E>
  std::optional<E> optional_word(const Stmt& s, int col, std::string_view column) {
    if (s.str(col).empty()) return std::nullopt;
    return word<E>(s, col, column);
  }
  // `row`, or the error that names the first unknown word.
  template <class Row>
  Result<Row> row(Row row) const {
    if (!error_.empty()) return internal_error(error_);
    return row;
  }

 private:
  std::string error_;
};

// Every statement the store runs. One member per statement; kSql gives each its text.
struct Statements {
  sqlite3_stmt* user_version = nullptr;
  sqlite3_stmt* insert_campaign = nullptr;
  sqlite3_stmt* insert_task = nullptr;
  sqlite3_stmt* get_task = nullptr;
  sqlite3_stmt* set_task_state = nullptr;
  sqlite3_stmt* task_state_of = nullptr;
  sqlite3_stmt* add_task_count = nullptr;
  sqlite3_stmt* clear_task_counts = nullptr;
  sqlite3_stmt* cancel_campaign_tasks = nullptr;
  sqlite3_stmt* resume_campaign_tasks = nullptr;
  sqlite3_stmt* any_cancelled_with = nullptr;
  sqlite3_stmt* insert_step = nullptr;
  sqlite3_stmt* add_steps_used = nullptr;
  sqlite3_stmt* steps_of = nullptr;
  sqlite3_stmt* insert_candidate = nullptr;
  sqlite3_stmt* candidates_of = nullptr;
  sqlite3_stmt* insert_migrant = nullptr;
  sqlite3_stmt* migrants_of = nullptr;
  sqlite3_stmt* insert_job = nullptr;
  sqlite3_stmt* insert_job_file = nullptr;
  sqlite3_stmt* job_request = nullptr;
  sqlite3_stmt* job_files = nullptr;
  sqlite3_stmt* get_job = nullptr;
  sqlite3_stmt* job_state = nullptr;
  sqlite3_stmt* assign_job = nullptr;
  sqlite3_stmt* requeue_job = nullptr;
  sqlite3_stmt* record_result = nullptr;
  sqlite3_stmt* job_kind = nullptr;
  sqlite3_stmt* cancel_job = nullptr;
  sqlite3_stmt* jobs_in_state = nullptr;
  sqlite3_stmt* queued_after = nullptr;
  sqlite3_stmt* jobs_of_agent = nullptr;
  sqlite3_stmt* count_jobs = nullptr;
  sqlite3_stmt* tasks_finished_since = nullptr;
  sqlite3_stmt* upsert_agent = nullptr;
  sqlite3_stmt* delete_devices = nullptr;
  sqlite3_stmt* insert_device = nullptr;
  sqlite3_stmt* set_agent_state = nullptr;
  sqlite3_stmt* set_agent_drained = nullptr;
  sqlite3_stmt* touch_agent = nullptr;
  sqlite3_stmt* agents = nullptr;
  sqlite3_stmt* agent_by_id = nullptr;
  sqlite3_stmt* devices_of = nullptr;
  sqlite3_stmt* job_for_task_seq = nullptr;
  sqlite3_stmt* campaign_by_hash = nullptr;
  sqlite3_stmt* get_campaign = nullptr;
  sqlite3_stmt* set_campaign_state = nullptr;
  sqlite3_stmt* tasks_of_campaign = nullptr;
  sqlite3_stmt* unfinished_tasks = nullptr;
  sqlite3_stmt* task_ids_of_campaign = nullptr;
  sqlite3_stmt* submitting_campaigns = nullptr;
  sqlite3_stmt* delete_unused_blobs = nullptr;
  sqlite3_stmt* insert_llm_call = nullptr;
  sqlite3_stmt* find_llm_call = nullptr;
  sqlite3_stmt* forget_pending_llm_call = nullptr;
  sqlite3_stmt* take_pending_llm_calls = nullptr;
  sqlite3_stmt* llm_usage_of_task = nullptr;
  sqlite3_stmt* jobs_of_task = nullptr;
  sqlite3_stmt* campaigns = nullptr;
  sqlite3_stmt* task_counts = nullptr;
  sqlite3_stmt* llm_usage_by_role = nullptr;
  sqlite3_stmt* llm_usage_of_campaign = nullptr;
  sqlite3_stmt* job_leases = nullptr;
  sqlite3_stmt* job_leases_of_campaign = nullptr;
  sqlite3_stmt* list_jobs = nullptr;
  sqlite3_stmt* list_jobs_in_state = nullptr;
  sqlite3_stmt* list_jobs_of_task = nullptr;
  sqlite3_stmt* list_jobs_of_task_in_state = nullptr;
};

// The SQL below is laid out by hand, one statement a line where it fits: clang-format off.
// clang-format off
// A job's result columns (migration 0003), read by read_job from column 14 on.
#define KF_RESULT_COLUMNS                                                                     \
  "run_signal, run_timed_out, run_cancelled, run_infra_error, run_stdout, run_stderr, "       \
  "run_output_truncated, run_result_json, run_agent_id, run_started_ms, run_finished_ms, "    \
  "verdict, verdict_message, input_error, stage, trials, checks, profile, verdict_details"
// The same as assignments to ?5.. (bind_result binds them).
#define KF_RESULT_SET                                                                         \
  "run_exit_code = ?5, run_signal = ?6, run_timed_out = ?7, run_cancelled = ?8, "             \
  "run_infra_error = ?9, run_stdout = ?10, run_stderr = ?11, run_output_truncated = ?12, "    \
  "run_result_json = ?13, run_agent_id = ?14, run_started_ms = ?15, run_finished_ms = ?16, "  \
  "verdict = ?17, verdict_message = ?18, input_error = ?19, stage = ?20, trials = ?21, "      \
  "checks = ?22, profile = ?23, verdict_details = ?24"
// A job's request (migration 0011), bound by bind_request from ?11 and read by read_request.
#define KF_REQUEST_COLUMNS                                                                   \
  "argv, env, timeout_ms, limit_address_space_mb, limit_cpu_s, limit_open_files, limit_processes, " \
  "limit_file_size_mb"
// The same columns set from ?11 on (migration 0011's data step).
#define KF_REQUEST_SET                                                                     \
  "argv = ?11, env = ?12, timeout_ms = ?13, limit_address_space_mb = ?14, limit_cpu_s = ?15, " \
  "limit_open_files = ?16, limit_processes = ?17, limit_file_size_mb = ?18"
// A job row without its request (get_job reads that apart: read_request). Column 4 is NULL,
// where the retired spec was, so that the columns keep their numbers.
#define KF_JOB_COLUMNS                                                                   \
  "id, task_id, step_id, kind, NULL, backend, arch, priority, exclusive, state, epoch, " \
  "agent_id, device_index, attempts, run_exit_code, created_ms, assigned_ms, finished_ms, task_seq, " \
  KF_RESULT_COLUMNS
// An agent row's columns, as read_agent reads them.
#define KF_AGENT_COLUMNS \
  "id, incarnation, host, state, drained, capabilities, registered_ms, last_seen_ms, drain_reason, drained_ms"

// A task's texts are stored once each in blobs (migration 0004): read_task puts them together
// from the blob and the task's edit (text_of), four columns each. `reason` is the reason
// column (migration 0010), or '' for the migrations before it that read tasks.
// `search` is the search column (migration 0015), or '' likewise.
#define KF_TASK_SELECT(reason, search)                                             \
  "tasks.id, campaign_id, op_name, task_id, backend, arch, impl_type, framework, " \
  "task_type, limit_steps, state, steps_used, verdict, created_ms, updated_ms, "   \
  "d.data, task_desc_head, task_desc_tail, task_desc_middle, "                     \
  "c.data, candidate_head, candidate_tail, candidate_middle, " reason ", " search  \
  " FROM tasks LEFT JOIN blobs AS d ON d.id = tasks.task_desc_blob "               \
  "LEFT JOIN blobs AS c ON c.id = tasks.candidate_blob"
#define KF_TASK_COLUMNS KF_TASK_SELECT("reason", "tasks.search")
#define KF_LEASE_COLUMNS \
  "id, task_id, backend, arch, state, agent_id, device_index, assigned_ms, finished_ms"
#define KF_CAMPAIGN_COLUMNS \
  "id, name, spec, state, content_hash, workflow, created_ms, updated_ms, timing, search"

struct SqlDef {
  sqlite3_stmt* Statements::*member;
  const char* sql;
};

const SqlDef kSql[] = {
    {&Statements::user_version, "PRAGMA user_version"},
    {&Statements::insert_campaign,
     "INSERT INTO campaigns(name, spec, state, created_ms, updated_ms, content_hash, workflow, timing, "
     "search) VALUES(?1, ?2, 'running', ?3, ?3, ?4, ?5, ?6, ?7)"},
    {&Statements::insert_task,
     "INSERT INTO tasks(campaign_id, op_name, task_id, backend, arch, impl_type, framework, "
     "task_type, limit_steps, state, steps_used, verdict, created_ms, updated_ms, "
     "task_desc_blob, task_desc_head, task_desc_tail, task_desc_middle, "
     "candidate_blob, candidate_head, candidate_tail, candidate_middle, search) "
     "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', 0, '', ?10, ?10, "
     "?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"},
    {&Statements::get_task, "SELECT " KF_TASK_COLUMNS " WHERE tasks.id = ?1"},
    {&Statements::set_task_state,
     "UPDATE tasks SET state = ?2, verdict = ?3, reason = ?5, updated_ms = ?4 WHERE id = ?1"},
    // The counts by campaign and state (migration 0013), kept with every write of tasks.state.
    {&Statements::task_state_of, "SELECT campaign_id, state FROM tasks WHERE id = ?1"},
    {&Statements::add_task_count,
     "INSERT INTO campaign_task_counts(campaign_id, state, n) VALUES (?1, ?2, ?3) "
     "ON CONFLICT(campaign_id, state) DO UPDATE SET n = n + excluded.n"},
    {&Statements::clear_task_counts,
     "UPDATE campaign_task_counts SET n = 0 WHERE campaign_id = ?1 AND state IN (?2, ?3)"},
    // Both through tasks_by_campaign_state (campaign_id, state): only the rows they change.
    {&Statements::cancel_campaign_tasks,
     "UPDATE tasks SET state = 'cancelled', verdict = 'cancelled', reason = ?2, updated_ms = ?3 "
     "WHERE campaign_id = ?1 AND state IN ('pending', 'running')"},
    {&Statements::resume_campaign_tasks,
     "UPDATE tasks SET state = 'pending', verdict = '', reason = '', updated_ms = ?2 "
     "WHERE campaign_id = ?1 AND state = 'cancelled'"},
    {&Statements::any_cancelled_with,
     "SELECT EXISTS (SELECT 1 FROM tasks WHERE campaign_id = ?1 AND state = 'cancelled' AND reason = ?2)"},
    {&Statements::insert_step,
     "INSERT INTO steps(task_id, seq, role, input, output, verdict, counted, created_ms, sample) "
     "SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 FROM steps WHERE task_id = ?1"},
    {&Statements::add_steps_used,
     "UPDATE tasks SET steps_used = steps_used + ?2, updated_ms = ?3 WHERE id = ?1"},
    {&Statements::steps_of,
     "SELECT id, task_id, seq, role, input, output, verdict, counted, created_ms, sample "
     "FROM steps WHERE task_id = ?1 ORDER BY seq"},
    {&Statements::insert_candidate,
     "INSERT INTO candidates(task_id, sample, step_id, code_step_id, parent_id, island, generation, "
     "verdict, speedup, score, created_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"},
    {&Statements::candidates_of,
     "SELECT id, task_id, sample, step_id, code_step_id, parent_id, island, generation, verdict, "
     "speedup, score, created_ms FROM candidates WHERE task_id = ?1 ORDER BY id"},
    {&Statements::insert_migrant,
     "INSERT OR IGNORE INTO migrants(task_id, candidate_id, island, generation, created_ms) "
     "VALUES(?1, ?2, ?3, ?4, ?5)"},
    {&Statements::migrants_of,
     "SELECT task_id, candidate_id, island, generation FROM migrants WHERE task_id = ?1 "
     "ORDER BY generation, island, candidate_id"},
    {&Statements::insert_job,
     "INSERT INTO jobs(task_id, step_id, kind, spec, backend, arch, priority, exclusive, state, "
     "epoch, agent_id, device_index, attempts, result, created_ms, assigned_ms, finished_ms, "
     "task_seq, " KF_REQUEST_COLUMNS ") "
     "VALUES(?1, ?2, ?3, x'', ?5, ?6, ?7, ?8, 'queued', 0, NULL, -1, 0, NULL, ?9, 0, 0, ?10, "
     "?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"},
    {&Statements::insert_job_file, "INSERT INTO job_files(job_id, name, data) VALUES(?1, ?2, ?3)"},
    {&Statements::job_request, "SELECT " KF_REQUEST_COLUMNS " FROM jobs WHERE id = ?1"},
    {&Statements::job_files, "SELECT name, data FROM job_files WHERE job_id = ?1 ORDER BY name"},
    {&Statements::get_job, "SELECT " KF_JOB_COLUMNS " FROM jobs WHERE id = ?1"},
    {&Statements::job_state, "SELECT state FROM jobs WHERE id = ?1"},
    {&Statements::assign_job,
     "UPDATE jobs SET state = 'assigned', epoch = epoch + 1, attempts = attempts + 1, "
     "agent_id = ?2, device_index = ?3, assigned_ms = ?4 "
     "WHERE id = ?1 AND state = 'queued' RETURNING epoch"},
    {&Statements::requeue_job,
     "UPDATE jobs SET state = 'queued', epoch = epoch + 1, agent_id = NULL, device_index = -1, "
     "assigned_ms = 0 WHERE id = ?1 AND state = 'assigned' RETURNING epoch"},
    {&Statements::record_result,
     "UPDATE jobs SET state = 'done', finished_ms = ?4, " KF_RESULT_SET " "
     "WHERE id = ?1 AND epoch = ?2 AND state = 'assigned'"},
    {&Statements::job_kind, "SELECT kind FROM jobs WHERE id = ?1"},
    {&Statements::cancel_job,
     "UPDATE jobs SET state = 'cancelled', finished_ms = ?2 "
     "WHERE id = ?1 AND state IN ('queued', 'assigned')"},
    {&Statements::jobs_in_state,
     "SELECT " KF_JOB_COLUMNS " FROM jobs WHERE state = ?1 ORDER BY priority DESC, id LIMIT ?2"},
    {&Statements::queued_after,
     "SELECT " KF_JOB_COLUMNS " FROM jobs WHERE id > ?1 AND state = 'queued' ORDER BY id LIMIT ?2"},
    {&Statements::jobs_of_agent,
     "SELECT " KF_JOB_COLUMNS " FROM jobs WHERE agent_id = ?1 AND state = ?2 ORDER BY id"},
    {&Statements::count_jobs, "SELECT COUNT(*) FROM jobs WHERE state = ?1"},
    {&Statements::tasks_finished_since,
     "SELECT COUNT(*) FROM tasks WHERE state IN ('passed', 'failed') AND updated_ms >= ?1"},
    {&Statements::upsert_agent,
     "INSERT INTO agents(id, incarnation, host, state, drained, capabilities, registered_ms, "
     "last_seen_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) "
     "ON CONFLICT(id) DO UPDATE SET incarnation = excluded.incarnation, host = excluded.host, "
     "state = excluded.state, capabilities = excluded.capabilities, "
     "registered_ms = excluded.registered_ms, last_seen_ms = excluded.last_seen_ms"},
    {&Statements::delete_devices, "DELETE FROM devices WHERE agent_id = ?1"},
    {&Statements::insert_device,
     "INSERT INTO devices(agent_id, idx, backend, arch, name, memory_mb) "
     "VALUES(?1, ?2, ?3, ?4, ?5, ?6)"},
    {&Statements::set_agent_state, "UPDATE agents SET state = ?2 WHERE id = ?1"},
    {&Statements::set_agent_drained,
     "UPDATE agents SET drained = ?2, drain_reason = ?3, drained_ms = ?4 WHERE id = ?1"},
    {&Statements::touch_agent, "UPDATE agents SET last_seen_ms = ?2 WHERE id = ?1"},
    {&Statements::agents, "SELECT " KF_AGENT_COLUMNS " FROM agents ORDER BY id"},
    {&Statements::agent_by_id, "SELECT " KF_AGENT_COLUMNS " FROM agents WHERE id = ?1"},
    {&Statements::devices_of,
     "SELECT agent_id, idx, backend, arch, name, memory_mb FROM devices WHERE agent_id = ?1 "
     "ORDER BY idx, backend"},
    {&Statements::job_for_task_seq,
     "SELECT " KF_JOB_COLUMNS " FROM jobs WHERE task_id = ?1 AND task_seq = ?2 "
     "ORDER BY id DESC LIMIT 1"},
    {&Statements::campaign_by_hash,
     "SELECT " KF_CAMPAIGN_COLUMNS " FROM campaigns WHERE content_hash = ?1 ORDER BY id LIMIT 1"},
    {&Statements::get_campaign, "SELECT " KF_CAMPAIGN_COLUMNS " FROM campaigns WHERE id = ?1"},
    {&Statements::set_campaign_state,
     "UPDATE campaigns SET state = ?2, updated_ms = ?3 WHERE id = ?1"},
    {&Statements::tasks_of_campaign,
     "SELECT " KF_TASK_COLUMNS " WHERE campaign_id = ?1 ORDER BY tasks.id"},
    {&Statements::unfinished_tasks,
     "SELECT " KF_TASK_COLUMNS " WHERE state IN ('pending', 'running') AND campaign_id NOT IN "
     "(SELECT id FROM campaigns WHERE state = 'submitting') ORDER BY tasks.id"},
    {&Statements::task_ids_of_campaign, "SELECT id FROM tasks WHERE campaign_id = ?1 ORDER BY id"},
    {&Statements::submitting_campaigns,
     "SELECT id FROM campaigns WHERE state = 'submitting' ORDER BY id"},
    {&Statements::delete_unused_blobs,
     "DELETE FROM blobs WHERE "
     "id NOT IN (SELECT task_desc_blob FROM tasks WHERE task_desc_blob IS NOT NULL) AND "
     "id NOT IN (SELECT candidate_blob FROM tasks WHERE candidate_blob IS NOT NULL)"},
    {&Statements::insert_llm_call,
     "INSERT INTO llm_calls(task_id, step_id, role, model, request_key, request, response, status, "
     "prompt_tokens, completion_tokens, cost_usd, latency_ms, created_ms) "
     "VALUES(?1, NULL, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) "
     "ON CONFLICT(request_key) DO UPDATE SET task_id = excluded.task_id, role = excluded.role, "
     "model = excluded.model, request = excluded.request, response = excluded.response, "
     "status = excluded.status, prompt_tokens = excluded.prompt_tokens, "
     "completion_tokens = excluded.completion_tokens, cost_usd = excluded.cost_usd, "
     "latency_ms = excluded.latency_ms, created_ms = excluded.created_ms "
     "WHERE llm_calls.status = 'pending'"},
    {&Statements::find_llm_call,
     "SELECT task_id, role, model, request_key, request, response, status, prompt_tokens, "
     "completion_tokens, cost_usd, latency_ms FROM llm_calls WHERE request_key = ?1 AND status = "
     "'ok'"},
    {&Statements::forget_pending_llm_call,
     "DELETE FROM llm_calls WHERE request_key = ?1 AND status = 'pending'"},
    {&Statements::take_pending_llm_calls, "DELETE FROM llm_calls WHERE status = 'pending'"},
    {&Statements::llm_usage_of_task,
     "SELECT COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), "
     "COALESCE(SUM(cost_usd), 0) FROM llm_calls WHERE task_id = ?1 AND status <> 'pending'"},
    {&Statements::campaigns, "SELECT " KF_CAMPAIGN_COLUMNS " FROM campaigns ORDER BY id"},
    {&Statements::jobs_of_task,
     "SELECT " KF_JOB_COLUMNS " FROM jobs WHERE task_id = ?1 ORDER BY id"},
    // Two statements, not "?1 = 0 OR ...": the OR would scan every job for one campaign.
    {&Statements::job_leases, "SELECT " KF_LEASE_COLUMNS " FROM jobs ORDER BY id"},
    {&Statements::job_leases_of_campaign,
     "SELECT " KF_LEASE_COLUMNS " FROM jobs "
     "WHERE task_id IN (SELECT id FROM tasks WHERE campaign_id = ?1) ORDER BY id"},
    // Listings: ?1 limit (-1: none), ?2 offset, ?3 task, ?4 state; one statement per filter
    // combination (an "?3 IS NULL OR ..." would scan every job). A filtered page picks its ids
    // from an index alone (jobs_by_state or jobs_by_task_seq, which hold the id: EXPLAIN QUERY
    // PLAN says "COVERING INDEX"), sorts just those ids, and only then reads the rows it
    // returns; "WHERE state = ?4 ORDER BY id LIMIT" instead would read and sort every row in
    // the state, result blobs included, since no index is ordered by (state, id).
    {&Statements::list_jobs,
     "SELECT " KF_JOB_COLUMNS " FROM jobs WHERE id > ?5 ORDER BY id LIMIT ?1 OFFSET ?2"},
    {&Statements::list_jobs_in_state,
     "SELECT " KF_JOB_COLUMNS " FROM jobs WHERE id IN "
     "(SELECT id FROM jobs WHERE state = ?4 AND id > ?5 ORDER BY id LIMIT ?1 OFFSET ?2) ORDER BY id"},
    {&Statements::list_jobs_of_task,
     "SELECT " KF_JOB_COLUMNS " FROM jobs WHERE id IN "
     "(SELECT id FROM jobs WHERE task_id = ?3 AND id > ?5 ORDER BY id LIMIT ?1 OFFSET ?2) ORDER BY id"},
    // A task has few jobs: its index finds them, their state is read from the rows.
    {&Statements::list_jobs_of_task_in_state,
     "SELECT " KF_JOB_COLUMNS " FROM jobs WHERE id IN "
     "(SELECT id FROM jobs WHERE task_id = ?3 AND state = ?4 AND id > ?5 ORDER BY id LIMIT ?1 OFFSET ?2) "
     "ORDER BY id"},
    {&Statements::task_counts,
     "SELECT state, SUM(n) FROM campaign_task_counts WHERE ?1 = 0 OR campaign_id = ?1 GROUP BY state "
     "HAVING SUM(n) > 0"},
    {&Statements::llm_usage_of_campaign,
     "SELECT COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), "
     "COALESCE(SUM(cost_usd), 0) FROM llm_calls WHERE status <> 'pending' AND "
     "(?1 = 0 OR task_id IN (SELECT id FROM tasks WHERE campaign_id = ?1))"},
    {&Statements::llm_usage_by_role,
     "SELECT role, COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), "
     "COALESCE(SUM(cost_usd), 0), COALESCE(SUM(status = 'error'), 0) FROM llm_calls "
     "WHERE status <> 'pending' AND (?1 = 0 OR task_id IN (SELECT id FROM tasks WHERE campaign_id "
     "= ?1)) "
     "GROUP BY role ORDER BY role"},
};
// clang-format on
static_assert(sizeof(Statements) == std::size(kSql) * sizeof(sqlite3_stmt*),
              "every Statements member needs its SQL in kSql");

// A campaign's tasks in order, as migration 0006 reads them (before the statements are
// prepared, and before migration 0010 adds the reason).
constexpr const char* kTasksOfCampaignAt6 =
    "SELECT " KF_TASK_SELECT("''", "''") " WHERE campaign_id = ?1 ORDER BY tasks.id";

#undef KF_JOB_COLUMNS
#undef KF_REQUEST_COLUMNS
#undef KF_TASK_COLUMNS
#undef KF_TASK_SELECT
#undef KF_LEASE_COLUMNS
#undef KF_CAMPAIGN_COLUMNS

Result<JobRow> read_job(const Stmt& s) {
  StoredWords w;
  JobRow j;
  j.id = s.i64(0);
  j.task_id = s.opt_i64(1);
  j.step_id = s.opt_i64(2);
  j.kind = w.word<JobKind>(s, 3, "jobs.kind");
  j.backend = s.str(5);
  j.arch = s.str(6);
  j.priority = s.i32(7);
  j.exclusive = s.flag(8);
  j.state = w.word<JobState>(s, 9, "jobs.state");
  j.epoch = s.i64(10);
  j.agent_id = s.str(11);
  j.device_index = s.i32(12);
  j.attempts = s.i32(13);
  j.created_ms = s.i64(15);
  j.assigned_ms = s.i64(16);
  j.finished_ms = s.i64(17);
  if (!s.is_null(18)) j.task_seq = s.i32(18);
  if (s.is_null(14)) return w.row(std::move(j));
  proto::JobResult& r = j.result.emplace();
  r.job = proto::JobRef{static_cast<uint64_t>(j.id), static_cast<uint64_t>(j.epoch)};
  r.exit_code = s.i32(14);
  r.signal = s.i32(19);
  r.timed_out = s.flag(20);
  r.cancelled = s.flag(21);
  r.infra_error = s.str(22);
  r.stdout_data = s.bytes(23);
  r.stderr_data = s.bytes(24);
  r.output_truncated = s.flag(25);
  r.result_json = s.str(26);
  r.agent_id = s.str(27);
  r.started_ms = s.i64(28);
  r.finished_ms = s.i64(29);
  if (s.is_null(30)) return j;
  VerifyResult& v = r.verify.emplace();
  const std::string verdict = s.str(30);
  v.message = s.str(31);
  if (auto parsed = parse_enum<Verdict>(verdict)) {
    v.verdict = *parsed;
  } else {  // written by a newer kforge: never taken for a pass
    v.verdict = Verdict::infra_error;
    v.message = "stored verdict '" + verdict + "' is unknown to this kforge: " + v.message;
  }
  v.input_error = s.str(32);
  v.stage = s.str(33);
  v.trials = s.i64(34);
  v.checks = checks_from_text(s.str(35));
  v.profile = profile_from_text(s.str(36));
  v.details = s.str(37);
  return w.row(std::move(j));
}

// Binds a result to ?5..?24 (KF_RESULT_SET).
void bind_result(Stmt& s, const proto::JobResult& r) {
  s.bind(5, static_cast<int64_t>(r.exit_code))
      .bind(6, static_cast<int64_t>(r.signal))
      .bind(7, r.timed_out)
      .bind(8, r.cancelled)
      .text(9, r.infra_error)
      .blob(10, r.stdout_data)
      .blob(11, r.stderr_data)
      .bind(12, r.output_truncated)
      .text(13, r.result_json)
      .text(14, r.agent_id)
      .bind(15, r.started_ms)
      .bind(16, r.finished_ms);
  if (!r.verify) {
    s.bind(17, std::optional<int64_t>())
        .text(18, "")
        .text(19, "")
        .text(20, "")
        .bind(21, int64_t{0});
    s.text(22, "").text(23, "").text(24, "");
    return;
  }
  const VerifyResult& v = *r.verify;
  auto dump = [](const nlohmann::json& j) {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  s.text(17, to_string(v.verdict).data())
      .text(18, v.message)
      .text(19, v.input_error)
      .text(20, v.stage)
      .bind(21, v.trials)
      .text_copy(22, v.checks ? dump(to_json(*v.checks)) : "")
      .text_copy(23, v.profile ? dump(to_json(*v.profile)) : "")
      .text(24, v.details);
}

// A verify job's result from an agent that predates proto::JobResult::verify carries the
// judge's document in result_json: it becomes the typed verdict here, the one place that
// reads such documents (live results and rows stored before migration 0003 alike).
void adopt_legacy_verdict(proto::JobResult& r) {
  if (r.verify || !r.infra_error.empty()) return;
  r.verify = verify_result_from_text(r.result_json);
  r.result_json.clear();
}

// ---- Texts stored once (migration 0004) ---------------------------------------------------

// How a task's text is stored: a blob as it is, or with its span [head, size - tail) replaced
// by `middle` (schema/sql/0004_blobs.sql).
struct StoredText {
  std::optional<int64_t> blob;  // none: the empty text
  int64_t head = 0;
  int64_t tail = 0;
  std::optional<std::string> middle;
};

// A stored text as the store keeps it, read back: data (the blob, maybe NULL), head, tail and
// middle are four consecutive columns from `first`.
std::string text_of(const Stmt& s, int first) {
  if (s.is_null(first)) return std::string();
  std::string data = s.bytes(first);
  if (s.is_null(first + 3)) return data;
  const size_t head = static_cast<size_t>(s.i64(first + 1));
  const size_t tail = static_cast<size_t>(s.i64(first + 2));
  if (head + tail > data.size()) return data;  // never written so (BlobWriter::put)
  // Built in place at its exact size: a task row holds its text for as long as it lives.
  data.replace(head, data.size() - head - tail, s.bytes(first + 3));
  data.shrink_to_fit();
  return data;
}

// Writes texts as blobs, each distinct content once (content-addressed by SHA-256), and
// finds the smallest form for a text close to the last one stored of its kind: a sweep's
// tasks are one task file with a few constants rewritten, so each keeps only the rewritten
// span and points at the file's blob.
class BlobWriter {
 public:
  enum Kind { kTaskDesc = 0, kCandidate = 1 };

  Status prepare(sqlite::Db& d) {
    KF_RETURN_IF_ERROR(
        d.prepare("INSERT INTO blobs(sha256, data) VALUES(?1, ?2) ON CONFLICT(sha256) DO NOTHING",
                  &insert_.s));
    KF_RETURN_IF_ERROR(d.prepare("SELECT id FROM blobs WHERE sha256 = ?1", &find_.s));
    return d.prepare("SELECT 1 FROM blobs WHERE id = ?1 AND sha256 = ?2", &check_.s);
  }

  Result<StoredText> put(sqlite::Db& d, Kind kind, const std::string& text, std::string_view op) {
    StoredText out;
    if (text.empty()) return out;
    Base& base = bases_[kind];
    if (base.blob != 0) {
      const std::string& b = base.data;
      const size_t limit = std::min(b.size(), text.size());
      const size_t head = static_cast<size_t>(
          std::mismatch(b.begin(), b.begin() + static_cast<ptrdiff_t>(limit), text.begin()).first -
          b.begin());
      const size_t tail = static_cast<size_t>(
          std::mismatch(b.rbegin(), b.rbegin() + static_cast<ptrdiff_t>(limit - head),
                        text.rbegin())
              .first -
          b.rbegin());
      const size_t middle = text.size() - head - tail;
      // Worth it when the edit is small beside the text; else the text gets a blob of its own.
      if (middle <= kMaxMiddle && middle * 4 <= text.size()) {
        Result<bool> live = base_is_stored(d, base, op);
        if (!live.ok()) return live.status();
        if (*live) {
          out.blob = base.blob;
          if (middle == 0 && text.size() == b.size()) return out;  // the blob itself
          out.head = static_cast<int64_t>(head);
          out.tail = static_cast<int64_t>(tail);
          out.middle = text.substr(head, middle);
          return out;
        }
      }
    }
    std::string sha = sha256_hex(text);
    {
      Stmt s(insert_.s);
      s.text(1, sha).blob(2, text);
      if (int rc = s.step(); rc != SQLITE_DONE) return d.error(rc, op);
    }
    int64_t id = 0;
    {
      Stmt s(find_.s);
      s.text(1, sha);
      int rc = s.step();
      if (rc != SQLITE_ROW) return d.error(rc == SQLITE_DONE ? SQLITE_INTERNAL : rc, op);
      id = s.i64(0);
    }
    base = Base{id, std::move(sha), text};
    out.blob = id;
    return out;
  }

 private:
  static constexpr size_t kMaxMiddle = 1024;
  struct Base {
    int64_t blob = 0;  // 0: none yet
    std::string sha256;
    std::string data;
  };

  // The remembered base may be gone (its transaction rolled back, and the id maybe reused).
  Result<bool> base_is_stored(sqlite::Db& d, const Base& base, std::string_view op) {
    Stmt s(check_.s);
    s.bind(1, base.blob).text(2, base.sha256);
    int rc = s.step();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return d.error(rc, op);
    return rc == SQLITE_ROW;
  }

  Prepared insert_, find_, check_;
  Base bases_[2];
};

// Binds a stored text to ?first .. ?first+3 (blob, head, tail, middle). REQUIRES: `t`
// outlives the Stmt.
void bind_text(Stmt& s, int first, const StoredText& t) {
  s.bind(first, t.blob).bind(first + 1, t.head).bind(first + 2, t.tail);
  if (t.middle) {
    s.blob(first + 3, *t.middle);
  } else {
    s.bind(first + 3, std::optional<int64_t>());
  }
}

Result<TaskRow> read_task(const Stmt& s) {
  StoredWords w;
  TaskRow t;
  t.id = s.i64(0);
  t.campaign_id = s.i64(1);
  t.spec.op_name = s.str(2);
  t.spec.task_id = s.str(3);
  t.spec.backend = s.str(4);
  t.spec.arch = s.str(5);
  t.spec.impl_type = s.str(6);
  t.spec.framework = s.str(7);
  t.spec.task_type = s.str(8);
  t.spec.limit_steps = s.i32(9);
  t.state = w.word<TaskState>(s, 10, "tasks.state");
  t.steps_used = s.i32(11);
  t.verdict = w.optional_word<Outcome>(s, 12, "tasks.verdict");
  t.reason = s.str(23);
  t.created_ms = s.i64(13);
  t.updated_ms = s.i64(14);
  t.spec.task_desc = text_of(s, 15);
  t.spec.candidate = text_of(s, 19);
  t.spec.search = s.str(24);
  return w.row(std::move(t));
}

// The open database and everything an operation needs.
struct Db : sqlite::Db {
  Clock* clock = nullptr;
  Statements st;
  BlobWriter blobs;  // prepared with st

  Db() = default;
  ~Db() {
    for (const SqlDef& d : kSql) sqlite3_finalize(st.*d.member);
  }

  int64_t now() const { return clock->wall_ms(); }

  Result<int> read_user_version() {
    Result<std::string> v = query_text("PRAGMA user_version", "read schema version");
    if (!v.ok()) return v.status();
    return std::stoi(*v);
  }

  Status newer_schema(int version) const {
    return failed_precondition(path + ": schema version " + std::to_string(version) +
                               " is newer than this kforge supports (" +
                               std::to_string(Store::latest_schema_version()) +
                               "); upgrade kforge or use another --data directory");
  }

  Status migrate();
  Status prepare_all() {
    for (const SqlDef& d : kSql) KF_RETURN_IF_ERROR(prepare(d.sql, &(st.*d.member)));
    return blobs.prepare(*this);
  }

  // The state of a job as stored; not_found if there is no such job.
  Result<std::string> job_state_of(int64_t job_id, std::string_view op) {
    Stmt s(st.job_state);
    s.bind(1, job_id);
    int rc = s.step();
    if (rc == SQLITE_DONE) {
      return not_found(path + ": " + std::string(op) + ": no job " + std::to_string(job_id));
    }
    if (rc != SQLITE_ROW) return error(rc, op);
    return s.str(0);
  }

  // The reason an update matched no job: not_found, or failed_precondition naming its state.
  Status job_not_in(int64_t job_id, const char* wanted, std::string_view op) {
    Result<std::string> state = job_state_of(job_id, op);
    if (!state.ok()) return state.status();
    return failed_precondition(path + ": " + std::string(op) + ": job " + std::to_string(job_id) +
                               " is " + *state + ", not " + wanted);
  }
};

// A row read by `op`: a reader's row as is, or its error (StoredWords) with the database and
// the operation named.
template <class Row>
Result<Row> read_row(const Db&, std::string_view, Row row) {
  return row;
}
template <class Row>
Result<Row> read_row(const Db& d, std::string_view op, Result<Row> row) {
  if (row.ok()) return row;
  return internal_error(d.path + ": " + std::string(op) + ": " + row.status().message());
}

// ---- Campaign identity (CampaignHash; migration 0006) ---------------------------------------

// Length-prefixed fields, so that no two different task lists serialise alike.
template <class Hash>
void put_field(Hash& h, std::string_view field) {
  h.update(std::to_string(field.size()));
  h.update(":");
  h.update(field);
  h.update("\n");
}

template <class Hash>
void put_task(Hash& h, const TaskSpec& s, std::string_view candidate) {
  for (std::string_view f :
       {std::string_view(s.op_name), std::string_view(s.task_id), std::string_view(s.backend),
        std::string_view(s.arch), std::string_view(s.impl_type), std::string_view(s.framework),
        std::string_view(s.task_type)}) {
    put_field(h, f);
  }
  put_field(h, std::to_string(s.limit_steps));
  put_field(h, s.task_desc);
  put_field(h, candidate);
  // Only when set, so that campaigns without per-op search keep their hash; no op_name (the
  // next task's first field) starts with "search:".
  if (!s.search.empty()) put_field(h, "search:" + s.search);
}

// FNV-1a 64, the campaign hash of databases before schema 6: only to recognise their
// identities (migration 0006), never to make new ones.
struct Fnv1a64 {
  uint64_t h = 0xcbf29ce484222325ULL;
  void update(std::string_view data) {
    for (unsigned char c : data) {
      h ^= c;
      h *= 0x100000001b3ULL;
    }
  }
  std::string hex_digest() const {
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (int shift = 60; shift >= 0; shift -= 4) out += hex[(h >> shift) & 15];
    return out;
  }
};

// Migration 0006's data step: each campaign whose content_hash is a v1 identity (FNV-1a 64,
// 16 hex digits) that its stored workflow and tasks reproduce gets the v2 identity of the
// same content (CampaignHash), so that submitting it again finds it. A hash the rows do not
// reproduce (made by a kforge whose serialisation differed) is left as it is. Runs inside the
// migration's transaction.
Status rehash_campaigns(Db& d) {
  constexpr std::string_view op = "migration 0006: campaign identities as SHA-256";
  Prepared campaigns, tasks, update;
  KF_RETURN_IF_ERROR(
      d.prepare("SELECT id, workflow, content_hash FROM campaigns WHERE length(content_hash) = 16",
                &campaigns.s));
  KF_RETURN_IF_ERROR(d.prepare(kTasksOfCampaignAt6, &tasks.s));
  KF_RETURN_IF_ERROR(d.prepare("UPDATE campaigns SET content_hash = ?2 WHERE id = ?1", &update.s));
  Stmt c(campaigns.s);
  int rc;
  while ((rc = c.step()) == SQLITE_ROW) {
    const int64_t id = c.i64(0);
    const std::string workflow = c.str(1);
    Fnv1a64 v1;
    v1.update("kforge-campaign-v1\n");
    put_field(v1, workflow);
    CampaignHash v2(workflow);
    Stmt t(tasks.s);
    t.bind(1, id);
    int trc;
    while ((trc = t.step()) == SQLITE_ROW) {
      const Result<TaskRow> task = read_task(t);
      if (!task.ok())
        return internal_error(d.path + ": " + std::string(op) + ": " + task.status().message());
      put_task(v1, task->spec, task->spec.candidate);
      v2.add(task->spec, task->spec.candidate);
    }
    if (trc != SQLITE_DONE) return d.error(trc, op);
    if (v1.hex_digest() != c.str(2)) continue;
    const std::string hash = v2.hex();  // bound without a copy: lives until finish()
    Stmt u(update.s);
    u.bind(1, id);
    u.text(2, hash);
    if (int urc = u.finish(); urc != SQLITE_DONE) return d.error(urc, op);
  }
  return rc == SQLITE_DONE ? Status() : d.error(rc, op);
}

}  // namespace

CampaignHash::CampaignHash(std::string_view workflow, std::string_view timing,
                           std::string_view search) {
  sha_.update("kforge-campaign-v2\n");
  put_field(sha_, workflow);
  if (timing != "kforge")
    put_field(sha_, "timing=" + std::string(timing));  // kforge's: the v2 hash as before
  // Only when set, so that campaigns without [search] keep their hash; no op_name (the first
  // field of a task) starts with "search:".
  if (!search.empty()) put_field(sha_, "search:" + std::string(search));
}

void CampaignHash::add(const TaskSpec& spec, std::string_view candidate) {
  put_task(sha_, spec, candidate);
}

std::string CampaignHash::hex() {
  return sha_.hex_digest();
}

struct Store::Impl {
  Db d;
  // Campaigns this Store set submitting and has not moved on since: its own submissions in
  // progress (submitting_here).
  std::set<int64_t> submitting;
  std::unique_ptr<Checkpointer> checkpointer;  // declared after d: stopped before d closes
  std::string data_version;  // PRAGMA data_version at the last changed_elsewhere()
  // A submitting campaign's lowest and highest task ids, and whether every id between them is
  // one of its tasks (`whole`): a campaign's batches are consecutive ids unless other tasks
  // were created between two of them. Known ranges are checked again only in what was added
  // since (task_ids of startable tasks skips the whole ones); forgotten when this Store rolls
  // back or another process commits (unbroken_version), since ids may then be reused.
  struct Unbroken {
    int64_t lo = 0, hi = 0;
    bool whole = false;
  };
  std::map<int64_t, Unbroken> unbroken;  // by campaign id
  std::string unbroken_version;          // PRAGMA data_version when `unbroken` was checked
  static Result<std::unique_ptr<Store>> open(const std::filesystem::path& path, Clock& clock,
                                             bool read_only);
};

// ---- Job requests in columns (migration 0011) -----------------------------------------------

JobRequest request_of(const proto::Assign& assign) {
  return JobRequest{assign.argv, assign.env, assign.files, assign.timeout_ms, assign.limits};
}

proto::Assign assign_for(const JobRow& job, int64_t epoch, uint32_t device_index,
                         const std::string& backend) {
  proto::Assign a;
  a.job = proto::JobRef{static_cast<uint64_t>(job.id), static_cast<uint64_t>(epoch)};
  a.device_index = device_index;
  a.backend = backend;
  a.kind = to_string(job.kind);
  a.argv = job.request.argv;
  a.env = job.request.env;
  a.files = job.request.files;
  a.timeout_ms = job.request.timeout_ms;
  a.limits = job.request.limits;
  return a;
}

namespace {

// Binds `r`'s columns (KF_REQUEST_COLUMNS) from ?11 on; argv and env as JSON, which must be
// UTF-8 text.
Status bind_request(Stmt& s, const JobRequest& r, std::string_view op) {
  std::string argv, env;
  try {
    argv = nlohmann::json(r.argv).dump();
    env = nlohmann::json(r.env).dump();
  } catch (const nlohmann::json::exception&) {
    return invalid_argument(std::string(op) + ": the job's argv or env is not UTF-8 text");
  }
  s.text_copy(11, argv)
      .text_copy(12, env)
      .bind(13, static_cast<int64_t>(r.timeout_ms))
      .bind(14, static_cast<int64_t>(r.limits.address_space_mb))
      .bind(15, static_cast<int64_t>(r.limits.cpu_s))
      .bind(16, static_cast<int64_t>(r.limits.open_files))
      .bind(17, static_cast<int64_t>(r.limits.processes))
      .bind(18, static_cast<int64_t>(r.limits.file_size_mb));
  return Status();
}

// Writes a job's files through `insert` (INSERT INTO job_files).
Status insert_files(sqlite::Db& d, sqlite3_stmt* insert, int64_t job_id,
                    const std::map<std::string, std::string>& files, std::string_view op) {
  for (const auto& [name, data] : files) {
    Stmt f(insert);
    f.bind(1, job_id).text(2, name).blob(3, data);
    if (int rc = f.step(); rc != SQLITE_DONE) return d.error(rc, op);
  }
  return Status();
}

// A stored JSON array of strings (argv) or object of strings (env) as `T`; what does not
// parse as one is an error naming the column.
template <class T>
Result<T> stored_json(const Db& d, int64_t job_id, const char* column, const std::string& text) {
  try {
    return nlohmann::json::parse(text).get<T>();
  } catch (const nlohmann::json::exception& e) {
    return internal_error(d.path + ": job " + std::to_string(job_id) + ": jobs." + column +
                          " is not what it must be: " + e.what());
  }
}

// The request of job `job_id` (its columns and files).
Result<JobRequest> read_request(Db& d, int64_t job_id) {
  constexpr std::string_view op = "get_job";
  JobRequest r;
  {
    Stmt s(d.st.job_request);
    s.bind(1, job_id);
    int rc = s.step();
    if (rc != SQLITE_ROW) return d.error(rc == SQLITE_DONE ? SQLITE_INTERNAL : rc, op);
    auto argv = stored_json<std::vector<std::string>>(d, job_id, "argv", s.str(0));
    if (!argv.ok()) return argv.status();
    auto env = stored_json<std::map<std::string, std::string>>(d, job_id, "env", s.str(1));
    if (!env.ok()) return env.status();
    r.argv = std::move(*argv);
    r.env = std::move(*env);
    r.timeout_ms = static_cast<uint64_t>(s.i64(2));
    r.limits = proto::Limits{static_cast<uint64_t>(s.i64(3)), static_cast<uint64_t>(s.i64(4)),
                             static_cast<uint64_t>(s.i64(5)), static_cast<uint64_t>(s.i64(6)),
                             static_cast<uint64_t>(s.i64(7))};
  }
  Stmt f(d.st.job_files);
  f.bind(1, job_id);
  int rc;
  while ((rc = f.step()) == SQLITE_ROW) r.files[f.str(0)] = f.bytes(1);
  if (rc != SQLITE_DONE) return d.error(rc, op);
  return r;
}

}  // namespace

// Migration 0011's data step: every job whose spec is an encoded proto::Assign frame (schema
// 1-8) gets that Assign's request in its columns and job_files, and an empty spec. Runs inside
// the migration's transaction. A frame that does not decode leaves the request empty (an exec
// job without a command: the agent reports it as an infrastructure error), as dispatch did.
Status convert_job_specs(Db& d) {
  constexpr std::string_view op = "migration 0011: job requests in columns";
  Prepared select, update, file;
  KF_RETURN_IF_ERROR(d.prepare("SELECT id, spec FROM jobs WHERE length(spec) > 0", &select.s));
  KF_RETURN_IF_ERROR(
      d.prepare("UPDATE jobs SET spec = x'', " KF_REQUEST_SET " WHERE id = ?1", &update.s));
  KF_RETURN_IF_ERROR(
      d.prepare("INSERT INTO job_files(job_id, name, data) VALUES(?1, ?2, ?3)", &file.s));
  Stmt rows(select.s);
  int rc;
  while ((rc = rows.step()) == SQLITE_ROW) {
    const int64_t id = rows.i64(0);
    auto frame = proto::decode(rows.bytes(1));
    const auto* assign = frame.ok() ? std::get_if<proto::Assign>(&frame->message) : nullptr;
    const JobRequest request = assign != nullptr ? request_of(*assign) : JobRequest{};
    Stmt u(update.s);
    u.bind(1, id);
    KF_RETURN_IF_ERROR(bind_request(u, request, op));
    if (int urc = u.finish(); urc != SQLITE_DONE) return d.error(urc, op);
    KF_RETURN_IF_ERROR(insert_files(d, file.s, id, request.files, op));
  }
  return rc == SQLITE_DONE ? Status() : d.error(rc, op);
}

// Migration 0003's data step: every job result stored as an encoded proto::JobResult frame
// (jobs.result, schema 1-2) is written into the typed columns, and the frame dropped. Runs
// inside the migration's transaction. A frame that does not decode becomes an infra_error
// result saying so (the job re-runs; the task is not charged), never a lost row.
Status convert_job_frames(Db& d) {
  constexpr std::string_view op = "migration 0003: convert stored results";
  Prepared select, update;
  int rc =
      sqlite3_prepare_v2(d.db, "SELECT id, epoch, kind, result FROM jobs WHERE result IS NOT NULL",
                         -1, &select.s, nullptr);
  if (rc == SQLITE_OK) {
    rc = sqlite3_prepare_v2(d.db, "UPDATE jobs SET result = NULL, " KF_RESULT_SET " WHERE id = ?1",
                            -1, &update.s, nullptr);
  }
  if (rc != SQLITE_OK) return d.error(rc, op);
  Stmt rows(select.s);
  while ((rc = rows.step()) == SQLITE_ROW) {
    const int64_t id = rows.i64(0);
    const int64_t epoch = rows.i64(1);
    proto::JobResult r;
    auto frame = proto::decode(rows.bytes(3));
    const auto* stored = frame.ok() ? std::get_if<proto::JobResult>(&frame->message) : nullptr;
    if (stored != nullptr) {
      r = *stored;
      if (rows.str(2) == to_string(JobKind::verify)) adopt_legacy_verdict(r);
    } else {
      r.infra_error = "the stored result does not decode: " +
                      (frame.ok() ? std::string("not a result") : frame.status().message());
    }
    r.job = proto::JobRef{static_cast<uint64_t>(id), static_cast<uint64_t>(epoch)};
    Stmt u(update.s);
    u.bind(1, id);
    bind_result(u, r);
    if (int urc = u.finish(); urc != SQLITE_DONE) return d.error(urc, op);
  }
  return rc == SQLITE_DONE ? Status() : d.error(rc, op);
}

// Migration 0004's data step: every task's task_desc and candidate move into blobs (the
// columns migration 0005 drops), each distinct text once. Runs inside the migration's
// transaction.
Status move_task_texts(Db& d) {
  constexpr std::string_view op = "migration 0004: store task texts once";
  BlobWriter writer;
  Prepared select, update;
  KF_RETURN_IF_ERROR(writer.prepare(d));
  KF_RETURN_IF_ERROR(
      d.prepare("SELECT id, task_desc, candidate FROM tasks ORDER BY id", &select.s));
  KF_RETURN_IF_ERROR(d.prepare(
      "UPDATE tasks SET task_desc_blob = ?2, task_desc_head = ?3, task_desc_tail = ?4, "
      "task_desc_middle = ?5, candidate_blob = ?6, candidate_head = ?7, candidate_tail = ?8, "
      "candidate_middle = ?9 WHERE id = ?1",
      &update.s));
  Stmt rows(select.s);
  int rc;
  while ((rc = rows.step()) == SQLITE_ROW) {
    auto desc = writer.put(d, BlobWriter::kTaskDesc, rows.str(1), op);
    if (!desc.ok()) return desc.status();
    auto candidate = writer.put(d, BlobWriter::kCandidate, rows.str(2), op);
    if (!candidate.ok()) return candidate.status();
    Stmt u(update.s);
    u.bind(1, rows.i64(0));
    bind_text(u, 2, *desc);
    bind_text(u, 6, *candidate);
    if (int urc = u.finish(); urc != SQLITE_DONE) return d.error(urc, op);
  }
  return rc == SQLITE_DONE ? Status() : d.error(rc, op);
}

Status Db::migrate() {
  const std::vector<Migration>& all = migrations();
  for (size_t i = 0; i < all.size(); ++i) {
    if (all[i].version != static_cast<int>(i) + 1) {
      return internal_error(std::string("migrations are not numbered 1, 2, ... without gaps: ") +
                            all[i].name);
    }
  }
  const int latest = Store::latest_schema_version();
  for (;;) {
    // Re-read the version under the write lock: another process may have migrated.
    KF_RETURN_IF_ERROR(exec("BEGIN IMMEDIATE", "migrate"));
    Result<int> version = read_user_version();
    if (!version.ok() || *version >= latest) {
      (void)exec("ROLLBACK", "migrate");
      if (!version.ok()) return version.status();
      return *version > latest ? newer_schema(*version) : Status();
    }
    const Migration& m = all[static_cast<size_t>(*version)];
    Status s = exec(m.sql, std::string("migration ") + m.name);
    if (s.ok() && m.version == 3) s = convert_job_frames(*this);
    if (s.ok() && m.version == 4) s = move_task_texts(*this);
    if (s.ok() && m.version == 6) s = rehash_campaigns(*this);
    if (s.ok() && m.version == 11) s = convert_job_specs(*this);
    if (s.ok() && sqlite3_get_autocommit(db)) {
      return internal_error(path + ": migration " + m.name +
                            " ended the transaction itself; migrations must not contain "
                            "BEGIN/COMMIT");
    }
    if (s.ok()) {
      s = exec(("PRAGMA user_version = " + std::to_string(m.version)).c_str(),
               std::string("migration ") + m.name);
    }
    if (s.ok()) s = exec("COMMIT", std::string("migration ") + m.name);
    if (!s.ok()) {
      if (!sqlite3_get_autocommit(db)) (void)exec("ROLLBACK", "migrate");
      return s;
    }
  }
}

Result<std::unique_ptr<Store>> Store::Impl::open(const std::filesystem::path& path, Clock& clock,
                                                 bool read_only) {
  auto impl = std::make_unique<Impl>();
  Db* d = &impl->d;
  d->clock = &clock;
  KF_RETURN_IF_ERROR(d->open(path.string(), read_only
                                                ? SQLITE_OPEN_READONLY
                                                : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
  sqlite3_busy_timeout(d->db, kBusyTimeoutMs);

  // Check the version before anything writes to the file: a newer database stays untouched.
  Result<int> version = d->read_user_version();
  if (!version.ok()) return version.status();
  const int latest = latest_schema_version();
  if (*version > latest) return d->newer_schema(*version);

  bool wal = false;
  if (read_only) {
    if (*version < latest) {
      return failed_precondition(d->path + ": schema version " + std::to_string(*version) +
                                 " is older than this kforge's (" + std::to_string(latest) +
                                 "); open it read-write once to migrate it");
    }
  } else {
    Result<bool> use_wal = d->use_wal();
    if (!use_wal.ok()) return use_wal.status();
    wal = *use_wal;
    // The writer's page cache: SQLite's default (2 MiB) is smaller than what one batch of a
    // campaign's tasks dirties (the rows and four indexes), and a transaction that outgrows
    // its cache spills pages into the WAL and writes them again (issue 21). Pages are
    // allocated as they are used.
    KF_RETURN_IF_ERROR(d->exec("PRAGMA cache_size = -65536", "set the page cache size"));
  }
  KF_RETURN_IF_ERROR(d->exec("PRAGMA foreign_keys = ON", "enable foreign keys"));
  Result<std::string> fk = d->query_text("PRAGMA foreign_keys", "enable foreign keys");
  if (!fk.ok()) return fk.status();
  if (*fk != "1") return internal_error(d->path + ": this SQLite has no foreign key support");
  if (!read_only) KF_RETURN_IF_ERROR(d->migrate());
  KF_RETURN_IF_ERROR(d->prepare_all());
  if (wal) {
    auto checkpointer = Checkpointer::start(*d);
    if (!checkpointer.ok()) return checkpointer.status();
    impl->checkpointer = std::move(checkpointer.value());
  }
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

Result<std::unique_ptr<Store>> Store::open(const std::filesystem::path& path, Clock& clock) {
  return Impl::open(path, clock, /*read_only=*/false);
}

Result<std::unique_ptr<Store>> Store::open_readonly(const std::filesystem::path& path,
                                                    Clock& clock) {
  return Impl::open(path, clock, /*read_only=*/true);
}

int Store::schema_version() const {
  Stmt s(impl_->d.st.user_version);
  return s.step() == SQLITE_ROW ? s.i32(0) : -1;
}

int Store::latest_schema_version() {
  const std::vector<Migration>& all = migrations();
  return all.empty() ? 0 : all.back().version;
}

// ---- Group commit -------------------------------------------------------------------------

Status Store::begin() {
  Db& d = impl_->d;
  if (d.in_batch) return failed_precondition(d.path + ": begin: a batch is already open");
  KF_RETURN_IF_ERROR(d.run(d.begin, "begin"));
  d.in_batch = true;
  d.batch_error = Status();
  return Status();
}

Status Store::commit() {
  Db& d = impl_->d;
  if (!d.in_batch) return failed_precondition(d.path + ": commit: no batch is open");
  if (!d.batch_error.ok()) {
    Status lost = d.batch_error;
    rollback();
    return Status(lost.code(), "commit: the batch was lost: " + lost.message());
  }
  Status s = d.fault ? d.fault("commit") : Status();
  if (s.ok()) s = d.run(d.commit, "commit");
  if (!s.ok()) {
    rollback();
    return s;
  }
  d.in_batch = false;
  return Status();
}

void Store::inject_fault_for_test(FaultHook hook) {
  impl_->d.fault = std::move(hook);
}

Status Store::atomically(const std::function<Status()>& fn) {
  Tx tx(impl_->d, "atomically", /*multi=*/true);
  KF_RETURN_IF_ERROR(tx.status());
  Status st = fn();
  if (st.ok()) st = tx.commit();
  if (!st.ok()) impl_->unbroken.clear();  // ~Tx undid its writes: ids may be reused
  return st;
}

void Store::rollback() {
  Db& d = impl_->d;
  impl_->unbroken.clear();
  if (!d.in_batch) return;
  if (!sqlite3_get_autocommit(d.db)) (void)d.run(d.rollback, "rollback");
  d.in_batch = false;
  d.batch_error = Status();
}

Status Store::checkpoint() {
  Db& d = impl_->d;
  if (d.in_batch) return failed_precondition(d.path + ": checkpoint: a batch is open");
  int rc = sqlite3_wal_checkpoint_v2(d.db, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  return rc == SQLITE_OK ? Status() : d.error(rc, "checkpoint");
}

Status Store::write_probe() {
  Db& d = impl_->d;
  Result<int> version = d.read_user_version();
  if (!version.ok()) return version.status();
  return d.exec(("PRAGMA user_version = " + std::to_string(*version)).c_str(), "write probe");
}

bool Store::in_batch() const {
  return impl_->d.in_batch;
}

// ---- Campaigns, tasks and steps -----------------------------------------------------------

Result<int64_t> Store::create_campaign(const std::string& name, const std::string& spec,
                                       const std::string& content_hash, Workflow workflow,
                                       const std::string& timing, const std::string& search) {
  constexpr std::string_view op = "create_campaign";
  Db& d = impl_->d;
  Tx tx(d, op, false);
  KF_RETURN_IF_ERROR(tx.status());
  {
    Stmt s(d.st.insert_campaign);
    s.text(1, name)
        .text(2, spec)
        .bind(3, d.now())
        .text(4, content_hash)
        .text(5, to_string(workflow).data())
        .text(6, timing);
    s.text(7, search);
    int rc = s.step();
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  int64_t id = sqlite3_last_insert_rowid(d.db);
  KF_RETURN_IF_ERROR(tx.commit());
  return id;
}

namespace {

// Adds `delta` to the count of the campaign's tasks in `state` (campaign_task_counts).
Status add_task_count(Db& d, int64_t campaign_id, std::string_view state, int64_t delta,
                      std::string_view op) {
  Stmt s(d.st.add_task_count);
  s.bind(1, campaign_id).text_copy(2, std::string(state)).bind(3, delta);
  int rc = s.step();
  return rc == SQLITE_DONE ? Status() : d.error(rc, op);
}

// Inserts one task row and its texts' blobs; the caller counts it (add_task_count, pending).
// REQUIRES: a transaction or savepoint open.
Result<int64_t> insert_task(Db& d, int64_t campaign_id, const TaskSpec& spec, std::string_view op) {
  auto desc = d.blobs.put(d, BlobWriter::kTaskDesc, spec.task_desc, op);
  if (!desc.ok()) return desc.status();
  auto candidate = d.blobs.put(d, BlobWriter::kCandidate, spec.candidate, op);
  if (!candidate.ok()) return candidate.status();
  Stmt s(d.st.insert_task);
  s.bind(1, campaign_id)
      .text(2, spec.op_name)
      .text(3, spec.task_id)
      .text(4, spec.backend)
      .text(5, spec.arch)
      .text(6, spec.impl_type)
      .text(7, spec.framework)
      .text(8, spec.task_type)
      .bind(9, spec.limit_steps)
      .bind(10, d.now())
      .text(19, spec.search);
  bind_text(s, 11, *desc);
  bind_text(s, 15, *candidate);
  int rc = s.step();
  if (rc == SQLITE_CONSTRAINT_UNIQUE) {
    return Status(Code::already_exists, d.path + ": " + std::string(op) + ": campaign " +
                                            std::to_string(campaign_id) + " already has task " +
                                            spec.op_name + "/" + spec.task_id + " for " +
                                            spec.backend + "/" + spec.arch + "/" + spec.impl_type);
  }
  if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
    return not_found(d.path + ": " + std::string(op) + ": no campaign " +
                     std::to_string(campaign_id));
  }
  if (rc != SQLITE_DONE) return d.error(rc, op);
  return sqlite3_last_insert_rowid(d.db);
}

}  // namespace

Result<int64_t> Store::create_task(int64_t campaign_id, const TaskSpec& spec) {
  constexpr std::string_view op = "create_task";
  Db& d = impl_->d;
  Tx tx(d, op, true);  // the texts' blobs and the task
  KF_RETURN_IF_ERROR(tx.status());
  Result<int64_t> id = insert_task(d, campaign_id, spec, op);
  if (!id.ok()) return id.status();
  KF_RETURN_IF_ERROR(add_task_count(d, campaign_id, "pending", 1, op));
  KF_RETURN_IF_ERROR(tx.commit());
  return id;
}

Status Store::create_tasks(int64_t campaign_id, const TaskFeed& feed) {
  constexpr std::string_view op = "create_tasks";
  Db& d = impl_->d;
  Tx tx(d, op, true);  // one savepoint for all of them (see store.h)
  KF_RETURN_IF_ERROR(tx.status());
  int64_t inserted = 0;
  Status st = feed([&](const TaskSpec& spec) {
    Result<int64_t> id = insert_task(d, campaign_id, spec, op);
    inserted += id.ok() ? 1 : 0;
    return id.status();
  });
  if (st.ok()) st = add_task_count(d, campaign_id, "pending", inserted, op);  // once per batch
  if (st.ok()) st = tx.commit();
  if (!st.ok()) impl_->unbroken.clear();  // ~Tx undid its writes: ids may be reused
  return st;
}

Result<TaskRow> Store::get_task(int64_t task_id) {
  Db& d = impl_->d;
  Stmt s(d.st.get_task);
  s.bind(1, task_id);
  int rc = s.step();
  if (rc == SQLITE_DONE)
    return not_found(d.path + ": get_task: no task " + std::to_string(task_id));
  if (rc != SQLITE_ROW) return d.error(rc, "get_task");
  return read_row(d, "get_task", read_task(s));
}

Status Store::set_task_state(int64_t task_id, TaskState state, std::optional<Outcome> verdict,
                             const std::string& reason) {
  constexpr std::string_view op = "set_task_state";
  Db& d = impl_->d;
  Tx tx(d, op, true);  // the row and its campaign's counts
  KF_RETURN_IF_ERROR(tx.status());
  int64_t campaign_id = 0;
  std::string was;
  {
    Stmt s(d.st.task_state_of);
    s.bind(1, task_id);
    int rc = s.step();
    if (rc == SQLITE_DONE)
      return not_found(d.path + ": set_task_state: no task " + std::to_string(task_id));
    if (rc != SQLITE_ROW) return d.error(rc, op);
    campaign_id = s.i64(0);
    was = s.str(1);
  }
  const std::string_view now_state = to_string(state);
  {
    Stmt s(d.st.set_task_state);
    s.bind(1, task_id)
        .text(2, now_state.data())
        .text(3, verdict ? to_string(*verdict).data() : "")
        .bind(4, d.now())
        .text(5, reason);
    int rc = s.step();
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  if (was != now_state) {
    KF_RETURN_IF_ERROR(add_task_count(d, campaign_id, was, -1, op));
    KF_RETURN_IF_ERROR(add_task_count(d, campaign_id, now_state, 1, op));
  }
  return tx.commit();
}

namespace {

// One UPDATE moving a campaign's tasks in states `from` (two) to state `to`, and the counts
// with them: `from` had exactly the rows it changed, none is left. Returns how many.
Result<int64_t> move_campaign_tasks(Db& d, sqlite3_stmt* update, std::string_view op,
                                    int64_t campaign_id, std::string_view to,
                                    std::string_view from1, std::string_view from2,
                                    const std::function<void(Stmt&)>& bind) {
  Tx tx(d, op, true);
  KF_RETURN_IF_ERROR(tx.status());
  {
    Stmt s(update);
    bind(s);
    int rc = s.step();
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  int64_t moved = sqlite3_changes64(d.db);
  {
    Stmt s(d.st.clear_task_counts);
    s.bind(1, campaign_id).text_copy(2, std::string(from1)).text_copy(3, std::string(from2));
    int rc = s.step();
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  KF_RETURN_IF_ERROR(add_task_count(d, campaign_id, to, moved, op));
  KF_RETURN_IF_ERROR(tx.commit());
  return moved;
}

}  // namespace

Result<int64_t> Store::cancel_campaign_tasks(int64_t campaign_id, const std::string& reason) {
  Db& d = impl_->d;
  return move_campaign_tasks(
      d, d.st.cancel_campaign_tasks, "cancel_campaign_tasks", campaign_id, "cancelled", "pending",
      "running", [&](Stmt& s) { s.bind(1, campaign_id).text(2, reason).bind(3, d.now()); });
}

Result<int64_t> Store::resume_campaign_tasks(int64_t campaign_id) {
  Db& d = impl_->d;
  return move_campaign_tasks(d, d.st.resume_campaign_tasks, "resume_campaign_tasks", campaign_id,
                             "pending", "cancelled", "cancelled",
                             [&](Stmt& s) { s.bind(1, campaign_id).bind(2, d.now()); });
}

Result<bool> Store::any_cancelled_with(int64_t campaign_id, const std::string& reason) {
  Db& d = impl_->d;
  Stmt s(d.st.any_cancelled_with);
  s.bind(1, campaign_id).text(2, reason);
  int rc = s.step();
  if (rc != SQLITE_ROW) return d.error(rc, "any_cancelled_with");
  return s.i64(0) != 0;
}

Result<int64_t> Store::record_step(const StepRow& step) {
  constexpr std::string_view op = "record_step";
  Db& d = impl_->d;
  Tx tx(d, op, true);
  KF_RETURN_IF_ERROR(tx.status());
  const int64_t now = d.now();
  const std::string document =
      step.result
          ? to_json(*step.result).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
          : std::string();
  {
    Stmt s(d.st.insert_step);
    s.bind(1, step.task_id)
        .text(2, to_string(step.role).data())
        .text(3, step.input)
        .text(4, step.result ? document : step.output)
        .text(5, step.verdict ? to_string(*step.verdict).data() : "")
        .bind(6, step.counted)
        .bind(7, now)
        .bind(8, step.sample);
    int rc = s.step();
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
      return not_found(d.path + ": record_step: no task " + std::to_string(step.task_id));
    }
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  int64_t id = sqlite3_last_insert_rowid(d.db);
  {
    Stmt s(d.st.add_steps_used);
    s.bind(1, step.task_id).bind(2, step.counted ? 1 : 0).bind(3, now);
    int rc = s.step();
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  KF_RETURN_IF_ERROR(tx.commit());
  return id;
}

namespace {

// Collects every row of a cached statement through `read`.
template <typename Row, typename Read>
Result<std::vector<Row>> all_rows(Db& d, Stmt& s, std::string_view op, Read read) {
  std::vector<Row> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
    Result<Row> row = read_row(d, op, read(s));
    if (!row.ok()) return row.status();
    out.push_back(std::move(*row));
  }
  if (rc != SQLITE_DONE) return d.error(rc, op);
  return out;
}

// The one row of a cached statement through `read`, or none.
template <typename Row, typename Read>
Result<std::optional<Row>> maybe_row(Db& d, Stmt& s, std::string_view op, Read read) {
  int rc = s.step();
  if (rc == SQLITE_DONE) return std::optional<Row>();
  if (rc != SQLITE_ROW) return d.error(rc, op);
  Result<Row> row = read_row(d, op, read(s));
  if (!row.ok()) return row.status();
  return std::optional<Row>(std::move(*row));
}

// Every job row of a cached statement (selecting KF_JOB_COLUMNS).
Result<std::vector<JobRow>> job_rows(Db& d, Stmt& s, std::string_view op) {
  return all_rows<JobRow>(d, s, op, read_job);
}

}  // namespace

Result<std::vector<StepRow>> Store::steps_of(int64_t task_id) {
  Db& d = impl_->d;
  Stmt s(d.st.steps_of);
  s.bind(1, task_id);
  return all_rows<StepRow>(d, s, "steps_of", [](const Stmt& r) {
    StepRow row;
    row.id = r.i64(0);
    row.task_id = r.i64(1);
    row.seq = r.i32(2);
    StoredWords w;
    row.role = w.word<Role>(r, 3, "steps.role");
    row.input = r.str(4);
    row.output = r.str(5);
    if (row.role == Role::verifier && row.output.starts_with('{')) {
      row.result = verify_result_from_text(row.output);
    }
    row.verdict = w.optional_word<Outcome>(r, 6, "steps.verdict");
    row.counted = r.flag(7);
    row.created_ms = r.i64(8);
    row.sample = r.i64(9);
    return w.row(std::move(row));
  });
}

Result<int64_t> Store::record_candidate(const CandidateRow& c) {
  constexpr std::string_view op = "record_candidate";
  Db& d = impl_->d;
  Tx tx(d, op, false);
  KF_RETURN_IF_ERROR(tx.status());
  {
    Stmt s(d.st.insert_candidate);
    s.bind(1, c.task_id).bind(2, c.sample).bind(3, c.step_id);
    s.bind(4, c.code_step_id).bind(5, c.parent_id).bind(6, c.island).bind(7, c.generation);
    s.text(8, to_string(c.verdict).data());
    if (c.speedup) s.bind(9, *c.speedup);
    s.bind(10, c.score).bind(11, d.now());
    int rc = s.step();
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  int64_t id = sqlite3_last_insert_rowid(d.db);
  KF_RETURN_IF_ERROR(tx.commit());
  return id;
}

Result<std::vector<CandidateRow>> Store::candidates_of(int64_t task_id) {
  Db& d = impl_->d;
  Stmt s(d.st.candidates_of);
  s.bind(1, task_id);
  return all_rows<CandidateRow>(d, s, "candidates_of", [](const Stmt& r) {
    CandidateRow row;
    row.id = r.i64(0);
    row.task_id = r.i64(1);
    row.sample = r.i64(2);
    row.step_id = r.i64(3);
    row.code_step_id = r.opt_i64(4);
    row.parent_id = r.opt_i64(5);
    row.island = r.i64(6);
    row.generation = r.i64(7);
    StoredWords w;
    row.verdict = w.word<Verdict>(r, 8, "candidates.verdict");
    if (!r.is_null(9)) row.speedup = r.f64(9);
    row.score = r.f64(10);
    row.created_ms = r.i64(11);
    return w.row(std::move(row));
  });
}

Status Store::record_migrant(const MigrantRow& m) {
  constexpr std::string_view op = "record_migrant";
  Db& d = impl_->d;
  Tx tx(d, op, false);
  KF_RETURN_IF_ERROR(tx.status());
  {
    Stmt s(d.st.insert_migrant);
    s.bind(1, m.task_id)
        .bind(2, m.candidate_id)
        .bind(3, m.island)
        .bind(4, m.generation)
        .bind(5, d.now());
    int rc = s.step();
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  return tx.commit();
}

Result<std::vector<MigrantRow>> Store::migrants_of(int64_t task_id) {
  Db& d = impl_->d;
  Stmt s(d.st.migrants_of);
  s.bind(1, task_id);
  return all_rows<MigrantRow>(d, s, "migrants_of", [](const Stmt& r) {
    return MigrantRow{r.i64(0), r.i64(1), r.i64(2), r.i64(3)};
  });
}

// ---- Jobs and leases ----------------------------------------------------------------------

Result<int64_t> Store::enqueue_job(const NewJob& job) {
  constexpr std::string_view op = "enqueue_job";
  Db& d = impl_->d;
  Tx tx(d, op, false);
  KF_RETURN_IF_ERROR(tx.status());
  {
    Stmt s(d.st.insert_job);
    s.bind(1, job.task_id)
        .bind(2, job.step_id)
        .text(3, to_string(job.kind).data())
        .text(5, job.backend)
        .text(6, job.arch)
        .bind(7, job.priority)
        .bind(8, job.exclusive)
        .bind(9, d.now());
    if (job.task_seq) s.bind(10, static_cast<int64_t>(*job.task_seq));
    KF_RETURN_IF_ERROR(bind_request(s, job.request, op));
    int rc = s.step();
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  int64_t id = sqlite3_last_insert_rowid(d.db);
  KF_RETURN_IF_ERROR(insert_files(d, d.st.insert_job_file, id, job.request.files, op));
  KF_RETURN_IF_ERROR(tx.commit());
  return id;
}

Result<JobRow> Store::get_job(int64_t job_id) {
  Db& d = impl_->d;
  Stmt s(d.st.get_job);
  s.bind(1, job_id);
  int rc = s.step();
  if (rc == SQLITE_DONE) return not_found(d.path + ": get_job: no job " + std::to_string(job_id));
  if (rc != SQLITE_ROW) return d.error(rc, "get_job");
  Result<JobRow> job = read_row(d, "get_job", read_job(s));
  if (!job.ok()) return job.status();
  auto request = read_request(d, job_id);
  if (!request.ok()) return request.status();
  job->request = std::move(*request);
  return job;
}

Result<int64_t> Store::assign_job(int64_t job_id, const std::string& agent_id, int device_index) {
  constexpr std::string_view op = "assign_job";
  Db& d = impl_->d;
  Tx tx(d, op, false);
  KF_RETURN_IF_ERROR(tx.status());
  int64_t epoch = 0;
  {
    Stmt s(d.st.assign_job);
    s.bind(1, job_id).text(2, agent_id).bind(3, device_index).bind(4, d.now());
    int rc = s.step();
    if (rc == SQLITE_DONE) return d.job_not_in(job_id, "queued", op);
    if (rc != SQLITE_ROW) return d.error(rc, op);
    epoch = s.i64(0);
    rc = s.finish();
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  KF_RETURN_IF_ERROR(tx.commit());
  return epoch;
}

Result<int64_t> Store::requeue_job(int64_t job_id) {
  constexpr std::string_view op = "requeue_job";
  Db& d = impl_->d;
  Tx tx(d, op, false);
  KF_RETURN_IF_ERROR(tx.status());
  int64_t epoch = 0;
  {
    Stmt s(d.st.requeue_job);
    s.bind(1, job_id);
    int rc = s.step();
    if (rc == SQLITE_DONE) return d.job_not_in(job_id, "assigned", op);
    if (rc != SQLITE_ROW) return d.error(rc, op);
    epoch = s.i64(0);
    rc = s.finish();
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  KF_RETURN_IF_ERROR(tx.commit());
  return epoch;
}

Result<bool> Store::record_result(int64_t job_id, int64_t epoch, const proto::JobResult& result) {
  constexpr std::string_view op = "record_result";
  Db& d = impl_->d;
  Tx tx(d, op, false);
  KF_RETURN_IF_ERROR(tx.status());
  proto::JobResult typed = result;
  if (!typed.verify && !typed.result_json.empty()) {  // an agent from before typed results
    Stmt k(d.st.job_kind);
    k.bind(1, job_id);
    int rc = k.step();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return d.error(rc, op);
    if (rc == SQLITE_ROW && k.str(0) == to_string(JobKind::verify)) adopt_legacy_verdict(typed);
  }
  {
    Stmt s(d.st.record_result);
    s.bind(1, job_id).bind(2, epoch).bind(4, d.now());
    bind_result(s, typed);
    int rc = s.step();
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  const bool recorded = sqlite3_changes(d.db) == 1;
  KF_RETURN_IF_ERROR(tx.commit());
  return recorded;
}

Status Store::cancel_job(int64_t job_id) {
  constexpr std::string_view op = "cancel_job";
  Db& d = impl_->d;
  Tx tx(d, op, false);
  KF_RETURN_IF_ERROR(tx.status());
  {
    Stmt s(d.st.cancel_job);
    s.bind(1, job_id).bind(2, d.now());
    int rc = s.step();
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  if (sqlite3_changes(d.db) == 0) {
    // Cancelling twice is harmless; only a missing or finished job is an error.
    Result<std::string> state = d.job_state_of(job_id, op);
    if (!state.ok()) return state.status();
    if (*state != to_string(JobState::cancelled)) {
      return d.job_not_in(job_id, "queued or assigned", op);
    }
  }
  return tx.commit();
}

Result<std::vector<JobRow>> Store::jobs_in_state(JobState state, int limit) {
  Db& d = impl_->d;
  Stmt s(d.st.jobs_in_state);
  s.text(1, to_string(state).data()).bind(2, limit);
  return job_rows(d, s, "jobs_in_state");
}

Result<std::vector<JobRow>> Store::queued_after(int64_t after_id, int limit) {
  Db& d = impl_->d;
  Stmt s(d.st.queued_after);
  s.bind(1, after_id).bind(2, limit);
  return job_rows(d, s, "queued_after");
}

Result<std::vector<JobRow>> Store::jobs_of_agent(const std::string& agent_id, JobState state) {
  Db& d = impl_->d;
  Stmt s(d.st.jobs_of_agent);
  s.text(1, agent_id).text(2, to_string(state).data());
  return job_rows(d, s, "jobs_of_agent");
}

Result<int64_t> Store::tasks_finished_since(int64_t since_ms) {
  Db& d = impl_->d;
  Stmt s(d.st.tasks_finished_since);
  s.bind(1, since_ms);
  int rc = s.step();
  if (rc != SQLITE_ROW) return d.error(rc, "tasks_finished_since");
  return s.i64(0);
}

Result<int64_t> Store::count_jobs(JobState state) {
  Db& d = impl_->d;
  Stmt s(d.st.count_jobs);
  s.text(1, to_string(state).data());
  int rc = s.step();
  if (rc != SQLITE_ROW) return d.error(rc, "count_jobs");
  return s.i64(0);
}

// ---- Task queue and listings by id (issue 21) ----------------------------------------------
//
// A million tasks are never read at once: the Conductor admits pending tasks a page at a time
// and listings page by id (keyset), each through an index (tasks_by_state, tasks_by_campaign,
// the primary key), so a page costs what it returns. The statements are prepared per call
// (their text depends on the filters); a call is rare next to its rows.

namespace {

// A statement prepared for one call, finalized at the end of the scope.
struct OneShot {
  sqlite3_stmt* stmt = nullptr;
  OneShot() = default;
  OneShot(const OneShot&) = delete;
  OneShot& operator=(const OneShot&) = delete;
  ~OneShot() { sqlite3_finalize(stmt); }
};

}  // namespace

namespace {

// The one integer a SELECT returns, its parameters bound in order (0 without a row, or NULL).
Result<int64_t> query_int(Db& d, const char* sql, std::initializer_list<int64_t> params,
                          std::string_view op) {
  OneShot one;
  int rc = sqlite3_prepare_v2(d.db, sql, -1, &one.stmt, nullptr);
  if (rc != SQLITE_OK) return d.error(rc, op);
  Stmt s(one.stmt);
  int i = 0;
  for (int64_t p : params) s.bind(++i, p);
  rc = s.step();
  if (rc == SQLITE_DONE) return int64_t{0};
  if (rc != SQLITE_ROW) return d.error(rc, op);
  return s.is_null(0) ? int64_t{0} : s.i64(0);
}

}  // namespace

// The ranges of ids that only submitting campaigns' tasks hold (see Store::Impl::Unbroken).
Result<std::vector<std::pair<int64_t, int64_t>>> Store::submitting_ranges() {
  constexpr std::string_view op = "task_ids";
  Db& d = impl_->d;
  auto& known = impl_->unbroken;
  Result<std::string> version = d.query_text("PRAGMA data_version", op);
  if (!version.ok()) return version.status();
  if (*version != impl_->unbroken_version) known.clear();  // another process wrote: check again
  impl_->unbroken_version = *version;
  std::vector<int64_t> campaigns;
  {
    OneShot one;
    int rc = sqlite3_prepare_v2(d.db, "SELECT id FROM campaigns WHERE state = 'submitting'", -1,
                                &one.stmt, nullptr);
    if (rc != SQLITE_OK) return d.error(rc, op);
    Stmt s(one.stmt);
    while ((rc = s.step()) == SQLITE_ROW) campaigns.push_back(s.i64(0));
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  std::map<int64_t, Impl::Unbroken> still;
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t c : campaigns) {
    // The campaign's lowest and highest task ids (tasks_by_campaign: one probe each), and how
    // many of its tasks lie in a range (walks that range of the index).
    auto lo = query_int(d, "SELECT MIN(id) FROM tasks WHERE campaign_id = ?1", {c}, op);
    if (!lo.ok()) return lo.status();
    auto hi = query_int(d, "SELECT MAX(id) FROM tasks WHERE campaign_id = ?1", {c}, op);
    if (!hi.ok()) return hi.status();
    if (*lo == 0) continue;
    auto count = [&](int64_t from, int64_t to) {
      return query_int(d,
                       "SELECT COUNT(*) FROM tasks WHERE campaign_id = ?1 AND id BETWEEN ?2 AND ?3",
                       {c, from, to}, op);
    };
    Impl::Unbroken u;
    auto it = known.find(c);
    if (it != known.end() && it->second.lo == *lo && it->second.hi <= *hi) {
      u = it->second;  // the range checked before, and what was added since
      if (u.whole && *hi > u.hi) {
        auto n = count(u.hi + 1, *hi);
        if (!n.ok()) return n.status();
        u.whole = *n == *hi - u.hi;
      }
    } else {
      auto n = count(*lo, *hi);
      if (!n.ok()) return n.status();
      u.whole = *n == *hi - *lo + 1;
    }
    u.lo = *lo;
    u.hi = *hi;
    still[c] = u;
    if (u.whole) out.emplace_back(u.lo, u.hi);
  }
  known = std::move(still);
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::vector<int64_t>> Store::task_ids(const TaskQuery& q) {
  constexpr std::string_view op = "task_ids";
  Db& d = impl_->d;
  std::string sql = "SELECT id FROM tasks WHERE id > ?1 AND id < ?7";
  if (q.campaign_id) sql += " AND campaign_id = ?2";
  if (q.state) sql += " AND state = ?3";
  if (!q.op_name.empty()) sql += " AND op_name = ?4";
  // A campaign's tasks are not startable while it is submitting. Walking past them one by one
  // cost the Conductor O(tasks stored so far) per look while a million were stored (issue
  // 21): the ranges of ids that hold nothing else are skipped, the rest filtered.
  std::vector<std::pair<int64_t, int64_t>> skip;
  if (q.startable) {
    if (q.offset != 0)
      return invalid_argument(d.path +
                              ": task_ids: startable tasks are paged by after_id, not offset");
    sql +=
        " AND (campaign_id IS NULL OR campaign_id NOT IN (SELECT id FROM campaigns WHERE state = "
        "'submitting'))";
    auto ranges = submitting_ranges();
    if (!ranges.ok()) return ranges.status();
    skip = std::move(*ranges);
  }
  sql += " ORDER BY id LIMIT ?5 OFFSET ?6";
  OneShot one;
  int rc = sqlite3_prepare_v2(d.db, sql.c_str(), -1, &one.stmt, nullptr);
  if (rc != SQLITE_OK) return d.error(rc, op);
  std::vector<int64_t> out;
  // The ids between the skipped ranges, in order, until `limit` are found.
  int64_t after = q.after_id;
  for (size_t gap = 0; gap <= skip.size(); ++gap) {
    const int64_t before =
        gap < skip.size() ? skip[gap].first : std::numeric_limits<int64_t>::max();
    const int64_t want = q.limit < 0 ? -1 : q.limit - static_cast<int64_t>(out.size());
    if (want == 0) break;
    if (before > after + 1) {
      Stmt s(one.stmt);
      s.bind(1, after).bind(7, before).bind(5, want).bind(6, q.offset);
      if (q.campaign_id) s.bind(2, *q.campaign_id);
      if (q.state) s.text(3, to_string(*q.state).data());
      if (!q.op_name.empty()) s.text(4, q.op_name);
      while ((rc = s.step()) == SQLITE_ROW) out.push_back(s.i64(0));
      if (rc != SQLITE_DONE) return d.error(rc, op);
    }
    if (gap < skip.size()) after = std::max(after, skip[gap].second);
  }
  return out;
}

Result<bool> Store::campaign_unfinished(int64_t campaign_id) {
  constexpr std::string_view op = "campaign_unfinished";
  Db& d = impl_->d;
  OneShot one;
  int rc = sqlite3_prepare_v2(
      d.db,
      "SELECT 1 FROM tasks WHERE campaign_id = ?1 AND state IN ('pending', 'running') LIMIT 1", -1,
      &one.stmt, nullptr);
  if (rc != SQLITE_OK) return d.error(rc, op);
  Stmt s(one.stmt);
  s.bind(1, campaign_id);
  rc = s.step();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return d.error(rc, op);
  return rc == SQLITE_ROW;
}

// ---- The dashboard's aggregates (schema/api.md: progress, compare) ------------------------

namespace {

// Runs `sql` once with `bind` and calls `row` for each row; `op` names it in errors.
template <class Bind, class Row>
Status each_row(Db& d, std::string_view op, const char* sql, Bind bind, Row row) {
  OneShot one;
  int rc = sqlite3_prepare_v2(d.db, sql, -1, &one.stmt, nullptr);
  if (rc != SQLITE_OK) return d.error(rc, op);
  Stmt s(one.stmt);
  bind(s);
  while ((rc = s.step()) == SQLITE_ROW) row(s);
  if (rc != SQLITE_DONE) return d.error(rc, op);
  return Status();
}

// Two tasks are twins when these columns match (the tasks' unique key, campaign aside).
#define KF_TWIN_OF_A                                                                 \
  "tb.campaign_id = ?2 AND tb.op_name = ta.op_name AND tb.task_id = ta.task_id AND " \
  "tb.backend = ta.backend AND tb.arch = ta.arch AND tb.impl_type = ta.impl_type"

}  // namespace

// A done job's device time: its final lease, assignment to result (a requeue resets
// assigned_ms). One definition for the budgets (campaign_spend, device_ms_of_task).
#define KF_DONE_JOB_MS "j.finished_ms - j.assigned_ms"
#define KF_DONE_JOB "j.state = 'done' AND j.assigned_ms > 0 AND j.finished_ms >= j.assigned_ms"

Result<int64_t> Store::device_ms_of_task(int64_t task_id) {
  int64_t ms = 0;
  KF_RETURN_IF_ERROR(each_row(
      impl_->d, "device_ms_of_task",
      "SELECT COALESCE(SUM(" KF_DONE_JOB_MS
      "), 0) FROM jobs j WHERE j.task_id = ?1 AND " KF_DONE_JOB,
      [&](Stmt& s) { s.bind(1, task_id); }, [&](const Stmt& r) { ms = r.i64(0); }));
  return ms;
}

Result<Store::CampaignSpend> Store::campaign_spend(int64_t campaign_id) {
  constexpr std::string_view op = "campaign_spend";
  Db& d = impl_->d;
  CampaignSpend spend;
  auto bind = [&](Stmt& s) { s.bind(1, campaign_id); };
  // Each through the campaign's tasks (tasks_by_campaign_state), then that task's rows.
  KF_RETURN_IF_ERROR(each_row(d, op,
                              "SELECT COUNT(*) FROM tasks t JOIN steps s ON s.task_id = t.id WHERE "
                              "t.campaign_id = ?1 AND s.role <> 'verifier'",
                              bind, [&](const Stmt& r) { spend.llm_calls = r.i64(0); }));
  KF_RETURN_IF_ERROR(each_row(d, op,
                              "SELECT COALESCE(SUM(c.prompt_tokens + c.completion_tokens), 0), "
                              "COALESCE(SUM(c.cost_usd), 0) "
                              "FROM tasks t JOIN llm_calls c ON c.task_id = t.id WHERE "
                              "t.campaign_id = ?1 AND c.status = 'ok'",
                              bind, [&](const Stmt& r) {
                                spend.tokens = r.i64(0);
                                spend.cost_usd = r.f64(1);
                              }));
  KF_RETURN_IF_ERROR(
      each_row(d, op,
               "SELECT COALESCE(SUM(" KF_DONE_JOB_MS "), 0) FROM tasks t "
               "JOIN jobs j ON j.task_id = t.id WHERE t.campaign_id = ?1 AND " KF_DONE_JOB,
               bind, [&](const Stmt& r) { spend.device_ms = r.i64(0); }));
  KF_RETURN_IF_ERROR(each_row(
      d, op, "SELECT ?2 - created_ms FROM campaigns WHERE id = ?1",
      [&](Stmt& s) { s.bind(1, campaign_id).bind(2, d.now()); },
      [&](const Stmt& r) { spend.wall_ms = r.i64(0); }));
  return spend;
}

Result<std::vector<Store::SearchStep>> Store::running_search_steps(int64_t campaign_id) {
  constexpr std::string_view op = "running_search_steps";
  Db& d = impl_->d;
  std::vector<SearchStep> out;
  StoredWords w;  // the first unknown word of any row
  KF_RETURN_IF_ERROR(each_row(
      d, op,
      "SELECT t.id, COALESCE(s.role <> 'verifier', 0), c.verdict, c.score FROM tasks t LEFT JOIN "
      "steps s ON s.task_id = t.id "
      "LEFT JOIN candidates c ON c.step_id = s.id WHERE t.campaign_id = ?1 AND t.state = 'running' "
      "ORDER BY t.id, s.seq",
      [&](Stmt& s) { s.bind(1, campaign_id); },
      [&](const Stmt& r) {
        SearchStep step;
        step.task_id = r.i64(0);
        step.llm = r.i64(1) != 0;
        if (!r.is_null(2)) step.verdict = w.word<Verdict>(r, 2, "candidates.verdict");
        step.score = r.is_null(3) ? 0 : r.f64(3);
        out.push_back(step);
      }));
  return read_row(d, op, w.row(std::move(out)));
}

Result<Store::CampaignActivity> Store::campaign_activity(int64_t campaign_id, int64_t since_ms) {
  constexpr std::string_view op = "campaign_activity";
  Db& d = impl_->d;
  CampaignActivity a;
  auto bind_campaign = [&](Stmt& s) { s.bind(1, campaign_id).bind(2, since_ms); };
  KF_RETURN_IF_ERROR(each_row(d, op,
                              "SELECT COUNT(*) FROM tasks WHERE campaign_id = ?1 AND state IN "
                              "('passed', 'failed') AND updated_ms >= ?2",
                              bind_campaign, [&](const Stmt& r) { a.finished_since = r.i64(0); }));
  // The campaign's active jobs: few, found through jobs_by_state, each task looked up once.
  KF_RETURN_IF_ERROR(each_row(
      d, op,
      "SELECT j.state, COUNT(*) FROM jobs j JOIN tasks t ON t.id = j.task_id "
      "WHERE j.state IN ('queued', 'assigned') AND t.campaign_id = ?1 GROUP BY j.state",
      [&](Stmt& s) { s.bind(1, campaign_id); },
      [&](const Stmt& r) {
        (parse_enum<JobState>(r.str(0)) == JobState::queued ? a.queued_jobs : a.running_jobs) =
            r.i64(1);
      }));
  // Per state the newest task from the index's end, and the newest step of a running task.
  for (TaskState st : all_of<TaskState>()) {
    KF_RETURN_IF_ERROR(each_row(
        d, op, "SELECT MAX(updated_ms) FROM tasks WHERE campaign_id = ?1 AND state = ?2",
        [&](Stmt& s) { s.bind(1, campaign_id).text(2, to_string(st).data()); },
        [&](const Stmt& r) { a.last_change_ms = std::max(a.last_change_ms, r.i64(0)); }));
  }
  KF_RETURN_IF_ERROR(each_row(
      d, op,
      "SELECT MAX(s.created_ms) FROM tasks t JOIN steps s ON s.task_id = t.id "
      "WHERE t.campaign_id = ?1 AND t.state = 'running'",
      [&](Stmt& s) { s.bind(1, campaign_id); },
      [&](const Stmt& r) { a.last_change_ms = std::max(a.last_change_ms, r.i64(0)); }));
  return a;
}

Result<std::vector<Store::EndedBucket>> Store::ended_by_bucket(int64_t campaign_id,
                                                               int64_t origin_ms, int64_t bucket_ms,
                                                               int64_t buckets) {
  // One range count per state and bucket, each walking only its own part of the index. (A
  // GROUP BY on the bucket would sort every ended task in a temporary tree: 1.2 s instead of
  // 0.17 s for a million, docs/dashboard.md.)
  constexpr std::string_view op = "ended_by_bucket";
  Db& d = impl_->d;
  OneShot one;
  int rc = sqlite3_prepare_v2(d.db,
                              "SELECT COUNT(*) FROM tasks WHERE campaign_id = ?1 AND state = ?2 "
                              "AND updated_ms >= ?3 AND updated_ms < ?4",
                              -1, &one.stmt, nullptr);
  if (rc != SQLITE_OK) return d.error(rc, op);
  bucket_ms = std::max<int64_t>(bucket_ms, 1);
  std::vector<EndedBucket> out;
  for (TaskState state : {TaskState::passed, TaskState::failed, TaskState::cancelled}) {
    for (int64_t i = 0; i < buckets; ++i) {
      // The first and last buckets also hold what ended before the origin or after the end.
      const int64_t lo = i == 0 ? std::numeric_limits<int64_t>::min() : origin_ms + i * bucket_ms;
      const int64_t hi =
          i == buckets - 1 ? std::numeric_limits<int64_t>::max() : origin_ms + (i + 1) * bucket_ms;
      Stmt s(one.stmt);
      s.bind(1, campaign_id).text(2, to_string(state).data()).bind(3, lo).bind(4, hi);
      if ((rc = s.step()) != SQLITE_ROW) return d.error(rc, op);
      if (int64_t n = s.i64(0); n > 0) out.push_back({state, i, n});
    }
  }
  return out;
}

Result<std::vector<std::pair<int64_t, int64_t>>> Store::paired_tasks(int64_t a, int64_t b,
                                                                     int64_t after_id,
                                                                     int64_t limit) {
  std::vector<std::pair<int64_t, int64_t>> out;
  KF_RETURN_IF_ERROR(each_row(
      impl_->d, "paired_tasks",
      "SELECT ta.id, COALESCE(tb.id, 0) FROM tasks ta LEFT JOIN tasks tb ON " KF_TWIN_OF_A
      " WHERE ta.campaign_id = ?1 AND ta.id > ?3 ORDER BY ta.id LIMIT ?4",
      [&](Stmt& s) { s.bind(1, a).bind(2, b).bind(3, after_id).bind(4, limit); },
      [&](const Stmt& r) { out.emplace_back(r.i64(0), r.i64(1)); }));
  return out;
}

Result<int64_t> Store::paired_count(int64_t a, int64_t b) {
  int64_t n = 0;
  KF_RETURN_IF_ERROR(each_row(
      impl_->d, "paired_count",
      "SELECT COUNT(*) FROM tasks ta JOIN tasks tb ON " KF_TWIN_OF_A " WHERE ta.campaign_id = ?1",
      [&](Stmt& s) { s.bind(1, a).bind(2, b); }, [&](const Stmt& r) { n = r.i64(0); }));
  return n;
}

#undef KF_TWIN_OF_A

Result<bool> Store::changed_elsewhere() {
  Result<std::string> v = impl_->d.query_text("PRAGMA data_version", "changed_elsewhere");
  if (!v.ok()) return v.status();
  bool changed = impl_->data_version != *v;
  impl_->data_version = std::move(*v);
  return changed;
}

// ---- Agents and devices -------------------------------------------------------------------

Status Store::upsert_agent(const AgentRow& agent, const std::vector<DeviceRow>& devices) {
  constexpr std::string_view op = "upsert_agent";
  Db& d = impl_->d;
  Tx tx(d, op, true);
  KF_RETURN_IF_ERROR(tx.status());
  {
    Stmt s(d.st.upsert_agent);
    s.text(1, agent.id)
        .text(2, agent.incarnation)
        .text(3, agent.host)
        .text(4, to_string(agent.state).data())
        .bind(5, agent.drained)
        .text(6, agent.capabilities)
        .bind(7, d.now());
    int rc = s.step();
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  {
    Stmt s(d.st.delete_devices);
    s.text(1, agent.id);
    int rc = s.step();
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  for (const DeviceRow& dev : devices) {
    Stmt s(d.st.insert_device);
    s.text(1, agent.id)
        .bind(2, dev.index)
        .text(3, dev.backend)
        .text(4, dev.arch)
        .text(5, dev.name)
        .bind(6, dev.memory_mb);
    int rc = s.step();
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
      return invalid_argument(d.path + ": upsert_agent: agent " + agent.id + " lists device " +
                              dev.backend + ":" + std::to_string(dev.index) + " twice");
    }
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  return tx.commit();
}

namespace {

// One-statement update of an agent row; not_found if there is no such agent.
template <typename BindFn>
Status update_agent(Db& d, sqlite3_stmt* stmt, const std::string& agent_id, std::string_view op,
                    BindFn bind_value) {
  Tx tx(d, op, false);
  KF_RETURN_IF_ERROR(tx.status());
  {
    Stmt s(stmt);
    s.text(1, agent_id);
    bind_value(s);
    int rc = s.step();
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  if (sqlite3_changes(d.db) != 1) {
    return not_found(d.path + ": " + std::string(op) + ": no agent " + agent_id);
  }
  return tx.commit();
}

}  // namespace

Status Store::set_agent_state(const std::string& agent_id, AgentState state) {
  return update_agent(impl_->d, impl_->d.st.set_agent_state, agent_id, "set_agent_state",
                      [&](Stmt& s) { s.text(2, to_string(state).data()); });
}

Status Store::set_agent_drained(const std::string& agent_id, bool drained,
                                const std::string& reason) {
  const int64_t now = impl_->d.now();
  return update_agent(impl_->d, impl_->d.st.set_agent_drained, agent_id, "set_agent_drained",
                      [&](Stmt& s) {
                        s.bind(2, drained)
                            .text_copy(3, drained ? reason : std::string())
                            .bind(4, drained ? now : int64_t{0});
                      });
}

Status Store::touch_agent(const std::string& agent_id) {
  const int64_t now = impl_->d.now();
  return update_agent(impl_->d, impl_->d.st.touch_agent, agent_id, "touch_agent",
                      [&](Stmt& s) { s.bind(2, now); });
}

namespace {

Result<AgentRow> read_agent(const Stmt& r) {
  StoredWords w;
  AgentState state = w.word<AgentState>(r, 3, "agents.state");
  return w.row(AgentRow{r.str(0), r.str(1), r.str(2), state, r.flag(4), r.str(5), r.i64(6),
                        r.i64(7), r.str(8), r.i64(9)});
}

}  // namespace

Result<std::vector<AgentRow>> Store::agents() {
  Db& d = impl_->d;
  Stmt s(d.st.agents);
  return all_rows<AgentRow>(d, s, "agents", read_agent);
}

Result<std::optional<AgentRow>> Store::agent(const std::string& agent_id) {
  Db& d = impl_->d;
  Stmt s(d.st.agent_by_id);
  s.text(1, agent_id);
  return maybe_row<AgentRow>(d, s, "agent", read_agent);
}

Result<std::vector<DeviceRow>> Store::devices_of(const std::string& agent_id) {
  Db& d = impl_->d;
  Stmt s(d.st.devices_of);
  s.text(1, agent_id);
  return all_rows<DeviceRow>(d, s, "devices_of", [](const Stmt& r) {
    return DeviceRow{r.str(0), r.i32(1), r.str(2), r.str(3), r.str(4), r.i64(5)};
  });
}

// --- Conductor support (schema 0002) ---

namespace {

Result<CampaignRow> read_campaign(const Stmt& s) {
  StoredWords w;
  CampaignState state = w.word<CampaignState>(s, 3, "campaigns.state");
  Workflow workflow = w.word<Workflow>(s, 5, "campaigns.workflow");
  return w.row(CampaignRow{s.i64(0), s.str(1), s.str(2), state, s.str(4), workflow, s.i64(6),
                           s.i64(7), s.str(8), s.str(9)});
}

}  // namespace

Result<std::optional<JobRow>> Store::job_for_task_seq(int64_t task_id, int seq) {
  Db& d = impl_->d;
  Stmt s(d.st.job_for_task_seq);
  s.bind(1, task_id).bind(2, seq);
  int rc = s.step();
  if (rc == SQLITE_DONE) return std::optional<JobRow>();
  if (rc != SQLITE_ROW) return d.error(rc, "job_for_task_seq");
  Result<JobRow> row = read_row(d, "job_for_task_seq", read_job(s));
  if (!row.ok()) return row.status();
  return std::optional<JobRow>(std::move(*row));
}

Result<std::optional<CampaignRow>> Store::campaign_by_hash(const std::string& content_hash) {
  Db& d = impl_->d;
  Stmt s(d.st.campaign_by_hash);
  s.text(1, content_hash);
  return maybe_row<CampaignRow>(d, s, "campaign_by_hash", read_campaign);
}

Result<std::vector<CampaignRow>> Store::campaigns() {
  Db& d = impl_->d;
  Stmt s(d.st.campaigns);
  return all_rows<CampaignRow>(d, s, "campaigns", read_campaign);
}

Result<CampaignRow> Store::get_campaign(int64_t campaign_id) {
  Db& d = impl_->d;
  Stmt s(d.st.get_campaign);
  s.bind(1, campaign_id);
  int rc = s.step();
  if (rc == SQLITE_DONE) return not_found(d.path + ": no campaign " + std::to_string(campaign_id));
  if (rc != SQLITE_ROW) return d.error(rc, "get_campaign");
  return read_row(d, "get_campaign", read_campaign(s));
}

Status Store::set_campaign_state(int64_t campaign_id, CampaignState state) {
  constexpr std::string_view op = "set_campaign_state";
  Db& d = impl_->d;
  Tx tx(d, op, false);
  KF_RETURN_IF_ERROR(tx.status());
  {
    Stmt s(d.st.set_campaign_state);
    s.bind(1, campaign_id).text(2, to_string(state).data()).bind(3, d.now());
    int rc = s.step();
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  if (state == CampaignState::submitting) {
    impl_->submitting.insert(campaign_id);
  } else {
    impl_->submitting.erase(campaign_id);
  }
  return tx.commit();
}

Result<std::vector<TaskRow>> Store::tasks_of_campaign(int64_t campaign_id) {
  Db& d = impl_->d;
  Stmt s(d.st.tasks_of_campaign);
  s.bind(1, campaign_id);
  return all_rows<TaskRow>(d, s, "tasks_of_campaign", read_task);
}

Result<std::vector<int64_t>> Store::task_ids_of_campaign(int64_t campaign_id) {
  Db& d = impl_->d;
  Stmt s(d.st.task_ids_of_campaign);
  s.bind(1, campaign_id);
  return all_rows<int64_t>(d, s, "task_ids_of_campaign", [](const Stmt& r) { return r.i64(0); });
}

bool Store::submitting_here(int64_t campaign_id) const {
  return impl_->submitting.count(campaign_id) > 0;
}

void Store::release_submission(int64_t campaign_id) {
  impl_->submitting.erase(campaign_id);
}

Result<std::vector<int64_t>> Store::interrupted_submissions() {
  Db& d = impl_->d;
  Result<std::vector<int64_t>> ids = [&] {
    Stmt s(d.st.submitting_campaigns);
    return all_rows<int64_t>(d, s, "interrupted_submissions",
                             [](const Stmt& r) { return r.i64(0); });
  }();
  if (!ids.ok()) return ids.status();
  std::erase_if(*ids, [&](int64_t id) { return submitting_here(id); });
  return ids;
}

Result<std::vector<TaskRow>> Store::unfinished_tasks() {
  Db& d = impl_->d;
  Stmt s(d.st.unfinished_tasks);
  return all_rows<TaskRow>(d, s, "unfinished_tasks", read_task);
}

Status Store::record_llm_call(const LlmCallRow& call) {
  constexpr std::string_view op = "record_llm_call";
  Db& d = impl_->d;
  Tx tx(d, op, false);
  KF_RETURN_IF_ERROR(tx.status());
  {
    Stmt s(d.st.insert_llm_call);
    s.bind(1, call.task_id)
        .text(2, to_string(call.role).data())
        .text(3, call.model)
        .text(4, call.request_key)
        .text(5, call.request)
        .text(6, call.response)
        .text(7, to_string(call.status).data())
        .bind(8, call.prompt_tokens)
        .bind(9, call.completion_tokens);
    s.bind(11, call.latency_ms).bind(12, d.now());
    sqlite3_bind_double(d.st.insert_llm_call, 10, call.cost_usd);
    int rc = s.step();
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  return tx.commit();
}

Status Store::forget_pending_llm_call(const std::string& request_key) {
  constexpr std::string_view op = "forget_pending_llm_call";
  Db& d = impl_->d;
  Tx tx(d, op, false);
  KF_RETURN_IF_ERROR(tx.status());
  {
    Stmt s(d.st.forget_pending_llm_call);
    s.text(1, request_key);
    int rc = s.step();
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  return tx.commit();
}

Result<int64_t> Store::take_pending_llm_calls() {
  constexpr std::string_view op = "take_pending_llm_calls";
  Db& d = impl_->d;
  Tx tx(d, op, false);
  KF_RETURN_IF_ERROR(tx.status());
  {
    Stmt s(d.st.take_pending_llm_calls);
    int rc = s.step();
    if (rc != SQLITE_DONE) return d.error(rc, op);
  }
  int64_t taken = sqlite3_changes(d.db);
  KF_RETURN_IF_ERROR(tx.commit());
  return taken;
}

Result<std::optional<LlmCallRow>> Store::find_llm_call(const std::string& request_key) {
  Db& d = impl_->d;
  Stmt s(d.st.find_llm_call);
  s.text(1, request_key);
  int rc = s.step();
  if (rc == SQLITE_DONE) return std::optional<LlmCallRow>();
  if (rc != SQLITE_ROW) return d.error(rc, "find_llm_call");
  StoredWords w;
  LlmCallRow row;
  row.task_id = s.opt_i64(0);
  row.role = w.word<Role>(s, 1, "llm_calls.role");
  row.model = s.str(2);
  row.request_key = s.str(3);
  row.request = s.str(4);
  row.response = s.str(5);
  row.status = w.word<LlmCallState>(s, 6, "llm_calls.status");
  row.prompt_tokens = s.i64(7);
  row.completion_tokens = s.i64(8);
  row.cost_usd = sqlite3_column_double(d.st.find_llm_call, 9);
  row.latency_ms = s.i64(10);
  Result<LlmCallRow> read = read_row(d, "find_llm_call", w.row(std::move(row)));
  if (!read.ok()) return read.status();
  return std::optional<LlmCallRow>(std::move(*read));
}

namespace {

// One row of COUNT, SUM(prompt_tokens), SUM(completion_tokens), SUM(cost_usd) for `id`.
Result<LlmUsage> usage_row(Db& d, sqlite3_stmt* stmt, int64_t id, std::string_view op) {
  Stmt s(stmt);
  s.bind(1, id);
  int rc = s.step();
  if (rc != SQLITE_ROW) return d.error(rc, op);
  return LlmUsage{s.i64(0), s.i64(1), s.i64(2), sqlite3_column_double(stmt, 3)};
}

}  // namespace

Result<LlmUsage> Store::llm_usage_of_task(int64_t task_id) {
  return usage_row(impl_->d, impl_->d.st.llm_usage_of_task, task_id, "llm_usage_of_task");
}

Result<LlmUsage> Store::llm_usage_of_campaign(int64_t campaign_id) {
  return usage_row(impl_->d, impl_->d.st.llm_usage_of_campaign, campaign_id,
                   "llm_usage_of_campaign");
}

Result<std::vector<JobRow>> Store::jobs_of_task(int64_t task_id) {
  Db& d = impl_->d;
  Stmt s(d.st.jobs_of_task);
  s.bind(1, task_id);
  return job_rows(d, s, "jobs_of_task");
}

Result<std::vector<JobLease>> Store::job_leases(int64_t campaign_id) {
  Db& d = impl_->d;
  Stmt s(campaign_id ? d.st.job_leases_of_campaign : d.st.job_leases);
  if (campaign_id) s.bind(1, campaign_id);
  return all_rows<JobLease>(d, s, "job_leases", [](const Stmt& r) {
    StoredWords w;
    JobState state = w.word<JobState>(r, 4, "jobs.state");
    return w.row(JobLease{r.i64(0), r.opt_i64(1), r.str(2), r.str(3), state, r.str(5), r.i32(6),
                          r.i64(7), r.i64(8)});
  });
}

Status Store::list_jobs(const JobFilter& filter, const std::function<void(const JobRow&)>& each) {
  Db& d = impl_->d;
  Stmt s(filter.task_id ? (filter.state ? d.st.list_jobs_of_task_in_state : d.st.list_jobs_of_task)
                        : (filter.state ? d.st.list_jobs_in_state : d.st.list_jobs));
  s.bind(1, filter.limit.value_or(-1)).bind(2, filter.offset).bind(5, filter.after_id);
  if (filter.task_id) s.bind(3, *filter.task_id);
  if (filter.state) s.text(4, to_string(*filter.state).data());
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
    Result<JobRow> job = read_row(d, "list_jobs", read_job(s));
    if (!job.ok()) return job.status();
    each(*job);
  }
  return rc == SQLITE_DONE ? Status() : d.error(rc, "list_jobs");
}

Result<std::map<TaskState, int64_t>> Store::task_counts(int64_t campaign_id) {
  Db& d = impl_->d;
  Stmt s(d.st.task_counts);
  s.bind(1, campaign_id);
  std::map<TaskState, int64_t> out;
  for (TaskState state : all_of<TaskState>()) out[state] = 0;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
    StoredWords w;
    Result<TaskState> state =
        read_row(d, "task_counts", w.row(w.word<TaskState>(s, 0, "tasks.state")));
    if (!state.ok()) return state.status();
    out[*state] = s.i64(1);
  }
  if (rc != SQLITE_DONE) return d.error(rc, "task_counts");
  return out;
}

Result<std::vector<RoleUsage>> Store::llm_usage_by_role(int64_t campaign_id) {
  Db& d = impl_->d;
  Stmt s(d.st.llm_usage_by_role);
  s.bind(1, campaign_id);
  return all_rows<RoleUsage>(d, s, "llm_usage_by_role", [](const Stmt& r) {
    StoredWords w;
    Role role = w.word<Role>(r, 0, "llm_calls.role");
    return w.row(RoleUsage{role, LlmUsage{r.i64(1), r.i64(2), r.i64(3), r.f64(4)}, r.i64(5)});
  });
}

}  // namespace kforge
