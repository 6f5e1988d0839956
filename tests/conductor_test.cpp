// The Conductor's decisions through its seam (ConductorLoop): a real store in a temporary
// directory, a fake loop that records the jobs it is given and runs posted and after-commit
// work when the test says. No coordinator, agent or LLM.
#include "coordinator/generation/conductor.h"

#include <doctest/doctest.h>

#include <deque>
#include <mutex>

#include "tests/support/fake_loop.h"
#include "tests/support/fixtures.h"
#include "tests/support/support.h"

using namespace kforge;
using test::FakeLoop;
using test::TempDir;

namespace {

VerifyResult verdict(Verdict v) {
  return verify_failure(v, "said by the test");
}

struct ConductorFixture {
  TempDir dir;
  FakeLoop loop{dir / "kforge.db"};
  std::unique_ptr<Conductor> conductor;

  explicit ConductorFixture(ConductorOptions options = {}) {
    options.verify_timeout_s = 17;
    auto prompts = PromptLibrary::load(find_prompt_dir("").value());
    REQUIRE(prompts.ok());
    conductor = std::make_unique<Conductor>(loop, nullptr, std::move(*prompts), options);
  }
  // A campaign of `workflow` with one task per spec; returns the task ids.
  std::vector<int64_t> campaign(Workflow workflow, const std::vector<TaskSpec>& specs) {
    int64_t c = loop.store().create_campaign("c", "", "", workflow).value();
    std::vector<int64_t> ids;
    for (const TaskSpec& s : specs) ids.push_back(loop.store().create_task(c, s).value());
    return ids;
  }
  TaskRow task(int64_t id) { return loop.store().get_task(id).value(); }
  std::vector<StepRow> steps(int64_t id) { return loop.store().steps_of(id).value(); }
};

TaskSpec verify_only_task(const std::string& task_id,
                          const std::string& task_type = "precision_only") {
  TaskSpec spec = test::task_spec("add", task_id);
  spec.task_type = task_type;
  spec.candidate = "class ModelNew: ...";
  return spec;
}

}  // namespace

