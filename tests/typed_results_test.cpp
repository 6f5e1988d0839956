// Typed job results in the store (schema/sql/0003_typed_results.sql): results of every
// kind round-trip through their columns, an older agent's verdict document becomes the typed
// verdict, and a database of schema 2, whose results are encoded protocol frames, migrates.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <cmath>

#include "common/protocol.h"
#include "common/sha256.h"
#include "common/verify_result.h"
#include "coordinator/intake/campaign.h"
#include "coordinator/operator/outcome.h"
#include "coordinator/store/migrations.h"
#include "coordinator/store/store.h"
#include "tests/support/fixtures.h"
#include "tests/support/support.h"

using namespace kforge;
using kforge::test::TempDir;

namespace {

// The judge's document for a precision mismatch, shaped as docs/harness.md shows it.
const char* kMismatchDoc = R"({"verdict": "precision_mismatch",
  "message": "trial 0 (seed 0), output 0: NaN positions differ",
  "input_error": "", "stage": "precision", "trials": 0,
  "checks": {"max_abs_error": "inf", "max_rel_error": 0.5, "mismatches": 163, "total": 100003,
             "first_mismatches": [{"index": [99840], "expected": -2.92, "actual": "nan"}],
             "dtype": "float32", "policy": "strict"},
  "versions": {"python": "3.11.2", "harness": "1"},
  "worker": {"exit_code": null, "signal": 0, "oom": false}})";

const char* kPassDoc = R"({"verdict": "passed", "message": "3 trials passed", "stage": "profile",
  "trials": 3,
  "checks": {"max_abs_error": 0.0, "max_rel_error": 0.0, "mismatches": 0, "total": 300},
  "profile": {"candidate": {"median_us": 10.0, "min_us": 9.0, "max_us": 12.0, "mean_us": 10.5, "runs": 50},
              "reference": {"median_us": 25.0, "min_us": 24.0, "max_us": 27.0, "mean_us": 25.2, "runs": 50},
              "speedup": 2.5, "suspicious": false, "method": "judge_clock", "warmup": 5,
              "worker_rtt_us": 31.5, "threads": null}})";

struct Fixture {
  TempDir dir;
  std::filesystem::path db_path = dir / "kforge.db";

  std::unique_ptr<Store> open() {
    auto s = Store::open(db_path);
    REQUIRE_MESSAGE(s.ok(), s.status().to_string());
    return std::move(s).value();
  }
  // A done job of `kind` holding `result`.
  int64_t done_job(Store& s, JobKind kind, const proto::JobResult& result) {
    NewJob j;
    j.kind = kind;
    j.request.argv = {"true"};
    int64_t id = s.enqueue_job(j).value();
    int64_t epoch = s.assign_job(id, "agent-a", 0).value();
    REQUIRE(s.record_result(id, epoch, result).value());
    return id;
  }
};

// Runs SQL with a separate connection; each `blobs` entry binds ?1, ?2, ... as a blob.
void raw_exec(const std::filesystem::path& path, const std::string& sql,
              const std::vector<std::string>& blobs = {}) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) ==
          SQLITE_OK);
  if (blobs.empty()) {
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    INFO(sql);
    REQUIRE_MESSAGE(rc == SQLITE_OK, (err ? err : ""));
  } else {
    sqlite3_stmt* stmt = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK);
    for (size_t i = 0; i < blobs.size(); ++i) {
      sqlite3_bind_blob(stmt, static_cast<int>(i + 1), blobs[i].data(),
                        static_cast<int>(blobs[i].size()), SQLITE_TRANSIENT);
    }
    REQUIRE(sqlite3_step(stmt) == SQLITE_DONE);
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
}

int64_t raw_count(const std::filesystem::path& path, const char* sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
  int64_t n = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return n;
}

}  // namespace

TEST_CASE_FIXTURE(Fixture, "an exec job's result round-trips through its columns") {
  auto s = open();
  proto::JobResult r;
  r.agent_id = "agent-a";
  r.exit_code = 3;
  r.signal = 9;
  r.timed_out = true;
  r.cancelled = true;
  r.stdout_data = std::string("out\0put", 7);
  r.stderr_data = "err";
  r.output_truncated = true;
  r.result_json = R"({"any": "document"})";
  r.started_ms = 1000;
  r.finished_ms = 2000;
  int64_t id = done_job(*s, JobKind::exec, r);
  JobRow row = s->get_job(id).value();
  REQUIRE(row.result);
  r.job = proto::JobRef{static_cast<uint64_t>(id), static_cast<uint64_t>(row.epoch)};
  CHECK(*row.result == r);
  CHECK_FALSE(row.result->verify);
}

