// What an operator watches, through the operator API's router on a database (watch.h,
// schema/api.md): a campaign's progress, the alerts, the LLM's health, two campaigns
// compared. The dashboard draws these; tests/dashboard renders them in a browser.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/metrics.h"
#include "coordinator/operator/api.h"
#include "tests/support/fixtures.h"
#include "tests/support/support.h"

using namespace kforge;
using namespace kforge::test;
using json = nlohmann::json;

namespace {

constexpr int64_t kMin = 60'000, kHour = 60 * kMin;

struct WatchFixture {
  TempDir dir;
  std::filesystem::path db = dir / "kforge.db";
  LocalApiBackend backend{db};
  std::unique_ptr<Store> store = Store::open(db).value();
  int64_t now = SystemClock::instance().wall_ms();

  // A campaign of `ops` (task_id "N=1"), begun `age_ms` ago.
  int64_t campaign(const std::string& name, std::initializer_list<const char*> ops,
                   int64_t age_ms) {
    int64_t id = store->create_campaign(name, "", "hash-" + name).value();
    for (const char* op : ops) REQUIRE(store->create_task(id, task_spec(op, "N=1")).ok());
    sql("UPDATE campaigns SET created_ms = " + std::to_string(now - age_ms) +
        " WHERE id = " + std::to_string(id));
    sql("UPDATE tasks SET created_ms = " + std::to_string(now - age_ms) + ", updated_ms = " +
        std::to_string(now - age_ms) + " WHERE campaign_id = " + std::to_string(id));
    return id;
  }
  int64_t task(int64_t campaign_id, const std::string& op) {
    auto ids = store->task_ids_of_campaign(campaign_id);
    REQUIRE(ids.ok());
    for (int64_t id : *ids) {
      if (store->get_task(id).value().spec.op_name == op) return id;
    }
    FAIL("no task " << op);
    return 0;
  }
  // Ends the task `ago_ms` ago; a pass records a verifier step with `speedup`.
  void end(int64_t task_id, const std::string& state, int64_t ago_ms, double speedup = 0) {
    if (state == "passed") {
      StepRow coder{.task_id = task_id,
                    .role = Role::coder,
                    .output = "```python\nclass ModelNew: pass\n```"};
      REQUIRE(store->record_step(coder).ok());
      json doc = {{"verdict", "passed"}, {"message", "ok"}};
      if (speedup > 0) doc["profile"] = {{"speedup", speedup}};
      StepRow verifier{.task_id = task_id,
                       .role = Role::verifier,
                       .output = doc.dump(),
                       .verdict = Outcome::passed};
      REQUIRE(store->record_step(verifier).ok());
    }
    const TaskState ended = parse_enum<TaskState>(state).value();
    REQUIRE(store->set_task_state(task_id, ended, parse_enum<Outcome>(state)).ok());
    sql("UPDATE tasks SET updated_ms = " + std::to_string(now - ago_ms) +
        " WHERE id = " + std::to_string(task_id));
  }
  void sql(const std::string& statement) {
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &raw) == SQLITE_OK);
    CHECK_MESSAGE(sqlite3_exec(raw, statement.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK,
                  statement);
    sqlite3_close(raw);
  }
  ApiReply ask(const std::string& path, std::map<std::string, std::string> query = {},
               const std::string& method = "GET") {
    return handle_api(ApiRequest{method, path, std::move(query), ""}, backend);
  }
  json get(const std::string& path, std::map<std::string, std::string> query = {}) {
    ApiReply r = ask(path, std::move(query));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    return json::parse(r.body);
  }
};

}  // namespace

