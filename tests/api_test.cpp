// The operator API: the router on a database (the command line's --data mode), and the HTTP
// server of a running coordinator (tokens, writes on the loop, cancel and resume reaching
// the Conductor and the jobs).
#include "coordinator/operator/api.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/protocol.h"
#include "coordinator/generation/conductor.h"
#include "coordinator/generation/prompts.h"
#include "coordinator/generation/search.h"
#include "coordinator/intake/campaign.h"
#include "coordinator/operator/http_guard.h"
#include "coordinator/operator/http_server.h"
#include "tests/support/cluster.h"
#include "tests/support/fixtures.h"

using namespace kforge;
using namespace kforge::test;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

// The smallest task_desc the API takes (it defines Model and get_inputs).
constexpr const char* kTinyTask =
    "class Model:\n    def forward(self, x):\n        return x\n\ndef get_inputs():\n    return "
    "[1]\n";

int mode_of(const std::filesystem::path& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return static_cast<int>(st.st_mode & 07777);
}

TaskSpec spec(const std::string& op, const std::string& task_id) {
  TaskSpec s = test::task_spec(op, task_id);
  s.task_desc = "import torch\nclass Model(torch.nn.Module):\n    pass\n";
  s.backend = "cpu";
  s.arch = "x86_64";
  s.impl_type = "cpp";
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
    for (const char* op : {"softmax", "relu", "gelu"})
      tasks.push_back(s.create_task(campaign, spec(op, "N=1024")).value());
    auto step = [&](int64_t task, const char* role, const std::string& out,
                    const std::string& verdict) {
      StepRow r;
      r.task_id = task;
      r.role = parse_enum<Role>(role).value();
      r.input = std::string("prompt for ") + role;
      r.output = out;
      r.verdict = parse_enum<Outcome>(verdict);
      REQUIRE(s.record_step(r).ok());
    };
    step(tasks[0], "designer", "design", "");
    step(tasks[0], "coder", "```python\nclass ModelNew: pass\n```", "");
    step(tasks[0], "verifier",
         json{{"verdict", "passed"}, {"message", "ok"}, {"profile", {{"speedup", 2.5}}}}.dump(),
         "passed");
    REQUIRE(s.set_task_state(tasks[0], TaskState::passed, Outcome::passed, "passed").ok());
    step(tasks[1], "coder", "```python\nbroken(\n```", "");
    step(tasks[1], "verifier", json{{"verdict", "compile_error"}, {"message", "line 1"}}.dump(),
         "compile_error");
    REQUIRE(
        s.set_task_state(tasks[1], TaskState::failed, Outcome::compile_error, "limit_steps reached")
            .ok());
    LlmCallRow call;
    call.task_id = tasks[0];
    call.role = Role::coder;
    call.request_key = "k1";
    call.status = LlmCallState::ok;
    call.prompt_tokens = 100;
    call.completion_tokens = 50;
    call.cost_usd = 0.25;
    REQUIRE(s.record_llm_call(call).ok());
  }

  ApiReply ask(const std::string& method, const std::string& path,
               std::map<std::string, std::string> query = {}, const std::string& body = "") {
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
  // A campaign without [search] is today's fix loop, its defaults spelled out.
  CHECK(c["search"]["strategy"] == "fix_loop");
  CHECK(c["search"]["samples"] == 1);
}

