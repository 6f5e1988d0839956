// The operator command line as a user runs it: real kforge processes against a real
// kforge-coordinator's HTTP API, and the same commands on its data directory (--data).
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <ctime>
#include <nlohmann/json.hpp>

#include "common/process.h"
#include "common/vocabulary.h"
#include "coordinator/store/store.h"
#include "tests/support/child.h"
#include "tests/support/fixtures.h"

using namespace kforge;
using namespace kforge::test;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::filesystem::path fixtures() {
  return source_dir() / "tests" / "fixtures" / "campaigns";
}

// One finished verify_only campaign (a real harness run), then a coordinator serving it.
struct Served {
  TempDir dir;
  std::filesystem::path data = dir / "data";
  std::unique_ptr<Child> coordinator;
  std::string url;

  Served() {
    Ran run = kforge_cli({"run", (fixtures() / "verify.toml").string(), "--data", data.string(),
                          "--device-fixtures", (dir / "no-gpus").string()});
    REQUIRE_MESSAGE(run.code == 0, run.err);
    coordinator = std::make_unique<Child>(
        binary_dir() / "coordinator" / "kforge-coordinator",
        std::vector<std::string>{"--data", data.string(), "--listen", "tcp://127.0.0.1:*", "--http",
                                 "127.0.0.1:0"},
        dir / "coordinator.log", dir.path());
    REQUIRE_MESSAGE(wait_until(
                        [&] {
                          return read_file(dir / "coordinator.log").find("api http://") !=
                                 std::string::npos;
                        },
                        20s),
                    read_file(dir / "coordinator.log"));
    std::string log = read_file(dir / "coordinator.log");
    auto at = log.find("api http://") + 4;
    url = log.substr(at, log.find('\n', at) - at);
  }
  Ran over_http(std::vector<std::string> args) {
    args.insert(args.end(), {"--coordinator", url, "--token-file", (data / "api.token").string()});
    return kforge_cli(args);
  }
  Ran over_data(std::vector<std::string> args) {
    args.insert(args.end(), {"--data", data.string()});
    return kforge_cli(args);
  }
};

}  // namespace

TEST_CASE("operator commands answer the same over HTTP and on the data directory") {
  Served s;
  for (std::vector<std::string> cmd : {std::vector<std::string>{"results", "--json"},
                                       {"tasks", "--json", "--state", "passed"},
                                       {"show", "1", "--json"},
                                       {"status", "--json"},
                                       {"status", "1", "--json"},
                                       {"jobs", "--json"},
                                       {"jobs", "--json", "--state", "done", "--task", "1"}}) {
    Ran http = s.over_http(cmd), local = s.over_data(cmd);
    REQUIRE_MESSAGE(http.code == 0, http.err);
    REQUIRE_MESSAGE(local.code == 0, local.err);
    CHECK_MESSAGE(json::parse(http.out) == json::parse(local.out), cmd[0]);
  }
  json tasks = json::parse(s.over_http({"results", "--json"}).out);
  REQUIRE(tasks.size() == 1);
  CHECK(tasks[0]["op_name"] == "softmax");
  CHECK(tasks[0]["state"] == "passed");
  json status = json::parse(s.over_http({"status", "--json"}).out);
  CHECK(status[0]["state"] == "finished");
  CHECK(status[0]["tasks"]["passed"] == 1);
}

