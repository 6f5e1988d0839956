// Campaign reports: the metrics a user reads (fast_p, geomean, suspicious speedups, device
// and LLM totals) computed from a real store, and the HTML page rendered from them.
#include "coordinator/operator/report.h"

#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/process.h"
#include "coordinator/operator/outcome.h"
#include "tests/support/fixtures.h"
#include "tests/support/support.h"

using namespace kforge;
using kforge::test::TempDir;
using nlohmann::json;

namespace {

size_t occurrences(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + 1))
    ++n;
  return n;
}

double geometric_mean(const std::vector<double>& values) {
  double product = 1;
  for (double v : values) product *= v;
  return std::pow(product, 1.0 / static_cast<double>(values.size()));
}

// A campaign in a fresh database, built step by step the way the Conductor records it.
struct ReportFixture {
  TempDir dir;
  ManualClock clock;
  std::unique_ptr<Store> store;
  int64_t campaign = 0;
  int keys = 0;
  LlmUsage expected_llm;  // what the recorded calls add up to

  ReportFixture() {
    auto opened = Store::open(dir / "kforge.db", clock);
    REQUIRE_MESSAGE(opened.ok(), opened.status().to_string());
    store = std::move(opened).value();
    auto id = store->create_campaign("nightly", "[campaign]\n", "hash-1", Workflow::default_);
    REQUIRE(id.ok());
    campaign = *id;
  }

  int64_t task(const std::string& op, const std::string& task_type = "profile", int limit = 10) {
    TaskSpec spec = test::task_spec(op, "s0");
    spec.arch = "sm_90";
    spec.task_type = task_type;
    spec.limit_steps = limit;
    auto id = store->create_task(campaign, spec);
    REQUIRE_MESSAGE(id.ok(), id.status().to_string());
    clock.advance(Millis(10));
    return *id;
  }

  void step(int64_t task_id, const std::string& role, const std::string& verdict = "",
            bool counted = true) {
    StepRow s;
    s.task_id = task_id;
    s.role = parse_enum<Role>(role).value();
    s.input = "prompt";
    s.output = role == "coder" ? "```python\nclass ModelNew: ...\n```" : "output";
    s.verdict = parse_enum<Outcome>(verdict);
    s.counted = counted;
    REQUIRE(store->record_step(s).ok());
    clock.advance(Millis(5));
  }

  // A verify job that holds a device for `device_ms`, then the verifier step with `doc`.
  void verify(int64_t task_id, const json& doc, int64_t device_ms) {
    NewJob j;
    j.task_id = task_id;
    j.kind = JobKind::verify;
    auto id = store->enqueue_job(j);
    REQUIRE(id.ok());
    clock.advance(Millis(3));  // queued: not device time
    auto epoch = store->assign_job(*id, "agent-1", 0);
    REQUIRE(epoch.ok());
    clock.advance(Millis(device_ms));
    auto recorded = store->record_result(*id, *epoch, test::output_result("result"));
    REQUIRE(recorded.ok());
    REQUIRE(*recorded);
    std::string verdict = doc.value("verdict", "");
    StepRow s;
    s.task_id = task_id;
    s.role = Role::verifier;
    s.input = "job " + std::to_string(*id);
    s.output = doc.dump();
    s.verdict = parse_enum<Outcome>(verdict);
    s.counted = verdict != "infra_error";
    REQUIRE(store->record_step(s).ok());
    clock.advance(Millis(5));
  }

  static json passed(double speedup) {
    return {{"verdict", "passed"},
            {"profile",
             {{"speedup", speedup},
              {"candidate", {{"median_us", 100.0}}},
              {"reference", {{"median_us", 100.0 * speedup}}},
              {"suspicious", speedup > 10},
              {"method", "cuda_events"}}}};
  }

  void llm(int64_t task_id, const std::string& role, int64_t prompt, int64_t completion,
           double cost, LlmCallState status = LlmCallState::ok) {
    LlmCallRow call =
        test::llm_call(task_id, parse_enum<Role>(role).value(), "key-" + std::to_string(++keys));
    call.status = status;
    call.prompt_tokens = prompt;
    call.completion_tokens = completion;
    call.cost_usd = cost;
    REQUIRE(store->record_llm_call(call).ok());
    ++expected_llm.calls;
    expected_llm.prompt_tokens += prompt;
    expected_llm.completion_tokens += completion;
    expected_llm.cost_usd += cost;
  }

  // A finished task: passed, or failed with `verdict` and `reason`.
  void finish(int64_t task_id, bool ok, Outcome verdict = Outcome::passed,
              const std::string& reason = "") {
    REQUIRE(store
                ->set_task_state(task_id, ok ? TaskState::passed : TaskState::failed, verdict,
                                 ok ? "passed" : reason)
                .ok());
    clock.advance(Millis(5));
  }

  json report() {
    auto r = campaign_report(*store, campaign);
    REQUIRE_MESSAGE(r.ok(), r.status().to_string());
    return *r;
  }
};

// The campaign most tests read: four profiled passes (0.5x, 1.5x, 3x, 12x), a precision
// mismatch that ran out of steps, a task the LLM failed out, a pending one with a hostile
// name, and a precision_only pass.
struct Campaign : ReportFixture {
  int64_t relu, gelu, softmax, matmul, layernorm, conv, hostile, add;
  int64_t first_created_ms = 0, last_update_ms = 0;

  Campaign() {
    first_created_ms = clock.wall_ms();
    relu = task("relu");
    gelu = task("gelu");
    softmax = task("softmax");
    matmul = task("matmul");
    layernorm = task("layernorm", "profile", 4);
    conv = task("conv");
    hostile = task("<script>alert(1)</script>");
    add = task("add", "precision_only");

    step(relu, "designer");
    step(relu, "coder");
    llm(relu, "designer", 100, 10, 0.01);
    llm(relu, "coder", 200, 20, 0.02);
    verify(relu, passed(0.5), 1000);
    finish(relu, true);

    step(gelu, "coder");
    verify(gelu, {{"verdict", "compile_error"}, {"message", "SyntaxError"}}, 500);
    step(gelu, "coder");
    llm(gelu, "coder", 300, 30, 0.03);
    llm(gelu, "coder", 300, 30, 0.03);
    verify(gelu, passed(1.5), 1500);
    finish(gelu, true);

    step(softmax, "coder");
    llm(softmax, "coder", 400, 40, 0.04);
    verify(softmax, {{"verdict", "infra_error"}, {"message", "agent lost"}}, 200);  // not counted
    verify(softmax, passed(3.0), 800);
    finish(softmax, true);

    step(matmul, "coder");
    llm(matmul, "coder", 500, 50, 0.05);
    verify(matmul, passed(12.0), 2000);
    finish(matmul, true);

    step(layernorm, "coder");
    verify(layernorm, {{"verdict", "precision_mismatch"}}, 700);
    step(layernorm, "coder");
    llm(layernorm, "coder", 100, 10, 0.01);
    llm(layernorm, "coder", 100, 10, 0.01);
    llm(layernorm, "conductor", 50, 5, 0.005);
    verify(layernorm, {{"verdict", "precision_mismatch"}}, 300);

    step(conv, "coder", "llm_error", false);
    llm(conv, "coder", 0, 0, 0, LlmCallState::error);
    finish(conv, false, Outcome::llm_error, "the coder failed: <img src=x onerror=alert(1)>");

    step(add, "coder");
    llm(add, "coder", 60, 6, 0.006);
    verify(add, {{"verdict", "passed"}}, 400);  // precision_only: no profile
    finish(add, true);

    last_update_ms = clock.wall_ms();  // the last mutation happens now
    finish(layernorm, false, Outcome::precision_mismatch, "limit_steps reached");
  }

