// The operator API: the router on a database (the command line's --data mode), and the HTTP
// server of a running coordinator (tokens, writes on the loop, cancel and resume reaching
// the Conductor and the jobs).
#include <doctest/doctest.h>

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/protocol.h"
#include "coordinator/operator/api.h"
#include "coordinator/intake/campaign.h"
#include "coordinator/generation/conductor.h"
#include "coordinator/operator/http_server.h"
#include "coordinator/generation/prompts.h"
#include "tests/support/cluster.h"

using namespace kforge;
using namespace kforge::test;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

TaskSpec spec(const std::string& op, const std::string& task_id) {
  TaskSpec s;
  s.op_name = op;
  s.task_id = task_id;
  s.task_desc = "import torch\nclass Model(torch.nn.Module):\n    pass\n";
  s.backend = "cpu";
  s.arch = "x86_64";
  s.impl_type = "cpp";
  s.framework = "torch";
  s.task_type = "profile";
  return s;
}

// A database with one campaign: a passed task (speedup 2.5, code at step 2), a failed one,
// a pending one.
struct RouterFixture {
  TempDir dir;
  std::filesystem::path db = dir / "kforge.db";
  LocalApiBackend backend{db};
  int64_t campaign = 0;
  std::vector<int64_t> tasks;

  RouterFixture() {
    auto store = Store::open(db);
    REQUIRE(store.ok());
    Store& s = **store;
    campaign = s.create_campaign("sweep", "", "hash-1").value();
    for (const char* op : {"softmax", "relu", "gelu"}) tasks.push_back(s.create_task(campaign, spec(op, "N=1024")).value());
    auto step = [&](int64_t task, const char* role, const std::string& out, const std::string& verdict) {
      StepRow r;
      r.task_id = task;
      r.role = role;
      r.input = std::string("prompt for ") + role;
      r.output = out;
      r.verdict = verdict;
      REQUIRE(s.record_step(r).ok());
    };
    step(tasks[0], "designer", "design", "");
    step(tasks[0], "coder", "```python\nclass ModelNew: pass\n```", "");
    step(tasks[0], "verifier", json{{"verdict", "passed"}, {"message", "ok"}, {"profile", {{"speedup", 2.5}}}}.dump(), "passed");
    REQUIRE(s.set_task_state(tasks[0], "passed", "passed").ok());
    step(tasks[1], "coder", "```python\nbroken(\n```", "");
    step(tasks[1], "verifier", json{{"verdict", "compile_error"}, {"message", "line 1"}}.dump(), "compile_error");
    REQUIRE(s.set_task_state(tasks[1], "failed", "limit_steps reached").ok());
    LlmCallRow call;
    call.task_id = tasks[0];
    call.role = "coder";
    call.request_key = "k1";
    call.status = "ok";
    call.prompt_tokens = 100;
    call.completion_tokens = 50;
    call.cost_usd = 0.25;
    REQUIRE(s.record_llm_call(call).ok());
  }

  ApiReply ask(const std::string& method, const std::string& path, std::map<std::string, std::string> query = {},
               const std::string& body = "") {
    return handle_api(ApiRequest{method, path, std::move(query), body}, backend);
  }
  json get(const std::string& path, std::map<std::string, std::string> query = {}) {
    ApiReply r = ask("GET", path, std::move(query));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    return json::parse(r.body);
  }
};

}  // namespace

TEST_CASE_FIXTURE(RouterFixture, "a campaign reports its tasks by state and its LLM cost") {
  json c = get("/api/v1/campaigns/" + std::to_string(campaign));
  CHECK(c["name"] == "sweep");
  CHECK(c["tasks"]["total"] == 3);
  CHECK(c["tasks"]["passed"] == 1);
  CHECK(c["tasks"]["failed"] == 1);
  CHECK(c["tasks"]["pending"] == 1);
  CHECK(c["llm"]["calls"] == 1);
  CHECK(c["llm"]["cost_usd"] == doctest::Approx(0.25));
  CHECK(get("/api/v1/campaigns").size() == 1);
}

