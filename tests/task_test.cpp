// The design's Task API on an in-process cluster: a task driven to a verified kernel, a task
// whose LLM keeps failing, and an invalid one refused.
#include "coordinator/generation/task.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <memory>

#include "common/fs.h"
#include "coordinator/store/fault_vfs.h"
#include "tests/support/child.h"
#include "tests/support/cluster.h"
#include "tests/support/fake_llm.h"
#include "tests/support/fixtures.h"

using namespace kforge;
using namespace kforge::test;
using namespace std::chrono_literals;

namespace {

// An answer for every role that passes on the first try: the design, and code that compiles.
std::string passing_answer() {
  std::string code =
      kforge::read_file(source_dir() / "tests/harness/candidates/add_numpy_cpp_syntax_error.py")
          .value();
  code.replace(code.find("out[i] = x[i] + y[i] + bias"),
               std::string("out[i] = x[i] + y[i] + bias").size(), "out[i] = x[i] + y[i];");
  return "```aul\nfor i in tiles(N, 256): out[i] = x[i] + y[i]\n```\n```python\n" + code +
         "\n```\n";
}

TaskSpec vector_add_spec() {
  TaskSpec spec = test::task_spec("vector_add", "N=100003");
  spec.task_desc =
      kforge::read_file(source_dir() / "tests/harness/tasks/vector_add_numpy.py").value();
  spec.backend = "cpu";
  spec.arch = "x86_64";
  spec.impl_type = "cpp";
  spec.framework = "numpy";
  spec.limit_steps = 4;
  return spec;
}

struct TaskFixture {
  StorageFaults& faults = StorageFaults::install();  // before the cluster opens its store
  FakeLlmServer llm;
  TestCluster cluster;
  std::unique_ptr<LlmClient> client;
  std::unique_ptr<Conductor> conductor;

  TaskFixture() {
    std::map<LlmRole, LlmEndpoint> endpoints;
    for (LlmRole role : {LlmRole::designer, LlmRole::coder}) {
      LlmEndpoint e;
      e.base_url = llm.base_url();
      e.model = "fake";
      e.max_retries = 0;
      endpoints[role] = e;
    }
    auto c = LlmClient::create(endpoints);
    REQUIRE(c.ok());
    client = std::move(c.value());
    auto prompts = PromptLibrary::load(find_prompt_dir("").value());
    REQUIRE(prompts.ok());
    ConductorOptions options;
    options.endpoints = endpoints;
    // The Conductor joins the loop thread's listeners: only ever touched inside call().
    conductor = cluster.coordinator().call([&](Coordinator& co) {
      return std::make_unique<Conductor>(co, client.get(), std::move(prompts.value()), options);
    });
    AgentOptions agent = TestCluster::fast_agent_options();
    cluster.start_agent("a", 1, agent);
    REQUIRE(cluster.wait_live(1));
  }
  ~TaskFixture() { cluster.kill_coordinator(); }
};

}  // namespace

TEST_CASE_FIXTURE(TaskFixture, "a Task runs to a verified kernel and reports success") {
  llm.set_responder([answer = passing_answer()](const nlohmann::json&) { return answer; });
  Task task(vector_add_spec(), cluster.coordinator(), *conductor);
  std::future<bool> ok = task.run();
  REQUIRE(ok.wait_for(120s) == std::future_status::ready);
  CHECK(ok.get());
  auto row =
      cluster.coordinator().call([&](Coordinator& c) { return c.store().get_task(task.id()); });
  REQUIRE(row.ok());
  CHECK(row->state == TaskState::passed);
  CHECK(row->steps_used == 3);  // designer, coder, verifier
  // Running the same Task again finds it finished: no new question.
  size_t asked = llm.request_count();
  Task again(vector_add_spec(), cluster.coordinator(), *conductor);
  CHECK(again.run().get());
  CHECK(again.id() == task.id());
  CHECK(llm.request_count() == asked);
}