  const json& row(const json& r, int64_t task_id) {
    for (const json& t : r["tasks"]) {
      if (t["task"] == task_id) return t;
    }
    FAIL("no row for task " << task_id);
    static json none;
    return none;
  }
};

const std::vector<double> kSpeedups = {0.5, 1.5, 3.0, 12.0};

}  // namespace

TEST_CASE_FIXTURE(Campaign, "the report names the campaign and counts tasks by state and type") {
  json r = report();
  CHECK(r["report_version"] == kReportVersion);
  CHECK(r["campaign"]["id"] == campaign);
  CHECK(r["campaign"]["name"] == "nightly");
  CHECK(r["campaign"]["state"] == "running");
  CHECK(r["campaign"]["workflow"] == "default");
  CHECK(r["counts"]["total"] == 8);
  CHECK(r["counts"]["by_state"] ==
        json({{"pending", 1}, {"running", 0}, {"passed", 5}, {"failed", 2}, {"cancelled", 0}}));
  CHECK(r["counts"]["by_task_type"] == json({{"profile", 7}, {"precision_only", 1}}));
}

TEST_CASE_FIXTURE(Campaign,
                  "fast_0, fast_1 and fast_2 count over all tasks and over profiled tasks") {
  json m = report()["metrics"];
  // All 8 tasks: 5 passed; >1x: 1.5, 3, 12; >2x: 3, 12. The precision_only pass is correct
  // but never faster (nothing measured).
  CHECK(m["fast_0"] == json({{"count", 5}, {"of", 8}, {"value", 5.0 / 8}}));
  CHECK(m["fast_1"] == json({{"count", 3}, {"of", 8}, {"value", 3.0 / 8}}));
  CHECK(m["fast_2"] == json({{"count", 2}, {"of", 8}, {"value", 2.0 / 8}}));
  // Profiled only: 7 profile tasks.
  CHECK(m["profiled"]["tasks"] == 7);
  CHECK(m["profiled"]["fast_0"] == json({{"count", 4}, {"of", 7}, {"value", 4.0 / 7}}));
  CHECK(m["profiled"]["fast_1"] == json({{"count", 3}, {"of", 7}, {"value", 3.0 / 7}}));
  CHECK(m["profiled"]["fast_2"] == json({{"count", 2}, {"of", 7}, {"value", 2.0 / 7}}));
}

TEST_CASE_FIXTURE(Campaign, "the geomean is over correct profiled kernels; 12x is suspicious") {
  json r = report();
  const json& s = r["metrics"]["speedup"];
  CHECK(s["measured"] == 4);
  CHECK(s["geomean"].get<double>() == doctest::Approx(geometric_mean(kSpeedups)));
  CHECK(s["unflagged"] == 3);
  CHECK(s["geomean_unflagged"].get<double>() == doctest::Approx(geometric_mean({0.5, 1.5, 3.0})));
  CHECK(s["min"] == 0.5);
  CHECK(s["median"].get<double>() == doctest::Approx(2.25));
  CHECK(s["max"] == 12.0);
  CHECK(r["metrics"]["suspicious_threshold"] == kSuspiciousSpeedup);
  REQUIRE(r["suspicious"].size() == 1);
  const json& sus = r["suspicious"][0];
  CHECK(sus["task"] == matmul);
  CHECK(sus["op_name"] == "matmul");
  CHECK(sus["speedup"] == 12.0);
  CHECK(sus["above_threshold"] == true);
  CHECK(sus["harness_flag"] == true);
  CHECK(row(r, matmul)["suspicious"] == true);
  CHECK(row(r, softmax)["suspicious"] == false);
}

TEST_CASE_FIXTURE(Campaign,
                  "each task has a row: verdict, steps, speedup, LLM usage, device time") {
  json r = report();
  REQUIRE(r["tasks"].size() == 8);
  const json& m = row(r, matmul);
  CHECK(m["op_name"] == "matmul");
  CHECK(m["task_id"] == "s0");
  CHECK(m["task_type"] == "profile");
  CHECK(m["state"] == "passed");
  CHECK(m["verdict"] == "passed");
  CHECK(m["steps"] == 2);
  CHECK(m["limit_steps"] == 10);
  CHECK(m["best_step"] == 1);
  CHECK(m["speedup"] == 12.0);
  CHECK(m["candidate_us"] == 100.0);
  CHECK(m["reference_us"] == 1200.0);
  CHECK(m["llm_calls"] == 1);
  CHECK(m["prompt_tokens"] == 500);
  CHECK(m["completion_tokens"] == 50);
  CHECK(m["cost_usd"].get<double>() == doctest::Approx(0.05));
  CHECK(m["device_jobs"] == 1);
  CHECK(m["device_seconds"].get<double>() == doctest::Approx(2.0));

  const json& g = row(r, gelu);
  CHECK(g["steps"] == 4);
  CHECK(g["best_step"] == 3);  // the second coder step's code passed
  CHECK(g["verifier_steps"] == 2);
  CHECK(g["device_seconds"].get<double>() == doctest::Approx(2.0));  // 0.5 + 1.5

  const json& s = row(r, softmax);
  CHECK(s["steps"] == 2);  // the infra_error retry is not counted
  CHECK(s["verifier_steps"] == 2);

  const json& l = row(r, layernorm);
  CHECK(l["state"] == "failed");
  CHECK(l["verdict"] == "precision_mismatch");
  CHECK(l["reason"] == "limit_steps reached");
  CHECK(l["steps"] == 4);
  CHECK(l["limit_steps"] == 4);
  CHECK(l["speedup"].is_null());
  CHECK(l["best_step"].is_null());
  CHECK(l["llm_calls"] == 3);

  const json& c = row(r, conv);  // failed without ever being verified: its verdict says why
  CHECK(c["state"] == "failed");
  CHECK(c["verdict"] == "llm_error");
  CHECK(c["reason"] == "the coder failed: <img src=x onerror=alert(1)>");
  CHECK(c["device_seconds"] == 0.0);

  const json& a = row(r, add);
  CHECK(a["state"] == "passed");
  CHECK(a["task_type"] == "precision_only");
  CHECK(a["speedup"].is_null());
  CHECK(a["candidate_us"].is_null());

  const json& h = row(r, hostile);
  CHECK(h["state"] == "pending");
  CHECK(h["op_name"] == "<script>alert(1)</script>");
  CHECK(h["steps"] == 0);
}