TEST_CASE_FIXTURE(RouterFixture, "a campaign shows the search policy it runs") {
  SearchPolicy policy;
  policy.strategy = "best_of_n";
  policy.samples = 4;
  policy.sample_offset = 8;
  policy.target_speedup = 2.5;
  int64_t id = 0;
  {
    auto store = Store::open(db);
    REQUIRE(store.ok());
    id = (*store)
             ->create_campaign("search", "", "hash-search", Workflow::default_, "kforge",
                               search_text(policy))
             .value();
  }
  json c = get("/api/v1/campaigns/" + std::to_string(id));
  CHECK(c["search"]["strategy"] == "best_of_n");
  CHECK(c["search"]["samples"] == 4);
  CHECK(c["search"]["sample_offset"] == 8);
  CHECK(c["search"]["target_speedup"] == 2.5);
  CHECK(c["search"]["max_llm_calls"] == 0);
  // Every field, evolve's, adaptive's and the budgets' too, with its default.
  CHECK(c["search"]["islands"] == 2);
  CHECK(c["search"]["max_wall_s"] == 0);
  // The campaign budgets and adaptive's fields.
  CHECK(c["search"]["campaign_max_llm_calls"] == 0);
  CHECK(c["search"]["campaign_max_wall_s"] == 0.0);
  CHECK(c["search"]["exploration"] == 1.0);
  CHECK(c["search"]["patience"] == 4);
  CHECK(c["search"].size() == search_keys().size());
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

// Issue 21: pages by cursor (after=<id>, the answer's X-Next-After) cost what they return at
// any depth, and a listing that pages while tasks are added sees each task once.
TEST_CASE_FIXTURE(RouterFixture,
                  "task pages by cursor hold every task once, also while tasks are added") {
  auto writer = Store::open(db);
  REQUIRE(writer.ok());
  for (int i = 0; i < 7; ++i)
    tasks.push_back(
        (*writer)->create_task(campaign, spec("op" + std::to_string(i), "N=1")).value());
  std::map<int64_t, int> seen;
  std::string after;
  for (int page = 0;; ++page) {
    REQUIRE(page < 20);
    std::map<std::string, std::string> query = {{"limit", "3"}};
    if (!after.empty()) query["after"] = after;
    ApiReply r = ask("GET", "/api/v1/tasks", query);
    REQUIRE_MESSAGE(r.status == 200, r.body);
    json rows = json::parse(r.body);
    for (const json& t : rows) seen[t["task"].get<int64_t>()]++;
    if (page < 2)
      tasks.push_back(
          (*writer)->create_task(campaign, spec("late" + std::to_string(page), "N=1")).value());
    auto next = std::find_if(r.headers.begin(), r.headers.end(),
                             [](const auto& h) { return h.first == "X-Next-After"; });
    if (rows.size() < 3) {
      CHECK(next == r.headers.end());
      break;
    }
    REQUIRE(next != r.headers.end());
    CHECK(next->second == std::to_string(rows.back()["task"].get<int64_t>()));
    after = next->second;
  }
  CHECK(seen.size() == tasks.size());
  for (int64_t id : tasks) CHECK_MESSAGE(seen[id] == 1, "task " << id);
  // Filters apply within the cursor's range; offset still pages the old way.
  json failed = get("/api/v1/tasks", {{"state", "failed"}, {"after", std::to_string(tasks[0])}});
  REQUIRE(failed.size() == 1);
  CHECK(failed[0]["task"] == tasks[1]);
  CHECK(get("/api/v1/tasks", {{"after", std::to_string(tasks.back())}}).empty());
  CHECK(get("/api/v1/tasks",
            {{"after", std::to_string(tasks[0])}, {"offset", "1"}, {"limit", "1"}})[0]["task"] ==
        tasks[2]);
  CHECK(ask("GET", "/api/v1/tasks", {{"after", "x"}}).status == 400);
}

TEST_CASE_FIXTURE(RouterFixture,
                  "jobs filter by state and task and page by id with offset and limit") {
  std::vector<int64_t> ids;  // by id: softmax's, relu's, a plain job, in turn
  {
    auto store = Store::open(db);
    REQUIRE(store.ok());
    for (int i = 0; i < 6; ++i) {
      NewJob j;
      if (i % 3 != 2) j.task_id = tasks[static_cast<size_t>(i % 3)];
      j.request.argv = {"true"};
      ids.push_back((*store)->enqueue_job(j).value());
    }
    REQUIRE((*store)->assign_job(ids[0], "agent-a", 1).ok());
    proto::JobResult result;
    result.exit_code = 3;
    REQUIRE((*store)->record_result(ids[0], 1, result).value());
    REQUIRE((*store)->cancel_job(ids[4]).ok());
  }
  auto job_ids = [&](std::map<std::string, std::string> query) {
    std::vector<int64_t> out;
    for (const json& j : get("/api/v1/jobs", std::move(query)))
      out.push_back(j["id"].get<int64_t>());
    return out;
  };
  CHECK(job_ids({}) == ids);
  CHECK(job_ids({{"state", "queued"}}) == std::vector<int64_t>{ids[1], ids[2], ids[3], ids[5]});
  CHECK(job_ids({{"task", std::to_string(tasks[1])}}) == std::vector<int64_t>{ids[1], ids[4]});
  CHECK(job_ids({{"task", std::to_string(tasks[1])}, {"state", "cancelled"}}) ==
        std::vector<int64_t>{ids[4]});
  CHECK(job_ids({{"task", std::to_string(tasks[0])}, {"state", "queued"}}) ==
        std::vector<int64_t>{ids[3]});
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
  CHECK(job_ids({{"state", "queued"}, {"offset", "1"}, {"limit", "2"}}) ==
        std::vector<int64_t>{ids[2], ids[3]});
  CHECK(job_ids({{"state", "queued"}, {"limit", "1"}}) == std::vector<int64_t>{ids[1]});
  // Pages by cursor: after=<the last id of the page before>; a full page names the next.
  ApiReply page = ask("GET", "/api/v1/jobs", {{"limit", "4"}});
  REQUIRE(page.status == 200);
  auto next = std::find_if(page.headers.begin(), page.headers.end(),
                           [](const auto& h) { return h.first == "X-Next-After"; });
  REQUIRE(next != page.headers.end());
  CHECK(next->second == std::to_string(ids[3]));
  CHECK(job_ids({{"after", next->second}, {"limit", "4"}}) == std::vector<int64_t>{ids[4], ids[5]});
  ApiReply last = ask("GET", "/api/v1/jobs", {{"after", next->second}, {"limit", "4"}});
  CHECK(std::none_of(last.headers.begin(), last.headers.end(),
                     [](const auto& h) { return h.first == "X-Next-After"; }));
  CHECK(job_ids({{"state", "queued"}, {"after", std::to_string(ids[2])}}) ==
        std::vector<int64_t>{ids[3], ids[5]});
  CHECK(job_ids({{"task", std::to_string(tasks[0])}, {"after", std::to_string(ids[0])}}) ==
        std::vector<int64_t>{ids[3]});
}

TEST_CASE_FIXTURE(RouterFixture, "a bad job page or filter is a 400 like a bad task page") {
  for (const char* path : {"/api/v1/jobs", "/api/v1/tasks"}) {
    CAPTURE(path);
    ApiReply r = ask("GET", path, {{"offset", "-1"}});
    CHECK(r.status == 400);
    CHECK(json::parse(r.body)["error"] ==
          "query parameter 'offset': expected a non-negative integer, got '-1'");
    r = ask("GET", path, {{"limit", "0"}});
    CHECK(r.status == 400);
    CHECK(json::parse(r.body)["error"] ==
          "query parameter 'limit': expected a positive integer, got '0'");
    r = ask("GET", path, {{"limit", "ten"}});
    CHECK(r.status == 400);
    CHECK(json::parse(r.body)["error"] ==
          "query parameter 'limit': expected a positive integer, got 'ten'");
  }
  ApiReply v =
      ask("GET", "/api/v1/tasks", {{"verdict", "failed to connect"}});  // free text: not a verdict
  CHECK(v.status == 400);
  CHECK(json::parse(v.body)["error"] ==
        "query parameter 'verdict': 'failed to connect' is not one of passed, compile_error, "
        "runtime_error, "
        "precision_mismatch, timeout, crashed, resource_exceeded, rejected, infra_error, "
        "llm_error, garbled, "
        "cancelled");
  ApiReply r = ask("GET", "/api/v1/jobs", {{"state", "running"}});
  CHECK(r.status == 400);
  CHECK(json::parse(r.body)["error"].get<std::string>().find(
            "not one of queued, assigned, done, cancelled") != std::string::npos);
}

TEST_CASE_FIXTURE(RouterFixture, "a task's detail is its whole trace and its jobs") {
  json t = get("/api/v1/tasks/" + std::to_string(tasks[0]));
  REQUIRE(t["trace"].size() == 3);
  CHECK(t["trace"][1]["role"] == "coder");
  CHECK(t["trace"][1]["input"] == "prompt for coder");
  CHECK(t["trace"][2]["verdict"] == "passed");
  // Each step's row id (what candidates and the report's lineage name) and its chain.
  auto store = Store::open(db);
  REQUIRE(store.ok());
  const std::vector<StepRow> steps = (*store)->steps_of(tasks[0]).value();
  for (size_t i = 0; i < steps.size(); ++i) {
    CHECK(t["trace"][i]["id"] == steps[i].id);
    CHECK(t["trace"][i]["seq"] == steps[i].seq);
    CHECK(t["trace"][i]["sample"] == 0);
  }
  CHECK(t["steps"] == 3);
  CHECK(t["task_desc"].get<std::string>().find("class Model") != std::string::npos);
  CHECK(t["jobs"].empty());
  CHECK(t["code"] == "class ModelNew: pass\n");  // the passing coder step's code block
  CHECK(get("/api/v1/tasks/" + std::to_string(tasks[1]))["code"].is_null());
}

TEST_CASE_FIXTURE(RouterFixture, "mistakes get the status and a message that says what to do") {
  ApiReply r = ask("GET", "/api/v1/campaigns/99");
  CHECK(r.status == 404);
  CHECK(json::parse(r.body)["error"].get<std::string>().find("no campaign 99") !=
        std::string::npos);
  r = ask("GET", "/api/v1/tasks/abc");
  CHECK(r.status == 400);
  CHECK(json::parse(r.body)["error"].get<std::string>().find("positive integer") !=
        std::string::npos);
  r = ask("GET", "/api/v1/tasks", {{"campaign", "-1"}});
  CHECK(r.status == 400);
  r = ask("GET", "/api/v1/nothing");
  CHECK(r.status == 404);
  r = ask("POST", "/api/v1/tasks/" + std::to_string(tasks[0]) + "/cancel");
  CHECK(r.status == 409);
  CHECK(json::parse(r.body)["error"].get<std::string>().find("finished (passed)") !=
        std::string::npos);
  r = ask("POST", "/api/v1/agents/nobody/drain");
  CHECK(r.status == 404);
  r = ask("POST", "/api/v1/campaigns", {}, "not json");
  CHECK(r.status == 400);
}

TEST_CASE_FIXTURE(RouterFixture,
                  "a campaign posted twice is stored once; a bad task spec names its field") {
  json task = {{"op_name", "add"}, {"task_desc", kTinyTask}, {"backend", "cpu"},
               {"arch", "x86_64"}, {"impl_type", "cpp"},     {"framework", "torch"}};
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
  CHECK(json::parse(bad.body)["error"] ==
        "tasks[0].limit_steps: expected an integer between 1 and 100, got \"ten\"");
  // Range-checked before narrowing (issue 16, F4): 2^32 + 5 was stored as 5, 10^12 was
  // refused as "not -727379968".
  for (const char* n : {"4294967301", "1000000000000", "0", "-3", "18446744073709551615"}) {
    body["tasks"][0]["limit_steps"] = json::parse(n);
    bad = ask("POST", "/api/v1/campaigns", {}, body.dump());
    CHECK(bad.status == 400);
    CHECK(json::parse(bad.body)["error"] ==
          std::string("tasks[0].limit_steps: expected an integer between 1 and 100, got ") + n);
  }
  // The op name rule of TOML campaigns holds on the API too (issue 16, F8).
  body["tasks"][0]["limit_steps"] = 3;
  for (const std::string& name :
       {std::string("a\0b", 3), std::string(100000, 'x'), std::string("a/b"), std::string()}) {
    body["tasks"][0]["op_name"] = name;
    bad = ask("POST", "/api/v1/campaigns", {}, body.dump());
    CHECK(bad.status == 400);
    CHECK(json::parse(bad.body)["error"].get<std::string>().rfind(
              "tasks[0].op_name: expected 1 to 128 letters", 0) == 0);
  }
  CHECK(get("/api/v1/campaigns").size() == 2);  // nothing stored by the bad ones
}

TEST_CASE_FIXTURE(
    RouterFixture,
    "an expanded campaign takes the search policy a Campaign shows, under the [search] rules") {
  json task = {{"op_name", "add"}, {"task_desc", kTinyTask}, {"backend", "cpu"},
               {"arch", "x86_64"}, {"impl_type", "cpp"},     {"framework", "torch"}};
  json body = {{"name", "searched"},
               {"tasks", json::array({task})},
               {"search", {{"strategy", "best_of_n"}, {"samples", 4}, {"target_speedup", 2.5}}}};
  ApiReply posted = ask("POST", "/api/v1/campaigns", {}, body.dump());
  REQUIRE_MESSAGE(posted.status == 201, posted.body);
  const int64_t id = json::parse(posted.body)["id"];
  const json shown = get("/api/v1/campaigns/" + std::to_string(id))["search"];
  CHECK(shown["strategy"] == "best_of_n");
  CHECK(shown["samples"] == 4);
  CHECK(shown["sample_offset"] == 0);  // a default, spelled out
  CHECK(shown["target_speedup"] == 2.5);
  // The object a Campaign shows, posted back, is the same campaign (the policy is in its hash).
  body["search"] = shown;
  ApiReply again = ask("POST", "/api/v1/campaigns", {}, body.dump());
  REQUIRE_MESSAGE(again.status == 200, again.body);
  CHECK(json::parse(again.body)["id"] == id);
  // Another policy is another campaign; none is fix_loop.
  body["search"]["sample_offset"] = 4;
  ApiReply fresh = ask("POST", "/api/v1/campaigns", {}, body.dump());
  REQUIRE_MESSAGE(fresh.status == 201, fresh.body);
  CHECK(json::parse(fresh.body)["id"] != id);
  body.erase("search");
  ApiReply plain = ask("POST", "/api/v1/campaigns", {}, body.dump());
  REQUIRE_MESSAGE(plain.status == 201, plain.body);
  CHECK(get("/api/v1/campaigns/" + json::parse(plain.body)["id"].dump())["search"]["strategy"] ==
        "fix_loop");

  const size_t before = get("/api/v1/campaigns").size();
  auto refused = [&](const json& search, const std::string& workflow = "default") {
    json b = body;
    b["search"] = search;
    b["workflow"] = workflow;
    if (workflow == "verify_only") b["tasks"][0]["candidate"] = "class ModelNew: pass\n";
    ApiReply r = ask("POST", "/api/v1/campaigns", {}, b.dump());
    CHECK(r.status == 400);
    return json::parse(r.body)["error"].get<std::string>();
  };
  // The messages of validate_search (and parse_search_text), each naming the field.
  CHECK(refused({{"strategy", "best_of_n"}, {"samples", 0}})
            .rfind("search.samples: expected 1..", 0) == 0);
  CHECK(refused({{"samples", 3}}).rfind("search.samples: ", 0) == 0);  // fix_loop runs one chain
  CHECK(refused({{"strategy", "beam"}}).rfind("search.strategy: expected", 0) == 0);
  CHECK(refused({{"strategy", "best_of_n"}, {"samples", 2}}, "verify_only")
            .rfind("search.strategy: ", 0) == 0);
  CHECK(refused({{"samples", "4"}}).rfind("search.samples: ", 0) == 0);
  CHECK(refused({{"beam_width", 4}}).rfind("search.beam_width: ", 0) == 0);
  CHECK(
      refused(nullptr) ==
      "search: expected an object such as {\"strategy\": \"best_of_n\", \"samples\": 4}, got null");
  CHECK(get("/api/v1/campaigns").size() == before);  // nothing stored by the refused ones
}

// Issue 17: an op's own search table reaches its tasks; the API shows it on them.
TEST_CASE_FIXTURE(RouterFixture, "a task whose op has its own search shows it; the others do not") {
  const std::filesystem::path fixtures = source_dir() / "tests" / "fixtures" / "campaigns";
  // The last op of the fixture (relu) gets a search table.
  const std::string text = test::read_file(fixtures / "sweep.toml") +
                           "[ops.search]\nstrategy = \"best_of_n\"\nsamples = 2\n";
  json files = {{"tasks/softmax.py", test::read_file(fixtures / "tasks" / "softmax.py")},
                {"tasks/relu.py", test::read_file(fixtures / "tasks" / "relu.py")}};
  json body = {{"campaign", text}, {"file_name", "sweep.toml"}, {"files", files}};
  ApiReply posted = ask("POST", "/api/v1/campaigns", {}, body.dump());
  REQUIRE_MESSAGE(posted.status == 201, posted.body);
  const int64_t id = json::parse(posted.body)["id"].get<int64_t>();
  json listed = get("/api/v1/tasks", {{"campaign", std::to_string(id)}});
  REQUIRE(listed.size() == 5);
  for (const json& t : listed) {
    CAPTURE(t.dump());
    if (t["op_name"] == "relu") {
      CHECK(t["search"]["strategy"] == "best_of_n");
      CHECK(t["search"]["samples"] == 2);
      CHECK(t["search"]["islands"] == 2);  // defaults spelled out
    } else {
      CHECK_FALSE(t.contains("search"));
    }
  }
  CHECK(get("/api/v1/campaigns/" + std::to_string(id))["search"]["strategy"] == "fix_loop");
}

// Issue 21: the CLI sends the campaign file and the files it names; the coordinator expands it.
TEST_CASE_FIXTURE(
    RouterFixture,
    "a campaign file posted with its files is expanded here, the same campaign as its expansion") {
  const std::filesystem::path fixtures = source_dir() / "tests" / "fixtures" / "campaigns";
  const std::string text = test::read_file(fixtures / "sweep.toml");
  auto expanded = load_campaign(fixtures / "sweep.toml");
  REQUIRE(expanded.ok());
  json files = {{"tasks/softmax.py", test::read_file(fixtures / "tasks" / "softmax.py")},
                {"tasks/relu.py", test::read_file(fixtures / "tasks" / "relu.py")}};
  json body = {{"campaign", text}, {"file_name", "sweep.toml"}, {"files", files}};
  ApiReply first = ask("POST", "/api/v1/campaigns", {}, body.dump());
  REQUIRE_MESSAGE(first.status == 201, first.body);
  json answer = json::parse(first.body);
  CHECK(answer["tasks"] == expanded->tasks.size());
  CHECK(answer["state"] == "running");
  json listed = get("/api/v1/tasks", {{"campaign", std::to_string(answer["id"].get<int64_t>())}});
  REQUIRE(listed.size() == expanded->tasks.size());
  for (size_t i = 0; i < listed.size(); ++i)
    CHECK(listed[i]["task_id"] == expanded->tasks[i].spec.task_id);
  json row = get("/api/v1/campaigns/" + std::to_string(answer["id"].get<int64_t>()));
  CHECK(row["content_hash"] == expanded->content_hash);
  // Posted again, as the file or as its expansion (the older form), it is the same campaign.
  ApiReply again = ask("POST", "/api/v1/campaigns", {}, body.dump());
  REQUIRE(again.status == 200);
  CHECK(json::parse(again.body)["id"] == answer["id"]);
  CHECK(json::parse(again.body)["created"] == false);
  json expansion = json::array();
  for (const CampaignTask& t : expanded->tasks) {
    expansion.push_back({{"op_name", t.spec.op_name},
                         {"task_id", t.spec.task_id},
                         {"task_desc", t.spec.task_desc},
                         {"backend", t.spec.backend},
                         {"arch", t.spec.arch},
                         {"impl_type", t.spec.impl_type},
                         {"framework", t.spec.framework},
                         {"task_type", t.spec.task_type},
                         {"limit_steps", t.spec.limit_steps}});
  }
  ApiReply old_form = ask("POST", "/api/v1/campaigns", {},
                          json{{"name", expanded->name}, {"tasks", expansion}}.dump());
  REQUIRE_MESSAGE(old_form.status == 200, old_form.body);
  CHECK(json::parse(old_form.body)["id"] == answer["id"]);
  // The coordinator reads no file of its own: one not sent is a 400 naming it.
  body["files"].erase("tasks/relu.py");
  ApiReply missing = ask("POST", "/api/v1/campaigns", {}, body.dump());
  CHECK(missing.status == 400);
  CHECK(json::parse(missing.body)["error"].get<std::string>().find(
            "ops[1].task_desc: task file \"tasks/relu.py\" was not sent with the campaign") !=
        std::string::npos);
  body["files"] = json::array();
  ApiReply bad = ask("POST", "/api/v1/campaigns", {}, body.dump());
  CHECK(bad.status == 400);
  CHECK(json::parse(bad.body)["error"].get<std::string>().rfind("files: expected an object", 0) ==
        0);
}

TEST_CASE_FIXTURE(
    RouterFixture,
    "a campaign cancelled while it is submitting stays cancelled: no resume, no resubmission") {
  const std::filesystem::path fixtures = source_dir() / "tests" / "fixtures" / "campaigns";
  auto expanded = load_campaign(fixtures / "sweep.toml");
  REQUIRE(expanded.ok());
  REQUIRE(expanded->tasks.size() > 2);
  // A submission stopped after its first batch (here: two tasks), as a coordinator killed
  // mid-way leaves it.
  int64_t id = 0;
  std::vector<int64_t> stored;
  {
    auto store = Store::open(db);
    REQUIRE(store.ok());
    id = (*store)
             ->create_campaign(expanded->name, "", expanded->content_hash, expanded->workflow)
             .value();
    REQUIRE((*store)->set_campaign_state(id, CampaignState::submitting).ok());
    for (size_t i = 0; i < 2; ++i)
      stored.push_back((*store)->create_task(id, expanded->tasks[i].spec).value());
  }
  const std::string path = "/api/v1/campaigns/" + std::to_string(id);
  ApiReply cancelled = ask("POST", path + "/cancel");
  REQUIRE_MESSAGE(cancelled.status == 200, cancelled.body);
  CHECK(json::parse(cancelled.body)["state"] == "cancelled");
  // Its stored part does not run: neither the campaign nor one of its tasks resumes.
  for (const std::string& resume :
       {path + "/resume", "/api/v1/tasks/" + std::to_string(stored[0]) + "/resume"}) {
    ApiReply r = ask("POST", resume);
    CHECK(r.status == 409);
    CHECK(json::parse(r.body)["error"].get<std::string>().find(
              "was cancelled while its tasks were being stored") != std::string::npos);
  }
  json listed = get("/api/v1/tasks", {{"campaign", std::to_string(id)}});
  REQUIRE(listed.size() == 2);
  for (const json& t : listed) CHECK(t["state"] == "cancelled");
  // Submitting the same file again is refused, not resumed: it says how much was stored.
  json files = {{"tasks/softmax.py", test::read_file(fixtures / "tasks" / "softmax.py")},
                {"tasks/relu.py", test::read_file(fixtures / "tasks" / "relu.py")}};
  json body = {{"campaign", test::read_file(fixtures / "sweep.toml")},
               {"file_name", "sweep.toml"},
               {"files", files}};
  ApiReply again = ask("POST", "/api/v1/campaigns", {}, body.dump());
  CHECK_MESSAGE(again.status == 409, again.body);
  CHECK(json::parse(again.body)["error"].get<std::string>().find(
            "was cancelled while its tasks were being stored (2 of " +
            std::to_string(expanded->tasks.size()) + ")") != std::string::npos);
  CHECK(get("/api/v1/tasks", {{"campaign", std::to_string(id)}}).size() == 2);
  CHECK(get(path)["state"] == "cancelled");
}

// Issue 16, F8: the API refuses what a TOML campaign refuses, with the field and what was
// expected, and stores nothing.
TEST_CASE_FIXTURE(RouterFixture,
                  "the API takes no task the TOML path refuses, and says which field is wrong") {
  json task = {{"op_name", "add"}, {"task_desc", kTinyTask}, {"backend", "cpu"},
               {"arch", "x86_64"}, {"impl_type", "cpp"},     {"framework", "torch"}};
  json good = {{"name", "c"}, {"tasks", json::array({task})}};
  const size_t before = get("/api/v1/campaigns").size();
  auto refused = [&](const std::string& path, const json& body) {
    ApiReply r = ask("POST", path, {}, body.dump());
    CHECK_MESSAGE(r.status == 400, r.body);
    CHECK(r.content_type == "application/json");
    std::string error = json::parse(r.body).value("error", "");
    CHECK(error.find(dir.path().string()) == std::string::npos);  // no internal path
    return error;
  };
  json bad = good;
  bad["tasks"][0]["task_desc"] = "print('not a task')";
  CHECK(refused("/api/v1/campaigns", bad) ==
        "tasks[0].task_desc: defines no Model and get_inputs(); expected a task file's text "
        "(class Model, def get_inputs(): docs/harness.md)");
  bad = good;
  bad["tasks"][0]["task_id"] = nullptr;
  CHECK(refused("/api/v1/campaigns", bad) == "tasks[0].task_id: expected a string, got null");
  bad["tasks"][0]["task_id"] = 7;
  CHECK(refused("/api/v1/campaigns", bad) == "tasks[0].task_id: expected a string, got 7");
  bad = good;
  bad["name"] = "";
  CHECK(refused("/api/v1/campaigns", bad) == "name: expected a non-empty string, got \"\"");
  bad = good;
  bad["workflow"] = "verify_only";  // no candidate: an empty job would be queued
  CHECK(refused("/api/v1/campaigns", bad)
            .rfind("tasks[0].candidate: missing; workflow verify_only", 0) == 0);
  bad = good;
  bad["tasks"][0]["candidate"] = "class ModelNew: pass";  // ignored before: refused as TOML does
  CHECK(refused("/api/v1/campaigns", bad)
            .rfind("tasks[0].candidate: a candidate is used only by workflow verify_only", 0) == 0);
  // One task on its own: the same rules, the same messages.
  json one = task;
  one["workflow"] = "verify_only";
  CHECK(refused("/api/v1/tasks", one).rfind("candidate: missing; workflow verify_only", 0) == 0);
  one["workflow"] = "bogus";
  CHECK(refused("/api/v1/tasks", one) ==
        "workflow: 'bogus' is not one of default, coder_only, verify_only");
  one = task;
  one["task_id"] = nullptr;
  CHECK(refused("/api/v1/tasks", one) == "task_id: expected a string, got null");
  CHECK(get("/api/v1/campaigns").size() == before);  // nothing stored
  // The good one is taken.
  REQUIRE_MESSAGE(ask("POST", "/api/v1/campaigns", {}, good.dump()).status == 201, good.dump());
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
    REQUIRE((*store)->set_task_state(tasks[2], TaskState::passed, Outcome::passed, "passed").ok());
    REQUIRE((*store)->set_campaign_state(campaign, CampaignState::finished).ok());
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
const std::string kToken = "t0ken-for-tests";

HttpServerOptions test_options() {
  HttpServerOptions o;
  o.listen = "127.0.0.1:0";
  o.token = kToken;
  return o;
}

struct ServerFixture {
  TestCluster cluster;
  std::unique_ptr<Conductor> conductor;
  std::optional<OperatorApi> api;
  std::unique_ptr<httplib::Client> http;  // sends the token
  std::unique_ptr<httplib::Client> anonymous;

  explicit ServerFixture(const HttpServerOptions& options = test_options()) {
    auto prompts = PromptLibrary::load(source_dir() / "prompts");
    REQUIRE(prompts.ok());
    conductor = std::make_unique<Conductor>(cluster.coordinator(), nullptr, std::move(*prompts),
                                            ConductorOptions{});
    auto served = serve_operator_api(cluster.coordinator(), *conductor, options);
    REQUIRE_MESSAGE(served.ok(), served.status().to_string());
    api = std::move(*served);
    http = std::make_unique<httplib::Client>("127.0.0.1", api->server->port());
    http->set_bearer_token_auth(options.token.c_str());
    anonymous = std::make_unique<httplib::Client>("127.0.0.1", api->server->port());
  }
  int port() const { return api->server->port(); }
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
  json task = {{"op_name", t.spec.op_name},     {"task_id", t.spec.task_id},
               {"task_desc", t.spec.task_desc}, {"backend", t.spec.backend},
               {"arch", t.spec.arch},           {"impl_type", t.spec.impl_type},
               {"framework", t.spec.framework}, {"candidate", t.candidate}};
  return {{"name", c->name}, {"workflow", c->workflow}, {"tasks", json::array({task})}};
}

}  // namespace

// Issue 21: a campaign's cancel is one UPDATE over its unfinished tasks (no task row read);
// the Conductor still sees it before the answer: the job is withdrawn, and a resume queues it.
TEST_CASE(
    "cancelling a running campaign withdraws its tasks' jobs; resuming it queues them again") {
  ServerFixture f;
  json created = f.post("/api/v1/campaigns", verify_only_campaign(), 201);
  const std::string path = "/api/v1/campaigns/" + std::to_string(created["id"].get<int64_t>());
  int64_t task =
      f.get("/api/v1/tasks?campaign=" + std::to_string(created["id"].get<int64_t>()))[0]["task"];
  REQUIRE(
      wait_until([&] { return f.job_states(task) == std::vector<std::string>{"queued"}; }, 10s));

  json cancelled = f.post(path + "/cancel");
  CHECK(cancelled["state"] == "cancelled");
  CHECK(cancelled["tasks"]["cancelled"] == 1);
  CHECK(cancelled["tasks"]["running"] == 0);
  json t = f.get("/api/v1/tasks/" + std::to_string(task));
  CHECK(t["state"] == "cancelled");
  CHECK(t["verdict"] == "cancelled");
  CHECK(t["reason"] == "cancelled by operator");
  CHECK(f.job_states(task) == std::vector<std::string>{"cancelled"});
  CHECK(f.cluster.coordinator().call([](Coordinator& c) { return c.pool().queued(); }) == 0);

  json resumed = f.post(path + "/resume");
  CHECK(resumed["state"] == "running");
  CHECK(resumed["tasks"]["cancelled"] == 0);
  CHECK(resumed["tasks"]["total"] == 1);
  CHECK(f.job_states(task) == std::vector<std::string>{"cancelled", "queued"});
}

TEST_CASE(
    "the API serves a running coordinator: a submitted campaign starts, cancel withdraws its job, "
    "resume queues it again") {
  ServerFixture f;
  json created = f.post("/api/v1/campaigns", verify_only_campaign(), 201);
  int64_t task =
      f.get("/api/v1/tasks?campaign=" + std::to_string(created["id"].get<int64_t>()))[0]["task"];
  // The Conductor starts it at once (the write's hook) and queues its verify job.
  REQUIRE_MESSAGE(
      wait_until([&] { return f.job_states(task) == std::vector<std::string>{"queued"}; }, 10s),
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
  REQUIRE(wait_until(
      [&] { return f.get("/api/v1/tasks/" + std::to_string(task))["state"] == "passed"; }, 120s));
  auto metrics = f.http->Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->body.find("kforge_agents_live 1\n") != std::string::npos);
  CHECK(metrics->body.find("kforge_dispatch_latency_seconds_count 1\n") != std::string::npos);
  CHECK(metrics->body.find("kforge_results_total{outcome=\"recorded\"} 1\n") != std::string::npos);
  CHECK(metrics->body.find("kforge_devices{backend=\"cpu\"} 1\n") != std::string::npos);
}

// Issue 21: a campaign's tasks are not all driven at once. The Conductor drives a window of
// them (their jobs queued in the pool), the rest wait pending in the store and start as places
// free up; after a kill -9 only the window (the tasks in flight) is resumed, each with the job
// it had, and an agent that comes gets them.
TEST_CASE(
    "the Conductor drives a window of tasks; a restart resumes only those and dispatches their "
    "jobs") {
  TestCluster cluster;
  auto fixture =
      load_campaign((source_dir() / "tests" / "fixtures" / "campaigns" / "verify.toml").string());
  REQUIRE(fixture.ok());
  ConductorOptions options;
  options.max_active_tasks = 2;
  auto conductor_on = [&](Coordinator& co) {
    auto prompts = PromptLibrary::load(source_dir() / "prompts");
    REQUIRE(prompts.ok());
    return std::make_unique<Conductor>(co, nullptr, std::move(*prompts), options);
  };
  auto conductor = conductor_on(cluster.coordinator());
  std::vector<int64_t> ids = cluster.coordinator().call([&](Coordinator& c) {
    int64_t campaign =
        c.store().create_campaign("window", "", "hash-window", Workflow::verify_only).value();
    std::vector<int64_t> out;
    for (int i = 0; i < 5; ++i) {
      TaskSpec t = fixture->tasks[0].spec;
      t.task_id = "N=" + std::to_string(i);
      t.candidate = fixture->tasks[0].candidate;
      out.push_back(c.store().create_task(campaign, t).value());
    }
    return out;
  });
  auto counts = [&] {
    return cluster.coordinator().call(
        [](Coordinator& c) { return c.store().task_counts(0).value(); });
  };
  auto queued = [&] {
    return cluster.coordinator().call([](Coordinator& c) { return c.pool().queued(); });
  };
  REQUIRE(cluster.coordinator().call([&](Coordinator&) { return conductor->resume_all(); }).ok());
  REQUIRE(wait_until([&] { return counts()[TaskState::running] == 2; }, 10s));
  CHECK(counts()[TaskState::pending] == 3);
  CHECK(queued() == 2);
  // A cancelled task frees its place: the next pending one starts.
  REQUIRE(cluster.coordinator()
              .call([&](Coordinator& c) {
                KF_RETURN_IF_ERROR(c.store().set_task_state(
                    ids[0], TaskState::cancelled, Outcome::cancelled, "cancelled by operator"));
                return conductor->resume_all();
              })
              .ok());
  REQUIRE(wait_until(
      [&] {
        auto n = counts();
        return n[TaskState::running] == 2 && n[TaskState::pending] == 2;
      },
      10s));
  CHECK(queued() == 2);

  cluster.kill_coordinator();
  conductor.reset();
  cluster.start_coordinator();
  conductor = conductor_on(cluster.coordinator());
  REQUIRE(cluster.coordinator().call([&](Coordinator&) { return conductor->resume_all(); }).ok());
  REQUIRE(wait_until(
      [&] {
        return cluster.coordinator().call([&](Coordinator&) { return conductor->active(); }) == 2;
      },
      10s));
  auto n = counts();
  CHECK(n[TaskState::running] == 2);
  CHECK(n[TaskState::pending] == 2);
  CHECK(queued() == 2);
  std::vector<int64_t> running = cluster.coordinator().call([](Coordinator& c) {
    TaskQuery q;
    q.state = TaskState::running;
    return c.store().task_ids(q).value();
  });
  REQUIRE(running.size() == 2);
  for (int64_t task : running) {  // each kept its one job: found again, not submitted twice
    CHECK(cluster.coordinator().call(
              [&](Coordinator& c) { return c.store().jobs_of_task(task).value().size(); }) == 1);
  }
  cluster.start_agent("a");
  REQUIRE(wait_until(
      [&] {
        return cluster.coordinator().call([&](Coordinator& c) {
          auto job = c.store().jobs_of_task(running[0]).value().at(0);
          return job.state == JobState::assigned || job.state == JobState::done;
        });
      },
      30s));
}

TEST_CASE("a drain through the API reaches the coordinator's pool") {
  ServerFixture f;
  f.cluster.start_agent("a");
  REQUIRE(f.cluster.wait_live(1));
  std::string id = f.get("/api/v1/agents")[0]["id"];
  json a = f.post("/api/v1/agents/" + id.substr(0, 6) + "/drain");
  CHECK(a["drained"] == true);
  REQUIRE(wait_until(
      [&] {
        return f.cluster.coordinator().call([&](Coordinator& c) { return c.agent_drained(id); });
      },
      5s));
  f.post("/api/v1/agents/" + id + "/undrain");
  CHECK(f.get("/api/v1/agents")[0]["drained"] == false);
}

TEST_CASE_FIXTURE(RouterFixture,
                  "the cluster summary counts the queue and the tasks finished in the last hour") {
  {
    auto store = Store::open(db);
    REQUIRE(store.ok());
    NewJob job;
    job.request.argv = {"true"};
    job.backend = "ascend";
    for (int i = 0; i < 2; ++i) REQUIRE((*store)->enqueue_job(job).ok());
  }
  // The failed task finished two hours ago: outside the hour.
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(db.c_str(), &raw) == SQLITE_OK);
  std::string backdate =
      "UPDATE tasks SET updated_ms = updated_ms - 7200000 WHERE id = " + std::to_string(tasks[1]);
  CHECK(sqlite3_exec(raw, backdate.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(raw);
  json c = get("/api/v1/cluster");
  CHECK(c["jobs"]["queued"] == 2);
  CHECK(c["jobs"]["running"] == 0);
  CHECK(c["tasks"]["pending"] == 1);
  CHECK(c["tasks"]["passed"] == 1);
  CHECK(c["tasks"]["failed"] == 1);
  CHECK(c["throughput"]["window_s"] == 3600);
  CHECK(c["throughput"]["tasks_finished"] == 1);
  CHECK(c["throughput"]["tasks_per_hour"] == 1);
  CHECK(c["campaigns"]["total"] == 1);
  CHECK(c["hosts"].empty());
  CHECK(c["devices"]["total"] == 0);
  CHECK(ask("POST", "/api/v1/cluster").status == 405);
  CHECK(ask("GET", "/api/v1/cluster", {{"host", "a"}}).status == 400);  // takes no parameters
}

TEST_CASE("a host drains with a reason; the cluster summary shows its devices by state") {
  ServerFixture f;
  f.cluster.start_agent("node-a", 2);
  f.cluster.start_agent("node-b", 1);
  REQUIRE(f.cluster.wait_live(2));
  json c = f.get("/api/v1/cluster");
  REQUIRE(c["hosts"].size() == 2);
  CHECK(c["hosts"][0]["host"] == "node-a");
  CHECK(c["hosts"][0]["state"] == "live");
  CHECK(c["hosts"][0]["devices"]["idle"] == 2);
  CHECK(c["devices"]["total"] == 3);
  CHECK(c["devices"]["idle"] == 3);
  CHECK(c["agents"]["live"] == 2);

  json drained = f.post("/api/v1/hosts/node-a/drain", {{"reason", "fan replacement, ticket 42"}});
  REQUIRE(drained.is_array());
  REQUIRE(drained.size() == 1);
  CHECK(drained[0]["host"] == "node-a");
  CHECK(drained[0]["drained"] == true);
  CHECK(drained[0]["drain_reason"] == "fan replacement, ticket 42");
  CHECK(drained[0]["drained_ms"].is_number());
  std::string id = drained[0]["id"];
  REQUIRE(wait_until(
      [&] {
        return f.cluster.coordinator().call([&](Coordinator& co) { return co.agent_drained(id); });
      },
      5s));
  c = f.get("/api/v1/cluster");
  CHECK(c["hosts"][0]["drained"] == true);
  CHECK(c["hosts"][0]["drain_reason"] == "fan replacement, ticket 42");
  CHECK(c["hosts"][0]["devices"]["drained"] == 2);
  CHECK(c["hosts"][1]["drained"] == false);
  CHECK(c["devices"]["drained"] == 2);
  CHECK(c["devices"]["idle"] == 1);
  CHECK(c["agents"]["drained"] == 1);

  // The drain outlives the agent's restart, reason and all.
  auto agent = [&](const std::string& agent_id) {
    for (const json& a : f.get("/api/v1/agents")) {
      if (a["id"] == agent_id) return a;
    }
    FAIL("no agent " << agent_id);
    return json();
  };
  std::string incarnation = agent(id)["incarnation"];
  f.cluster.kill_agent("node-a");
  f.cluster.start_agent("node-a", 2);
  REQUIRE(wait_until(
      [&] {
        json a = agent(id);
        return a["incarnation"] != incarnation && a["state"] == "live";
      },
      10s));
  CHECK(agent(id)["drained"] == true);
  CHECK(agent(id)["drain_reason"] == "fan replacement, ticket 42");

  json undrained = f.post("/api/v1/hosts/node-a/undrain");
  CHECK(undrained[0]["drained"] == false);
  CHECK(undrained[0]["drain_reason"] == "");
  CHECK(undrained[0]["drained_ms"].is_null());
  // An agent drains by its id with a reason too, and answers the Agent.
  json one = f.post("/api/v1/agents/" + id + "/drain", {{"reason", "bad DIMM"}});
  CHECK(one["id"] == id);
  CHECK(one["drain_reason"] == "bad DIMM");

  json none = f.post("/api/v1/hosts/node-z/drain", json::object(), 404);
  CHECK(none["error"].get<std::string>().find("no agent on host 'node-z'") != std::string::npos);
  json multiline = f.post("/api/v1/hosts/node-b/drain", {{"reason", "a\nb"}}, 400);
  CHECK(multiline["error"].get<std::string>().find("reason: expected one line") !=
        std::string::npos);
  json long_reason = f.post("/api/v1/hosts/node-b/drain", {{"reason", std::string(300, 'x')}}, 400);
  CHECK(long_reason["error"].get<std::string>().find("at most 256 bytes") != std::string::npos);
  json not_text = f.post("/api/v1/hosts/node-b/drain", {{"reason", 7}}, 400);
  CHECK(not_text["error"].get<std::string>().find("reason: expected a string") !=
        std::string::npos);
  std::string b = f.get("/api/v1/cluster")["hosts"][1]["agents"][0];
  CHECK(agent(b)["drained"] == false);  // a refused drain drains nothing

  auto metrics = f.http->Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->body.find(
            "# TYPE kforge_build_info gauge\nkforge_build_info{version=\"" KFORGE_VERSION
            "\",commit=\"") != std::string::npos);
  CHECK(metrics->body.find("kforge_device_utilization_ratio{backend=\"cpu\"} ") !=
        std::string::npos);
  CHECK(metrics->body.find("kforge_device_utilization{") == std::string::npos);
}

TEST_CASE("a token guards the API and the metrics, not the dashboard page") {
  TempDir dir;
  write_file(dir / "token", "  s3cret\n");
  CoordinatorConfig config;
  config.http_listen = "127.0.0.1:0";
  config.data_dir = (dir / "data").string();
  config.api_token_file = (dir / "token").string();
  auto options = operator_api_options(config);
  REQUIRE_MESSAGE(options.ok(), options.status().to_string());
  CHECK(options->token == "s3cret");
  ServerFixture f(*options);
  f.http = std::make_unique<httplib::Client>("127.0.0.1", f.port());
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

TEST_CASE("the coordinator creates its token at the first start, 0600, and keeps it") {
  TempDir dir;
  CoordinatorConfig config;
  config.http_listen = "0.0.0.0:0";  // any address: the token is required everywhere
  config.data_dir = (dir / "data").string();
  auto first = operator_api_options(config);
  REQUIRE_MESSAGE(first.ok(), first.status().to_string());
  CHECK(first->token.size() == 64);
  CHECK(first->token_file == (dir / "data" / "api.token").string());
  CHECK(mode_of(dir / "data" / "api.token") == 0600);
  CHECK(mode_of(dir / "data") == 0700);
  auto again = operator_api_options(config);
  REQUIRE(again.ok());
  CHECK(again->token == first->token);
  // A token file others can read is refused; a configured one wins over the data directory's.
  std::filesystem::permissions(dir / "data" / "api.token", std::filesystem::perms(0644));
  auto open = operator_api_options(config);
  REQUIRE_FALSE(open.ok());
  CHECK(open.status().message().find("readable by others") != std::string::npos);
  write_file(dir / "token", "t\n");
  config.api_token_file = (dir / "token").string();
  auto configured = operator_api_options(config);
  REQUIRE(configured.ok());
  CHECK(configured->token == "t");
}

TEST_CASE("a server without a token, a bad address or an empty token file is refused") {
  TempDir dir;
  LocalApiBackend backend(dir / "kforge.db");
  auto open = HttpServer::start(HttpServerOptions{"127.0.0.1:0", ""}, backend);
  REQUIRE_FALSE(open.ok());
  CHECK(open.status().message().find("token") != std::string::npos);
  CHECK_FALSE(HttpServer::start(HttpServerOptions{"127.0.0.1:notaport", "t"}, backend).ok());
  auto guarded = HttpServer::start(HttpServerOptions{"0.0.0.0:0", "t"}, backend);
  CHECK_MESSAGE(guarded.ok(), guarded.status().to_string());
  write_file(dir / "empty", "\n");
  auto token = read_token_file(dir / "empty");
  REQUIRE_FALSE(token.ok());
  CHECK(token.status().message().find("empty") != std::string::npos);
  CoordinatorConfig config;
  config.data_dir = (dir / "data").string();
  config.http_listen = "127.0.0.1:7780";
  config.api_token_file = (dir / "empty").string();
  CHECK(operator_api_options(config).status().message().rfind("coordinator.api_token_file:", 0) ==
        0);
  config.http_listen = "127.0.0.1";
  CHECK(operator_api_options(config).status().message().find("host:port") != std::string::npos);
}

// --- The hardened server: checks before the body, limits, errors, connections -------------

namespace {

// A raw TCP connection to the server, for what httplib's client will not send.
struct Raw {
  int fd = -1;
  explicit Raw(int port) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  ~Raw() { ::close(fd); }
  Raw(const Raw&) = delete;
  void send(const std::string& text) {
    REQUIRE(::send(fd, text.data(), text.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(text.size()));
  }
  // Everything the server sends until it closes, or until `deadline` (then what came so far).
  std::string read_all(std::chrono::milliseconds deadline = 30s) {
    std::string out;
    auto end = std::chrono::steady_clock::now() + deadline;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                      end - std::chrono::steady_clock::now())
                      .count();
      if (left <= 0) return out;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) return out;
      char buf[4096];
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return out;
      out.append(buf, static_cast<size_t>(n));
    }
  }
  // The status line's code of what read_all returned ("" -> 0).
  static int status(const std::string& answer) {
    if (answer.rfind("HTTP/1.1 ", 0) != 0) return 0;
    return std::stoi(answer.substr(9, 3));
  }
  static json body(const std::string& answer) {
    auto at = answer.find("\r\n\r\n");
    return at == std::string::npos ? json() : json::parse(answer.substr(at + 4), nullptr, false);
  }
};

std::string head(int port, const std::string& request_line,
                 const std::vector<std::string>& headers) {
  std::string out = request_line + "\r\nHost: 127.0.0.1:" + std::to_string(port) + "\r\n";
  for (const auto& h : headers) out += h + "\r\n";
  return out + "\r\n";
}

// The answer to a request httplib sends: status and the {"error": ...} text ("" when none).
std::pair<int, std::string> status_error(const httplib::Result& r) {
  REQUIRE(r);
  json doc = json::parse(r->body, nullptr, false);
  std::string error =
      doc.is_object() && doc.contains("error") ? doc["error"].get<std::string>() : "";
  return {r->status, error};
}

}  // namespace