TEST_CASE_FIXTURE(Fixture, "a verification result round-trips through its columns") {
  auto s = open();
  proto::JobResult r;
  r.agent_id = "agent-a";
  r.exit_code = 0;
  r.verify = verify_result_from_text(kPassDoc);
  int64_t id = done_job(*s, JobKind::verify, r);
  JobRow row = s->get_job(id).value();
  REQUIRE(row.result);
  REQUIRE(row.result->verify);
  CHECK(*row.result->verify == *r.verify);
  REQUIRE(row.result->verify->profile);
  CHECK(row.result->verify->profile->speedup == 2.5);
  CHECK(row.result->verify->profile->candidate.runs == 50);
}

TEST_CASE_FIXTURE(Fixture, "an older agent's verdict document is stored as the typed verdict") {
  auto s = open();
  proto::JobResult r;  // what an agent before JobResult::verify sends for a verify job
  r.agent_id = "agent-a";
  r.exit_code = 0;
  r.result_json = kMismatchDoc;
  int64_t id = done_job(*s, JobKind::verify, r);
  JobRow row = s->get_job(id).value();
  REQUIRE(row.result);
  REQUIRE(row.result->verify);
  CHECK(row.result->verify->verdict == Verdict::precision_mismatch);
  CHECK(row.result->verify->message == "trial 0 (seed 0), output 0: NaN positions differ");
  CHECK(row.result->result_json.empty());
  // An exec job's result.json stays what it was.
  int64_t exec = done_job(*s, JobKind::exec, r);
  CHECK(s->get_job(exec).value().result->result_json == kMismatchDoc);
  CHECK_FALSE(s->get_job(exec).value().result->verify);
}

TEST_CASE_FIXTURE(Fixture,
                  "a verifier step's result is stored as its verdict document and read back "
                  "typed") {
  auto s = open();
  const int64_t task =
      s->create_task(s->create_campaign("c", "").value(), test::task_spec()).value();
  StepRow verifier;
  verifier.task_id = task;
  verifier.role = Role::verifier;
  verifier.verdict = Outcome::passed;
  verifier.output = "not stored";  // a step with a result stores the result's document
  verifier.result = verify_result_from_text(kPassDoc);
  REQUIRE(s->record_step(verifier).ok());
  StepRow conductor;  // JSON of another role is no verdict document
  conductor.task_id = task;
  conductor.role = Role::conductor;
  conductor.output = R"({"verdict": "passed"})";
  REQUIRE(s->record_step(conductor).ok());
  std::vector<StepRow> steps = s->steps_of(task).value();
  REQUIRE(steps.size() == 2);
  CHECK(steps[0].output == to_json(*verifier.result).dump());
  REQUIRE(steps[0].result);
  CHECK(*steps[0].result == *verifier.result);
  CHECK_FALSE(steps[1].result);
  CHECK(task_outcome(*s, s->get_task(task).value(), steps).value().speedup == 2.5);
}