TEST_CASE_FIXTURE(Campaign, "steps used by passed tasks and the verdict of every verifier step") {
  json r = report();
  const json& st = r["steps_used"];
  CHECK(st["passed"] == 5);
  // relu 3, gelu 4, softmax 2, matmul 2, add 2
  CHECK(st["histogram"] ==
        json::parse(R"([{"steps":2,"tasks":3},{"steps":3,"tasks":1},{"steps":4,"tasks":1}])"));
  CHECK(st["min"] == 2);
  CHECK(st["median"] == 2.0);
  CHECK(st["mean"].get<double>() == doctest::Approx(13.0 / 5));
  CHECK(st["max"] == 4);

  const json& v = r["verdicts"];
  CHECK(v["verifier_steps"] == 9);
  CHECK(v["counts"] == json::parse(R"([
    {"verdict": "passed", "steps": 5, "tasks": 5},
    {"verdict": "precision_mismatch", "steps": 2, "tasks": 1},
    {"verdict": "compile_error", "steps": 1, "tasks": 1},
    {"verdict": "infra_error", "steps": 1, "tasks": 1}])"));
}

TEST_CASE_FIXTURE(Campaign, "LLM totals and per-role usage add up the recorded calls") {
  json r = report();
  const json& llm = r["llm"];
  CHECK(llm["calls"] == expected_llm.calls);
  CHECK(llm["prompt_tokens"] == expected_llm.prompt_tokens);
  CHECK(llm["completion_tokens"] == expected_llm.completion_tokens);
  CHECK(llm["cost_usd"].get<double>() == doctest::Approx(expected_llm.cost_usd));
  CHECK(llm["errors"] == 1);
  CHECK(llm["cost_per_passed_usd"].get<double>() == doctest::Approx(expected_llm.cost_usd / 5));
  REQUIRE(llm["by_role"].size() == 3);
  CHECK(llm["by_role"][0]["role"] == "coder");
  CHECK(llm["by_role"][0]["calls"] == 9);
  CHECK(llm["by_role"][0]["errors"] == 1);
  CHECK(llm["by_role"][1]["role"] == "conductor");
  CHECK(llm["by_role"][1]["calls"] == 1);
  CHECK(llm["by_role"][1]["prompt_tokens"] == 50);
  CHECK(llm["by_role"][2]["role"] == "designer");
  CHECK(llm["by_role"][2]["cost_usd"].get<double>() == doctest::Approx(0.01));
  // The per-task rows add up to the same totals.
  int64_t calls = 0, prompt = 0;
  for (const json& t : r["tasks"]) {
    calls += t["llm_calls"].get<int64_t>();
    prompt += t["prompt_tokens"].get<int64_t>();
  }
  CHECK(calls == expected_llm.calls);
  CHECK(prompt == expected_llm.prompt_tokens);
}

TEST_CASE_FIXTURE(Campaign,
                  "device hours sum the done jobs; wall time spans first task to last update") {
  json r = report();
  // 1000 + 500 + 1500 + 200 + 800 + 2000 + 700 + 300 + 400 ms over 9 jobs.
  CHECK(r["device"]["jobs"] == 9);
  CHECK(r["device"]["seconds"].get<double>() == doctest::Approx(7.4));
  CHECK(r["device"]["hours"].get<double>() == doctest::Approx(7.4 / 3600));
  CHECK(r["wall"]["start_ms"] == first_created_ms);
  CHECK(r["wall"]["end_ms"] == last_update_ms);
  const double wall_s = static_cast<double>(last_update_ms - first_created_ms) / 1000;
  CHECK(r["wall"]["seconds"].get<double>() == doctest::Approx(wall_s));
  CHECK(r["device"]["mean_busy_devices"].get<double>() == doctest::Approx(7.4 / wall_s));
  // Every verify job ran on agent-1's device 0 (an agent this store never registered).
  REQUIRE(r["device"]["per_device"].size() == 1);
  const json& dev = r["device"]["per_device"][0];
  CHECK(dev["device"] == "cpu:0");
  CHECK(dev["host"].is_null());
  CHECK(dev["jobs"] == 9);
  CHECK(dev["busy_seconds"].get<double>() == doctest::Approx(7.4));
}

TEST_CASE_FIXTURE(ReportFixture, "device time counts the final lease of done jobs only") {
  int64_t t = task("relu");
  auto job = [&] {
    NewJob j;
    j.task_id = t;
    j.kind = JobKind::verify;
    auto id = store->enqueue_job(j);
    REQUIRE(id.ok());
    return *id;
  };
  // A lease lost to a requeue (agent lost after 9 s), then 700 ms to the result.
  int64_t requeued = job();
  REQUIRE(store->assign_job(requeued, "agent-1", 0).ok());
  clock.advance(Millis(9000));
  REQUIRE(store->requeue_job(requeued).ok());
  clock.advance(Millis(50));
  auto epoch = store->assign_job(requeued, "agent-2", 0);
  REQUIRE(epoch.ok());
  clock.advance(Millis(700));
  REQUIRE(*store->record_result(requeued, *epoch, test::output_result("result")));
  // Cancelled while running, and never assigned: neither counts.
  int64_t cancelled = job();
  REQUIRE(store->assign_job(cancelled, "agent-1", 1).ok());
  clock.advance(Millis(4000));
  REQUIRE(store->cancel_job(cancelled).ok());
  job();
  json r = report();
  CHECK(r["device"]["jobs"] == 1);
  CHECK(r["device"]["seconds"].get<double>() == doctest::Approx(0.7));
  CHECK(r["tasks"][0]["device_jobs"] == 1);
  CHECK(r["tasks"][0]["device_seconds"].get<double>() == doctest::Approx(0.7));
}

// Two agents, three devices, known lease times: what per_device, the window and the rates
// must say. Hosts sort "alpha" before "zeta&co", so agent-2 comes first.
struct TwoAgents : ReportFixture {
  int64_t t1 = 0, t2 = 0;