TEST_CASE("every API request needs the token, on loopback too") {
  ServerFixture f;
  for (const char* path : {"/api/v1/health", "/api/v1/campaigns", "/metrics", "/api"}) {
    CAPTURE(path);
    auto [status, error] = status_error(f.anonymous->Get(path));
    CHECK(status == 401);
    CHECK(error.find("API token") != std::string::npos);
  }
  auto [status, error] =
      status_error(f.anonymous->Post("/api/v1/tasks/1/cancel", "{}", "application/json"));
  CHECK(status == 401);
  CHECK(f.http->Get("/api/v1/health")->status == 200);
  httplib::Client lower("127.0.0.1", f.port());
  lower.set_default_headers({{"Authorization", "bearer " + kToken}});
  CHECK(lower.Get("/api/v1/health")->status == 200);
}

TEST_CASE("metrics can be made public; the API stays guarded") {
  HttpServerOptions o = test_options();
  o.metrics_public = true;
  ServerFixture f(o);
  CHECK(f.anonymous->Get("/metrics")->status == 200);
  CHECK(f.anonymous->Get("/api/v1/health")->status == 401);
}

TEST_CASE("the token is checked before the body is read") {
  HttpServerOptions o = test_options();
  o.serving.io_timeout_ms =
      120000;  // a server waiting for the body would not answer in the test's time
  ServerFixture f(o);
  Raw c(f.port());
  // A gigabyte announced, not one byte of it sent: the answer comes anyway, and the connection
  // closes.
  c.send(head(f.port(), "POST /api/v1/campaigns HTTP/1.1",
              {"Content-Type: application/json", "Content-Length: 1000000000"}));
  std::string answer = c.read_all();
  CHECK(Raw::status(answer) == 401);
  CHECK(Raw::body(answer)["error"].get<std::string>().find("token") != std::string::npos);
  // With Expect: 100-continue (curl's way for large bodies) the refusal comes instead of the 100.
  Raw e(f.port());
  e.send(head(
      f.port(), "POST /api/v1/campaigns HTTP/1.1",
      {"Content-Type: application/json", "Content-Length: 1000000000", "Expect: 100-continue"}));
  std::string refused = e.read_all();
  CHECK(Raw::status(refused) == 401);
  CHECK(refused.find("100 Continue") == std::string::npos);
}