TEST_CASE_FIXTURE(
    WatchFixture,
    "a campaign's progress: elapsed, tasks per hour, ETA, queue and ended tasks over time") {
  // Begun 4 h ago; 4 tasks ended (in the 2nd, 3rd and 4th hour, one cancelled), 4 left.
  int64_t c = campaign("sweep", {"a", "b", "c", "d", "e", "f", "g", "h"}, 4 * kHour);
  end(task(c, "a"), "passed", 3 * kHour - 10 * kMin, 2.0);
  end(task(c, "b"), "failed", 2 * kHour - 10 * kMin);
  end(task(c, "c"), "passed", 30 * kMin, 1.5);
  end(task(c, "d"), "cancelled", 10 * kMin);
  REQUIRE(store->set_task_state(task(c, "e"), TaskState::running).ok());
  NewJob job;
  job.task_id = task(c, "e");
  job.kind = JobKind::verify;
  REQUIRE(store->enqueue_job(job).ok());

  json p = get("/api/v1/campaigns/" + std::to_string(c) + "/progress", {{"buckets", "4"}});
  CHECK(p["state"] == "running");
  CHECK(p["elapsed_ms"].get<int64_t>() >= 4 * kHour);
  CHECK(p["elapsed_ms"].get<int64_t>() <
        4 * kHour + 10 * kMin);  // now, give or take the test's run
  CHECK(p["tasks"]["finished"] == 3);
  CHECK(p["tasks"]["remaining"] == 4);
  CHECK(p["tasks_per_hour"].get<double>() == doctest::Approx(0.75).epsilon(0.01));  // 3 in 4 h
  CHECK(p["last_hour"]["tasks_finished"] == 1);
  // The ETA is at the last hour's pace: 4 remaining at 1 an hour.
  CHECK(p["eta_ms"].get<double>() == doctest::Approx(4.0 * kHour));
  CHECK(p["queue"] == json{{"pending_tasks", 3}, {"queued_jobs", 1}, {"running_jobs", 0}});
  CHECK(p["stalled"] == false);  // a task changed 10 min ago
  json o = p["outcomes"];
  CHECK(o["start_ms"] == now - 4 * kHour);
  CHECK(o["passed"] == json{0, 1, 0, 1});
  CHECK(o["failed"] == json{0, 0, 1, 0});
  CHECK(o["cancelled"] == json{0, 0, 0, 1});

  CHECK(ask("/api/v1/campaigns/99/progress").status == 404);
  CHECK(ask("/api/v1/campaigns/" + std::to_string(c) + "/progress", {{"bucket", "3"}}).status ==
        400);
  CHECK(ask("/api/v1/campaigns/" + std::to_string(c) + "/progress", {}, "POST").status == 405);
}

TEST_CASE_FIXTURE(WatchFixture,
                  "an ended campaign's clock stops at its last change and it has no ETA") {
  int64_t c = campaign("done", {"a", "b", "early"}, 3 * kHour);
  end(task(c, "a"), "passed", 2 * kHour);
  end(task(c, "b"), "failed", 1 * kHour);
  end(task(c, "early"), "passed", 4 * kHour);  // before the campaign began (a clock step)
  REQUIRE(store->set_campaign_state(c, CampaignState::finished).ok());
  sql("UPDATE campaigns SET created_ms = " + std::to_string(now - 3 * kHour) +
      " WHERE id = " + std::to_string(c));
  json p = get("/api/v1/campaigns/" + std::to_string(c) + "/progress");
  CHECK(p["elapsed_ms"] == 2 * kHour);
  CHECK(p["tasks_per_hour"].get<double>() == doctest::Approx(1.5));
  CHECK(p["eta_ms"].is_null());
  CHECK(p["stalled"] == false);
  json passed = p["outcomes"]["passed"];
  REQUIRE(passed.size() == 30);  // the default
  CHECK(passed[0] == 1);         // the early one counts in the first bucket
  CHECK(passed[15] == 1);        // an hour in, of two
  CHECK(p["outcomes"]["failed"][29] == 1);
}