TEST_CASE(
    "jobs filter and page by id with --offset and --limit, the same over HTTP and on the data "
    "directory") {
  Served s;
  // Five plain jobs after the campaign's one; no agent has an ascend device, so they stay queued.
  Ran queued = kforge_cli(
      {"enqueue", "--data", s.data.string(), "--count", "5", "--backend", "ascend", "--", "true"});
  REQUIRE_MESSAGE(queued.code == 0, queued.err);
  CHECK(queued.out == "queued 5 job(s): 2..6\n");
  auto ids = [](const Ran& r) {
    REQUIRE_MESSAGE(r.code == 0, r.err);
    std::vector<int64_t> out;
    for (const json& j : json::parse(r.out)) out.push_back(j["id"].get<int64_t>());
    return out;
  };
  using Ids = std::vector<int64_t>;
  for (auto [cmd, want] : std::vector<std::pair<std::vector<std::string>, Ids>>{
           {{"jobs", "--json"}, {1, 2, 3, 4, 5, 6}},
           {{"jobs", "--json", "--state", "queued"}, {2, 3, 4, 5, 6}},
           {{"jobs", "--json", "--state", "done"}, {1}},
           {{"jobs", "--json", "--task", "1"}, {1}},
           {{"jobs", "--json", "--task", "1", "--state", "queued"}, {}},
           {{"jobs", "--json", "--limit", "2"}, {1, 2}},
           {{"jobs", "--json", "--offset", "2", "--limit", "2"}, {3, 4}},
           {{"jobs", "--json", "--offset", "4", "--limit", "2"}, {5, 6}},
           {{"jobs", "--json", "--offset", "6", "--limit", "2"}, {}},
           {{"jobs", "--json", "--state", "queued", "--offset", "1", "--limit", "3"}, {3, 4, 5}}}) {
    CAPTURE(json(cmd).dump());
    Ran http = s.over_http(cmd), local = s.over_data(cmd);
    CHECK(ids(http) == want);
    CHECK(json::parse(http.out) == json::parse(local.out));
  }
  Ran table = s.over_http({"jobs", "--state", "queued", "--offset", "3"});
  REQUIRE(table.code == 0);
  CHECK(table.out.find("\n5 ") != std::string::npos);
  CHECK(table.out.find("\n4 ") == std::string::npos);
  for (Ran bad :
       {s.over_http({"jobs", "--offset", "-1"}), s.over_data({"jobs", "--offset", "-1"})}) {
    CHECK(bad.code == 1);
    CHECK(bad.err.find("query parameter 'offset': expected a non-negative integer, got '-1'") !=
          std::string::npos);
  }
  Ran zero = s.over_http({"jobs", "--limit", "0"});
  CHECK(zero.code == 1);
  CHECK(zero.err.find("query parameter 'limit': expected a positive integer, got '0'") !=
        std::string::npos);
}