TEST_CASE_FIXTURE(Fixture,
                  "a verifier step whose stored text is no good verdict document reads as before") {
  auto s = open();
  const int64_t task =
      s->create_task(s->create_campaign("c", "").value(), test::task_spec()).value();
  auto verifier = [&](const std::string& output, Outcome verdict) {
    StepRow step;
    step.task_id = task;
    step.role = Role::verifier;
    step.verdict = verdict;
    step.output = output;
    return s->record_step(step).value();
  };
  // Only its verdict word: no result (the Conductor's prompt shows the word).
  const int64_t word = verifier("passed", Outcome::passed);
  // Cut short: infra_error, as the judge's own unreadable document; no profile, no speedup.
  verifier(R"({"verdict": "passed", "profile": {"speedup": 2.0)", Outcome::passed);
  // A verdict this kforge does not know: infra_error, never a pass.
  verifier(R"({"verdict": "pased", "message": "all good"})", Outcome::infra_error);
  std::vector<StepRow> steps = s->steps_of(task).value();
  REQUIRE(steps.size() == 3);
  CHECK_FALSE(steps[0].result);
  REQUIRE(steps[1].result);
  CHECK(steps[1].result->verdict == Verdict::infra_error);
  CHECK(steps[1].result->message == "the job produced no verdict document");
  CHECK_FALSE(steps[1].result->profile);
  REQUIRE(steps[2].result);
  CHECK(steps[2].result->verdict == Verdict::infra_error);
  CHECK(steps[2].result->message ==
        R"(the verdict document has an unknown verdict "pased": all good)");
  // The outcome: the first pass is the best, with no speedup read from either.
  TaskOutcome o = task_outcome(*s, s->get_task(task).value(), steps).value();
  CHECK(o.best_verdict_step_id == word);
  CHECK(o.speedup == 0);
  CHECK(o.candidate_us == 0);
  CHECK(o.last_verdict == Outcome::infra_error);
}

TEST_CASE_FIXTURE(Fixture, "a schema-2 database with results stored as protocol frames migrates") {
  // The database as kforge left it before migration 0003: results are encoded frames.
  for (const Migration& m : migrations()) {
    if (m.version > 2) break;
    raw_exec(db_path, "BEGIN; " + std::string(m.sql) +
                          "; PRAGMA user_version = " + std::to_string(m.version) + "; COMMIT;");
  }
  proto::JobResult verify;
  verify.job = {1, 1};
  verify.agent_id = "agent-a";
  verify.exit_code = 0;
  verify.result_json = kMismatchDoc;
  proto::JobResult exec;
  exec.job = {2, 1};
  exec.agent_id = "agent-b";
  exec.exit_code = 0;
  exec.stdout_data = "hello\n";
  auto insert = [](const std::string& kind) {
    return "INSERT INTO jobs(kind, spec, backend, state, epoch, agent_id, device_index, attempts, "
           "result, created_ms) VALUES('" +
           kind + "', 'spec', 'cpu', 'done', 1, 'agent-a', 0, 1, ?1, 5)";
  };
  raw_exec(db_path, insert("verify"), {proto::encode(verify)});
  raw_exec(db_path, insert("exec"), {proto::encode(exec)});
  raw_exec(db_path, insert("verify"), {std::string("\xc1 not msgpack")});
  raw_exec(db_path,
           "INSERT INTO jobs(kind, spec, backend, state, created_ms) "
           "VALUES('exec', 'spec', 'cpu', 'queued', 6)");

  auto s = open();
  CHECK(s->schema_version() == Store::latest_schema_version());
  JobRow v = s->get_job(1).value();
  REQUIRE(v.result);
  REQUIRE(v.result->verify);
  CHECK(v.result->verify->verdict == Verdict::precision_mismatch);
  CHECK(v.result->verify->checks->mismatches == 163);
  CHECK(std::isinf(v.result->verify->checks->max_abs_error));
  CHECK(v.result->agent_id == "agent-a");
  JobRow e = s->get_job(2).value();
  REQUIRE(e.result);
  CHECK(e.result->stdout_data == "hello\n");
  CHECK(e.result->agent_id == "agent-b");
  CHECK_FALSE(e.result->verify);
  // A frame that does not decode is an infrastructure failure (re-run), never a lost row.
  JobRow bad = s->get_job(3).value();
  REQUIRE(bad.result);
  CHECK(bad.state == JobState::done);
  CHECK(bad.result->infra_error.find("does not decode") != std::string::npos);
  CHECK_FALSE(s->get_job(4).value().result);
  s.reset();
  // No frame is left behind, and a second open changes nothing.
  CHECK(raw_count(db_path, "SELECT COUNT(*) FROM jobs WHERE result IS NOT NULL") == 0);
  auto again = open();
  CHECK(again->get_job(1).value().result->verify->verdict == Verdict::precision_mismatch);
}