TEST_CASE_FIXTURE(RouterFixture, "tasks carry their outcome and filter by state, op and verdict") {
  json all = get("/api/v1/tasks");
  REQUIRE(all.size() == 3);
  CHECK(all[0]["verdict"] == "passed");
  CHECK(all[0]["speedup"] == doctest::Approx(2.5));
  CHECK(all[0]["best_step"] == 2);
  CHECK(all[1]["verdict"] == "compile_error");
  CHECK(all[1]["reason"] == "limit_steps reached");
  CHECK(all[2]["speedup"].is_null());
  CHECK(get("/api/v1/tasks", {{"state", "failed"}}).size() == 1);
  CHECK(get("/api/v1/tasks", {{"op", "gelu"}})[0]["task"] == tasks[2]);
  CHECK(get("/api/v1/tasks", {{"verdict", "compile_error"}})[0]["op_name"] == "relu");
  CHECK(get("/api/v1/tasks", {{"limit", "2"}}).size() == 2);
  json page = get("/api/v1/tasks", {{"offset", "1"}, {"limit", "1"}});
  REQUIRE(page.size() == 1);
  CHECK(page[0]["task"] == tasks[1]);
  CHECK(get("/api/v1/tasks", {{"offset", "3"}}).empty());
  CHECK(get("/api/v1/tasks", {{"offset", "0"}}).size() == 3);
  CHECK(ask("GET", "/api/v1/tasks", {{"offset", "-1"}}).status == 400);
}

TEST_CASE_FIXTURE(RouterFixture, "jobs filter by state and task and page by id with offset and limit") {
  std::vector<int64_t> ids;  // by id: softmax's, relu's, a plain job, in turn
  {
    auto store = Store::open(db);
    REQUIRE(store.ok());
    for (int i = 0; i < 6; ++i) {
      NewJob j;
      if (i % 3 != 2) j.task_id = tasks[static_cast<size_t>(i % 3)];
      j.spec = "spec";
      ids.push_back((*store)->enqueue_job(j).value());
    }
    REQUIRE((*store)->assign_job(ids[0], "agent-a", 1).ok());
    proto::JobResult result;
    result.exit_code = 3;
    REQUIRE((*store)->record_result(ids[0], 1, proto::encode(result)).value());
    REQUIRE((*store)->cancel_job(ids[4]).ok());
  }
  auto job_ids = [&](std::map<std::string, std::string> query) {
    std::vector<int64_t> out;
    for (const json& j : get("/api/v1/jobs", std::move(query))) out.push_back(j["id"].get<int64_t>());
    return out;
  };
  CHECK(job_ids({}) == ids);
  CHECK(job_ids({{"state", "queued"}}) == std::vector<int64_t>{ids[1], ids[2], ids[3], ids[5]});
  CHECK(job_ids({{"task", std::to_string(tasks[1])}}) == std::vector<int64_t>{ids[1], ids[4]});
  CHECK(job_ids({{"task", std::to_string(tasks[1])}, {"state", "cancelled"}}) == std::vector<int64_t>{ids[4]});
  CHECK(job_ids({{"task", std::to_string(tasks[0])}, {"state", "queued"}}) == std::vector<int64_t>{ids[3]});
  json done = get("/api/v1/jobs", {{"state", "done"}});
  REQUIRE(done.size() == 1);
  CHECK(done[0]["outcome"] == "exit 3");  // read from the result
  CHECK(done[0]["device"] == "cpu:1");
  CHECK(done[0]["task"] == tasks[0]);
  CHECK(job_ids({{"offset", "1"}, {"limit", "2"}}) == std::vector<int64_t>{ids[1], ids[2]});
  CHECK(job_ids({{"offset", "3"}, {"limit", "2"}}) == std::vector<int64_t>{ids[3], ids[4]});
  CHECK(job_ids({{"offset", "5"}, {"limit", "2"}}) == std::vector<int64_t>{ids[5]});
  CHECK(job_ids({{"offset", "6"}}).empty());
  CHECK(job_ids({{"offset", "0"}}) == ids);
  CHECK(job_ids({{"state", "queued"}, {"offset", "1"}, {"limit", "2"}}) == std::vector<int64_t>{ids[2], ids[3]});
  CHECK(job_ids({{"state", "queued"}, {"limit", "1"}}) == std::vector<int64_t>{ids[1]});
}

TEST_CASE_FIXTURE(RouterFixture, "a bad job page or filter is a 400 like a bad task page") {
  for (const char* path : {"/api/v1/jobs", "/api/v1/tasks"}) {
    CAPTURE(path);
    ApiReply r = ask("GET", path, {{"offset", "-1"}});
    CHECK(r.status == 400);
    CHECK(json::parse(r.body)["error"] == "query parameter 'offset': expected a non-negative integer, got '-1'");
    r = ask("GET", path, {{"limit", "0"}});
    CHECK(r.status == 400);
    CHECK(json::parse(r.body)["error"] == "query parameter 'limit': expected a positive integer, got '0'");
    r = ask("GET", path, {{"limit", "ten"}});
    CHECK(r.status == 400);
    CHECK(json::parse(r.body)["error"] == "query parameter 'limit': expected a positive integer, got 'ten'");
  }
  ApiReply r = ask("GET", "/api/v1/jobs", {{"state", "running"}});
  CHECK(r.status == 400);
  CHECK(json::parse(r.body)["error"].get<std::string>().find("not one of queued, assigned, done, cancelled") !=
        std::string::npos);
}