TEST_CASE("an oversized body is a 413 with a JSON error, before it is read") {
  HttpServerOptions o = test_options();
  o.max_body_bytes = 1024;
  o.serving.io_timeout_ms = 120000;
  ServerFixture f(o);
  Raw c(f.port());
  c.send(head(f.port(), "POST /api/v1/campaigns HTTP/1.1",
              {"Authorization: Bearer " + kToken, "Content-Type: application/json",
               "Content-Length: 1025"}));
  std::string answer = c.read_all();
  CHECK(Raw::status(answer) == 413);
  CHECK(Raw::body(answer)["error"].get<std::string>().find("limit is 1024") != std::string::npos);
  // Chunked or unannounced bodies are refused: their size is not known before reading them.
  auto [status, error] =
      status_error(f.http->Post("/api/v1/campaigns", std::string(2000, ' '), "application/json"));
  CHECK(status == 413);
  Raw chunked(f.port());
  chunked.send(head(f.port(), "POST /api/v1/campaigns HTTP/1.1",
                    {"Authorization: Bearer " + kToken, "Content-Type: application/json",
                     "Transfer-Encoding: chunked"}));
  CHECK(Raw::status(chunked.read_all()) == 411);
}

TEST_CASE("JSON nested too deep is a 400 that says so") {
  ServerFixture f;
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  auto [status, error] = status_error(f.http->Post("/api/v1/campaigns", deep, "application/json"));
  CHECK(status == 400);
  CHECK(error.find("nested deeper than 64") != std::string::npos);
  std::string fine = R"({"name": "x", "tasks": [{"a": [[[[1]]]]}]})";
  CHECK(status_error(f.http->Post("/api/v1/campaigns", fine, "application/json")).first ==
        400);  // a bad spec, parsed
}