TEST_CASE_FIXTURE(
    Fixture, "a schema-3 database whose tasks carry their own texts migrates with nothing lost") {
  // The database as kforge left it before migration 0004: each task holds its task_desc and
  // candidate.
  for (const Migration& m : migrations()) {
    if (m.version > 3) break;
    raw_exec(db_path, "BEGIN; " + std::string(m.sql) +
                          "; PRAGMA user_version = " + std::to_string(m.version) + "; COMMIT;");
  }
  raw_exec(db_path,
           "INSERT INTO campaigns(id, name, spec, state, created_ms, updated_ms) "
           "VALUES(1, 'sweep', '', 'running', 1, 1)");
  const std::string file(3000, '#');
  auto desc = [&](int n) { return file + "\nN = " + std::to_string(n) + "\nclass Model: ...\n"; };
  auto insert = [&](int n, const std::string& candidate) {
    raw_exec(
        db_path,
        "INSERT INTO tasks(campaign_id, op_name, task_id, task_desc, backend, arch, impl_type, "
        "framework, task_type, limit_steps, state, created_ms, updated_ms, candidate) "
        "VALUES(1, 'softmax', 'N=" +
            std::to_string(n) +
            "', CAST(?1 AS TEXT), 'cpu', 'x86_64', "
            "'cpp', 'torch', 'precision_only', 10, 'pending', 1, 1, CAST(?2 AS TEXT))",
        {desc(n), candidate});
  };
  for (int n = 0; n < 20; ++n) insert(n, "");
  insert(100, "def softmax(x): return x\n");
  insert(101, "");
  insert(102, "def softmax(x): return x\n");

  auto s = open();
  CHECK(s->schema_version() == Store::latest_schema_version());
  auto tasks = s->tasks_of_campaign(1).value();
  REQUIRE(tasks.size() == 23);
  for (int n = 0; n < 20; ++n) CHECK(tasks[n].spec.task_desc == desc(n));
  CHECK(tasks[20].spec.task_desc == desc(100));
  CHECK(tasks[20].spec.candidate == "def softmax(x): return x\n");
  CHECK(tasks[21].spec.candidate.empty());
  CHECK(tasks[22].spec.candidate == "def softmax(x): return x\n");
  s.reset();
  // The texts are in blobs, each once; the old columns are gone.
  CHECK(raw_count(db_path, "SELECT COUNT(*) FROM blobs") == 2);
  CHECK(raw_count(db_path,
                  "SELECT COUNT(*) FROM pragma_table_info('tasks') "
                  "WHERE name IN ('task_desc', 'candidate')") == 0);
  auto again = open();
  CHECK(again->get_task(tasks[5].id).value().spec.task_desc == desc(5));
}

TEST_CASE_FIXTURE(
    Fixture,
    "a campaign stored with an FNV identity (schema 5) is recognised when submitted again") {
  // The campaign: three softmax tasks, as parse_campaign would give them.
  Campaign c;
  c.name = "sweep";
  c.workflow = Workflow::default_;
  for (int i = 0; i < 3; ++i) {
    CampaignTask t;
    t.spec.op_name = "softmax";
    t.spec.task_id = std::to_string(i);
    t.spec.task_desc = "N = " + std::to_string(i) + "\nclass Model: ...\ndef get_inputs(): ...\n";
    t.spec.backend = "cpu";
    t.spec.arch = "x86_64";
    t.spec.impl_type = "cpp";
    c.tasks.push_back(std::move(t));
  }
  c.content_hash = hash_campaign(c);
  // The identity kforge gave this campaign before SHA-256: hash_campaign at 9529409 (FNV-1a 64
  // of the kforge-campaign-v1 serialisation), computed by that build.
  const std::string v1 = "f148716734bf5c96";

  // The database as that kforge left it: schema 5, the campaign (and one whose stored hash its
  // tasks do not reproduce) with their tasks, texts in blobs.
  for (const Migration& m : migrations()) {
    if (m.version > 5) break;
    raw_exec(db_path, "BEGIN; " + std::string(m.sql) +
                          "; PRAGMA user_version = " + std::to_string(m.version) + "; COMMIT;");
  }
  auto insert_campaign = [&](int id, const std::string& hash) {
    raw_exec(db_path,
             "INSERT INTO campaigns(id, name, spec, state, created_ms, updated_ms, "
             "content_hash, workflow) VALUES(" +
                 std::to_string(id) +
                 ", 'sweep', 'source', 'running', 1, 1, CAST(?1 AS TEXT), 'default')",
             {hash});
    for (const CampaignTask& t : c.tasks) {
      raw_exec(
          db_path,
          "INSERT INTO blobs(sha256, data) VALUES(CAST(?1 AS TEXT), ?2) ON CONFLICT DO NOTHING",
          {sha256_hex(t.spec.task_desc), t.spec.task_desc});
      raw_exec(db_path,
               "INSERT INTO tasks(campaign_id, op_name, task_id, backend, arch, impl_type, "
               "framework, task_type, limit_steps, state, created_ms, updated_ms, task_desc_blob) "
               "SELECT " +
                   std::to_string(id) +
                   ", 'softmax', CAST(?1 AS TEXT), 'cpu', 'x86_64', 'cpp', '', "
                   "'precision_only', 10, 'pending', 1, 1, id FROM blobs WHERE sha256 = CAST(?2 AS "
                   "TEXT)",
               {t.spec.task_id, sha256_hex(t.spec.task_desc)});
    }
  };
  insert_campaign(1, v1);
  insert_campaign(2, "0123456789abcdef");

  auto s = open();
  CHECK(s->schema_version() == Store::latest_schema_version());
  CHECK(s->get_campaign(1).value().content_hash == c.content_hash);
  CHECK(s->get_campaign(2).value().content_hash == "0123456789abcdef");  // not reproduced: kept
  // Submitted again, it is the stored campaign: nothing is added, nothing runs (or is paid) twice.
  auto again = store_campaign(
      [&](const std::function<Status(Store&)>& fn) {
        return s->atomically([&] { return fn(*s); });
      },
      c, "source");
  REQUIRE_MESSAGE(again.ok(), again.status().to_string());
  CHECK(again->first == 1);
  CHECK_FALSE(again->second);
  CHECK(s->campaigns().value().size() == 2);
  CHECK(s->tasks_of_campaign(1).value().size() == 3);
}