  TwoAgents() {
    const AgentRow one{"agent-1", "inc-1", "zeta&co", AgentState::live, false, "{}"};
    const AgentRow two{"agent-2", "inc-1", "alpha", AgentState::live, false, "{}"};
    const std::vector<DeviceRow> h200s = {{"", 0, "cuda", "sm_90", "H200", 141'000},
                                          {"", 1, "cuda", "sm_90", "H200", 141'000}};
    REQUIRE(store->upsert_agent(one, h200s).ok());
    REQUIRE(store->upsert_agent(two, {{"", 0, "cuda", "sm_80", "A100", 80'000}}).ok());
    t1 = task("relu");
    t2 = task("gelu");
    int64_t j1 = job(t1), j2 = job(t2), j3 = job(t1), j4 = job(t2), cancelled = job(t1);
    job(t2);                                // never assigned
    clock.advance(Millis(500));             // queued: not in the window
    int64_t e1 = assign(j1, "agent-1", 0);  // 0 ms
    clock.advance(Millis(1000));
    int64_t e2 = assign(j2, "agent-2", 0);  // 1000 ms
    clock.advance(Millis(2000));
    done(j1, e1);                           // 3000 ms: agent-1 cuda:0 busy 3000
    int64_t e3 = assign(j3, "agent-1", 1);  // 3000 ms
    clock.advance(Millis(2000));
    done(j2, e2);  // 5000 ms: agent-2 cuda:0 busy 4000
    clock.advance(Millis(1000));
    done(j3, e3);                           // 6000 ms: agent-1 cuda:1 busy 3000
    int64_t e4 = assign(j4, "agent-1", 0);  // 6000 ms
    clock.advance(Millis(2000));
    done(j4, e4);  // 8000 ms: agent-1 cuda:0 busy 2000 more; the window ends here
    assign(cancelled, "agent-2", 0);
    clock.advance(Millis(4000));
    REQUIRE(store->cancel_job(cancelled).ok());  // not done: neither busy nor in the window
  }

  int64_t job(int64_t task_id, const std::string& arch = "") {
    NewJob j;
    j.task_id = task_id;
    j.kind = JobKind::verify;
    j.backend = "cuda";
    j.arch = arch;
    auto id = store->enqueue_job(j);
    REQUIRE(id.ok());
    return *id;
  }
  int64_t assign(int64_t job_id, const std::string& agent, int device) {
    auto epoch = store->assign_job(job_id, agent, device);
    REQUIRE_MESSAGE(epoch.ok(), epoch.status().to_string());
    return *epoch;
  }
  void done(int64_t job_id, int64_t epoch) {
    auto recorded = store->record_result(job_id, epoch, test::output_result("result"));
    REQUIRE(recorded.ok());
    REQUIRE(*recorded);
  }
};

TEST_CASE_FIXTURE(TwoAgents,
                  "per-device use: busy time and utilisation over the campaign's device window") {
  const json d = report()["device"];
  CHECK(d["jobs"] == 4);
  CHECK(d["seconds"] == 12.0);  // 3 + 4 + 3 + 2
  CHECK(d["devices_used"] == 3);
  CHECK(d["window_seconds"] == 8.0);    // first assignment (0 ms) to last result (8000 ms)
  CHECK(d["jobs_per_minute"] == 30.0);  // 4 jobs / (8 s / 60)
  CHECK(d["per_device"] == json::parse(R"([
    {"agent": "agent-2", "host": "alpha", "device": "cuda:0", "arch": "sm_80",
     "jobs": 1, "busy_seconds": 4.0, "utilisation": 0.5},
    {"agent": "agent-1", "host": "zeta&co", "device": "cuda:0", "arch": "sm_90",
     "jobs": 2, "busy_seconds": 5.0, "utilisation": 0.625},
    {"agent": "agent-1", "host": "zeta&co", "device": "cuda:1", "arch": "sm_90",
     "jobs": 1, "busy_seconds": 3.0, "utilisation": 0.375}])"));
}

TEST_CASE_FIXTURE(TwoAgents,
                  "the page lists each device with its host, busy time and utilisation") {
  std::string html = report_html(report());
  CHECK(html.find("<h2>Devices</h2>") != std::string::npos);
  CHECK(occurrences(html, "<table class=\"devices\">") == 1);
  CHECK(html.find("<td>cuda:0<div class=\"reason\">sm_80</div></td><td>alpha<div "
                  "class=\"reason\">agent-2</div></td><td class=\"n\">1</td><td "
                  "class=\"n\">4.0 s</td><td class=\"n\">50.0%</td>") != std::string::npos);
  CHECK(html.find("zeta&amp;co") != std::string::npos);  // escaped
  CHECK(html.find("zeta&co") == std::string::npos);
  CHECK(html.find("62.5%") != std::string::npos);
  CHECK(html.find("3 devices used; window 8.0 s") != std::string::npos);
  CHECK(html.find("30.00 jobs per minute") != std::string::npos);
}

TEST_CASE_FIXTURE(ReportFixture,
                  "a device of an agent the store does not know: host null, the jobs' arch") {
  int64_t t = task("relu");
  NewJob j;
  j.task_id = t;
  j.backend = "cuda";
  j.arch = "sm_90";
  auto id = store->enqueue_job(j);
  REQUIRE(id.ok());
  auto epoch = store->assign_job(*id, "ghost", 2);
  REQUIRE(epoch.ok());
  clock.advance(Millis(250));
  REQUIRE(*store->record_result(*id, *epoch, test::output_result("result")));
  const json d = report()["device"];
  CHECK(d["window_seconds"] == 0.25);
  CHECK(d["jobs_per_minute"] == 240.0);
  CHECK(d["per_device"] == json::parse(R"([{"agent": "ghost", "host": null, "device": "cuda:2",
    "arch": "sm_90", "jobs": 1, "busy_seconds": 0.25, "utilisation": 1.0}])"));
  CHECK(report_html(report()).find("<td>–<div class=\"reason\">ghost</div></td>") !=
        std::string::npos);
}

TEST_CASE_FIXTURE(ReportFixture, "without done jobs the window and the rates are null") {
  int64_t t = task("relu");
  NewJob j;
  j.task_id = t;
  REQUIRE(store->enqueue_job(j).ok());  // queued, never run
  json r = report();
  const json& d = r["device"];
  CHECK(d["jobs"] == 0);
  CHECK(d["devices_used"] == 0);
  CHECK(d["per_device"] == json::array());
  CHECK(d["window_seconds"].is_null());
  CHECK(d["jobs_per_minute"].is_null());
  CHECK(report_html(r).find("No device ran a job of this campaign.") != std::string::npos);
}

TEST_CASE_FIXTURE(
    Campaign,
    "the HTML page has the cards, the table rows and the plots, and escapes the store's strings") {
  json r = report();
  std::string html = report_html(r);
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(html.find("</html>") != std::string::npos);
  // No external assets and no script of any kind.
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("<link") == std::string::npos);
  CHECK(html.find("url(") == std::string::npos);
  CHECK(html.find("https://") == std::string::npos);
  CHECK(occurrences(html, "http://") ==
        occurrences(html, "http://www.w3.org/2000/svg"));  // the SVG namespace
  // The hostile op name and failure reason come out as text.
  CHECK(html.find("&lt;script&gt;alert(1)&lt;/script&gt;") != std::string::npos);
  CHECK(html.find("&lt;img src=x onerror=alert(1)&gt;") != std::string::npos);
  CHECK(html.find("<img") == std::string::npos);
  // One row per task, with its numbers.
  CHECK(occurrences(html, "<tr class=\"") == 8);
  CHECK(html.find("<td>matmul</td>") != std::string::npos);
  CHECK(html.find("<td>layernorm</td>") != std::string::npos);
  CHECK(html.find("12.00× ⚠") != std::string::npos);  // the suspicious speedup is marked
  CHECK(html.find("2 / 10") != std::string::npos);    // steps used / limit
  CHECK(html.find("4 / 4") != std::string::npos);
  // Summary cards.
  CHECK(html.find("62.5%") != std::string::npos);  // fast_0 = 5/8
  CHECK(html.find("37.5%") != std::string::npos);  // fast_1 = 3/8
  char geomean[32];
  std::snprintf(geomean, sizeof geomean, "%.2f×", geometric_mean(kSpeedups));
  CHECK(html.find(geomean) != std::string::npos);
  // Three plots: speedups (with the 1x and 10x lines), steps, verdicts.
  CHECK(occurrences(html, "<svg") == 3);
  CHECK(html.find("1× (reference)") != std::string::npos);
  CHECK(html.find("10× suspicious") != std::string::npos);
  CHECK(html.find(">precision_mismatch</text>") != std::string::npos);
  CHECK(html.find("Suspicious speedups") != std::string::npos);
}

TEST_CASE_FIXTURE(
    ReportFixture,
    "a hostile campaign name and op name are escaped; a hostile verdict never reaches the report") {
  campaign = store->create_campaign("<b>done</b>", "", "hash-hostile").value();
  int64_t t = task("op\"'&");
  step(t, "coder");
  verify(t, {{"verdict", "<svg onload=alert(1)>"}}, 100);  // not a verdict: the step has none
  std::string html = report_html(report());
  CHECK(html.find("svg onload") == std::string::npos);
  CHECK(html.find("&lt;b&gt;done&lt;/b&gt;") != std::string::npos);
  CHECK(html.find("<td>op&quot;&#39;&amp;</td>") != std::string::npos);
}

TEST_CASE_FIXTURE(Campaign, "a read-only store gives the same report") {
  auto reader = Store::open_readonly(dir / "kforge.db", clock);
  REQUIRE_MESSAGE(reader.ok(), reader.status().to_string());
  auto r = campaign_report(**reader, campaign);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  CHECK(*r == report());
}

TEST_CASE_FIXTURE(ReportFixture, "an unknown campaign is not_found, naming the id") {
  auto r = campaign_report(*store, 4242);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Code::not_found);
  CHECK(r.status().message().find("no campaign with id 4242") != std::string::npos);
}

TEST_CASE_FIXTURE(ReportFixture,
                  "a campaign without tasks has null rates and a page without plots") {
  json r = report();
  CHECK(r["counts"]["total"] == 0);
  CHECK(r["metrics"]["fast_0"]["value"].is_null());
  CHECK(r["metrics"]["fast_1"]["of"] == 0);
  CHECK(r["metrics"]["speedup"]["geomean"].is_null());
  CHECK(r["steps_used"]["median"].is_null());
  CHECK(r["wall"]["seconds"].is_null());
  CHECK(r["device"]["seconds"] == 0.0);
  CHECK(r["llm"]["cost_per_passed_usd"].is_null());
  std::string html = report_html(r);
  CHECK(html.find("<svg") == std::string::npos);
  CHECK(html.find("This campaign has no tasks.") != std::string::npos);
}

TEST_CASE_FIXTURE(ReportFixture,
                  "a non-numeric speedup is not measured but the harness's flag is listed") {
  int64_t t = task("weird");
  step(t, "coder");
  verify(t, {{"verdict", "passed"}, {"profile", {{"speedup", "inf"}, {"suspicious", true}}}}, 100);
  finish(t, true);
  auto outcome = task_outcome(*store, *store->get_task(t));
  REQUIRE(outcome.ok());
  CHECK(outcome->speedup == 0);
  CHECK(outcome->harness_suspicious);
  json r = report();
  CHECK(r["metrics"]["fast_0"]["count"] == 1);
  CHECK(r["metrics"]["fast_1"]["count"] == 0);
  CHECK(r["metrics"]["speedup"]["measured"] == 0);
  REQUIRE(r["suspicious"].size() == 1);
  CHECK(r["suspicious"][0]["speedup"].is_null());
  CHECK(r["suspicious"][0]["harness_flag"] == true);
  CHECK(r["suspicious"][0]["above_threshold"] == false);
}

TEST_CASE_FIXTURE(ReportFixture,
                  "strings that are not UTF-8 are repaired so the document serialises") {
  int64_t t = task(std::string("bad\xff") + "op");
  (void)t;
  json r = report();
  std::string dumped;
  CHECK_NOTHROW(dumped = r.dump());
  CHECK(r["tasks"][0]["op_name"] == "bad\xEF\xBF\xBDop");
}

// Every string of `j`, at any depth, with `tail` appended.
json tainted(const json& j, const std::string& tail) {
  if (j.is_string()) return j.get<std::string>() + tail;
  json out = j;
  if (j.is_structured()) {
    for (auto& item : out.items()) item.value() = tainted(item.value(), tail);
  }
  return out;
}

TEST_CASE_FIXTURE(Campaign, "every string the page shows is escaped once, in text and attributes") {
  // The report's markup lives in report_parts.html; report.cpp fills its placeholders. A
  // string anywhere in the document (name, state, verdict, reason, role, device, ...) must come
  // out as text, whichever piece shows it, and escaped once only.
  json r = tainted(report(), "<x>\"'&");
  r["campaign"]["name"] = "<x>\"'&";
  const std::string html = report_html(r);
  CHECK(html.find("<x>") == std::string::npos);
  CHECK(html.find("&amp;lt;") == std::string::npos);  // not escaped twice
  CHECK(html.find("&lt;x&gt;&quot;&#39;&amp;") != std::string::npos);
  CHECK(html.find("<title>kforge report: &lt;x&gt;&quot;&#39;&amp;</title>") != std::string::npos);
  CHECK(html.find("<tr class=\"passed&lt;x&gt;&quot;&#39;&amp;\">") != std::string::npos);
  // Every placeholder of the page and its pieces was filled.
  CHECK(html.find("{{") == std::string::npos);
  CHECK(html.find("}}") == std::string::npos);
}

TEST_CASE("report_html renders any JSON value without throwing") {
  for (const json& doc :
       {json(nullptr), json(42), json::array(), json::object(),
        json::parse(R"({"tasks": [{"speedup": "fast", "state": 3}, 7],
                                          "metrics": {"fast_0": []}, "steps_used": {"histogram": [{"steps": -1}]},
                                          "verdicts": {"counts": [{"verdict": 1, "steps": 1e300}]},
                                          "device": {"per_device": [1, {"host": 3, "utilisation": "x"}]}})"),
        json::parse(R"({"tasks": [{"best_by_generation": [{"generation": -1, "speedup": 2},
                                                     {"generation": 1e300, "speedup": 1e308}, 3],
                                          "lineage": [4, {"steps": [{"seq": "x"}]}]}],
                                          "by_generation": {"generations": 3, "tasks_measured": 1,
                                            "points": [{"generation": 1, "tasks": 1, "geomean": 1e-300}, "z"]},
                                          "metrics": {"fast_p": [1, {"p": "x"}], "at_k": [{"fast_p": 2}]}})")}) {
    std::string html;
    CHECK_NOTHROW(html = report_html(doc));
    CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  }
}