TEST_CASE("a foreign Host or Origin is refused, a local one is not") {
  ServerFixture f;
  auto get = [&](httplib::Headers h) { return status_error(f.http->Get("/api/v1/health", h)); };
  CHECK(get({{"Host", "evil.example:7780"}}).first == 403);
  CHECK(get({{"Host", "127.0.0.1.evil.example"}}).first == 403);
  CHECK(get({{"Host", "localhost:" + std::to_string(f.port())}}).first == 200);
  CHECK(get({{"Origin", "http://evil.example"}}).first == 403);
  CHECK(get({{"Origin", "null"}}).first == 403);
  CHECK(get({{"Origin", "http://127.0.0.1:" + std::to_string(f.port())}}).first == 200);
  // The dashboard's own page is checked too (DNS rebinding reads pages as well).
  CHECK(f.anonymous->Get("/", {{"Host", "evil.example"}})->status == 403);
  auto [status, error] = get({{"Host", "evil.example"}});
  CHECK(error.find("api_hosts") != std::string::npos);
  // A cross-site POST (CSRF) fails even with a token the browser could not have had.
  auto post = f.http->Post("/api/v1/tasks/1/cancel", {{"Origin", "http://evil.example"}}, "{}",
                           "application/json");
  CHECK(post->status == 403);
}