TEST_CASE_FIXTURE(RouterFixture, "a task's detail is its whole trace and its jobs") {
  json t = get("/api/v1/tasks/" + std::to_string(tasks[0]));
  REQUIRE(t["trace"].size() == 3);
  CHECK(t["trace"][1]["role"] == "coder");
  CHECK(t["trace"][1]["input"] == "prompt for coder");
  CHECK(t["trace"][2]["verdict"] == "passed");
  CHECK(t["steps"] == 3);
  CHECK(t["task_desc"].get<std::string>().find("class Model") != std::string::npos);
  CHECK(t["jobs"].empty());
  CHECK(t["code"] == "class ModelNew: pass\n");  // the passing coder step's code block
  CHECK(get("/api/v1/tasks/" + std::to_string(tasks[1]))["code"].is_null());
}

TEST_CASE_FIXTURE(RouterFixture, "mistakes get the status and a message that says what to do") {
  ApiReply r = ask("GET", "/api/v1/campaigns/99");
  CHECK(r.status == 404);
  CHECK(json::parse(r.body)["error"].get<std::string>().find("no campaign 99") != std::string::npos);
  r = ask("GET", "/api/v1/tasks/abc");
  CHECK(r.status == 400);
  CHECK(json::parse(r.body)["error"].get<std::string>().find("positive integer") != std::string::npos);
  r = ask("GET", "/api/v1/tasks", {{"campaign", "-1"}});
  CHECK(r.status == 400);
  r = ask("GET", "/api/v1/nothing");
  CHECK(r.status == 404);
  r = ask("POST", "/api/v1/tasks/" + std::to_string(tasks[0]) + "/cancel");
  CHECK(r.status == 409);
  CHECK(json::parse(r.body)["error"].get<std::string>().find("finished (passed)") != std::string::npos);
  r = ask("POST", "/api/v1/agents/nobody/drain");
  CHECK(r.status == 404);
  r = ask("POST", "/api/v1/campaigns", {}, "not json");
  CHECK(r.status == 400);
}

TEST_CASE_FIXTURE(RouterFixture, "a campaign posted twice is stored once; a bad task spec names its field") {
  json task = {{"op_name", "add"}, {"task_desc", "x"}, {"backend", "cpu"}, {"arch", "x86_64"},
               {"impl_type", "cpp"}, {"framework", "torch"}};
  json body = {{"name", "two"}, {"tasks", json::array({task, task})}};
  body["tasks"][1]["task_id"] = "N=2";
  ApiReply first = ask("POST", "/api/v1/campaigns", {}, body.dump());
  REQUIRE_MESSAGE(first.status == 201, first.body);
  CHECK(json::parse(first.body)["task_ids"].size() == 2);
  ApiReply again = ask("POST", "/api/v1/campaigns", {}, body.dump());
  REQUIRE(again.status == 200);
  CHECK(json::parse(again.body)["id"] == json::parse(first.body)["id"]);
  CHECK(json::parse(again.body)["created"] == false);
  CHECK(get("/api/v1/campaigns").size() == 2);

  body["tasks"][1]["impl_type"] = "triton";  // triton on a CPU
  ApiReply bad = ask("POST", "/api/v1/campaigns", {}, body.dump());
  CHECK(bad.status == 400);
  CHECK(json::parse(bad.body)["error"].get<std::string>().rfind("tasks[1].", 0) == 0);
  body["tasks"][0]["limit_steps"] = "ten";
  bad = ask("POST", "/api/v1/campaigns", {}, body.dump());
  CHECK(json::parse(bad.body)["error"] == "tasks[0].limit_steps: expected an integer, got \"ten\"");
  CHECK(get("/api/v1/campaigns").size() == 2);  // nothing stored by the bad ones
}