// ---- Search: fast_p at several p and k, speedup by generation, the winner's lineage --------

// A best_of_n campaign of three chains a task, its candidates recorded as the Conductor
// records them (each verifier step judges one; parent_id links them, here across chains too,
// as an evolve search does). Every expected number below is worked out by hand from these.
//
//   task A (profile, passed): seq 1 designer, 2 coder, 3 verifier  chain 0  A1 gen 1 compile_error
//                             seq 4 designer, 5 coder, 6 verifier  chain 1  A2 gen 1 passed 0.8x
//                             seq 7 conductor, 8 coder, 9 verifier chain 0  A3 gen 2 passed 1.2x
//                             parent A1 seq 10 coder, 11 verifier            chain 2  A4 gen 3
//                             passed 3.0x  parent A3
//   task B (profile, passed): B1 chain 0 gen 1 passed 1.6x; B2 chain 1 gen 1 runtime_error;
//                             B3 chain 1 gen 2 passed 0.5x (parent B2); chain 2 found nothing
//   task C (profile, failed): C1 chain 0 gen 1 compile_error
//   task D (precision_only, passed): D1 chain 0 gen 1 passed, not timed
struct SearchCampaign : ReportFixture {
  int64_t a = 0, b = 0, c = 0, d = 0;
  int64_t a1 = 0, a3 = 0, a4 = 0, b1 = 0;
  std::vector<int64_t> a_steps;  // step ids by seq - 1