TEST_CASE_FIXTURE(TaskFixture, "a task whose LLM keeps failing ends as failed with the reason") {
  for (int i = 0; i < 10; ++i) llm.push(FakeBehaviour::status(400, -1, "model does not exist"));
  Task task(vector_add_spec(), cluster.coordinator(), *conductor);
  std::future<bool> ok = task.run();
  REQUIRE(ok.wait_for(60s) == std::future_status::ready);
  CHECK_FALSE(ok.get());
  auto row =
      cluster.coordinator().call([&](Coordinator& c) { return c.store().get_task(task.id()); });
  REQUIRE(row.ok());
  CHECK(row->state == TaskState::failed);
  CHECK(row->verdict == Outcome::llm_error);
  CHECK(row->reason.find("kept failing") != std::string::npos);
  CHECK(row->reason.find("400") != std::string::npos);
  CHECK(row->steps_used == 0);  // failed LLM calls use no budget

  // The operator finds it by its verdict with the real kforge, the words kept apart.
  const std::string data = (cluster.dir() / "coordinator").string();
  Ran listed = kforge_cli({"tasks", "--verdict", "llm_error", "--json", "--data", data});
  REQUIRE_MESSAGE(listed.code == 0, listed.err);
  nlohmann::json found = nlohmann::json::parse(listed.out);
  REQUIRE(found.size() == 1);
  CHECK(found[0]["task"] == task.id());
  CHECK(found[0]["verdict"] == "llm_error");
  CHECK(found[0]["reason"] == row->reason);
  CHECK(nlohmann::json::parse(
            kforge_cli({"tasks", "--verdict", "passed", "--json", "--data", data}).out)
            .empty());
  Ran shown = kforge_cli({"show", std::to_string(task.id()), "--data", data});
  REQUIRE_MESSAGE(shown.code == 0, shown.err);
  CHECK(shown.out.find("verdict llm_error") != std::string::npos);
  CHECK(shown.out.find("reason: " + row->reason) != std::string::npos);
}

TEST_CASE_FIXTURE(
    TaskFixture,
    "a question that got no answer is asked again as it was, not as a fix of a failed design") {
  // The first design request gets a server error (as a replay miss is, an LLM error); then
  // every question gets a passing answer.
  llm.push(FakeBehaviour::status(500, -1, "overloaded"));
  llm.set_responder([answer = passing_answer()](const nlohmann::json&) { return answer; });
  Task task(vector_add_spec(), cluster.coordinator(), *conductor);
  std::future<bool> ok = task.run();
  REQUIRE(ok.wait_for(120s) == std::future_status::ready);
  CHECK(ok.get());
  std::vector<FakeRequest> asked = llm.requests();
  REQUIRE(asked.size() >= 3);  // design (failed), design again, code
  const std::string first = asked[0].body["messages"][1]["content"];
  const std::string retry = asked[1].body["messages"][1]["content"];
  CHECK(retry == first);  // the designer prompt again, not designer_fix's
  CHECK(retry.find("An earlier design") == std::string::npos);
  auto row =
      cluster.coordinator().call([&](Coordinator& c) { return c.store().get_task(task.id()); });
  REQUIRE(row.ok());
  CHECK(row->steps_used == 3);  // designer, coder, verifier: the failed call used no budget
}

TEST_CASE_FIXTURE(TaskFixture, "an invalid combination is refused with what is valid") {
  TaskSpec spec = vector_add_spec();
  spec.backend = "cuda";
  spec.arch = "h100";
  spec.impl_type = "swft";
  Task task(spec, cluster.coordinator(), *conductor);
  CHECK_FALSE(task.run().get());
  CHECK(task.error().find("triton, cuda_c") != std::string::npos);
  CHECK(task.id() == 0);
}

// Issue 16: a store error in the Conductor rolled nothing back and stranded the task (it
// stayed running with nothing in flight). Now its event is rolled back and the task started
// again from what is stored; the answer that arrived is not asked for again.
TEST_CASE_FIXTURE(TaskFixture,
                  "a store error rolls the task's event back and the task is started again") {
  llm.set_responder([answer = passing_answer()](const nlohmann::json&) { return answer; });
  auto failures = std::make_shared<std::atomic<int>>(0);
  cluster.coordinator().call([&](Coordinator& c) {
    c.store().inject_fault_for_test([failures](std::string_view op) {
      // The first step recorded (the design) fails once.
      if (op == "record_step" && failures->fetch_add(1) == 0)
        return io_error("injected: disk I/O error");
      return Status();
    });
  });
  Task task(vector_add_spec(), cluster.coordinator(), *conductor);
  std::future<bool> ok = task.run();
  REQUIRE_MESSAGE(ok.wait_for(120s) == std::future_status::ready,
                  "the task was stranded by a store error");
  CHECK(ok.get());
  auto row =
      cluster.coordinator().call([&](Coordinator& c) { return c.store().get_task(task.id()); });
  REQUIRE(row.ok());
  CHECK(row->state == TaskState::passed);
  CHECK(row->steps_used == 3);  // designer, coder, verifier: the failed event left no step
  auto steps =
      cluster.coordinator().call([&](Coordinator& c) { return c.store().steps_of(task.id()); });
  REQUIRE(steps.ok());
  REQUIRE(steps->size() == 3);
  CHECK((*steps)[0].role == Role::designer);
  CHECK(llm.request_count() == 2);  // the design was stored on arrival: not asked again
  std::string metrics;
  cluster.coordinator().call([&](Coordinator&) { conductor->render_metrics(metrics); });
  CHECK(metrics.find("kforge_conductor_store_errors_total 1\n") != std::string::npos);
}