TEST_CASE_FIXTURE(Fixture,
                  "task verdicts stored as free text (schema 9) become a verdict and a reason") {
  for (const Migration& m : migrations()) {
    if (m.version > 9) break;
    raw_exec(db_path, "BEGIN; " + std::string(m.sql) +
                          "; PRAGMA user_version = " + std::to_string(m.version) + "; COMMIT;");
  }
  raw_exec(db_path,
           "INSERT INTO campaigns(id, name, spec, state, created_ms, updated_ms) "
           "VALUES(1, 'c', '', 'finished', 1, 1)");
  // What kforge wrote in tasks.verdict before migration 0010, and what it means.
  const std::vector<std::tuple<std::string, std::string, std::string, std::string>> cases = {
      // state, old verdict, verdict, reason
      {"passed", "passed", "passed", "passed"},
      {"failed", "the coder LLM call kept failing: HTTP 400: model does not exist", "llm_error",
       "the coder LLM call kept failing: HTTP 400: model does not exist"},
      {"failed", "limit_steps (4) used up; last verdict: precision_mismatch", "precision_mismatch",
       "limit_steps (4) used up; last verdict: precision_mismatch"},
      {"failed", "limit_steps (4) used up; last verdict: no verdict", "",
       "limit_steps (4) used up; last verdict: no verdict"},
      {"failed", "verification kept failing for infrastructure reasons: {}", "infra_error",
       "verification kept failing for infrastructure reasons: {}"},
      {"failed", "store error: disk full", "infra_error", "store error: disk full"},
      {"failed", "compile_error", "compile_error",
       "the supplied candidate failed verification: compile_error"},
      {"cancelled", "cancelled by operator", "cancelled", "cancelled by operator"},
      {"failed", "no LLM is configured for the designer role", "",
       "no LLM is configured for the designer role"},
      {"running", "", "", ""},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    raw_exec(
        db_path,
        "INSERT INTO tasks(id, campaign_id, op_name, task_id, backend, arch, impl_type, framework, "
        "task_type, limit_steps, state, verdict, created_ms, updated_ms) VALUES(" +
            std::to_string(i + 1) + ", 1, 'op', '" + std::to_string(i) +
            "', 'cpu', '', 'cpp', '', 'precision_only', 4, CAST(?1 AS TEXT), CAST(?2 AS TEXT), 1, "
            "1)",
        {std::get<0>(cases[i]), std::get<1>(cases[i])});
  }
  // A conductor step's decision was its verdict; it is in its output.
  raw_exec(db_path,
           "INSERT INTO steps(task_id, seq, role, input, output, verdict, counted, created_ms) "
           "VALUES(1, 1, 'conductor', 'p', '{\"action\": \"fix_design\"}', 'fix_design', 0, 1)");

  auto s = open();
  for (size_t i = 0; i < cases.size(); ++i) {
    CAPTURE(std::get<1>(cases[i]));
    TaskRow t = s->get_task(static_cast<int64_t>(i + 1)).value();
    CHECK(std::string(to_string(t.verdict)) == std::get<2>(cases[i]));
    CHECK(t.reason == std::get<3>(cases[i]));
  }
  StepRow decision = s->steps_of(1).value().at(0);
  CHECK(decision.role == Role::conductor);
  CHECK_FALSE(decision.verdict.has_value());
  CHECK(decision.output == "{\"action\": \"fix_design\"}");
}