TEST_CASE_FIXTURE(WatchFixture, "alerts: a lost agent and a campaign that stopped moving") {
  CHECK(get("/api/v1/alerts").empty());
  AgentRow a{.id = "agent-7f3a91c2d4e5",
             .incarnation = "i1",
             .host = "gpu-node-3",
             .state = AgentState::live,
             .capabilities = "{}"};
  REQUIRE(store->upsert_agent(a, {}).ok());
  REQUIRE(store->set_agent_state(a.id, AgentState::lost).ok());
  // Its tasks last changed 20 minutes ago, two are left.
  int64_t c = campaign("stuck", {"a", "b", "c"}, 20 * kMin);
  end(task(c, "a"), "passed", 20 * kMin);
  int64_t moving = campaign("moving", {"x"}, 1 * kMin);

  json alerts = get("/api/v1/alerts");
  REQUIRE(alerts.size() == 2);
  CHECK(alerts[0]["kind"] == "agent_lost");
  CHECK(alerts[0]["agent"] == a.id);
  CHECK(alerts[0]["host"] == "gpu-node-3");
  CHECK(alerts[0]["message"].get<std::string>().find("gpu-node-3") != std::string::npos);
  CHECK(alerts[1]["kind"] == "campaign_stalled");
  CHECK(alerts[1]["campaign"] == c);
  CHECK(alerts[1]["message"].get<std::string>().find("2 pending") != std::string::npos);
  CHECK(get("/api/v1/campaigns/" + std::to_string(c) + "/progress")["stalled"] == true);
  CHECK(get("/api/v1/campaigns/" + std::to_string(moving) + "/progress")["stalled"] == false);
  // A longer patience: not stalled yet.
  CHECK(get("/api/v1/alerts", {{"stall_s", "3600"}}).size() == 1);
  CHECK(get("/api/v1/campaigns/" + std::to_string(c) + "/progress",
            {{"stall_s", "3600"}})["stalled"] == false);
  // A running task's fresh step is movement.
  REQUIRE(store->set_task_state(task(c, "b"), TaskState::running).ok());
  sql("UPDATE tasks SET updated_ms = " + std::to_string(now - 20 * kMin) +
      " WHERE campaign_id = " + std::to_string(c));
  REQUIRE(
      store->record_step(StepRow{.task_id = task(c, "b"), .role = Role::designer, .output = "plan"})
          .ok());
  CHECK(get("/api/v1/campaigns/" + std::to_string(c) + "/progress")["stalled"] == false);
  CHECK(ask("/api/v1/alerts", {{"stall_s", "0"}}).status == 400);
}

TEST_CASE_FIXTURE(
    WatchFixture,
    "LLM health: errors, retries and latency from the metrics, calls stored per campaign") {
  int64_t c = campaign("sweep", {"a"}, kHour);
  LlmCallRow ok = llm_call(task(c, "a"), Role::coder, "k1"),
             failed = llm_call(task(c, "a"), Role::coder, "k2");
  failed.status = LlmCallState::error;
  REQUIRE(store->record_llm_call(ok).ok());
  REQUIRE(store->record_llm_call(failed).ok());
  // From the command line (no coordinator): no live counters, the stored calls.
  json h = get("/api/v1/llm", {{"campaign", std::to_string(c)}});
  CHECK(h["live"] == false);
  CHECK(h["latency"]["p50_s"].is_null());
  CHECK(h["stored"]["calls"] == 2);
  CHECK(h["stored"]["errors"] == 1);
  CHECK(h["stored"]["by_role"][0] == json{{"role", "coder"}, {"calls", 2}, {"errors", 1}});
  CHECK(ask("/api/v1/llm", {{"campaign", "42"}}).status == 404);

  // A coordinator's counters, rendered as the Conductor renders them.
  struct Live : LocalApiBackend {
    using LocalApiBackend::LocalApiBackend;
    std::string text;
    std::string live_metrics() override { return text; }
  } live{db};
  metric_family(live.text, "kforge_llm_requests_total", "counter", "requests");
  metric_sample(live.text, "kforge_llm_requests_total", {{"role", "coder"}, {"outcome", "ok"}}, 8);
  metric_sample(live.text, "kforge_llm_requests_total", {{"role", "coder"}, {"outcome", "error"}},
                2);
  metric_sample(live.text, "kforge_llm_requests_total", {{"role", "designer"}, {"outcome", "ok"}},
                5);
  metric_family(live.text, "kforge_llm_retries_total", "counter", "retries");
  metric_sample(live.text, "kforge_llm_retries_total", {}, 3);
  Histogram latency(latency_buckets_s());
  for (int i = 0; i < 10; ++i) latency.observe(i < 9 ? 2.0 : 100.0);
  latency.render(live.text, "kforge_llm_latency_seconds", "latency");
  ApiReply r = handle_api(ApiRequest{"GET", "/api/v1/llm", {}, ""}, live);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  h = json::parse(r.body);
  CHECK(h["live"] == true);
  CHECK(h["requests"] == json{{"ok", 13}, {"error", 2}});
  CHECK(h["by_role"][0] == json{{"role", "coder"}, {"ok", 8}, {"error", 2}});
  CHECK(h["retries"] == 3);
  CHECK(h["latency"]["count"] == 10);
  CHECK(h["latency"]["mean_s"].get<double>() == doctest::Approx(11.8));
  // The median falls in the bucket that holds 2 s, the 99th in the one that holds 100 s.
  double p50 = h["latency"]["p50_s"], p99 = h["latency"]["p99_s"];
  CHECK(p50 > 1.0);
  CHECK(p50 <= 2.5);
  CHECK(p99 > 60.0);
  CHECK(p99 <= 120.0);
}