  int64_t add_step(int64_t task_id, Role role, int64_t sample, const json& verdict_doc = nullptr) {
    StepRow s;
    s.task_id = task_id;
    s.role = role;
    s.sample = sample;
    s.input = "prompt";
    s.output = role == Role::coder ? "```python\nclass ModelNew: ...\n```" : "output";
    if (role == Role::verifier) {
      s.output = verdict_doc.dump();
      s.verdict = parse_enum<Outcome>(verdict_doc.value("verdict", ""));
    }
    auto id = store->record_step(s);
    REQUIRE_MESSAGE(id.ok(), id.status().to_string());
    clock.advance(Millis(5));
    return *id;
  }

  // A coder step and the verifier step judging its code (with `before` steps first), and the
  // candidate they make.
  int64_t candidate(int64_t task_id, int64_t sample, int64_t generation, const json& doc,
                    std::optional<int64_t> parent = std::nullopt, std::vector<Role> before = {}) {
    for (Role r : before) add_step(task_id, r, sample);
    const int64_t coder = add_step(task_id, Role::coder, sample);
    const int64_t verifier = add_step(task_id, Role::verifier, sample, doc);
    CandidateRow row;
    row.task_id = task_id;
    row.sample = sample;
    row.step_id = verifier;
    row.code_step_id = coder;
    row.parent_id = parent;
    row.generation = generation;
    row.verdict = parse_enum<Verdict>(doc.value("verdict", "")).value();
    if (doc.contains("profile")) row.speedup = doc["profile"]["speedup"].get<double>();
    row.score = row.verdict != Verdict::passed ? 0 : row.speedup ? *row.speedup : 1;
    auto id = store->record_candidate(row);
    REQUIRE_MESSAGE(id.ok(), id.status().to_string());
    return *id;
  }

  SearchCampaign() {
    auto id = store->create_campaign("search", "[campaign]\n", "hash-2", Workflow::default_,
                                     "kforge", R"({"strategy":"best_of_n","samples":3})");
    REQUIRE(id.ok());
    campaign = *id;
    a = task("a");
    b = task("b");
    c = task("c");
    d = task("d", "precision_only");
    a1 = candidate(a, 0, 1, {{"verdict", "compile_error"}}, std::nullopt, {Role::designer});
    candidate(a, 1, 1, passed(0.8), std::nullopt, {Role::designer});
    a3 = candidate(a, 0, 2, passed(1.2), a1, {Role::conductor});
    a4 = candidate(a, 2, 3, passed(3.0), a3);
    finish(a, true);
    b1 = candidate(b, 0, 1, passed(1.6));
    const int64_t b2 = candidate(b, 1, 1, {{"verdict", "runtime_error"}});
    candidate(b, 1, 2, passed(0.5), b2);
    finish(b, true);
    candidate(c, 0, 1, {{"verdict", "compile_error"}});
    finish(c, false, Outcome::compile_error, "limit_steps reached");
    candidate(d, 0, 1, {{"verdict", "passed"}});
    finish(d, true);
  }

  const json& row(const json& r, int64_t task_id) {
    for (const json& t : r["tasks"]) {
      if (t["task"] == task_id) return t;
    }
    FAIL("no row for task " << task_id);
    static const json none;
    return none;
  }
};

// {p: value} of a fast_p array, to compare with the hand-worked numbers.
std::map<double, double> values_by_p(const json& fast_p) {
  std::map<double, double> out;
  for (const json& f : fast_p) out[f["p"].get<double>()] = f["value"].get<double>();
  return out;
}

TEST_CASE_FIXTURE(SearchCampaign, "fast_p at p = 0, 1, 1.5 and 2 counts each task's best kernel") {
  json m = report()["metrics"];
  REQUIRE(m["fast_p"].size() == 4);
  // All 4 tasks: A (3.0x), B (1.6x) and D (untimed) passed.
  CHECK(m["fast_p"][0] == json::parse(R"({"p": 0.0, "count": 3, "of": 4, "value": 0.75})"));
  CHECK(m["fast_p"][1] == json::parse(R"({"p": 1.0, "count": 2, "of": 4, "value": 0.5})"));
  CHECK(m["fast_p"][2] == json::parse(R"({"p": 1.5, "count": 2, "of": 4, "value": 0.5})"));
  CHECK(m["fast_p"][3] == json::parse(R"({"p": 2.0, "count": 1, "of": 4, "value": 0.25})"));
  // The 3 profiled tasks (D is precision_only).
  std::map<double, double> profiled = values_by_p(m["profiled"]["fast_p"]);
  CHECK(profiled[0] == doctest::Approx(2.0 / 3));
  CHECK(profiled[1] == doctest::Approx(2.0 / 3));
  CHECK(profiled[1.5] == doctest::Approx(2.0 / 3));
  CHECK(profiled[2] == doctest::Approx(1.0 / 3));
  // The older fields say the same.
  CHECK(m["fast_1"]["count"] == 2);
  CHECK(m["fast_2"]["count"] == 1);
}