TEST_CASE("loopback names are address literals and localhost, not names that look like them") {
  CHECK(is_loopback_name("127.0.0.1"));
  CHECK(is_loopback_name("127.3.2.1"));
  CHECK(is_loopback_name("::1"));
  CHECK(is_loopback_name("localhost"));
  CHECK_FALSE(is_loopback_name("127.0.0.1.nip.io"));
  CHECK_FALSE(is_loopback_name("localhost.evil.example"));
  CHECK_FALSE(is_loopback_name("10.0.0.1"));
  CHECK(host_of("127.0.0.1:7780") == "127.0.0.1");
  CHECK(host_of("[::1]:7780") == "::1");
  CHECK(host_of("Head-Node") == "head-node");
  CHECK(host_of("::1").empty());  // an IPv6 Host needs brackets
  CHECK(host_of("a:b").empty());
  CHECK(host_of("user@host").empty());
}

TEST_CASE("this host's own name is accepted as Host") {
  ServerFixture f;
  char name[256] = {};
  REQUIRE(::gethostname(name, sizeof name - 1) == 0);
  CHECK(
      f.http->Get("/api/v1/health", {{"Host", std::string(name) + ":" + std::to_string(f.port())}})
          ->status == 200);
}

TEST_CASE("configured host names are accepted") {
  HttpServerOptions o = test_options();
  o.hosts = {"head-node.example"};
  ServerFixture f(o);
  CHECK(f.http->Get("/api/v1/health", {{"Host", "head-node.example:7780"}})->status == 200);
  CHECK(f.http->Get("/api/v1/health", {{"Origin", "http://HEAD-NODE.example:7780"}})->status ==
        200);
  CHECK(f.http->Get("/api/v1/health", {{"Host", "other.example"}})->status == 403);
}