TEST_CASE_FIXTURE(WatchFixture,
                  "two campaigns compared: the same tasks side by side, paged by id") {
  int64_t a = campaign("baseline", {"relu", "softmax", "gelu"}, kHour);
  int64_t b = campaign("new-prompts", {"relu", "softmax", "layernorm"}, kHour);
  end(task(a, "relu"), "passed", kMin, 2.0);
  end(task(b, "relu"), "passed", kMin, 3.0);
  end(task(a, "softmax"), "passed", kMin, 4.0);
  end(task(b, "softmax"), "failed", kMin);
  json cmp = get("/api/v1/compare", {{"a", std::to_string(a)}, {"b", std::to_string(b)}});
  CHECK(cmp["a"]["name"] == "baseline");
  CHECK(cmp["b"]["name"] == "new-prompts");
  CHECK(cmp["counts"] ==
        json{{"a_tasks", 3}, {"b_tasks", 3}, {"paired", 2}, {"only_a", 1}, {"only_b", 1}});
  REQUIRE(cmp["rows"].size() == 3);
  json relu = cmp["rows"][0];
  CHECK(relu["op_name"] == "relu");
  CHECK(relu["a"]["speedup"] == 2.0);
  CHECK(relu["b"]["speedup"] == 3.0);
  CHECK(relu["ratio"].get<double>() == doctest::Approx(1.5));
  json softmax = cmp["rows"][1];
  CHECK(softmax["b"]["state"] == "failed");
  CHECK(softmax["b"]["speedup"].is_null());
  CHECK(softmax["ratio"].is_null());
  CHECK(cmp["rows"][2]["op_name"] == "gelu");
  CHECK(cmp["rows"][2]["b"].is_null());  // b has no gelu
  CHECK(cmp["page"]["both_timed"] == 1);
  CHECK(cmp["page"]["b_faster"] == 1);
  CHECK(cmp["page"]["geomean_ratio"].get<double>() == doctest::Approx(1.5));

  // Pages by a's task id, as the task listing does.
  ApiReply first =
      ask("/api/v1/compare", {{"a", std::to_string(a)}, {"b", std::to_string(b)}, {"limit", "2"}});
  REQUIRE(first.status == 200);
  CHECK(json::parse(first.body)["rows"].size() == 2);
  REQUIRE(first.headers.size() == 1);
  CHECK(first.headers[0].first == "X-Next-After");
  json rest =
      get("/api/v1/compare",
          {{"a", std::to_string(a)}, {"b", std::to_string(b)}, {"after", first.headers[0].second}});
  REQUIRE(rest["rows"].size() == 1);
  CHECK(rest["rows"][0]["op_name"] == "gelu");

  CHECK(ask("/api/v1/compare", {{"a", std::to_string(a)}}).status == 400);
  CHECK(ask("/api/v1/compare", {{"a", std::to_string(a)}, {"b", "99"}}).status == 404);
}