// A request with every field set, binary file content included.
proto::Assign full_assign() {
  proto::Assign a;
  a.kind = "verify";
  a.argv = {"python3", "-m", "kforge_verifier", "--job", "job.json"};
  a.env = {{"KFORGE_X", "1"}, {"LANG", "C.UTF-8"}};
  a.files = {{"task.py", "class Model: ...\n"}, {"blob.bin", std::string("\0\xff\x01", 3)}};
  a.timeout_ms = 90'000;
  a.limits = proto::Limits{4096, 60, 256, 64, 100};
  return a;
}

TEST_CASE_FIXTURE(Fixture,
                  "a job's request round-trips through its columns and builds the same Assign") {
  auto s = open();
  const proto::Assign sent = full_assign();
  NewJob j;
  j.kind = JobKind::verify;
  j.request = request_of(sent);
  const int64_t id = s->enqueue_job(j).value();
  JobRow row = s->get_job(id).value();
  CHECK(row.request == j.request);
  proto::Assign built = assign_for(row, 7, 2, "cpu");
  CHECK(built.job.job_id == static_cast<uint64_t>(id));
  CHECK(built.job.epoch == 7u);
  CHECK(built.device_index == 2u);
  CHECK(built.backend == "cpu");
  proto::Assign expected = sent;
  expected.job = built.job;
  expected.device_index = 2;
  expected.backend = "cpu";
  CHECK(built == expected);
  // No frame is stored: the retired spec column is empty.
  s.reset();
  CHECK(raw_count(db_path, "SELECT COUNT(*) FROM jobs WHERE length(spec) > 0") == 0);
  CHECK(raw_count(
            db_path,
            ("SELECT COUNT(*) FROM job_files WHERE job_id = " + std::to_string(id)).c_str()) == 2);

  // argv and env must be text: a clear error, nothing stored.
  auto again = open();
  NewJob bad;
  bad.request.argv = {std::string("\xff\xfe", 2)};
  auto refused = again->enqueue_job(bad);
  CHECK(refused.status().code() == Code::invalid_argument);
  CHECK(refused.status().message().find("not UTF-8") != std::string::npos);
}

TEST_CASE_FIXTURE(Fixture, "job specs stored as Assign frames (schema 10) become request columns") {
  for (const Migration& m : migrations()) {
    if (m.version > 10) break;
    raw_exec(db_path, "BEGIN; " + std::string(m.sql) +
                          "; PRAGMA user_version = " + std::to_string(m.version) + "; COMMIT;");
  }
  const proto::Assign sent = full_assign();
  raw_exec(
      db_path,
      "INSERT INTO jobs(id, kind, spec, backend, created_ms) VALUES(1, 'verify', ?1, 'cpu', 1)",
      {proto::encode(sent)});
  raw_exec(db_path,
           "INSERT INTO jobs(id, kind, spec, backend, created_ms) VALUES(2, 'exec', ?1, 'cpu', 1)",
           {std::string("not a frame")});
  auto s = open();
  JobRow converted = s->get_job(1).value();
  CHECK(converted.request == request_of(sent));
  CHECK(converted.kind == JobKind::verify);
  CHECK(s->get_job(2).value().request ==
        JobRequest{});  // undecodable: an empty request, as dispatch sent
  s.reset();
  CHECK(raw_count(db_path, "SELECT COUNT(*) FROM jobs WHERE length(spec) > 0") == 0);
}