TEST_CASE_FIXTURE(SearchCampaign,
                  "pass@k and fast_p@k follow KernelBench's unbiased estimator over the chains") {
  // Chains (of n = 3) with a candidate counting for p, per task:
  //         p=0  p=1  p=1.5  p=2
  //   A      3    2    1      1
  //   B      2    1    1      0
  //   C      0    0    0      0
  //   D      1    0    0      0
  // at k: 1 - C(3-c, k) / C(3, k), averaged over the 4 tasks. k=1: c/3; k=2: 0, 2/3, 1, 1 for
  // c = 0..3; k=3: 1 for any c > 0.
  json at = report()["metrics"]["at_k"];
  REQUIRE(at.size() == 3);
  CHECK(at[0]["k"] == 1);
  CHECK(at[1]["k"] == 2);
  CHECK(at[2]["k"] == 3);
  const std::map<double, double> k1 = values_by_p(at[0]["fast_p"]),
                                 k2 = values_by_p(at[1]["fast_p"]),
                                 k3 = values_by_p(at[2]["fast_p"]);
  CHECK(k1.at(0) == doctest::Approx(6.0 / 12));
  CHECK(k1.at(1) == doctest::Approx(3.0 / 12));
  CHECK(k1.at(1.5) == doctest::Approx(2.0 / 12));
  CHECK(k1.at(2) == doctest::Approx(1.0 / 12));
  CHECK(k2.at(0) == doctest::Approx((1 + 1 + 0 + 2.0 / 3) / 4));
  CHECK(k2.at(1) == doctest::Approx((1 + 2.0 / 3) / 4));
  CHECK(k2.at(1.5) == doctest::Approx((2.0 / 3 + 2.0 / 3) / 4));
  CHECK(k2.at(2) == doctest::Approx((2.0 / 3) / 4));
  CHECK(k3.at(0) == doctest::Approx(0.75));
  CHECK(k3.at(1) == doctest::Approx(0.5));
  CHECK(k3.at(1.5) == doctest::Approx(0.5));
  CHECK(k3.at(2) == doctest::Approx(0.25));
  // "pass" and "fast_1" are p = 0 and p = 1.
  CHECK(at[1]["pass"].get<double>() == doctest::Approx(k2.at(0)));
  CHECK(at[1]["fast_1"].get<double>() == doctest::Approx(k2.at(1)));
}

TEST_CASE_FIXTURE(SearchCampaign,
                  "the best speedup so far by generation, per task and over tasks") {
  json r = report();
  const json& best_a = row(r, a)["best_by_generation"];
  REQUIRE(best_a.size() == 3);
  CHECK(best_a[2]["candidate"] == a4);
  CHECK(best_a[2]["speedup"] == 3.0);
  CHECK(row(r, b)["best_by_generation"].size() == 1);  // 0.5x at generation 2 is no better
  CHECK(row(r, b)["best_by_generation"][0]["speedup"] == 1.6);
  CHECK(row(r, d)["best_by_generation"].empty());  // untimed
  const json& g = r["by_generation"];
  CHECK(g["generations"] == 3);
  CHECK(g["tasks_measured"] == 2);
  REQUIRE(g["points"].size() == 3);
  // Generation 1: A 0.8, B 1.6; 2: A 1.2, B 1.6; 3: A 3.0, B 1.6.
  struct Want {
    double geomean, p25, median, p75, max;
  };
  const Want want[] = {{std::sqrt(0.8 * 1.6), 1.0, 1.2, 1.4, 1.6},
                       {std::sqrt(1.2 * 1.6), 1.3, 1.4, 1.5, 1.6},
                       {std::sqrt(3.0 * 1.6), 1.95, 2.3, 2.65, 3.0}};
  for (int i = 0; i < 3; ++i) {
    const json& p = g["points"][i];
    CAPTURE(i);
    CHECK(p["generation"] == i + 1);
    CHECK(p["tasks"] == 2);
    CHECK(p["geomean"].get<double>() == doctest::Approx(want[i].geomean));
    CHECK(p["p25"].get<double>() == doctest::Approx(want[i].p25));
    CHECK(p["median"].get<double>() == doctest::Approx(want[i].median));
    CHECK(p["p75"].get<double>() == doctest::Approx(want[i].p75));
    CHECK(p["max"].get<double>() == doctest::Approx(want[i].max));
  }
}

TEST_CASE_FIXTURE(SearchCampaign,
                  "the winner's lineage runs through parent_id, first ancestor first, with the "
                  "steps that made each") {
  json r = report();
  const json& ra = row(r, a);
  CHECK(ra["winner"] == a4);
  CHECK(ra["best_step"] == 10);  // the winner's coder step, as the task's outcome says
  const json& lineage = ra["lineage"];
  REQUIRE(lineage.size() == 3);
  std::vector<int64_t> ids;
  for (const json& l : lineage) ids.push_back(l["candidate"].get<int64_t>());
  CHECK(ids == std::vector<int64_t>{a1, a3, a4});  // A2 (chain 1) is no ancestor
  CHECK(lineage[0]["parent"].is_null());
  CHECK(lineage[1]["parent"] == a1);
  CHECK(lineage[2]["parent"] == a3);
  CHECK(lineage[0]["verdict"] == "compile_error");
  CHECK(lineage[0]["speedup"].is_null());
  CHECK(lineage[2]["speedup"] == 3.0);
  CHECK(lineage[2]["sample"] == 2);
  CHECK(lineage[2]["generation"] == 3);
  CHECK(lineage[2]["verifier_step"] == 11);
  CHECK(lineage[2]["code_step"] == 10);
  auto seqs = [](const json& l) {
    std::vector<std::string> out;
    for (const json& s : l["steps"])
      out.push_back(std::to_string(s["seq"].get<int>()) + " " + s["role"].get<std::string>());
    return out;
  };
  CHECK(seqs(lineage[0]) == std::vector<std::string>{"1 designer", "2 coder", "3 verifier"});
  CHECK(seqs(lineage[1]) == std::vector<std::string>{"7 conductor", "8 coder", "9 verifier"});
  CHECK(seqs(lineage[2]) == std::vector<std::string>{"10 coder", "11 verifier"});
  // B's winner is its first candidate, alone; C has none; D's untimed pass is its winner.
  CHECK(row(r, b)["winner"] == b1);
  CHECK(row(r, b)["lineage"].size() == 1);
  CHECK(row(r, c)["winner"].is_null());
  CHECK(row(r, c)["lineage"].empty());
  CHECK(row(r, d)["lineage"].size() == 1);
}

