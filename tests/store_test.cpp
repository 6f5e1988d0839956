// Store: migrations, leases and epochs, group commit, crash recovery.
#include "coordinator/store/store.h"

#include <doctest/doctest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "coordinator/store/migrations.h"
#include "tests/support/fixtures.h"
#include "tests/support/support.h"

using namespace kforge;
using kforge::test::TempDir;

namespace {

// A database in a fresh directory and a clock that moves only when told to.
struct StoreFixture {
  TempDir dir;
  ManualClock clock;
  std::filesystem::path db_path = dir / "kforge.db";
  std::unique_ptr<Store> store;

  StoreFixture() { reopen(); }

  void reopen() {
    store.reset();
    Result<std::unique_ptr<Store>> opened = Store::open(db_path, clock);
    REQUIRE_MESSAGE(opened.ok(), opened.status().to_string());
    store = std::move(opened).value();
  }

  Store& s() { return *store; }

  int64_t campaign() {
    Result<int64_t> id = s().create_campaign("nightly", "[campaign]\nname = \"nightly\"\n");
    REQUIRE(id.ok());
    return *id;
  }

  int64_t task(int64_t campaign_id, const std::string& task_id = "shape0") {
    Result<int64_t> id = s().create_task(campaign_id, test::task_spec("relu", task_id));
    REQUIRE_MESSAGE(id.ok(), id.status().to_string());
    return *id;
  }

  // A queued exec job whose command is `argv0` (its request's argv).
  int64_t job(int priority = 0, const std::string& argv0 = "spec") {
    NewJob j;
    j.request.argv = {argv0};
    j.priority = priority;
    Result<int64_t> id = s().enqueue_job(j);
    REQUIRE_MESSAGE(id.ok(), id.status().to_string());
    return *id;
  }

  JobRow get(int64_t job_id) {
    Result<JobRow> row = s().get_job(job_id);
    REQUIRE_MESSAGE(row.ok(), row.status().to_string());
    return *row;
  }
};

// Runs one query on the file with a separate connection; returns the first column of each row.
std::vector<std::string> raw_query(const std::filesystem::path& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK);
  std::vector<std::string> out;
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    const unsigned char* text = sqlite3_column_text(stmt, 0);
    out.emplace_back(text ? reinterpret_cast<const char*>(text) : "");
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return out;
}

}  // namespace

TEST_CASE("migrations are numbered 1, 2, ... without gaps") {
  const std::vector<Migration>& all = migrations();
  REQUIRE_FALSE(all.empty());
  for (size_t i = 0; i < all.size(); ++i) CHECK(all[i].version == static_cast<int>(i) + 1);
  CHECK(Store::latest_schema_version() == all.back().version);
}

TEST_CASE_FIXTURE(StoreFixture, "migrations apply to an empty database") {
  CHECK(s().schema_version() == Store::latest_schema_version());
  for (const char* table :
       {"campaigns", "tasks", "steps", "jobs", "llm_calls", "agents", "devices"}) {
    CAPTURE(table);
    CHECK(raw_query(db_path, std::string("SELECT name FROM sqlite_master WHERE type = 'table' "
                                         "AND name = '") +
                                 table + "'")
              .size() == 1);
  }
  CHECK(raw_query(db_path, "PRAGMA user_version") ==
        std::vector<std::string>{std::to_string(Store::latest_schema_version())});
}

TEST_CASE_FIXTURE(StoreFixture, "reopening is idempotent") {
  int64_t job_id = job();
  reopen();
  reopen();
  CHECK(s().schema_version() == Store::latest_schema_version());
  CHECK(get(job_id).request.argv == std::vector<std::string>{"spec"});
}