// Issue 16: a question in flight when the no-space alarm was raised was asked again once the
// alarm cleared (the Conductor started the task again from its stored steps, where the
// question had no answer yet), and so was paid for twice. The new start waits for it.
TEST_CASE_FIXTURE(TaskFixture, "a question in flight across a no-space alarm is asked once") {
  llm.set_responder([answer = passing_answer()](const nlohmann::json&) { return answer; });
  std::atomic<bool> held{false};
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  struct LetGo {  // also when a REQUIRE fails: the server's thread must not wait forever
    FakeLlmServer& llm;
    std::promise<void>& p;
    bool done = false;
    void operator()() {
      if (!done) p.set_value();
      done = true;
    }
    ~LetGo() {
      llm.set_on_request(nullptr);
      (*this)();
    }
  } let_go{llm, release};
  llm.set_on_request([&held, released](size_t index, const FakeRequest&) {
    if (index != 0) return;
    held = true;
    released.wait();  // the Designer's answer stays in flight until the test lets it go
  });
  Task task(vector_add_spec(), cluster.coordinator(), *conductor);
  std::future<bool> ok = task.run();
  REQUIRE(wait_until([&] { return held.load(); }, 60s));
  Coordinator& c = cluster.coordinator();
  faults.limit_writes(cluster.dir(), 0);
  auto written = c.call_async(
      [](Coordinator& co) { return co.store().create_campaign("on a full disk", "{}"); });
  REQUIRE(wait_until([&] { return c.storage_alarm().raised; }, 30s));
  faults.clear();
  REQUIRE(wait_until([&] { return !c.storage_alarm().raised; }, 30s));
  REQUIRE(written.wait_for(30s) == std::future_status::ready);
  // The alarm's end started every task again; a turn after that one has run.
  for (int i = 0; i < 2; ++i) c.call([](Coordinator&) { return 0; });
  let_go();
  REQUIRE(ok.wait_for(120s) == std::future_status::ready);
  CHECK(ok.get());
  const auto requests = llm.requests();
  REQUIRE(!requests.empty());
  size_t designer_asked = 0;
  for (const FakeRequest& r : requests) designer_asked += r.body == requests[0].body ? 1 : 0;
  CHECK(designer_asked == 1);
  CHECK(requests.size() == 2);  // the design and the code
}

TEST_CASE_FIXTURE(TaskFixture,
                  "a task whose store keeps failing is failed with the error as its reason") {
  llm.set_responder(
      [](const nlohmann::json&) { return std::string("```aul\nout = x + y\n```\n"); });
  cluster.coordinator().call([&](Coordinator& c) {
    c.store().inject_fault_for_test([](std::string_view op) {
      return op == "record_step" ? io_error("injected: database or disk is full") : Status();
    });
  });
  Task task(vector_add_spec(), cluster.coordinator(), *conductor);
  std::future<bool> ok = task.run();
  REQUIRE_MESSAGE(ok.wait_for(120s) == std::future_status::ready,
                  "the task was stranded by a store error");
  CHECK_FALSE(ok.get());
  cluster.coordinator().call([&](Coordinator& c) { c.store().inject_fault_for_test(nullptr); });
  auto row =
      cluster.coordinator().call([&](Coordinator& c) { return c.store().get_task(task.id()); });
  REQUIRE(row.ok());
  CHECK(row->state == TaskState::failed);
  CHECK(row->verdict == Outcome::infra_error);
  CHECK(row->reason == "store error: injected: database or disk is full");
  CHECK(llm.request_count() == 1);  // each retry found the stored answer
  auto campaign = cluster.coordinator().call(
      [&](Coordinator& c) { return c.store().get_campaign(row->campaign_id); });
  CHECK(campaign->state == CampaignState::finished);  // its only task ended
}

TEST_CASE_FIXTURE(TaskFixture,
                  "LLM calls left pending by the previous process are counted once, at start-up") {
  int64_t pending = cluster.coordinator().call([&](Coordinator& c) -> int64_t {
    auto campaign = c.store().create_campaign("old", "");
    auto task = c.store().create_task(*campaign, vector_add_spec());
    for (const char* key : {"cut-off-1", "cut-off-2"}) {
      LlmCallRow call;
      call.task_id = *task;
      call.role = Role::coder;
      call.model = "fake";
      call.request_key = key;
      call.request = "{}";
      call.status = LlmCallState::pending;
      REQUIRE(c.store().record_llm_call(call).ok());
    }
    REQUIRE(c.store().set_task_state(*task, TaskState::cancelled, Outcome::cancelled).ok());
    return 2;
  });
  std::string metrics;
  cluster.coordinator().call([&](Coordinator&) {
    REQUIRE(conductor->resume_all().ok());
    REQUIRE(conductor->resume_all().ok());  // counted once
    conductor->render_metrics(metrics);
  });
  CHECK(metrics.find("kforge_llm_calls_interrupted " + std::to_string(pending) + "\n") !=
        std::string::npos);
  auto left =
      cluster.coordinator().call([](Coordinator& c) { return c.store().take_pending_llm_calls(); });
  CHECK(left.value() == 0);
}