TEST_CASE("results as CSV, a task's story, a report, and an export in AIKG's layout") {
  Served s;
  Ran csv = s.over_http({"results", "--csv"});
  REQUIRE(csv.code == 0);
  CHECK(csv.out.rfind("task,campaign,op_name,task_id,", 0) == 0);
  CHECK(csv.out.find("\n1,1,softmax,default,cpu,x86_64,cpp,torch,precision_only,passed,passed,") !=
        std::string::npos);

  Ran show = s.over_http({"show", "1"});
  REQUIRE(show.code == 0);
  CHECK(show.out.find("task 1: softmax / default") != std::string::npos);
  CHECK(show.out.find("--- step 1  verifier") != std::string::npos);
  CHECK(show.out.find("verdict passed") != std::string::npos);
  REQUIRE(show.out.find("harness: ") != std::string::npos);  // phases in the order they happen
  std::string harness_line = show.out.substr(show.out.find("harness: "));
  harness_line = harness_line.substr(0, harness_line.find('\n'));
  CHECK(harness_line.find("load_candidate") < harness_line.find("first_call"));
  CHECK(harness_line.find("first_call") < harness_line.find("precision"));
  // Each step's wall-clock time, from its 64-bit created_ms (in UTC here: TZ is passed on).
  int64_t created_ms =
      json::parse(s.over_http({"show", "1", "--json"}).out)["trace"][0]["created_ms"];
  std::time_t t = static_cast<std::time_t>(created_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char hhmmss[16];
  std::strftime(hhmmss, sizeof hhmmss, "%H:%M:%S", &tm);
  Ran utc = kforge_cli(
      {"show", "1", "--coordinator", s.url, "--token-file", (s.data / "api.token").string()},
      std::chrono::seconds(60), {{"TZ", "UTC"}});
  REQUIRE(utc.code == 0);
  CHECK_MESSAGE(utc.out.find("--- step 1  verifier  " + std::string(hhmmss) + "  verdict passed") !=
                    std::string::npos,
                utc.out);

  std::filesystem::path out = s.dir / "export";
  Ran exported = s.over_http({"export", "1", "--out", out.string()});
  REQUIRE_MESSAGE(exported.code == 0, exported.err);
  CHECK(
      std::filesystem::exists(out / "softmax" / "default" / "I1_S01_softmax_verifier_result.json"));
  CHECK(
      std::filesystem::exists(out / "softmax" / "default" / "I1_S01_softmax_verifier_result.txt"));
  CHECK(read_file(out / "softmax" / "default" / "task_desc.py").find("class Model") !=
        std::string::npos);
  json summary = json::parse(read_file(out / "summary.json"));
  CHECK(summary["tasks"].size() == 1);
  std::filesystem::path report = s.dir / "report";
  Ran reported = s.over_http({"report", "1", "--out", report.string()});
  REQUIRE_MESSAGE(reported.code == 0, reported.err);
  json doc = json::parse(read_file(report / "report.json"));
  CHECK(doc["metrics"]["fast_0"]["value"] == 1.0);
  CHECK(doc["tasks"].size() == 1);
  CHECK(read_file(report / "index.html").find("softmax") != std::string::npos);
  CHECK(json::parse(s.over_data({"report", "1", "--json"}).out) == doc);  // the same through --data
  Ran text = s.over_http({"report", "1"});  // neither --out nor --json: the text report
  REQUIRE_MESSAGE(text.code == 0, text.err);
  CHECK_MESSAGE(text.out.find("fast_0         100.0% (1 of 1)") != std::string::npos, text.out);
  CHECK_MESSAGE(text.out.find("winners and their lineage") != std::string::npos, text.out);
  CHECK(s.over_http({"report", "7", "--json"}).err.find("no campaign 7") != std::string::npos);

  Ran again = s.over_http({"export", "1", "--out", out.string()});
  CHECK(again.code == 1);
  CHECK(again.err.find("--force") != std::string::npos);
}

TEST_CASE(
    "export writes each task's winner: its fastest passing candidate, not its last step, whatever "
    "its state") {
  TempDir dir;
  const std::filesystem::path data = dir / "data";
  std::filesystem::create_directories(data);
  {
    auto opened = Store::open(data / "kforge.db");
    REQUIRE(opened.ok());
    Store& store = **opened;
    const int64_t campaign =
        store
            .create_campaign("search", "", "hash-1", Workflow::default_, "kforge",
                             R"({"strategy":"best_of_n","samples":2})")
            .value();
    // One attempt: a coder step whose code names itself, and the verifier step that judged it.
    auto attempt = [&](int64_t task, int64_t sample, const std::string& name,
                       const std::string& verdict, double speedup = 0) {
      StepRow coder;
      coder.task_id = task;
      coder.role = Role::coder;
      coder.sample = sample;
      coder.input = "prompt";
      coder.output = "```python\nclass ModelNew:  # " + name + "\n    pass\n```";
      REQUIRE(store.record_step(coder).ok());
      json doc = {{"verdict", verdict}};
      if (speedup > 0) doc["profile"] = {{"speedup", speedup}};
      StepRow verifier = coder;
      verifier.role = Role::verifier;
      verifier.output = doc.dump();
      verifier.verdict = parse_enum<Outcome>(verdict);
      REQUIRE(store.record_step(verifier).ok());
    };
    TaskSpec spec = test::task_spec("relu", "N=1");
    spec.task_type = "profile";
    // Two chains pass; the later one (the last step) is slower.
    const int64_t two = store.create_task(campaign, spec).value();
    attempt(two, 0, "chain 0, 2.0x", "passed", 2.0);
    attempt(two, 1, "chain 1, 1.2x", "passed", 1.2);
    REQUIRE(store.set_task_state(two, TaskState::passed, Outcome::passed, "passed").ok());
    // A chain that improves, then regresses, and is cancelled: its best pass still wins.
    spec.task_id = "N=2";
    const int64_t cancelled = store.create_task(campaign, spec).value();
    attempt(cancelled, 0, "broken", "compile_error");
    attempt(cancelled, 0, "fixed, 1.5x", "passed", 1.5);
    attempt(cancelled, 0, "made slower, 0.9x", "passed", 0.9);
    REQUIRE(store
                .set_task_state(cancelled, TaskState::cancelled, Outcome::cancelled,
                                "cancelled by operator")
                .ok());
    // Nothing passed: no winner.
    spec.task_id = "N=3";
    const int64_t failed = store.create_task(campaign, spec).value();
    attempt(failed, 0, "broken", "compile_error");
    REQUIRE(store
                .set_task_state(failed, TaskState::failed, Outcome::compile_error,
                                "limit_steps reached")
                .ok());
  }
  const std::filesystem::path out = dir / "export";
  Ran exported = kforge_cli({"export", "1", "--out", out.string(), "--data", data.string()});
  REQUIRE_MESSAGE(exported.code == 0, exported.err);
  CHECK(exported.out.find("3 tasks") != std::string::npos);
  CHECK(exported.out.find("2 winning kernels in passed/") != std::string::npos);
  const std::string first = read_file(out / "passed" / "relu_N=1_triton.py");
  CHECK_MESSAGE(first.find("# chain 0, 2.0x") != std::string::npos, first);
  CHECK(first.find("```") == std::string::npos);  // the code, as the Verifier ran it
  const std::string second = read_file(out / "passed" / "relu_N=2_triton.py");
  CHECK_MESSAGE(second.find("# fixed, 1.5x") != std::string::npos, second);
  CHECK(!std::filesystem::exists(out / "passed" / "relu_N=3_triton.py"));
  // Every step is still there, and summary.json names each task's winner file.
  CHECK(std::filesystem::exists(out / "relu" / "N=2" / "I2_S05_relu_coder_result.txt"));
  json summary = json::parse(read_file(out / "summary.json"));
  REQUIRE(summary["tasks"].size() == 3);
  CHECK(summary["tasks"][0]["kernel"] == "passed/relu_N=1_triton.py");
  CHECK(summary["tasks"][0]["best_step"] == 1);
  CHECK(summary["tasks"][0]["speedup"] == 2.0);
  CHECK(summary["tasks"][1]["kernel"] == "passed/relu_N=2_triton.py");
  CHECK(summary["tasks"][1]["best_step"] == 3);
  CHECK(summary["tasks"][2]["kernel"].is_null());
}

TEST_CASE(
    "submit over HTTP once, cancel and resume it; agents, drain, undrain, jobs, status --watch") {
  Served s;
  // The same campaign file again is the same campaign (the finished one, id 1).
  Ran same = s.over_http({"submit", (fixtures() / "verify.toml").string()});
  REQUIRE_MESSAGE(same.code == 0, same.err);
  CHECK(same.out.find("already submitted (id 1") != std::string::npos);
  CHECK(json::parse(s.over_http({"status", "--json"}).out).size() == 1);

  // A finished task cannot be cancelled; a finished campaign's cancel leaves its results.
  Ran refused = s.over_http({"cancel", "--task", "1"});
  CHECK(refused.code == 1);
  CHECK(refused.err.find("has finished (passed)") != std::string::npos);

  // A new campaign: no agent serves this coordinator, so its task waits; cancel, then resume.
  std::string fx = fixtures().string();
  write_file(s.dir / "other.toml",
             "name = \"other\"\nworkflow = \"verify_only\"\n[defaults]\nbackend = \"cpu\"\n"
             "arch = \"x86_64\"\nimpl_type = \"cpp\"\n[[ops]]\nop_name = \"softmax2\"\n"
             "task_desc = \"" +
                 fx + "/tasks/softmax.py\"\ncandidate = \"" + fx + "/cands/softmax.py\"\n");
  Ran submitted = s.over_http({"submit", (s.dir / "other.toml").string()});
  REQUIRE_MESSAGE(submitted.code == 0, submitted.err);
  CHECK(submitted.out.find("submitted (id 2, 1 tasks)") != std::string::npos);
  REQUIRE(wait_until(
      [&] {
        return json::parse(s.over_http({"tasks", "--campaign", "2", "--json"}).out)[0]["state"] ==
               "running";
      },
      10s));
  Ran cancelled = s.over_http({"cancel", "2"});
  REQUIRE_MESSAGE(cancelled.code == 0, cancelled.err);
  CHECK(cancelled.out.find("cancelled") != std::string::npos);
  json after = json::parse(s.over_http({"status", "2", "--json"}).out)[0];
  CHECK(after["state"] == "cancelled");
  CHECK(after["tasks"]["cancelled"] == 1);
  Ran resumed = s.over_http({"resume", "2"});
  REQUIRE_MESSAGE(resumed.code == 0, resumed.err);
  CHECK(json::parse(s.over_http({"tasks", "--campaign", "2", "--json"}).out)[0]["state"] ==
        "running");
  CHECK(json::parse(s.over_http({"status", "1", "--json"}).out)[0]["tasks"]["passed"] ==
        1);  // untouched

  Ran agents = s.over_http({"agents"});
  REQUIRE(agents.code == 0);
  CHECK(agents.out.find("cpu:0(x86_64)") != std::string::npos);  // the run's local agent, now gone

  // Drain it by an id prefix, and back.
  std::string agent = json::parse(s.over_http({"agents", "--json"}).out)[0]["id"];
  Ran drained = s.over_http({"drain", agent.substr(0, 8)});
  REQUIRE_MESSAGE(drained.code == 0, drained.err);
  CHECK(drained.out == "agent " + agent + " drained: running jobs finish, no new ones\n");
  CHECK(json::parse(s.over_data({"agents", "--json"}).out)[0]["drained"] == true);
  REQUIRE(s.over_http({"undrain", agent}).code == 0);
  CHECK(json::parse(s.over_http({"agents", "--json"}).out)[0]["drained"] == false);
  Ran nobody = s.over_http({"drain", "zzz"});
  CHECK(nobody.code == 1);
  CHECK(nobody.err.find("drain: no host 'zzz' and no agent id starting with it") !=
        std::string::npos);

  // The verify job of campaign 1 ran on it and exited 0.
  Ran jobs = s.over_http({"jobs", "--state", "done"});
  REQUIRE(jobs.code == 0);
  CHECK(jobs.out.find("exit 0") != std::string::npos);
  CHECK(jobs.out.find(agent.substr(0, 16)) != std::string::npos);
  // --watch on a finished campaign prints its line once and returns (not a terminal: plain lines).
  Ran watch = s.over_http({"status", "1", "--watch"});
  REQUIRE(watch.code == 0);
  CHECK(watch.out.find("finished") != std::string::npos);
  CHECK(watch.out.find("\x1b[") == std::string::npos);
}

TEST_CASE("mistakes say what to do, with the documented exit codes") {
  TempDir dir;
  Ran unreachable = kforge_cli({"status", "--coordinator", "http://127.0.0.1:1"});
  CHECK(unreachable.code == 3);
  CHECK(unreachable.err.find("cannot reach the coordinator at http://127.0.0.1:1") !=
        std::string::npos);
  Ran no_db = kforge_cli({"tasks", "--data", (dir / "none").string()});
  CHECK(no_db.code == 1);
  CHECK(no_db.err.find("no kforge database at") != std::string::npos);
  Ran bad_flag = kforge_cli({"status", "--colour"});
  CHECK(bad_flag.code == 2);
  CHECK(kforge_cli({"cancel", "--data", dir.path().string()}).code == 2);
  CHECK(kforge_cli({"show", "abc"}).code == 2);
  Ran bad_url = kforge_cli({"status", "--coordinator", "tcp://head-node:7700"});
  CHECK(bad_url.code == 2);
  CHECK(bad_url.err.find("expected the API's URL or HOST:PORT") != std::string::npos);
  Ran host_port =
      kforge_cli({"status", "--coordinator", "127.0.0.1:1"});  // read as http://127.0.0.1:1
  CHECK(host_port.code == 3);
  CHECK(host_port.err.find("cannot reach the coordinator at http://127.0.0.1:1") !=
        std::string::npos);
  // A flag mistake names the command once.
  CHECK(bad_flag.err ==
        "kforge status: unknown flag '--colour'; run `kforge status --help` for the list\n");
  for (auto [format, message] :
       {std::pair{std::vector<std::string>{"--format", "xml"}, "expected table, json or csv"},
        {{"--json", "--format", "csv"}, "give one of --format, --json and --csv"}}) {
    for (const char* command :
         {"tasks", "results", "jobs", "agents", "status", "cluster", "alerts"}) {
      std::vector<std::string> args = {command, "--coordinator", "127.0.0.1:1"};
      args.insert(args.end(), format.begin(), format.end());
      Ran r = kforge_cli(args);
      CHECK_MESSAGE(r.code == 2, command);
      CHECK_MESSAGE(r.err.find(message) != std::string::npos, r.err);
    }
  }
  write_file(dir / "kforge.toml", "[cli]\ncoordinator = \"http://127.0.0.1:1\"\n");
  Ran from_config = kforge_cli({"agents", "--config", (dir / "kforge.toml").string()});
  CHECK(from_config.code == 3);  // the config file named the coordinator
  CHECK(kforge_cli({"status", "--help"}).out.find("--coordinator") != std::string::npos);
}

namespace {

void drain_cluster_and_formats(Served& s) {
  json agent = json::parse(s.over_http({"agents", "--json"}).out)[0];
  std::string id = agent["id"], host = agent["host"];
  Ran drained = s.over_http({"drain", host, "--reason", "swap disk, ticket 7"});
  REQUIRE_MESSAGE(drained.code == 0, drained.err);
  CHECK(drained.out ==
        "agent " + id +
            " drained: running jobs finish, no new ones; reason: swap disk, ticket 7\n");
  json a = json::parse(s.over_data({"agents", "--json"}).out)[0];
  CHECK(a["drained"] == true);
  CHECK(a["drain_reason"] == "swap disk, ticket 7");
  CHECK(s.over_http({"agents"}).out.find("swap disk, ticket 7") != std::string::npos);
  Ran csv = s.over_http({"agents", "--format", "csv"});
  REQUIRE(csv.code == 0);
  CHECK(csv.out.rfind("id,host,state,drained,drain_reason,drained_ms,", 0) == 0);
  CHECK(csv.out.find("\n" + id + "," + host + ",") != std::string::npos);
  CHECK(csv.out.find(",true,\"swap disk, ticket 7\",") != std::string::npos);

  // The cluster at a glance: the host, its reason, the task that finished within the hour.
  json c = json::parse(s.over_http({"cluster", "--json"}).out);
  REQUIRE(c["hosts"].size() == 1);
  CHECK(c["hosts"][0]["host"] == host);
  CHECK(c["hosts"][0]["agents"] == json::array({id}));
  CHECK(c["hosts"][0]["drain_reason"] == "swap disk, ticket 7");
  CHECK(c["tasks"]["passed"] == 1);
  CHECK(c["throughput"]["tasks_per_hour"] == 1);
  CHECK(json::parse(s.over_data({"cluster", "--json"}).out)["hosts"] == c["hosts"]);
  Ran table = s.over_http({"cluster"});
  REQUIRE_MESSAGE(table.code == 0, table.err);
  CHECK(table.out.rfind("HOST ", 0) == 0);
  CHECK(table.out.find("\n" + host.substr(0, 20)) != std::string::npos);
  CHECK(table.out.find("swap disk, ticket 7") != std::string::npos);
  CHECK(table.out.find("throughput: 1 tasks/hour") != std::string::npos);
  CHECK(table.out.find("tasks:      0 pending, 0 running, 1 passed") != std::string::npos);
  CHECK(s.over_http({"cluster", "--csv"})
            .out.rfind("host,state,drained,drain_reason,running_jobs,devices_idle,", 0) == 0);

  // One campaign for the overnight shift, and what needs the operator: the finished task,
  // nothing left, no ETA; no agent lost, nothing stalled.
  Ran listed = s.over_http({"status", "--json"});
  REQUIRE_MESSAGE(listed.code == 0, listed.err);
  const std::string cid = std::to_string(json::parse(listed.out)[0]["id"].get<int64_t>());
  Ran progress_json = s.over_http({"progress", cid, "--json"});
  REQUIRE_MESSAGE(progress_json.code == 0, progress_json.err);
  json p = json::parse(progress_json.out);
  CHECK(p["tasks"]["passed"] == 1);
  CHECK(p["tasks"]["remaining"] == 0);
  CHECK(p["eta_ms"].is_null());
  CHECK(p["stalled"] == false);
  Ran progress = s.over_http({"progress", cid});
  REQUIRE_MESSAGE(progress.code == 0, progress.err);
  CHECK(
      progress.out.find("tasks:  1 of 1 finished (1 passed, 0 failed), 0 cancelled, 0 remaining") !=
      std::string::npos);
  CHECK(progress.out.find("eta:    -") != std::string::npos);
  CHECK(s.over_data({"progress", cid, "--json"}).code == 0);
  CHECK(s.over_http({"progress"}).code == 2);  // which campaign?
  // The alerts themselves are watch_test's and dashboard_e2e's; here, their two spellings.
  // (Which alerts there are depends on this cluster's agents: one may be lost by now.)
  Ran alerts = s.over_http({"alerts", "--json"});
  REQUIRE_MESSAGE(alerts.code == 0, alerts.err);
  REQUIRE(json::parse(alerts.out).is_array());
  for (const json& alert : json::parse(alerts.out))
    CHECK(!alert["message"].get<std::string>().empty());
  Ran alert_lines = s.over_http({"alerts"});
  REQUIRE_MESSAGE(alert_lines.code == 0, alert_lines.err);
  if (alert_lines.out != "no alerts\n") {
    std::istringstream lines(alert_lines.out);
    for (std::string line; std::getline(lines, line);) {
      CHECK_MESSAGE((line.rfind("agent_lost ", 0) == 0 || line.rfind("campaign_stalled ", 0) == 0 ||
                     line.rfind("nospace ", 0) == 0),
                    line);
    }
  }

  Ran undrained = s.over_http({"undrain", host});
  REQUIRE_MESSAGE(undrained.code == 0, undrained.err);
  CHECK(undrained.out == "agent " + id + " undrained\n");
  CHECK(json::parse(s.over_http({"agents", "--json"}).out)[0]["drain_reason"] == "");

  // --format json is --json, --format csv is --csv, on every listing.
  for (const char* command :
       {"tasks", "results", "jobs", "agents", "status", "cluster", "alerts"}) {
    CAPTURE(command);
    // The alerts may change between two calls (the agent may be found lost): compared by header.
    const bool is_alerts = std::string(command) == "alerts";
    Ran j = s.over_http({command, "--json"}), f = s.over_http({command, "--format", "json"});
    REQUIRE_MESSAGE(j.code == 0, j.err);
    json doc = json::parse(j.out);
    if (std::string(command) == "cluster") {  // its clock moves on between the two
      json other = json::parse(f.out);
      doc.erase("now_ms");
      other.erase("now_ms");
      CHECK(doc == other);
    } else if (is_alerts) {
      CHECK(json::parse(f.out).is_array());
    } else {
      CHECK(j.out == f.out);
    }
    Ran c1 = s.over_http({command, "--csv"}), c2 = s.over_http({command, "--format", "csv"});
    REQUIRE_MESSAGE(c1.code == 0, c1.err);
    if (is_alerts) {
      CHECK(c1.out.rfind("kind,since_ms,agent,host,campaign,message\n", 0) == 0);
      CHECK(c2.out.rfind("kind,since_ms,agent,host,campaign,message\n", 0) == 0);
    } else {
      CHECK(c1.out == c2.out);
    }
    CHECK(c1.out.find(',') < c1.out.find('\n'));  // a header line
  }
  CHECK(s.over_http({"status", "--csv"})
            .out.find("\n1,softmax-verify,finished,verify_only,1,0,0,1,0,0,") != std::string::npos);
  CHECK(s.over_http({"jobs", "--csv"}).out.find("\n1,1,verify,done,") != std::string::npos);
}

}  // namespace

TEST_CASE(
    "an unknown campaign or task over HTTP is a clear error; drain a host with a reason, see it in "
    "agents and "
    "cluster; every listing takes --format") {
  Served s;
  Ran c = s.over_http({"status", "42"});
  CHECK(c.code == 1);
  CHECK(c.err.find("no campaign 42") != std::string::npos);
  Ran t = s.over_http({"show", "42"});
  CHECK(t.code == 1);
  CHECK(t.err.find("no task 42") != std::string::npos);
  drain_cluster_and_formats(s);
}

TEST_CASE(
    "the command line finds the token where the coordinator made it, and says what to do without "
    "it") {
  Served s;
  // No token at all: a 401 that names where tokens are.
  Ran bare = kforge_cli({"status", "--coordinator", s.url});
  CHECK(bare.code == 1);
  CHECK(bare.err.find("needs its API token") != std::string::npos);
  CHECK(bare.err.find("api.token") != std::string::npos);
  // The coordinator's data directory named in the config: its api.token is read (loopback only).
  write_file(s.dir / "kforge.toml", "[coordinator]\ndata_dir = \"" + s.data.string() + "\"\n");
  Ran found = kforge_cli(
      {"status", "--json", "--coordinator", s.url, "--config", (s.dir / "kforge.toml").string()});
  REQUIRE_MESSAGE(found.code == 0, found.err);
  CHECK(json::parse(found.out).size() == 1);
  // A wrong token says so and where it came from.
  Ran wrong = kforge_cli({"status", "--coordinator", s.url, "--token", "nope"});
  CHECK(wrong.code == 1);
  CHECK(wrong.err.find("refused the API token from --token") != std::string::npos);
  // kforge dashboard: the URL with the token in its fragment.
  std::string token = read_file(s.data / "api.token");
  token.erase(token.find_last_not_of("\n") + 1);
  Ran dash = kforge_cli(
      {"dashboard", "--coordinator", s.url, "--token-file", (s.data / "api.token").string()});
  REQUIRE_MESSAGE(dash.code == 0, dash.err);
  CHECK(dash.out == s.url + "/#token=" + token + "\n");
}

TEST_CASE("the data directory and its database are private") {
  Served s;
  struct stat st {};
  REQUIRE(::stat(s.data.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0700);
  REQUIRE(::stat((s.data / "kforge.db").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  REQUIRE(::stat((s.data / "api.token").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  REQUIRE(::stat((s.data / "agent").c_str(), &st) == 0);  // kforge run's agent state
  CHECK((st.st_mode & 07777) == 0700);
  REQUIRE(::stat((s.data / "agent" / "outbox.db").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
}

TEST_CASE(
    "kforge run keeps the LLM key from the jobs: never in their environment, never where they "
    "share its uid") {
  TempDir dir;
  const std::string llm =
      "[llm.designer]\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = "
      "\"m\"\n%KEY%\n"
      "[llm.coder]\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = "
      "\"m\"\n%KEY%\n";
  auto config = [&](const std::string& agent, const std::string& key) {
    std::string text = "[agent]\n" + agent + "\n" + llm;
    for (size_t at; (at = text.find("%KEY%")) != std::string::npos;) text.replace(at, 5, key);
    write_file(dir / "kforge.toml", text);
    return (dir / "kforge.toml").string();
  };
  auto run = [&](const std::string& cfg, const std::string& data) {
    return kforge_cli(
        {"run", (fixtures() / "verify.toml").string(), "--data", (dir / data).string(), "--config",
         cfg, "--device-fixtures", (dir / "no-gpus").string()},
        std::chrono::seconds(240), {{"KFORGE_TEST_LLM_KEY", "sk-secret"}});
  };
  const std::string from_env = "api_key_env = \"KFORGE_TEST_LLM_KEY\"";
  // Handing the key's variable to every job is refused, whatever the box.
  Ran r = run(config("env_allow = [\"PATH\", \"KFORGE_TEST_LLM_KEY\"]", from_env), "d1");
  CHECK(r.code != 0);
  CHECK_MESSAGE(r.err.find("agent.env_allow names KFORGE_TEST_LLM_KEY") != std::string::npos,
                r.err);
  // Jobs as this process's uid could read the key from /proc: refused, saying what to do.
  r = run(config("contain = false", from_env), "d2");
  CHECK(r.code != 0);
  CHECK_MESSAGE(r.err.find("api_key_file") != std::string::npos, r.err);
  CHECK(r.err.find("sk-secret") == std::string::npos);
  // A key file: the run goes on, with a warning that such jobs can read the file.
  write_file(dir / "llm.key", "sk-secret\n");
  ::chmod((dir / "llm.key").c_str(), 0600);
  r = run(config("contain = false", "api_key_file = \"llm.key\""), "d3");
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(r.err.find("can read every file this user can") != std::string::npos);
}