TEST_CASE_FIXTURE(RouterFixture, "cancel and resume a campaign: unfinished tasks only") {
  ApiReply r = ask("POST", "/api/v1/campaigns/" + std::to_string(campaign) + "/cancel");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  json c = json::parse(r.body);
  CHECK(c["state"] == "cancelled");
  CHECK(c["tasks"]["cancelled"] == 1);
  CHECK(c["tasks"]["passed"] == 1);  // finished tasks keep their outcome
  c = json::parse(ask("POST", "/api/v1/campaigns/" + std::to_string(campaign) + "/resume").body);
  CHECK(c["state"] == "running");
  CHECK(c["tasks"]["pending"] == 1);
  CHECK(c["tasks"]["cancelled"] == 0);
  // With nothing unfinished, a cancel leaves the campaign's state alone.
  {
    auto store = Store::open(db);
    REQUIRE(store.ok());
    REQUIRE((*store)->set_task_state(tasks[2], "passed", "passed").ok());
    REQUIRE((*store)->set_campaign_state(campaign, "finished").ok());
  }
  c = json::parse(ask("POST", "/api/v1/campaigns/" + std::to_string(campaign) + "/cancel").body);
  CHECK(c["state"] == "finished");
}

TEST_CASE_FIXTURE(RouterFixture, "metrics are Prometheus text with tasks and jobs by state") {
  ApiReply r = ask("GET", "/metrics");
  REQUIRE(r.status == 200);
  CHECK(r.content_type.rfind("text/plain; version=0.0.4", 0) == 0);
  CHECK(r.body.find("# TYPE kforge_tasks gauge\n") != std::string::npos);
  CHECK(r.body.find("kforge_tasks{state=\"passed\"} 1\n") != std::string::npos);
  CHECK(r.body.find("kforge_tasks{state=\"pending\"} 1\n") != std::string::npos);
  CHECK(r.body.find("kforge_jobs{state=\"queued\"} 0\n") != std::string::npos);
  CHECK(r.body.find("kforge_llm_stored_cost_usd 0.25\n") != std::string::npos);
}

// --- The HTTP server of a running coordinator ---------------------------------------------

namespace {

// A coordinator with its Conductor and operator API; no agent unless a test starts one, so
// verify jobs stay queued.
struct ServerFixture {
  TestCluster cluster;
  std::unique_ptr<Conductor> conductor;
  std::optional<OperatorApi> api;
  std::unique_ptr<httplib::Client> http;

  explicit ServerFixture(const std::string& token_file = "") {
    auto prompts = PromptLibrary::load(source_dir() / "prompts");
    REQUIRE(prompts.ok());
    conductor = std::make_unique<Conductor>(cluster.coordinator(), nullptr, std::move(*prompts), ConductorOptions{});
    auto options = operator_api_options("127.0.0.1:0", token_file);
    REQUIRE_MESSAGE(options.ok(), options.status().to_string());
    auto served = serve_operator_api(cluster.coordinator(), *conductor, *options);
    REQUIRE_MESSAGE(served.ok(), served.status().to_string());
    api = std::move(*served);
    http = std::make_unique<httplib::Client>("127.0.0.1", api->server->port());
  }
  ~ServerFixture() { api.reset(); }  // before the cluster stops the loop

  json post(const std::string& path, const json& body = json::object(), int expect = 200) {
    auto r = http->Post(path.c_str(), body.dump(), "application/json");
    REQUIRE(r);
    REQUIRE_MESSAGE(r->status == expect, r->body);
    return json::parse(r->body);
  }
  json get(const std::string& path) {
    auto r = http->Get(path.c_str());
    REQUIRE(r);
    REQUIRE_MESSAGE(r->status == 200, r->body);
    return json::parse(r->body);
  }
  std::vector<std::string> job_states(int64_t task) {
    std::vector<std::string> out;
    json detail = get("/api/v1/tasks/" + std::to_string(task));
    for (const json& j : detail["jobs"]) out.push_back(j["state"].get<std::string>());
    return out;
  }
};

json verify_only_campaign() {
  std::string dir = (source_dir() / "tests" / "fixtures" / "campaigns").string();
  auto c = load_campaign(dir + "/verify.toml");
  REQUIRE(c.ok());
  const CampaignTask& t = c->tasks[0];
  json task = {{"op_name", t.spec.op_name}, {"task_id", t.spec.task_id}, {"task_desc", t.spec.task_desc},
               {"backend", t.spec.backend}, {"arch", t.spec.arch}, {"impl_type", t.spec.impl_type},
               {"framework", t.spec.framework}, {"candidate", t.candidate}};
  return {{"name", c->name}, {"workflow", c->workflow}, {"tasks", json::array({task})}};
}

}  // namespace