TEST_CASE_FIXTURE(ConductorFixture, "a verify_only task is verified once with its own candidate") {
  int64_t t = campaign(Workflow::verify_only, {verify_only_task("s0", "profile")})[0];
  REQUIRE(conductor->resume_all().ok());
  CHECK(task(t).state == TaskState::running);
  REQUIRE(loop.submitted.size() == 1);
  const proto::Assign& assign = loop.submitted[0].assign;
  CHECK(assign.files.at("candidate.py") == "class ModelNew: ...");
  CHECK(assign.timeout_ms == 17'000);
  JobRow job = loop.store().get_job(loop.submitted[0].job_id).value();
  CHECK(job.kind == JobKind::verify);
  CHECK(job.task_seq == 1);
  CHECK(job.exclusive);  // profile timings need the device alone
  CHECK(job.backend == "cuda");

  loop.deliver(job.id, verdict(Verdict::passed));
  CHECK(task(t).state == TaskState::passed);
  CHECK(loop.store().get_campaign(task(t).campaign_id)->state == CampaignState::finished);
  REQUIRE(steps(t).size() == 1);
  CHECK(steps(t)[0].verdict == Outcome::passed);
}

TEST_CASE_FIXTURE(ConductorFixture, "a campaign's timing sets its verify jobs' trials and runs") {
  for (const char* timing : {"kforge", "kernelbench"}) {
    CAPTURE(timing);
    int64_t c =
        loop.store()
            .create_campaign(std::string("c-") + timing, "", timing, Workflow::verify_only, timing)
            .value();
    CHECK(loop.store().get_campaign(c)->timing == timing);
    loop.store().create_task(c, verify_only_task("s0", "profile")).value();
  }
  REQUIRE(conductor->resume_all().ok());
  REQUIRE(loop.submitted.size() == 2);
  nlohmann::json own = nlohmann::json::parse(loop.submitted[0].assign.files.at("job.json"));
  nlohmann::json kernelbench = nlohmann::json::parse(loop.submitted[1].assign.files.at("job.json"));
  // kforge's: the harness's defaults, nothing written.
  CHECK_FALSE(own.contains("trials"));
  CHECK_FALSE(own.contains("runs"));
  // KernelBench's: 5 correctness trials, 3 warm-up and 100 timed runs.
  CHECK(kernelbench["trials"] == 5);
  CHECK(kernelbench["warmup"] == 3);
  CHECK(kernelbench["runs"] == 100);
}

TEST_CASE_FIXTURE(ConductorFixture, "a precision job may share its device") {
  campaign(Workflow::verify_only, {verify_only_task("s0")});
  REQUIRE(conductor->resume_all().ok());
  REQUIRE(loop.submitted.size() == 1);
  CHECK_FALSE(loop.store().get_job(loop.submitted[0].job_id)->exclusive);
}

TEST_CASE_FIXTURE(ConductorFixture,
                  "infrastructure failures cost no step and fail the task after three in a row") {
  int64_t t = campaign(Workflow::verify_only, {verify_only_task("s0")})[0];
  REQUIRE(conductor->resume_all().ok());
  for (int i = 0; i < 3; ++i) {
    REQUIRE(loop.submitted.size() == static_cast<size_t>(i + 1));
    loop.deliver(loop.submitted.back().job_id, verdict(Verdict::infra_error));
  }
  CHECK(loop.submitted.size() == 3);  // no fourth attempt
  TaskRow row = task(t);
  CHECK(row.state == TaskState::failed);
  CHECK(row.verdict == Outcome::infra_error);
  CHECK(row.steps_used == 0);
  for (const StepRow& s : steps(t)) CHECK_FALSE(s.counted);
}

TEST_CASE_FIXTURE(ConductorFixture, "a result already recorded is not recorded again") {
  int64_t t = campaign(Workflow::verify_only, {verify_only_task("s0")})[0];
  REQUIRE(conductor->resume_all().ok());
  int64_t job = loop.submitted.at(0).job_id;
  loop.deliver(job, verdict(Verdict::infra_error));  // step 1 recorded, step 2 asked for
  loop.deliver(job,
               verdict(Verdict::infra_error));  // the same result again (a re-sent outbox entry)
  CHECK(steps(t).size() == 1);
  CHECK(loop.submitted.size() == 2);
}

TEST_CASE_FIXTURE(ConductorFixture,
                  "a resumed task finds its queued job instead of submitting another") {
  int64_t t = campaign(Workflow::verify_only, {verify_only_task("s0")})[0];
  REQUIRE(conductor->resume_all().ok());
  REQUIRE(loop.submitted.size() == 1);
  // A second Conductor on the same store, as after a coordinator restart.
  auto prompts = PromptLibrary::load(find_prompt_dir("").value());
  Conductor restarted(loop, nullptr, std::move(*prompts), ConductorOptions{});
  REQUIRE(restarted.resume_all().ok());
  CHECK(loop.submitted.size() == 1);
  CHECK(restarted.active() == 1);
  CHECK(task(t).state == TaskState::running);
}

TEST_CASE_FIXTURE(ConductorFixture, "a cancelled task is stopped and its queued job withdrawn") {
  int64_t t = campaign(Workflow::verify_only, {verify_only_task("s0")})[0];
  REQUIRE(conductor->resume_all().ok());
  bool told = true;
  conductor->on_finish(t, [&](bool passed) { told = passed; });
  REQUIRE(loop.store()
              .set_task_state(t, TaskState::cancelled, Outcome::cancelled, "by the operator")
              .ok());
  REQUIRE(conductor->resume_all().ok());
  CHECK(loop.cancelled == std::vector<int64_t>{loop.submitted.at(0).job_id});
  CHECK(conductor->active() == 0);
  CHECK_FALSE(told);
}

TEST_CASE_FIXTURE(ConductorFixture,
                  "a workflow that needs a model fails its task when none is configured") {
  int64_t t = campaign(Workflow::default_, {test::task_spec("add", "s0")})[0];
  REQUIRE(conductor->resume_all().ok());
  CHECK(loop.submitted.empty());
  TaskRow row = task(t);
  CHECK(row.state == TaskState::failed);
  CHECK(row.verdict == Outcome::infra_error);
  CHECK(row.reason == "no LLM is configured for the designer role");
}

TEST_CASE_FIXTURE(
    ConductorFixture,
    "a store error rolls the event back and the task starts again from what is stored") {
  int64_t t = campaign(Workflow::verify_only, {verify_only_task("s0")})[0];
  REQUIRE(conductor->resume_all().ok());
  int failures = 0;
  loop.store().inject_fault_for_test([&](std::string_view op) {
    return op == "record_step" && failures++ == 0 ? io_error("injected: disk I/O error") : Status();
  });
  loop.deliver(loop.submitted.at(0).job_id, verdict(Verdict::passed));
  CHECK(steps(t).empty());          // the event's writes are gone
  CHECK(conductor->active() == 0);  // and the task forgotten in memory ...
  loop.turn();                      // ... until the posted restart runs
  CHECK(conductor->active() == 1);
  CHECK(loop.submitted.size() == 1);  // it found its job again
  loop.deliver(loop.submitted.at(0).job_id, verdict(Verdict::passed));
  CHECK(task(t).state == TaskState::passed);
}

TEST_CASE_FIXTURE(ConductorFixture,
                  "a task whose store keeps failing is failed with the error as its reason") {
  int64_t t = campaign(Workflow::verify_only, {verify_only_task("s0")})[0];
  REQUIRE(conductor->resume_all().ok());
  loop.store().inject_fault_for_test([](std::string_view op) {
    return op == "record_step" ? io_error("injected: disk is full") : Status();
  });
  loop.deliver(loop.submitted.at(0).job_id, verdict(Verdict::passed));
  for (int i = 1; i < Conductor::kMaxStoreErrors; ++i) {
    loop.turn();  // started again: finds its job, whose result comes again
    loop.deliver(loop.submitted.at(0).job_id, verdict(Verdict::passed));
  }
  TaskRow row = task(t);
  CHECK(row.state == TaskState::failed);
  CHECK(row.verdict == Outcome::infra_error);
  CHECK(row.reason == "store error: injected: disk is full");
}

TEST_CASE_FIXTURE(ConductorFixture,
                  "after the loop reloads from the store every task starts again") {
  int64_t t = campaign(Workflow::verify_only, {verify_only_task("s0")})[0];
  REQUIRE(conductor->resume_all().ok());
  loop.reload();
  CHECK(conductor->active() == 0);
  REQUIRE(conductor->resume_all().ok());  // a periodic resume meanwhile starts nothing
  CHECK(conductor->active() == 0);
  loop.turn();
  CHECK(conductor->active() == 1);
  CHECK(loop.submitted.size() == 1);
  CHECK(task(t).state == TaskState::running);
}