TEST_CASE("a write must be JSON: a text/plain POST (a form's, a CSRF's) is refused") {
  ServerFixture f;
  json body = verify_only_campaign();
  auto [status, error] = status_error(f.http->Post("/api/v1/campaigns", body.dump(), "text/plain"));
  CHECK(status == 415);
  CHECK(error.find("application/json") != std::string::npos);
  CHECK(status_error(
            f.http->Post("/api/v1/campaigns", body.dump(), "application/x-www-form-urlencoded"))
            .first == 415);
  CHECK(f.get("/api/v1/campaigns").empty());  // nothing created
  CHECK(f.http->Post("/api/v1/campaigns", body.dump(), "application/json; charset=utf-8")->status ==
        201);
}

TEST_CASE("every failure answers a JSON error, httplib's own included") {
  ServerFixture f;
  auto is_error = [](const httplib::Result& r, int want) {
    auto [status, error] = status_error(r);
    CHECK(status == want);
    CHECK_FALSE(error.empty());
    CHECK(r->get_header_value("Content-Type") == "application/json");
  };
  is_error(f.http->Put("/api/v1/campaigns", "{}", "application/json"), 405);
  is_error(f.http->Delete("/api/v1/tasks/1"), 405);
  is_error(f.http->Get("/api/v1/tasks/1/cancel"), 405);
  is_error(f.http->Post("/api/v1/health", "{}", "application/json"), 405);
  is_error(f.http->Get("/nothing-here"), 404);
  is_error(f.http->Get("/api/v1/nothing"), 404);
  is_error(f.http->Get(("/api/v1/tasks?op=" + std::string(10000, 'x')).c_str()), 414);
  is_error(f.http->Get("/api/v1/tasks?state=bogus"), 400);
  is_error(f.http->Get("/api/v1/tasks?limit="), 400);
  is_error(f.http->Get("/api/v1/jobs?limit="), 400);
  is_error(f.http->Get("/api/v1/tasks?stat=failed"), 400);
  CHECK(
      status_error(f.http->Get("/api/v1/tasks?state=bogus")).second ==
      "query parameter 'state': 'bogus' is not one of pending, running, passed, failed, cancelled");
  CHECK(status_error(f.http->Get("/api/v1/jobs?state=bogus")).second ==
        "query parameter 'state': 'bogus' is not one of queued, assigned, done, cancelled");
  CHECK(status_error(f.http->Get("/api/v1/tasks?verdict=ok"))
            .second.starts_with(
                "query parameter 'verdict': 'ok' is not one of passed, compile_error, "));
  Raw bad(f.port());
  bad.send("NONSENSE\r\n\r\n");
  std::string answer = bad.read_all();
  CHECK(Raw::status(answer) == 400);
  CHECK(Raw::body(answer).contains("error"));
}