TEST_CASE("the API serves a running coordinator: a submitted campaign starts, cancel withdraws its job, resume queues it again") {
  ServerFixture f;
  json created = f.post("/api/v1/campaigns", verify_only_campaign(), 201);
  int64_t task = f.get("/api/v1/tasks?campaign=" + std::to_string(created["id"].get<int64_t>()))[0]["task"];
  // The Conductor starts it at once (the write's hook) and queues its verify job.
  REQUIRE_MESSAGE(wait_until([&] { return f.job_states(task) == std::vector<std::string>{"queued"}; }, 10s),
                  f.get("/api/v1/tasks/" + std::to_string(task)).dump());
  CHECK(f.get("/api/v1/tasks/" + std::to_string(task))["state"] == "running");

  json cancelled = f.post("/api/v1/tasks/" + std::to_string(task) + "/cancel");
  CHECK(cancelled["state"] == "cancelled");
  // Answered after the turn that cancelled it committed: the job is withdrawn already.
  CHECK(f.job_states(task) == std::vector<std::string>{"cancelled"});
  CHECK(f.cluster.coordinator().call([](Coordinator& c) { return c.pool().queued(); }) == 0);

  json resumed = f.post("/api/v1/tasks/" + std::to_string(task) + "/resume");
  CHECK(resumed["state"] == "running");
  CHECK(f.job_states(task) == std::vector<std::string>{"cancelled", "queued"});

  // An agent comes; the job runs for real and the task passes.
  f.cluster.start_agent("a");
  REQUIRE(wait_until([&] { return f.get("/api/v1/tasks/" + std::to_string(task))["state"] == "passed"; }, 120s));
  auto metrics = f.http->Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->body.find("kforge_agents_live 1\n") != std::string::npos);
  CHECK(metrics->body.find("kforge_dispatch_latency_seconds_count 1\n") != std::string::npos);
  CHECK(metrics->body.find("kforge_results_total{outcome=\"recorded\"} 1\n") != std::string::npos);
  CHECK(metrics->body.find("kforge_devices{backend=\"cpu\"} 1\n") != std::string::npos);
}

TEST_CASE("a drain through the API reaches the coordinator's pool") {
  ServerFixture f;
  f.cluster.start_agent("a");
  REQUIRE(f.cluster.wait_live(1));
  std::string id = f.get("/api/v1/agents")[0]["id"];
  json a = f.post("/api/v1/agents/" + id.substr(0, 6) + "/drain");
  CHECK(a["drained"] == true);
  REQUIRE(wait_until([&] { return f.cluster.coordinator().call([&](Coordinator& c) { return c.agent_drained(id); }); }, 5s));
  f.post("/api/v1/agents/" + id + "/undrain");
  CHECK(f.get("/api/v1/agents")[0]["drained"] == false);
}

TEST_CASE("a token guards the API and the metrics, not the dashboard page") {
  TempDir dir;
  write_file(dir / "token", "  s3cret\n");
  ServerFixture f((dir / "token").string());
  auto r = f.http->Get("/api/v1/campaigns");
  REQUIRE(r);
  CHECK(r->status == 401);
  CHECK(r->body.find("token") != std::string::npos);
  CHECK(f.http->Get("/metrics")->status == 401);
  CHECK(f.http->Get("/api/v1/campaigns", {{"Authorization", "Bearer wrong"}})->status == 401);
  CHECK(f.http->Get("/api/v1/campaigns", {{"Authorization", "Bearer s3cret"}})->status == 200);
  auto page = f.http->Get("/");
  REQUIRE(page);
  CHECK(page->status == 200);
  CHECK(page->get_header_value("Content-Type").rfind("text/html", 0) == 0);
}

TEST_CASE("an API reachable from other hosts is refused without a token") {
  TempDir dir;
  LocalApiBackend backend(dir / "kforge.db");
  auto open = HttpServer::start(HttpServerOptions{"0.0.0.0:0", ""}, backend);
  REQUIRE_FALSE(open.ok());
  CHECK(open.status().message().find("api_token_file") != std::string::npos);
  CHECK_FALSE(HttpServer::start(HttpServerOptions{"127.0.0.1:notaport", ""}, backend).ok());
  auto guarded = HttpServer::start(HttpServerOptions{"0.0.0.0:0", "t"}, backend);
  CHECK_MESSAGE(guarded.ok(), guarded.status().to_string());
  write_file(dir / "empty", "\n");
  auto token = read_token_file(dir / "empty");
  REQUIRE_FALSE(token.ok());
  CHECK(token.status().message().find("empty") != std::string::npos);
  // The configuration is checked before a daemon opens anything.
  auto refused = operator_api_options("10.0.0.1:7780", "");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().message().find("reachable from other hosts") != std::string::npos);
  CHECK(operator_api_options("127.0.0.1:7780", (dir / "empty").string()).status().message().rfind("coordinator.api_token_file:", 0) == 0);
  write_file(dir / "token", "t\n");
  CHECK(operator_api_options("0.0.0.0:7780", (dir / "token").string()).ok());
}