TEST_CASE("a database from a newer kforge is refused and left unchanged") {
  TempDir dir;
  std::filesystem::path path = dir / "kforge.db";
  const int newer = Store::latest_schema_version() + 6;
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    std::string sql = "CREATE TABLE future(x); PRAGMA user_version = " + std::to_string(newer);
    REQUIRE(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  const std::string before = kforge::test::read_file(path);
  Result<std::unique_ptr<Store>> opened = Store::open(path);
  REQUIRE_FALSE(opened.ok());
  CHECK(opened.status().code() == Code::failed_precondition);
  const std::string msg = opened.status().message();  // status() returns a copy
  CAPTURE(msg);
  CHECK(msg.find("kforge.db") != std::string::npos);
  CHECK(msg.find("schema version " + std::to_string(newer)) != std::string::npos);
  CHECK(msg.find("(" + std::to_string(Store::latest_schema_version()) + ")") != std::string::npos);
  CHECK(kforge::test::read_file(path) == before);
  CHECK_FALSE(std::filesystem::exists(dir / "kforge.db-wal"));
  CHECK_FALSE(Store::open_readonly(path).ok());
}

TEST_CASE_FIXTURE(StoreFixture, "the database runs in WAL mode") {
  CHECK(raw_query(db_path, "PRAGMA journal_mode") == std::vector<std::string>{"wal"});
}

TEST_CASE_FIXTURE(StoreFixture, "tasks are unique per campaign, op, shape and target") {
  int64_t c = campaign();
  int64_t t = task(c);
  Result<TaskRow> row = s().get_task(t);
  REQUIRE(row.ok());
  CHECK(row->campaign_id == c);
  CHECK(row->spec.op_name == "relu");
  CHECK(row->spec.task_type == "precision_only");
  CHECK(row->spec.limit_steps == 10);
  CHECK(row->state == TaskState::pending);
  CHECK(row->created_ms == clock.wall_ms());

  TaskSpec dup = row->spec;
  Result<int64_t> again = s().create_task(c, dup);
  REQUIRE_FALSE(again.ok());
  CHECK(again.status().code() == Code::already_exists);
  task(c, "shape1");  // another shape of the same op is fine

  Result<int64_t> orphan = s().create_task(c + 100, dup);
  CHECK(orphan.status().code() == Code::not_found);

  clock.advance(Millis(5));
  REQUIRE(s().set_task_state(t, TaskState::failed, Outcome::llm_error,
                             "the coder LLM call kept failing")
              .ok());
  row = s().get_task(t);
  CHECK(row->state == TaskState::failed);
  CHECK(row->verdict == Outcome::llm_error);
  CHECK(row->reason == "the coder LLM call kept failing");
  CHECK(row->updated_ms == clock.wall_ms());
  REQUIRE(s().set_task_state(t, TaskState::pending).ok());  // resumed: no verdict, no reason
  row = s().get_task(t);
  CHECK_FALSE(row->verdict.has_value());
  CHECK(row->reason.empty());
  CHECK(s().set_task_state(t + 100, TaskState::failed).code() == Code::not_found);
}

TEST_CASE_FIXTURE(StoreFixture, "steps get increasing seq and only counted ones use the budget") {
  int64_t t = task(campaign());
  for (bool counted : {true, false, true}) {
    StepRow step;
    step.task_id = t;
    step.role = counted ? Role::coder : Role::verifier;
    if (!counted) step.verdict = Outcome::infra_error;
    step.input = "prompt";
    step.output = "code";
    step.counted = counted;
    REQUIRE(s().record_step(step).ok());
  }
  Result<std::vector<StepRow>> steps = s().steps_of(t);
  REQUIRE(steps.ok());
  REQUIRE(steps->size() == 3);
  for (int i = 0; i < 3; ++i) CHECK((*steps)[static_cast<size_t>(i)].seq == i + 1);
  CHECK_FALSE((*steps)[1].counted);
  CHECK((*steps)[1].role == Role::verifier);
  CHECK((*steps)[1].verdict == Outcome::infra_error);
  CHECK_FALSE((*steps)[0].verdict.has_value());
  CHECK(s().get_task(t)->steps_used == 2);

  StepRow orphan;
  orphan.task_id = t + 100;
  CHECK(s().record_step(orphan).status().code() == Code::not_found);
}

TEST_CASE_FIXTURE(StoreFixture, "assign bumps the epoch and attempts") {
  int64_t j = job();
  clock.advance(Millis(7));
  Result<int64_t> epoch = s().assign_job(j, "agent-a", 3);
  REQUIRE(epoch.ok());
  CHECK(*epoch == 1);
  JobRow row = get(j);
  CHECK(row.state == JobState::assigned);
  CHECK(row.epoch == 1);
  CHECK(row.attempts == 1);
  CHECK(row.agent_id == "agent-a");
  CHECK(row.device_index == 3);
  CHECK(row.assigned_ms == clock.wall_ms());

  Result<int64_t> requeued = s().requeue_job(j);
  REQUIRE(requeued.ok());
  CHECK(*requeued == 2);
  row = get(j);
  CHECK(row.state == JobState::queued);
  CHECK(row.agent_id.empty());
  CHECK(row.device_index == -1);

  epoch = s().assign_job(j, "agent-b", 0);
  REQUIRE(epoch.ok());
  CHECK(*epoch == 3);
  CHECK(get(j).attempts == 2);
}

TEST_CASE_FIXTURE(StoreFixture, "assign of a job that is not queued fails") {
  int64_t j = job();
  REQUIRE(s().assign_job(j, "agent-a", 0).ok());
  Result<int64_t> again = s().assign_job(j, "agent-b", 1);
  CHECK(again.status().code() == Code::failed_precondition);
  CHECK(get(j).agent_id == "agent-a");
  CHECK(get(j).epoch == 1);
  CHECK(s().assign_job(j + 100, "agent-a", 0).status().code() == Code::not_found);
  CHECK(s().requeue_job(job()).status().code() == Code::failed_precondition);
}

TEST_CASE_FIXTURE(StoreFixture, "a result for the current epoch is recorded exactly once") {
  int64_t j = job();
  int64_t epoch = *s().assign_job(j, "agent-a", 0);
  clock.advance(Millis(11));
  const std::string result("verdict\0passed", 14);  // results are binary
  Result<bool> first = s().record_result(j, epoch, test::output_result(result));
  REQUIRE(first.ok());
  CHECK(*first);
  Result<bool> second = s().record_result(j, epoch, test::output_result("other"));
  REQUIRE(second.ok());
  CHECK_FALSE(*second);
  JobRow row = get(j);
  CHECK(row.state == JobState::done);
  CHECK(row.result->stdout_data == result);
  CHECK(row.finished_ms == clock.wall_ms());
  CHECK(row.agent_id == "agent-a");
  CHECK_FALSE(*s().record_result(j + 100, 1, test::output_result("nobody asked")));
}

TEST_CASE_FIXTURE(StoreFixture, "a result with a stale epoch is not recorded") {
  int64_t j = job();
  int64_t old_epoch = *s().assign_job(j, "agent-a", 0);
  REQUIRE(s().requeue_job(j).ok());  // agent-a was lost
  int64_t new_epoch = *s().assign_job(j, "agent-b", 1);
  REQUIRE(new_epoch > old_epoch);

  Result<bool> stale =
      s().record_result(j, old_epoch, test::output_result("late result from agent-a"));
  REQUIRE(stale.ok());
  CHECK_FALSE(*stale);
  JobRow row = get(j);
  CHECK(row.state == JobState::assigned);
  CHECK_FALSE(row.result);
  CHECK(row.epoch == new_epoch);

  CHECK(*s().record_result(j, new_epoch, test::output_result("fresh")));
  CHECK(get(j).result->stdout_data == "fresh");
}

TEST_CASE_FIXTURE(StoreFixture, "a cancelled job drops results") {
  int64_t j = job();
  int64_t epoch = *s().assign_job(j, "agent-a", 0);
  REQUIRE(s().cancel_job(j).ok());
  CHECK(s().cancel_job(j).ok());  // idempotent
  CHECK_FALSE(*s().record_result(j, epoch, test::output_result("too late")));
  JobRow row = get(j);
  CHECK(row.state == JobState::cancelled);
  CHECK_FALSE(row.result);
  CHECK(row.agent_id == "agent-a");  // so the holder can be told to stop

  int64_t done = job();
  int64_t e = *s().assign_job(done, "agent-a", 0);
  REQUIRE(*s().record_result(done, e, test::output_result("ok")));
  CHECK(s().cancel_job(done).code() == Code::failed_precondition);
  CHECK(s().cancel_job(done + 100).code() == Code::not_found);
}

TEST_CASE_FIXTURE(StoreFixture,
                  "group commit: a rolled-back batch is gone, a committed one lasts") {
  REQUIRE(s().begin().ok());
  CHECK(s().in_batch());
  CHECK(s().begin().code() == Code::failed_precondition);
  int64_t kept = job();
  REQUIRE(s().assign_job(kept, "agent-a", 0).ok());
  REQUIRE(s().commit().ok());
  CHECK_FALSE(s().in_batch());

  REQUIRE(s().begin().ok());
  int64_t dropped = job();
  REQUIRE(s().requeue_job(kept).ok());
  CHECK(get(dropped).state == JobState::queued);  // the batch sees its own writes
  s().rollback();
  CHECK_FALSE(s().in_batch());
  CHECK(s().get_job(dropped).status().code() == Code::not_found);
  CHECK(get(kept).epoch == 1);
  CHECK(s().commit().code() == Code::failed_precondition);

  reopen();
  JobRow row = get(kept);
  CHECK(row.state == JobState::assigned);
  CHECK(row.epoch == 1);
  CHECK(*s().count_jobs(JobState::assigned) == 1);
  CHECK(*s().count_jobs(JobState::queued) == 0);
}

TEST_CASE_FIXTURE(StoreFixture, "a failed mutation leaves the rest of its batch intact") {
  int64_t c = campaign();
  REQUIRE(s().begin().ok());
  int64_t t = task(c);
  AgentRow agent{"agent-a", "inc-1", "host-a", AgentState::live};
  DeviceRow d0{"", 0, "cuda", "h100", "H100", 80'000};
  CHECK(s().upsert_agent(agent, {d0, d0}).code() == Code::invalid_argument);  // duplicate device
  StepRow step;
  step.task_id = t;
  step.role = Role::coder;
  REQUIRE(s().record_step(step).ok());
  REQUIRE(s().commit().ok());
  CHECK(s().get_task(t)->steps_used == 1);
  CHECK(s().agents()->empty());
}

TEST_CASE_FIXTURE(StoreFixture, "jobs_in_state orders by priority, then FIFO") {
  int64_t a = job(0), b = job(5), c = job(0), d = job(5), e = job(1);
  Result<std::vector<JobRow>> queued = s().jobs_in_state(JobState::queued);
  REQUIRE(queued.ok());
  std::vector<int64_t> ids;
  for (const JobRow& r : *queued) ids.push_back(r.id);
  CHECK(ids == std::vector<int64_t>{b, d, e, a, c});

  queued = s().jobs_in_state(JobState::queued, 2);
  REQUIRE(queued->size() == 2);
  CHECK((*queued)[1].id == d);

  REQUIRE(s().assign_job(e, "agent-a", 2).ok());
  REQUIRE(s().assign_job(a, "agent-a", 1).ok());
  REQUIRE(s().assign_job(c, "agent-b", 0).ok());
  Result<std::vector<JobRow>> held = s().jobs_of_agent("agent-a", JobState::assigned);
  REQUIRE(held.ok());
  REQUIRE(held->size() == 2);
  CHECK((*held)[0].id == a);
  CHECK((*held)[1].id == e);
  CHECK(*s().count_jobs(JobState::queued) == 2);
}

TEST_CASE_FIXTURE(StoreFixture, "upserting an agent replaces its device list") {
  AgentRow agent{"agent-a", "inc-1", "host-a", AgentState::live, false, R"({"python":"3.11"})"};
  std::vector<DeviceRow> devices = {{"", 0, "cuda", "h100", "H100", 80'000},
                                    {"", 1, "cuda", "h100", "H100", 80'000},
                                    {"", 0, "cpu", "x86_64", "cpu", 0}};
  REQUIRE(s().upsert_agent(agent, devices).ok());
  CHECK(s().devices_of("agent-a")->size() == 3);
  REQUIRE(s().set_agent_drained("agent-a", true).ok());

  clock.advance(Millis(100));
  agent.incarnation = "inc-2";
  REQUIRE(s().upsert_agent(agent, {{"", 2, "cuda", "a100", "A100", 40'000}}).ok());
  Result<std::vector<DeviceRow>> now = s().devices_of("agent-a");
  REQUIRE(now.ok());
  REQUIRE(now->size() == 1);
  CHECK((*now)[0].agent_id == "agent-a");
  CHECK((*now)[0].index == 2);
  CHECK((*now)[0].arch == "a100");
  CHECK((*now)[0].memory_mb == 40'000);

  Result<std::vector<AgentRow>> all = s().agents();
  REQUIRE(all.ok());
  REQUIRE(all->size() == 1);
  CHECK((*all)[0].incarnation == "inc-2");
  CHECK((*all)[0].drained);  // a drain outlives re-registration
  CHECK((*all)[0].registered_ms == clock.wall_ms());
  CHECK((*all)[0].capabilities == R"({"python":"3.11"})");

  clock.advance(Millis(100));
  REQUIRE(s().touch_agent("agent-a").ok());
  REQUIRE(s().set_agent_state("agent-a", AgentState::lost).ok());
  all = s().agents();
  CHECK((*all)[0].last_seen_ms == clock.wall_ms());
  CHECK((*all)[0].state == AgentState::lost);
  CHECK(s().touch_agent("agent-z").code() == Code::not_found);
  CHECK(s().set_agent_state("agent-z", AgentState::lost).code() == Code::not_found);
}

TEST_CASE_FIXTURE(StoreFixture, "destroying the store mid-batch loses only that batch") {
  int64_t committed = job();
  REQUIRE(s().begin().ok());
  int64_t lost = job();
  REQUIRE(s().assign_job(committed, "agent-a", 0).ok());
  store.reset();  // no commit

  reopen();
  CHECK(get(committed).state == JobState::queued);
  CHECK(get(committed).epoch == 0);
  CHECK(s().get_job(lost).status().code() == Code::not_found);
}

TEST_CASE_FIXTURE(StoreFixture, "a process killed mid-batch loses only that batch") {
  store.reset();
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The child: commit one batch, leave a second open, and die without cleaning up.
    Result<std::unique_ptr<Store>> child = Store::open(db_path, clock);
    if (!child.ok()) _exit(2);
    Store& cs = **child;
    NewJob j;
    j.request.argv = {"committed"};
    if (!cs.begin().ok() || !cs.enqueue_job(j).ok() || !cs.commit().ok()) _exit(3);
    j.request.argv = {"in flight"};
    if (!cs.begin().ok()) _exit(4);
    for (int i = 0; i < 1000; ++i) {
      if (!cs.enqueue_job(j).ok()) _exit(5);
    }
    _exit(0);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);

  reopen();
  Result<std::vector<JobRow>> jobs = s().jobs_in_state(JobState::queued);
  REQUIRE(jobs.ok());
  REQUIRE(jobs->size() == 1);
  CHECK(s().get_job((*jobs)[0].id)->request.argv == std::vector<std::string>{"committed"});
}

TEST_CASE_FIXTURE(StoreFixture, "a read-only store reads and refuses writes") {
  int64_t j = job();
  Result<std::unique_ptr<Store>> ro = Store::open_readonly(db_path, clock);
  REQUIRE_MESSAGE(ro.ok(), ro.status().to_string());
  CHECK((*ro)->get_job(j)->request.argv == std::vector<std::string>{"spec"});
  Result<int64_t> write = (*ro)->enqueue_job(NewJob{});
  CHECK_FALSE(write.ok());
  CHECK(write.status().message().find("enqueue_job") != std::string::npos);
}

TEST_CASE_FIXTURE(StoreFixture, "a campaign is found by its content hash and lists its tasks") {
  auto id = s().create_campaign("sweep", "name = \"sweep\"", "abc123", Workflow::coder_only);
  REQUIRE(id.ok());
  task(*id, "N=1");
  task(*id, "N=2");
  auto found = s().campaign_by_hash("abc123");
  REQUIRE(found.ok());
  REQUIRE(found->has_value());
  CHECK((*found)->id == *id);
  CHECK((*found)->workflow == Workflow::coder_only);
  auto missing = s().campaign_by_hash("other");
  REQUIRE(missing.ok());
  CHECK_FALSE(missing->has_value());
  auto tasks = s().tasks_of_campaign(*id);
  REQUIRE(tasks.ok());
  CHECK(tasks->size() == 2);
  CHECK(s().unfinished_tasks()->size() == 2);
  REQUIRE(s().set_task_state((*tasks)[0].id, TaskState::passed, Outcome::passed, "passed").ok());
  CHECK(s().unfinished_tasks()->size() == 1);
  REQUIRE(s().set_campaign_state(*id, CampaignState::finished).ok());
  CHECK(s().get_campaign(*id)->state == CampaignState::finished);
}

TEST_CASE_FIXTURE(StoreFixture, "a conductor job is found again by task and step seq") {
  int64_t t = task(campaign());
  NewJob j;
  j.task_id = t;
  j.task_seq = 3;
  j.kind = JobKind::verify;
  auto id = s().enqueue_job(j);
  REQUIRE(id.ok());
  auto found = s().job_for_task_seq(t, 3);
  REQUIRE(found.ok());
  REQUIRE(found->has_value());
  CHECK((*found)->id == *id);
  CHECK((*found)->task_seq == 3);
  CHECK_FALSE(s().job_for_task_seq(t, 4)->has_value());
}

TEST_CASE_FIXTURE(StoreFixture, "job leases of a campaign, or of every job, by id") {
  int64_t c1 = campaign();
  Result<int64_t> c2 = s().create_campaign("other", "[campaign]\n", "hash-2");
  REQUIRE(c2.ok());
  int64_t t1 = task(c1, "a"), t2 = task(c1, "b"), t3 = task(*c2);
  auto enqueue = [&](std::optional<int64_t> task_id) {
    NewJob j;
    j.task_id = task_id;
    j.backend = "cuda";
    j.arch = "h100";
    j.request.files["big"] = std::string(10'000, 's');  // never read by job_leases
    Result<int64_t> id = s().enqueue_job(j);
    REQUIRE(id.ok());
    return *id;
  };
  int64_t a = enqueue(t2), b = enqueue(t3), c = enqueue(std::nullopt), d = enqueue(t1);
  clock.advance(Millis(100));
  Result<int64_t> epoch = s().assign_job(a, "agent-a", 3);
  REQUIRE(epoch.ok());
  clock.advance(Millis(250));
  REQUIRE(*s().record_result(a, *epoch, test::output_result(std::string(10'000, 'r'))));

  Result<std::vector<JobLease>> leases = s().job_leases(c1);
  REQUIRE(leases.ok());
  REQUIRE(leases->size() == 2);
  const JobLease& done = (*leases)[0];
  CHECK(done.id == a);
  CHECK(done.task_id == t2);
  CHECK(done.backend == "cuda");
  CHECK(done.arch == "h100");
  CHECK(done.state == JobState::done);
  CHECK(done.agent_id == "agent-a");
  CHECK(done.device_index == 3);
  CHECK(done.finished_ms - done.assigned_ms == 250);
  CHECK((*leases)[1].id == d);
  CHECK((*leases)[1].state == JobState::queued);
  CHECK((*leases)[1].device_index == -1);
  CHECK((*leases)[1].assigned_ms == 0);

  leases = s().job_leases(0);
  REQUIRE(leases.ok());
  std::vector<int64_t> every;
  for (const JobLease& l : *leases) every.push_back(l.id);
  CHECK(every == std::vector<int64_t>{a, b, c, d});  // plain jobs too
  CHECK(s().job_leases(4242)->empty());
}

namespace {

JobFilter filter(std::optional<JobState> state, std::optional<int64_t> task_id = std::nullopt) {
  JobFilter f;
  f.state = state;
  f.task_id = task_id;
  return f;
}

}  // namespace

// Jobs of two tasks and plain ones, queued, assigned, done and cancelled, priorities mixed
// (so an order by priority would show).
struct ListingFixture : StoreFixture {
  int64_t t1 = 0, t2 = 0;
  std::vector<int64_t> jobs;  // by id

  ListingFixture() {
    int64_t c = campaign();
    t1 = task(c, "a");
    t2 = task(c, "b");
    for (int i = 0; i < 9; ++i) {
      NewJob j;
      j.task_id = i % 3 == 0 ? std::nullopt : std::optional<int64_t>(i % 3 == 1 ? t1 : t2);
      j.request.files["big"] = std::string(10'000, 's');  // never read by list_jobs
      j.priority = (i * 7) % 4;
      Result<int64_t> id = s().enqueue_job(j);
      REQUIRE(id.ok());
      jobs.push_back(*id);
    }
    // 0 plain, 1 t1, 2 t2, 3 plain, 4 t1, 5 t2, 6 plain, 7 t1, 8 t2.
    for (size_t i : {1, 2, 4, 5}) REQUIRE(s().assign_job(jobs[i], "agent-a", 0).ok());
    for (size_t i : {1, 5})
      REQUIRE(*s().record_result(jobs[i], 1, test::output_result("result " + std::to_string(i))));
    REQUIRE(s().cancel_job(jobs[7]).ok());
  }
  std::vector<JobRow> list(const JobFilter& f) {
    std::vector<JobRow> out;
    Status st = s().list_jobs(f, [&](const JobRow& r) { out.push_back(r); });
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    return out;
  }
  std::vector<int64_t> ids_of(const JobFilter& f) {
    std::vector<int64_t> out;
    for (const JobRow& r : list(f)) out.push_back(r.id);
    return out;
  }
  std::vector<int64_t> pick(std::initializer_list<size_t> at) {
    std::vector<int64_t> out;
    for (size_t i : at) out.push_back(jobs[i]);
    return out;
  }
};

TEST_CASE_FIXTURE(ListingFixture, "list_jobs without a filter: every job by id, request not read") {
  std::vector<JobRow> all = list({});
  REQUIRE(all.size() == jobs.size());
  CHECK(ids_of({}) == jobs);
  const JobRow& done = all[1];
  CHECK(done.state == JobState::done);
  CHECK(done.task_id == t1);
  CHECK(done.agent_id == "agent-a");
  CHECK(done.result->stdout_data == "result 1");
  CHECK(done.request.files.empty());
  CHECK_FALSE(all[0].result);
  CHECK(get(jobs[1]).request.files.at("big").size() == 10'000);  // get_job reads it
}

TEST_CASE_FIXTURE(ListingFixture, "list_jobs filters by state") {
  CHECK(ids_of(filter(JobState::queued)) == pick({0, 3, 6, 8}));
  CHECK(ids_of(filter(JobState::assigned)) == pick({2, 4}));
  CHECK(ids_of(filter(JobState::done)) == pick({1, 5}));
  CHECK(ids_of(filter(JobState::cancelled)) == pick({7}));
}

TEST_CASE_FIXTURE(ListingFixture, "list_jobs filters by task, and by task and state") {
  CHECK(ids_of(filter(std::nullopt, t1)) == pick({1, 4, 7}));
  CHECK(ids_of(filter(std::nullopt, t2)) == pick({2, 5, 8}));
  CHECK(ids_of(filter(JobState::done, t2)) == pick({5}));
  CHECK(ids_of(filter(JobState::queued, t1)).empty());
  CHECK(ids_of(filter(std::nullopt, 4242)).empty());
}

TEST_CASE_FIXTURE(ListingFixture,
                  "list_jobs pages: offset and limit give consecutive pages by id") {
  for (std::optional<JobState> state :
       {std::optional<JobState>(), std::optional<JobState>(JobState::queued)}) {
    std::vector<int64_t> whole = ids_of(filter(state)), paged;
    CHECK(whole == (state ? pick({0, 3, 6, 8}) : jobs));
    for (int64_t offset = 0;; offset += 2) {
      JobFilter f = filter(state);
      f.offset = offset;
      f.limit = 2;
      std::vector<int64_t> page = ids_of(f);
      CHECK(page.size() <= 2);
      if (page.empty()) break;
      paged.insert(paged.end(), page.begin(), page.end());
    }
    CHECK(paged == whole);
  }
  JobFilter f = filter(std::nullopt, t1);
  f.offset = 1;
  CHECK(ids_of(f) == pick({4, 7}));  // an offset alone skips, then lists the rest
  f.limit = 1;
  CHECK(ids_of(f) == pick({4}));
  f.state = JobState::cancelled;
  f.offset = 0;
  CHECK(ids_of(f) == pick({7}));
  f.offset = 1;
  CHECK(ids_of(f).empty());
  JobFilter none;
  none.limit = 0;
  CHECK(ids_of(none).empty());
}

TEST_CASE_FIXTURE(StoreFixture, "an llm call is stored once under its request key") {
  int64_t t = task(campaign());
  LlmCallRow call = test::llm_call(t, Role::coder, "k1");
  call.response = "{\"content\":\"code\"}";
  call.prompt_tokens = 100;
  call.completion_tokens = 50;
  call.cost_usd = 0.25;
  REQUIRE(s().record_llm_call(call).ok());
  call.response = "a second answer";
  REQUIRE(s().record_llm_call(call).ok());  // same key: ignored
  auto found = s().find_llm_call("k1");
  REQUIRE(found.ok());
  REQUIRE(found->has_value());
  CHECK((*found)->response == "{\"content\":\"code\"}");
  CHECK((*found)->cost_usd == doctest::Approx(0.25));
  auto usage = s().llm_usage_of_task(t);
  REQUIRE(usage.ok());
  CHECK(usage->calls == 1);
  CHECK(usage->prompt_tokens == 100);
  CHECK_FALSE(s().find_llm_call("k2")->has_value());
}

TEST_CASE_FIXTURE(StoreFixture,
                  "a pending llm call is no answer: its answer replaces it, and the pending ones "
                  "left are taken once") {
  int64_t t = task(campaign());
  LlmCallRow call = test::llm_call(t, Role::coder, "");
  call.status = LlmCallState::pending;
  for (const char* key : {"asked", "answered", "failed"}) {
    call.request_key = key;
    REQUIRE(s().record_llm_call(call).ok());
  }
  CHECK_FALSE(s().find_llm_call("asked")->has_value());  // asked is not answered
  CHECK(s().llm_usage_of_task(t)->calls == 0);
  call.request_key = "answered";
  call.status = LlmCallState::ok;
  call.response = "{\"content\":\"code\"}";
  call.prompt_tokens = 7;
  REQUIRE(s().record_llm_call(call).ok());
  call.status = LlmCallState::pending;  // asked again after its answer: the answer stays
  REQUIRE(s().record_llm_call(call).ok());
  REQUIRE(s().find_llm_call("answered")->has_value());
  CHECK((*s().find_llm_call("answered"))->response == "{\"content\":\"code\"}");
  REQUIRE(s().forget_pending_llm_call("failed").ok());
  REQUIRE(s().forget_pending_llm_call("answered").ok());  // an answer is never forgotten
  CHECK(s().find_llm_call("answered")->has_value());
  auto usage = s().llm_usage_of_task(t);
  CHECK(usage->calls == 1);
  CHECK(usage->prompt_tokens == 7);
  CHECK(s().take_pending_llm_calls().value() == 1);  // "asked"
  CHECK(s().take_pending_llm_calls().value() == 0);
  CHECK(s().find_llm_call("answered")->has_value());
}

TEST_CASE_FIXTURE(StoreFixture,
                  "atomically outside a batch is one transaction around the operations inside it") {
  int64_t t = task(campaign());
  StepRow step;
  step.task_id = t;
  step.role = Role::designer;
  REQUIRE(s().atomically([&] {
               KF_RETURN_IF_ERROR(s().set_task_state(t, TaskState::running));
               return s().record_step(step).status();
             })
              .ok());
  CHECK(s().get_task(t)->state == TaskState::running);
  Status undone = s().atomically([&] {
    KF_RETURN_IF_ERROR(s().record_step(step).status());
    KF_RETURN_IF_ERROR(s().set_task_state(t, TaskState::failed, Outcome::infra_error, "x"));
    return invalid_argument("changed my mind");
  });
  CHECK(undone.message() == "changed my mind");
  CHECK(s().get_task(t)->state == TaskState::running);
  CHECK(s().steps_of(t)->size() == 1);
}

TEST_CASE_FIXTURE(StoreFixture,
                  "an injected fault fails the named operation, writes nothing, and a failed "
                  "commit rolls the batch back") {
  int64_t t = task(campaign());
  s().inject_fault_for_test([](std::string_view op) {
    return op == "record_step" || op == "commit" ? io_error("injected: " + std::string(op))
                                                 : Status();
  });
  REQUIRE(s().begin().ok());
  REQUIRE(s().set_task_state(t, TaskState::running).ok());
  StepRow step;
  step.task_id = t;
  step.role = Role::designer;
  auto recorded = s().record_step(step);
  CHECK(recorded.status().message() == "injected: record_step");
  Status committed = s().commit();
  CHECK(committed.message() == "injected: commit");
  CHECK_FALSE(s().in_batch());
  s().inject_fault_for_test(nullptr);
  CHECK(s().get_task(t)->state == TaskState::pending);  // the batch was rolled back
  CHECK(s().steps_of(t)->empty());
  REQUIRE(s().record_step(step).ok());
}

TEST_CASE_FIXTURE(StoreFixture, "llm usage by role sums a campaign's calls per role") {
  int64_t c = campaign();
  int64_t other = campaign();
  int64_t t1 = task(c, "shape0");
  int64_t t2 = task(c, "shape1");
  int64_t elsewhere = task(other, "shape0");
  int n = 0;
  auto call = [&](std::optional<int64_t> task_id, const std::string& role, int64_t prompt,
                  int64_t completion, double cost, LlmCallState status = LlmCallState::ok) {
    LlmCallRow row =
        test::llm_call(task_id, parse_enum<Role>(role).value(), "key" + std::to_string(++n));
    row.status = status;
    row.prompt_tokens = prompt;
    row.completion_tokens = completion;
    row.cost_usd = cost;
    REQUIRE(s().record_llm_call(row).ok());
  };
  call(t1, "designer", 100, 10, 0.01);
  call(t1, "coder", 200, 20, 0.02);
  call(t2, "coder", 300, 30, 0.03);
  call(t2, "coder", 0, 0, 0, LlmCallState::error);
  call(elsewhere, "coder", 5000, 500, 5.0);         // another campaign's
  call(std::nullopt, "conductor", 7000, 700, 7.0);  // no task: no campaign's

  auto usage = s().llm_usage_by_role(c);
  REQUIRE_MESSAGE(usage.ok(), usage.status().to_string());
  REQUIRE(usage->size() == 2);
  const RoleUsage& coder = (*usage)[0];  // by role name
  const RoleUsage& designer = (*usage)[1];
  CHECK(coder.role == Role::coder);
  CHECK(coder.usage.calls == 3);
  CHECK(coder.usage.prompt_tokens == 500);
  CHECK(coder.usage.completion_tokens == 50);
  CHECK(coder.usage.cost_usd == doctest::Approx(0.05));
  CHECK(coder.errors == 1);
  CHECK(designer.role == Role::designer);
  CHECK(designer.usage.calls == 1);
  CHECK(designer.usage.prompt_tokens == 100);
  CHECK(designer.errors == 0);
  // The roles add up to the campaign's total.
  auto total = s().llm_usage_of_campaign(c);
  REQUIRE(total.ok());
  CHECK(total->calls == coder.usage.calls + designer.usage.calls);
  CHECK(total->prompt_tokens == coder.usage.prompt_tokens + designer.usage.prompt_tokens);

  // Campaign 0: every call, with or without a task.
  auto all = s().llm_usage_by_role(0);
  REQUIRE(all.ok());
  REQUIRE(all->size() == 3);
  CHECK((*all)[0].usage.calls == 4);
  CHECK((*all)[1].role == Role::conductor);
  CHECK((*all)[1].usage.prompt_tokens == 7000);

  auto none = s().llm_usage_by_role(campaign());
  REQUIRE(none.ok());
  CHECK(none->empty());
}

// ---- Texts stored once (migration 0004) ----

namespace {

TaskSpec sweep_spec(const std::string& task_id, const std::string& desc) {
  TaskSpec spec = test::task_spec("softmax", task_id);
  spec.task_desc = desc;
  spec.backend = "cpu";
  spec.arch = "x86_64";
  spec.impl_type = "cpp";
  return spec;
}

// A task file of ~3 KB with constants N and dtype set as given.
std::string task_file(int n, const std::string& dtype) {
  return "\"\"\"Softmax.\"\"\"\n" + std::string(3000, '#') + "\nN = " + std::to_string(n) +
         "\ndtype = \"" + dtype + "\"\n\nclass Model: ...\n\ndef get_inputs(): ...\n";
}

}  // namespace

TEST_CASE_FIXTURE(StoreFixture,
                  "a sweep's tasks share their task file's blob and read back their own text") {
  int64_t c = campaign();
  std::vector<int64_t> ids;
  for (int n = 0; n < 50; ++n) {
    ids.push_back(
        s().create_task(c, sweep_spec("N=" + std::to_string(n), task_file(1000 + n, "float32")))
            .value());
  }
  for (int n = 0; n < 50; ++n)
    CHECK(s().get_task(ids[n]).value().spec.task_desc == task_file(1000 + n, "float32"));
  // One blob; each task keeps only the span that differs.
  CHECK(raw_query(db_path, "SELECT COUNT(*) FROM blobs") == std::vector<std::string>{"1"});
  CHECK(raw_query(db_path, "SELECT MAX(length(task_desc_middle)) <= 4 FROM tasks") ==
        std::vector<std::string>{"1"});
  auto all = s().tasks_of_campaign(c).value();
  REQUIRE(all.size() == 50);
  CHECK(all[49].spec.task_desc == task_file(1049, "float32"));
}

TEST_CASE_FIXTURE(StoreFixture, "the same text twice is one blob, whatever was stored between") {
  int64_t c = campaign();
  const std::string other(2000, 'x');
  int64_t a = s().create_task(c, sweep_spec("a", task_file(1, "float32"))).value();
  int64_t b = s().create_task(c, sweep_spec("b", other)).value();
  int64_t again = s().create_task(c, sweep_spec("c", task_file(1, "float32"))).value();
  CHECK(raw_query(db_path, "SELECT COUNT(*) FROM blobs") == std::vector<std::string>{"2"});
  CHECK(s().get_task(a).value().spec.task_desc == task_file(1, "float32"));
  CHECK(s().get_task(b).value().spec.task_desc == other);
  CHECK(s().get_task(again).value().spec.task_desc == task_file(1, "float32"));
  // Candidates (verify_only) the same way; none is no blob.
  TaskSpec with = sweep_spec("d", other);
  with.candidate = "def softmax_cpp_torch(x): ...\n";
  int64_t d = s().create_task(c, with).value();
  CHECK(s().get_task(d).value().spec.candidate == with.candidate);
  CHECK(s().get_task(a).value().spec.candidate.empty());
}

TEST_CASE_FIXTURE(StoreFixture,
                  "a text whose blob was rolled back with its batch is stored again, not half") {
  int64_t c = campaign();
  REQUIRE(s().begin().ok());
  REQUIRE(s().create_task(c, sweep_spec("a", task_file(1, "float32"))).ok());
  s().rollback();  // the blob the next text would be an edit of is gone
  Result<int64_t> b = s().create_task(c, sweep_spec("b", task_file(2, "float32")));
  REQUIRE_MESSAGE(b.ok(), b.status().to_string());
  CHECK(s().get_task(*b).value().spec.task_desc == task_file(2, "float32"));
  CHECK(raw_query(db_path, "SELECT COUNT(*) FROM blobs") == std::vector<std::string>{"1"});
}

// Task counts as Store::task_counts gives them: every state, 0 where none.
using Counts = std::map<TaskState, int64_t>;
Counts counts_of(std::initializer_list<std::pair<const TaskState, int64_t>> some) {
  Counts out;
  for (TaskState state : all_of<TaskState>()) out[state] = 0;
  for (const auto& [state, n] : some) out[state] = n;
  return out;
}

// Issue 21: the counts are kept with every write of a task's state (migration 0013), not
// counted from the tasks; they must say what a count of the rows says after every kind of
// change, a rolled-back batch and a refused batch of tasks included.
TEST_CASE_FIXTURE(StoreFixture,
                  "task counts follow inserts, state changes, campaign cancels and a rollback") {
  int64_t a = campaign();
  Result<int64_t> other = s().create_campaign("other", "[campaign]\n", "hash-other");
  REQUIRE(other.ok());
  int64_t b = *other;
  std::vector<int64_t> ta;
  for (int i = 0; i < 4; ++i) ta.push_back(task(a, "a" + std::to_string(i)));
  int64_t tb = task(b, "b0");
  // A batch (as a submission stores them) is counted once it is stored, and not at all when
  // refused.
  auto batch = [&](std::vector<std::string> ids) {
    return s().create_tasks(a, [&](const std::function<Status(const TaskSpec&)>& add) {
      for (const auto& id : ids) KF_RETURN_IF_ERROR(add(test::task_spec("relu", id)));
      return Status();
    });
  };
  REQUIRE(batch({"a4", "a5"}).ok());
  CHECK(batch({"a6", "a4"}).code() == Code::already_exists);  // a4 again: nothing of it stored
  REQUIRE(s().set_task_state(ta[0], TaskState::passed, Outcome::passed, "passed").ok());
  REQUIRE(s().set_task_state(ta[1], TaskState::running).ok());
  auto counted = [&](int64_t campaign_id) {  // what the rows say
    std::string where =
        campaign_id == 0 ? "" : " WHERE campaign_id = " + std::to_string(campaign_id);
    Counts out = counts_of({});
    for (const std::string& row : raw_query(
             db_path, "SELECT state || '=' || COUNT(*) FROM tasks" + where + " GROUP BY state")) {
      out[parse_enum<TaskState>(row.substr(0, row.find('='))).value()] =
          std::stoll(row.substr(row.find('=') + 1));
    }
    return out;
  };
  auto check_counts = [&] {
    for (int64_t id : {int64_t{0}, a, b}) {
      auto kept = s().task_counts(id);
      REQUIRE(kept.ok());
      CHECK(*kept == counted(id));
    }
  };
  CHECK(*s().task_counts(a) ==
        counts_of({{TaskState::passed, 1}, {TaskState::pending, 4}, {TaskState::running, 1}}));
  check_counts();

  // A campaign's cancel changes its unfinished tasks only, and says how many.
  auto cancelled = s().cancel_campaign_tasks(a, "cancelled by operator");
  REQUIRE(cancelled.ok());
  CHECK(*cancelled == 5);
  CHECK(*s().task_counts(a) == counts_of({{TaskState::passed, 1}, {TaskState::cancelled, 5}}));
  CHECK(*s().task_counts(b) == counts_of({{TaskState::pending, 1}}));
  TaskRow t1 = *s().get_task(ta[1]);
  CHECK(t1.state == TaskState::cancelled);
  CHECK(t1.verdict == Outcome::cancelled);
  CHECK(t1.reason == "cancelled by operator");
  CHECK(*s().any_cancelled_with(a, "cancelled by operator"));
  CHECK_FALSE(*s().any_cancelled_with(b, "cancelled by operator"));
  check_counts();

  // A rolled-back batch leaves the counts as the rows are.
  REQUIRE(s().begin().ok());
  (void)task(b, "b1");
  REQUIRE(s().set_task_state(tb, TaskState::failed, Outcome::crashed, "crashed").ok());
  s().rollback();
  CHECK(*s().task_counts(b) == counts_of({{TaskState::pending, 1}}));
  check_counts();

  // Resume: the cancelled tasks are pending again, without verdict or reason.
  auto resumed = s().resume_campaign_tasks(a);
  REQUIRE(resumed.ok());
  CHECK(*resumed == 5);
  t1 = *s().get_task(ta[1]);
  CHECK(t1.state == TaskState::pending);
  CHECK_FALSE(t1.verdict.has_value());
  CHECK(t1.reason.empty());
  CHECK(*s().task_counts(a) == counts_of({{TaskState::passed, 1}, {TaskState::pending, 5}}));
  CHECK(*s().task_counts(0) == counts_of({{TaskState::passed, 1}, {TaskState::pending, 6}}));
  check_counts();
}

// The migration counts the tasks a database already holds (run here on its own, whatever
// migrations come after it).
TEST_CASE_FIXTURE(StoreFixture, "the task counts migration counts the tasks already stored") {
  int64_t a = campaign();
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(task(a, "t" + std::to_string(i)));
  REQUIRE(s().set_task_state(ids[0], TaskState::passed, Outcome::passed, "passed").ok());
  store.reset();
  const Migration* counts = nullptr;
  for (const Migration& m : migrations()) {
    if (std::string(m.name).find("campaign_task_counts") != std::string::npos) counts = &m;
  }
  REQUIRE(counts != nullptr);
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
  std::string sql =
      "BEGIN; DROP TABLE campaign_task_counts; " + std::string(counts->sql) + "; COMMIT;";
  char* error = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  std::string message = error ? error : "";
  sqlite3_free(error);
  sqlite3_close(db);
  REQUIRE_MESSAGE(rc == SQLITE_OK, message);
  reopen();
  CHECK(*s().task_counts(a) == counts_of({{TaskState::passed, 1}, {TaskState::pending, 2}}));
}

TEST_CASE_FIXTURE(StoreFixture, "every word of every stored vocabulary is read back as written") {
  for (Workflow w : all_of<Workflow>()) {
    const int64_t id = s().create_campaign("c", "", "hash-" + std::string(to_string(w)), w).value();
    for (CampaignState state : all_of<CampaignState>()) {
      REQUIRE(s().set_campaign_state(id, state).ok());
      const CampaignRow row = s().get_campaign(id).value();
      CHECK(row.workflow == w);
      CHECK(row.state == state);
    }
  }
  const int64_t t = task(campaign());
  for (TaskState state : all_of<TaskState>()) {
    REQUIRE(s().set_task_state(t, state,
                               finished(state) ? std::optional(Outcome::passed) : std::nullopt)
                .ok());
    CHECK(s().get_task(t).value().state == state);
    TaskQuery query;
    query.state = state;
    CHECK(s().task_ids(query).value() == std::vector<int64_t>{t});
  }
  for (AgentState state : all_of<AgentState>()) {
    REQUIRE(s().upsert_agent(AgentRow{"agent-a", "inc-1", "host-a", state}, {}).ok());
    CHECK(s().agent("agent-a").value()->state == state);
  }
  for (JobKind kind : all_of<JobKind>()) {
    NewJob j;
    j.kind = kind;
    CHECK(get(s().enqueue_job(j).value()).kind == kind);
  }
  for (Role role : all_of<Role>()) {
    const LlmCallRow call = test::llm_call(t, role, "key-" + std::string(to_string(role)));
    REQUIRE(s().record_llm_call(call).ok());
    CHECK(s().find_llm_call(call.request_key).value()->role == role);
  }
}

TEST_CASE_FIXTURE(
    StoreFixture,
    "a stored word this kforge does not know is an error naming its table, column and value") {
  const int64_t c = campaign();
  const int64_t t = task(c);
  REQUIRE(s().upsert_agent(AgentRow{"agent-a", "inc-1", "host-a", AgentState::live}, {}).ok());
  NewJob j;
  j.task_id = t;
  const int64_t job_id = s().enqueue_job(j).value();
  REQUIRE(s().record_llm_call(test::llm_call(t, Role::coder, "k")).ok());
  for (const char* sql :
       {"UPDATE campaigns SET workflow = 'freestyle'", "UPDATE tasks SET state = 'paused'",
        "UPDATE agents SET state = 'asleep'", "UPDATE jobs SET kind = 'shell'",
        "UPDATE llm_calls SET role = 'critic'"}) {
    raw_query(db_path, sql);
  }
  auto refused = [&](const Status& st, const std::string& words) {
    CAPTURE(st.to_string());
    CHECK(st.code() == Code::internal);
    CHECK(st.message().find("kforge.db: ") != std::string::npos);
    CHECK(st.message().find(words) != std::string::npos);
  };
  refused(s().get_campaign(c).status(),
          "get_campaign: campaigns.workflow holds 'freestyle'; the workflows this kforge knows are "
          "default, coder_only, "
          "verify_only");
  refused(s().campaigns().status(), "campaigns: campaigns.workflow holds 'freestyle'");
  refused(s().get_task(t).status(),
          "get_task: tasks.state holds 'paused'; the task states this kforge knows are pending, "
          "running, passed, failed, "
          "cancelled");
  refused(s().agents().status(),
          "agents: agents.state holds 'asleep'; the agent states this kforge knows are live, lost, "
          "gone");
  refused(s().get_job(job_id).status(),
          "get_job: jobs.kind holds 'shell'; the job kinds this kforge knows are exec, verify");
  refused(s().jobs_of_task(t).status(), "jobs_of_task: jobs.kind holds 'shell'");
  refused(s().find_llm_call("k").status(),
          "find_llm_call: llm_calls.role holds 'critic'; the roles this kforge knows are designer, "
          "coder, verifier, conductor");
  refused(s().llm_usage_by_role(c).status(), "llm_usage_by_role: llm_calls.role holds 'critic'");
}

TEST_CASE_FIXTURE(
    StoreFixture,
    "a running task's judged candidate with a verdict this kforge does not know is an "
    "error, not a guess") {
  const int64_t c = campaign();
  const int64_t t = task(c);
  REQUIRE(s().set_task_state(t, TaskState::running).ok());
  StepRow step;
  step.task_id = t;
  step.role = Role::verifier;
  step.verdict = Outcome::compile_error;
  CandidateRow candidate;
  candidate.task_id = t;
  candidate.step_id = s().record_step(step).value();
  candidate.verdict = Verdict::compile_error;
  REQUIRE(s().record_candidate(candidate).ok());
  auto steps = s().running_search_steps(c);
  REQUIRE(steps.ok());
  REQUIRE(steps->size() == 1);
  CHECK((*steps)[0].verdict == Verdict::compile_error);

  raw_query(db_path, "UPDATE candidates SET verdict = 'exploded'");
  const Status st = s().running_search_steps(c).status();
  CAPTURE(st.to_string());
  CHECK(st.code() == Code::internal);
  CHECK(st.message().find("kforge.db: running_search_steps: candidates.verdict holds 'exploded'; "
                          "the verdicts this kforge knows are passed, compile_error") !=
        std::string::npos);
}