TEST_CASE("a campaign with a repeated task is refused whole: nothing stored, nothing runs") {
  ServerFixture f;
  json body = verify_only_campaign();
  body["tasks"].push_back(body["tasks"][0]);
  auto [status, error] =
      status_error(f.http->Post("/api/v1/campaigns", body.dump(), "application/json"));
  CHECK(status == 400);
  CHECK(error.find("tasks[1]: repeats tasks[0]") != std::string::npos);
  CHECK(error.find(".db") == std::string::npos);
  CHECK(error.find(f.cluster.coordinator().store_path().parent_path().string()) ==
        std::string::npos);
  CHECK(f.get("/api/v1/campaigns").empty());
  CHECK(f.get("/api/v1/jobs").empty());
}

TEST_CASE("a write that fails in the store leaves none of its rows (one unit in the turn)") {
  ServerFixture f;
  // A store failure half-way: the second task's insert fails on the store's own key, past the
  // router's check (a task_id that differs only there... the store sees the same key).
  int64_t before = f.cluster.coordinator().call(
      [](Coordinator& c) { return c.store().campaigns().value().size(); });
  Status st = f.cluster.coordinator().call([](Coordinator& c) {
    return c.store().atomically([&]() -> Status {
      auto id = c.store().create_campaign("half", "", "h", Workflow::verify_only);
      if (!id.ok()) return id.status();
      return internal_error("fails after the campaign row");
    });
  });
  CHECK_FALSE(st.ok());
  CHECK(f.cluster.coordinator().call([](Coordinator& c) {
    return c.store().campaigns().value().size();
  }) == static_cast<size_t>(before));
}

TEST_CASE("a slow client trickling its headers does not stall others") {
  ServerFixture f;
  std::vector<std::unique_ptr<Raw>> slow;
  std::string request =
      head(f.port(), "GET /api/v1/health HTTP/1.1", {"Authorization: Bearer " + kToken});
  for (int i = 0; i < 50; ++i) {  // more than the worker threads
    slow.push_back(std::make_unique<Raw>(f.port()));
    slow.back()->send(request.substr(0, 10));
  }
  for (size_t at = 10; at < 30; ++at) {  // byte by byte, interleaved with real requests
    for (auto& c : slow) c->send(request.substr(at, 1));
    CHECK(f.http->Get("/api/v1/health")->status == 200);
  }
  // Each slow one is served when its head completes.
  slow[0]->send(request.substr(30));
  CHECK(Raw::status(slow[0]->read_all(5s)) == 200);
}

TEST_CASE("a request head that never completes is closed with 408") {
  HttpServerOptions o = test_options();
  o.serving.head_timeout_ms = 200;
  ServerFixture f(o);
  Raw c(f.port());
  c.send("GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  CHECK(Raw::status(c.read_all(30s)) == 408);
}

TEST_CASE("300 idle connections do not starve a request") {
  ServerFixture f;
  std::vector<std::unique_ptr<Raw>> idle;
  for (int i = 0; i < 300; ++i) idle.push_back(std::make_unique<Raw>(f.port()));
  REQUIRE(wait_until([&] { return f.api->server->open_connections() >= 300; }, 20s));
  httplib::Client c("127.0.0.1", f.port());
  c.set_bearer_token_auth(kToken.c_str());
  c.set_read_timeout(20, 0);  // generous: a deadline, not a benchmark
  auto r = c.Get("/api/v1/health");
  REQUIRE(r);
  CHECK(r->status == 200);
}

TEST_CASE("connections beyond the cap are answered 503 and closed") {
  HttpServerOptions o = test_options();
  o.serving.max_connections = 5;
  ServerFixture f(o);
  std::vector<std::unique_ptr<Raw>> held;
  for (int i = 0; i < 5; ++i) held.push_back(std::make_unique<Raw>(f.port()));
  REQUIRE(wait_until([&] { return f.api->server->open_connections() == 5; }, 20s));
  Raw extra(f.port());
  std::string answer = extra.read_all();
  CHECK(Raw::status(answer) == 503);
  held.clear();
  REQUIRE(wait_until([&] { return f.api->server->open_connections() == 0; }, 20s));
  CHECK(f.http->Get("/api/v1/health")->status == 200);
}

TEST_CASE("keep-alive serves several requests on one connection, pipelined too") {
  ServerFixture f;
  Raw c(f.port());
  std::string one =
      head(f.port(), "GET /api/v1/health HTTP/1.1", {"Authorization: Bearer " + kToken});
  std::string last = head(f.port(), "GET /api/v1/health HTTP/1.1",
                          {"Authorization: Bearer " + kToken, "Connection: close"});
  c.send(one + one + last);
  std::string answers = c.read_all();
  size_t n = 0;
  for (size_t at = answers.find("HTTP/1.1 200"); at != std::string::npos;
       at = answers.find("HTTP/1.1 200", at + 1))
    ++n;
  CHECK(n == 3);
}

TEST_CASE("the data directory is 0700, the database and its side files 0600") {
  TempDir dir;
  CoordinatorOptions options;
  options.listen = "tcp://127.0.0.1:*";
  options.data_dir = dir / "data";
  {
    auto c = Coordinator::open(options);
    REQUIRE_MESSAGE(c.ok(), c.status().to_string());
  }
  CHECK(mode_of(dir / "data") == 0700);
  CHECK(mode_of(dir / "data" / "kforge.db") == 0600);
  // An existing, wider directory is narrowed.
  std::filesystem::permissions(dir / "data", std::filesystem::perms(0755));
  std::filesystem::permissions(dir / "data" / "kforge.db", std::filesystem::perms(0644));
  {
    auto c = Coordinator::open(options);
    REQUIRE(c.ok());
    for (const char* side : {"kforge.db-wal", "kforge.db-shm"}) {
      if (std::filesystem::exists(dir / "data" / side)) CHECK(mode_of(dir / "data" / side) == 0600);
    }
  }
  CHECK(mode_of(dir / "data") == 0700);
  CHECK(mode_of(dir / "data" / "kforge.db") == 0600);
}

TEST_CASE("request heads over the limit are a 431; a write without Content-Length has no body") {
  ServerFixture f;
  Raw big(f.port());
  big.send("GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: " +
           std::string(70000, 'a') + "\r\n\r\n");
  std::string answer = big.read_all();
  CHECK(Raw::status(answer) == 431);
  CHECK(Raw::body(answer).contains("error"));
  // No Content-Length: no body (HTTP/1.1), answered at once rather than read until the client
  // closes.
  Raw c(f.port());
  c.send(
      head(f.port(), "POST /api/v1/tasks/99/cancel HTTP/1.1", {"Authorization: Bearer " + kToken}));
  std::string cancel = c.read_all();
  CHECK(Raw::status(cancel) == 404);
  CHECK(Raw::body(cancel)["error"].get<std::string>().find("no task 99") != std::string::npos);
}