// The SVG elements of `html` parsed by Python's XML parser (a real parser: a malformed plot
// fails it): one line per <svg>, its aria-label and a count of each element name.
std::string parsed_svgs(const std::string& html) {
  std::string svgs;
  for (size_t at = html.find("<svg"); at != std::string::npos; at = html.find("<svg", at + 1)) {
    svgs += html.substr(at, html.find("</svg>", at) + 6 - at) + "\n";
  }
  ProcessSpec spec;
  spec.argv = {"/usr/bin/python3", "-c",
               "import sys, collections, xml.etree.ElementTree as ET\n"
               "for line in sys.stdin:\n"
               "    root = ET.fromstring(line)\n"
               "    names = collections.Counter(e.tag.split('}')[1] for e in root.iter())\n"
               "    print(root.get('aria-label'), dict(sorted(names.items())))\n"};
  spec.env_allow = {"PATH", "HOME"};
  spec.stdin_data = svgs;
  spec.timeout = std::chrono::seconds(60);
  auto r = run_process(spec);
  REQUIRE(r.ok());
  REQUIRE_MESSAGE(r->exit_code == 0, r->stderr_data);
  return r->stdout_data;
}

TEST_CASE_FIXTURE(
    SearchCampaign,
    "the HTML report shows fast_p, pass@k, the generation plot (well-formed SVG) and the lineage") {
  const std::string html = report_html(report());
  CHECK(html.find("<h2>fast_p</h2>") != std::string::npos);
  CHECK(html.find("fast_1.5@k") != std::string::npos);
  CHECK(html.find("pass@k") != std::string::npos);
  const std::string svgs = parsed_svgs(html);
  // One line per task with a measured kernel (2), the geomean line and a point per generation.
  CHECK_MESSAGE(svgs.find("Best speedup so far by generation {'circle': 3,") != std::string::npos,
                svgs);
  CHECK_MESSAGE(svgs.find("'polyline': 3, 'svg': 1") != std::string::npos, svgs);
  CHECK(html.find("<h2>Winners' lineage</h2>") != std::string::npos);
  CHECK(html.find("7 conductor · 8 coder · 9 verifier") != std::string::npos);
}

TEST_CASE_FIXTURE(Campaign,
                  "a campaign without recorded candidates (run before migration 0012) has fast_p "
                  "but no lineage or generation plot") {
  json r = report();
  CHECK(r["metrics"]["fast_p"][1]["count"] == r["metrics"]["fast_1"]["count"]);
  CHECK(r["metrics"]["fast_p"][3]["count"] == r["metrics"]["fast_2"]["count"]);
  CHECK(r["by_generation"] ==
        json::parse(R"({"generations": 0, "tasks_measured": 0, "points": []})"));
  for (const json& t : r["tasks"]) {
    CHECK(t["winner"].is_null());
    CHECK(t["lineage"].empty());
  }
  const std::string html = report_html(r);
  CHECK(html.find("No candidate passed with a measured speedup.") != std::string::npos);
  CHECK(html.find("No candidate is recorded for this campaign") != std::string::npos);
}

TEST_CASE_FIXTURE(
    SearchCampaign,
    "the text report gives fast_p, pass@k, speedup by generation and the winners' lineage") {
  const std::string text = report_text(report());
  CAPTURE(text);
  CHECK(text.rfind("campaign 2 search (running): 4 tasks\n", 0) == 0);
  CHECK(text.find("\nfast_p        all tasks              profiled tasks\n") != std::string::npos);
  CHECK(text.find("\nfast_1.5        50.0% (2 of 4)         66.7% (2 of 3)\n") !=
        std::string::npos);
  CHECK(text.find("fast_2@k") != std::string::npos);
  CHECK(text.find("\n1            50.0%        25.0%        16.7%         8.3%\n") !=
        std::string::npos);
  CHECK(text.find("\n3            75.0%        50.0%        50.0%        25.0%\n") !=
        std::string::npos);
  CHECK(text.find("\n3               2    2.19×   2.30×  3.00×\n") != std::string::npos);
  CHECK(text.find("  a s0 (task 1, step 10): #1 g1 compile_error -> #3 g2 passed 1.20× -> #4 g3 "
                  "passed 3.00×\n") != std::string::npos);
  CHECK_NOTHROW(report_text(json(nullptr)));
  CHECK_NOTHROW(report_text(
      json::parse(R"({"metrics": {"fast_p": [3], "at_k": [1]}, "tasks": [{"lineage": [7]}]})")));
}

TEST_CASE_FIXTURE(ReportFixture,
                  "the generation plot of 1,000 tasks draws the band, not a line per task; of one "
                  "task, its line") {
  // One task, one generation: a single point still shows.
  auto one_task = [&](const std::string& op, double speedup) {
    int64_t t = task(op);
    StepRow s;
    s.task_id = t;
    s.role = Role::verifier;
    s.output = passed(speedup).dump();
    s.verdict = Outcome::passed;
    auto step = store->record_step(s);
    REQUIRE(step.ok());
    CandidateRow c;
    c.task_id = t;
    c.step_id = *step;
    c.generation = 1;
    c.speedup = speedup;
    c.score = speedup;
    REQUIRE(store->record_candidate(c).ok());
    finish(t, true);
  };
  one_task("op0", 1.5);
  std::string svgs = parsed_svgs(report_html(report()));
  CHECK_MESSAGE(svgs.find("Best speedup so far by generation {'circle': 1,") != std::string::npos,
                svgs);
  CHECK_MESSAGE(svgs.find("'polyline': 2, 'svg': 1") != std::string::npos,
                svgs);  // the task's, the geomean's
  for (int i = 1; i < 1000; ++i) one_task("op" + std::to_string(i), 0.5 + (i % 7) * 0.5);
  const json r = report();
  CHECK(r["by_generation"]["tasks_measured"] == 1000);
  const std::string html = report_html(r);
  svgs = parsed_svgs(html);
  const size_t plot = svgs.find("Best speedup so far by generation ");
  REQUIRE(plot != std::string::npos);
  const std::string line = svgs.substr(plot, svgs.find('\n', plot) - plot);
  CHECK_MESSAGE(line.find("'polygon': 1") != std::string::npos, line);   // the band
  CHECK_MESSAGE(line.find("'polyline': 1") != std::string::npos, line);  // the geomean only
  CHECK(html.find("The first 50 of 1000 tasks") != std::string::npos);
}
