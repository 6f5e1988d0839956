// Search strategies (issue 17) with a scripted LLM and a scripted verifier: the Conductor on
// its seam (FakeLoop, a real SQLite file), a real LlmClient talking HTTP to the fake
// OpenAI-compatible server.
//
// The Coder's answers are a pool of four variants; which one a question gets depends only on
// the task (op<i>), the request's seed (the sample index) and whether it is a fix. The
// verifier judges a candidate by the variant it names, with a known verdict and a known
// speedup. Scripting the verdict rather than timing real CPU candidates keeps "which variant
// is fastest" exact: tests never assert timings.
#include <doctest/doctest.h>

#include <map>
#include <regex>
#include <set>

#include "coordinator/generation/conductor.h"
#include "coordinator/intake/campaign.h"
#include "coordinator/operator/outcome.h"
#include "coordinator/operator/report.h"
#include "tests/support/fake_llm.h"
#include "tests/support/fake_loop.h"
#include "tests/support/fixtures.h"
#include "tests/support/support.h"

using namespace kforge;
using namespace kforge::test;
using namespace std::chrono_literals;

namespace {

struct Variant {
  const char* name;
  Verdict verdict;
  double speedup;  // of a passing profile run
};
// Pool order: a question gets variant (op + seed + fix) % 4.
const Variant kPool[] = {{"broken", Verdict::compile_error, 0},
                         {"slow", Verdict::passed, 1.0},
                         {"medium", Verdict::passed, 1.6},
                         {"fast", Verdict::passed, 3.2}};

std::string respond(const nlohmann::json& body) {
  const std::string prompt = body["messages"].back()["content"].get<std::string>();
  std::smatch m;
  REQUIRE(std::regex_search(prompt, m, std::regex("- op: op([0-9]+)")));
  const int64_t op = std::stoll(m[1]);
  const int64_t seed = body.value("seed", int64_t{0});
  const int64_t fix = prompt.find("compile_error") != std::string::npos ? 1 : 0;
  const Variant& v = kPool[(op + seed + fix) % 4];
  return std::string("```python\n# variant: ") + v.name + "\nclass ModelNew:\n    pass\n```\n";
}

// The verifier's verdict for a candidate: its variant's.
VerifyResult judge(const std::string& candidate) {
  for (const Variant& v : kPool) {
    if (candidate.find(std::string("# variant: ") + v.name + "\n") == std::string::npos) continue;
    if (v.verdict != Verdict::passed) return verify_failure(v.verdict, "scripted");
    VerifyResult r;
    r.verdict = Verdict::passed;
    r.profile = Profile{};
    r.profile->speedup = v.speedup;
    return r;
  }
  FAIL("a candidate of no known variant: " << candidate);
  return {};
}

// Per task (op name): its state, best speedup and candidates "sample/generation:verdict".
struct TaskResult {
  std::string state;
  std::string verdict;
  std::string reason;
  double best = 0;
  std::vector<std::string> candidates;  // sorted
  bool operator==(const TaskResult&) const = default;
};

struct SearchRun {
  TempDir dir;
  FakeLlmServer llm;
  std::filesystem::path db = dir / "kforge.db";
  std::unique_ptr<FakeLoop> loop;
  std::unique_ptr<LlmClient> client;
  std::unique_ptr<Conductor> conductor;
  std::set<int64_t> delivered;  // jobs whose result this process delivered
  ManualClock clock;            // the store's and the Conductor's: jobs' run time, ages
  Millis job_run{0};            // how long each verify job holds its device (recorded)
  double price_per_mtok = 0;    // the coder's price for prompt and completion tokens

  SearchRun() {
    llm.set_responder(respond);
    open();
  }

  // A process on the database: a new loop, LLM client and Conductor.
  void open() {
    loop = std::make_unique<FakeLoop>(db, clock);
    LlmEndpoint coder;
    coder.provider = "openai";
    coder.base_url = llm.base_url();
    coder.model = "fake";
    coder.concurrency = 8;
    coder.price_prompt_per_mtok = price_per_mtok;
    coder.price_completion_per_mtok = price_per_mtok;
    auto made = LlmClient::create({{LlmRole::coder, coder}});
    REQUIRE_MESSAGE(made.ok(), made.status().to_string());
    client = std::move(*made);
    ConductorOptions options;
    options.endpoints[LlmRole::coder] = coder;
    options.clock = &clock;
    auto prompts = PromptLibrary::load(find_prompt_dir("").value());
    REQUIRE(prompts.ok());
    conductor = std::make_unique<Conductor>(*loop, client.get(), std::move(*prompts), options);
  }

  // The process stops between two turns: answers that arrived are stored (on arrival), the
  // turns that would use them never run.
  void crash() {
    REQUIRE(wait_until([&] { return client->in_flight() == 0; }, 30s));
    client.reset();  // first: its thread may still be handing an answer to the Conductor
    conductor.reset();
    loop.reset();
    delivered.clear();
  }

  // A coder_only campaign of `ops` profile tasks op0.. under `search`; `op0` is appended to
  // op0's table.
  void submit(int ops, const std::string& search, int limit_steps, const std::string& op0 = "") {
    std::string toml = "name = \"scripted\"\nworkflow = \"coder_only\"\n" + search +
                       "\n[defaults]\nbackend = \"cuda\"\narch = \"h100\"\nimpl_type = \"triton\"\n"
                       "framework = \"torch\"\ntask_type = \"profile\"\nlimit_steps = " +
                       std::to_string(limit_steps) + "\n";
    for (int i = 0; i < ops; ++i) {
      toml += "[[ops]]\nop_name = \"op" + std::to_string(i) + "\"\ntask_desc = \"task.py\"\n";
      if (i == 0) toml += op0;
    }
    write_file(dir / "task.py", "class Model:\n    pass\n\ndef get_inputs():\n    return []\n");
    auto campaign = parse_campaign(toml, dir.path(), "scripted.toml");
    REQUIRE_MESSAGE(campaign.ok(), campaign.status().to_string());
    auto stored = store_campaign(
        [&](const std::function<Status(Store&)>& fn) {
          return loop->store().atomically([&] { return fn(loop->store()); });
        },
        *campaign, "");
    REQUIRE_MESSAGE(stored.ok(), stored.status().to_string());
  }

  bool unfinished() {
    const std::vector<CampaignRow> campaigns = loop->store().campaigns().value();
    for (const CampaignRow& c : campaigns) {
      if (loop->store().campaign_unfinished(c.id).value()) return true;
    }
    return false;
  }

  // Turns the loop, judging every queued verify job, until `stop` or the campaign is done.
  void run(const std::function<bool()>& stop = [] { return false; }) {
    REQUIRE(conductor->resume_all().ok());
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (unfinished() && !stop()) {
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      loop->turn();
      bool judged = false;
      const std::vector<JobRow> queued =
          loop->store().jobs_in_state(JobState::queued, 1000).value();
      for (const JobRow& job : queued) {
        if (!delivered.insert(job.id).second) continue;
        const JobRow row = loop->store().get_job(job.id).value();
        if (row.state != JobState::queued) continue;  // withdrawn by a result judged just now
        loop->run_job(job.id, judge(row.request.files.at("candidate.py")), clock, job_run);
        judged = true;
      }
      if (!judged && unfinished()) {
        wait_until([&] { return loop->has_posted(); }, 5s);  // an answer arrives
      }
    }
  }

  std::map<std::string, TaskResult> results() {
    std::map<std::string, TaskResult> out;
    Store& store = loop->store();
    const std::vector<CampaignRow> campaigns = store.campaigns().value();
    for (const CampaignRow& c : campaigns) {
      const std::vector<TaskRow> tasks = store.tasks_of_campaign(c.id).value();
      for (const TaskRow& t : tasks) {
        TaskResult r;
        r.state = to_string(t.state);
        r.verdict = to_string(t.verdict);
        r.reason = t.reason;
        r.best = task_outcome(store, t).value().speedup;
        const std::vector<CandidateRow> candidates = store.candidates_of(t.id).value();
        for (const CandidateRow& k : candidates) {
          r.candidates.push_back(std::to_string(k.sample) + "/" + std::to_string(k.generation) +
                                 ":" + std::string(to_string(k.verdict)));
        }
        std::sort(r.candidates.begin(), r.candidates.end());
        out[t.spec.op_name] = r;
      }
    }
    return out;
  }

  // Tasks whose best passing candidate is the pool's fastest.
  int found_fastest() {
    int n = 0;
    for (const auto& [op, r] : results()) n += r.best == 3.2 ? 1 : 0;
    return n;
  }

  // How many questions the server was asked per task, at most.
  size_t max_asked_per_task() {
    std::map<std::string, size_t> by_op;
    for (const FakeRequest& r : llm.requests()) {
      std::smatch m;
      std::string prompt = r.body["messages"].back()["content"].get<std::string>();
      if (std::regex_search(prompt, m, std::regex("- op: (op[0-9]+)"))) by_op[m[1]]++;
    }
    size_t most = 0;
    for (const auto& [op, n] : by_op) most = std::max(most, n);
    return most;
  }
};

// The error of a campaign file c.toml whose [search] table is `search` and whose one op's
// table ends with `op` (from line 11) (it must be refused).
std::string error(const std::string& search, const std::string& op = "") {
  TempDir dir;
  write_file(dir / "task.py", "class Model:\n    pass\n\ndef get_inputs():\n    return []\n");
  std::string toml = "name = \"x\"\n" + search +
                     "\n[defaults]\nbackend = \"cpu\"\narch = \"x86_64\"\n"
                     "impl_type = \"cpp\"\nframework = \"numpy\"\n[[ops]]\nop_name = "
                     "\"a\"\ntask_desc = \"task.py\"\n" +
                     op;
  auto c = parse_campaign(toml, dir.path(), "c.toml");
  REQUIRE(!c.ok());
  return c.status().message();
}

}  // namespace

TEST_CASE(
    "best_of_n finds the fastest variant more often than fix_loop within 4 Coder calls a task") {
  // fix_loop: one chain, seed 0; it stops at the first kernel that passes.
  SearchRun fix;
  fix.submit(8, "[search]\nstrategy = \"fix_loop\"\nmax_llm_calls = 4\n", 8);
  fix.run();
  // best_of_n: 4 chains of one attempt each (limit_steps 2: code, verify), seeds 0..3.
  SearchRun best;
  best.submit(8, "[search]\nstrategy = \"best_of_n\"\nsamples = 4\nmax_llm_calls = 4\n", 2);
  best.run();

  for (SearchRun* r : {&fix, &best}) {
    for (const auto& [op, t] : r->results()) {
      CAPTURE(op);
      CHECK(t.state == "passed");
    }
    CHECK(r->max_asked_per_task() <= 4);  // the stated budget
  }
  // fix_loop finds "fast" only where it is the first passing variant (op3, op7).
  CHECK(fix.found_fastest() == 2);
  CHECK(best.found_fastest() == 8);
  // Every sample drew its own answer: four distinct candidates per task, one per chain.
  auto op0 = best.results()["op0"].candidates;
  CHECK(op0 ==
        std::vector<std::string>{"0/1:compile_error", "1/1:passed", "2/1:passed", "3/1:passed"});

  // The report's pass@k and fast_1@k over the chains: each task has 3 passing chains of 4 and
  // 2 faster than the reference (medium, fast).
  auto report = campaign_report(best.loop->store(), 1);
  REQUIRE(report.ok());
  const nlohmann::json& at = (*report)["metrics"]["at_k"];
  REQUIRE(at.size() == 3);
  CHECK(at[0]["k"] == 1);
  CHECK(at[0]["pass"].get<double>() == doctest::Approx(0.75));
  CHECK(at[0]["fast_1"].get<double>() == doctest::Approx(0.5));
  CHECK(at[1]["k"] == 2);
  CHECK(at[1]["pass"].get<double>() == doctest::Approx(1.0));
  CHECK(at[1]["fast_1"].get<double>() == doctest::Approx(5.0 / 6.0));
  CHECK(at[2]["k"] == 4);
  CHECK(at[2]["fast_1"].get<double>() == doctest::Approx(1.0));
  CHECK((*report)["search"]["samples"] == 4);
  // fix_loop campaigns' reports are unchanged: no at_k, no search.
  auto plain = campaign_report(fix.loop->store(), 1);
  REQUIRE(plain.ok());
  CHECK(!(*plain)["metrics"].contains("at_k"));
}

TEST_CASE(
    "a best_of_n task's chains each keep a fix loop; candidates record parent and generation") {
  SearchRun run;
  run.submit(1, "[search]\nstrategy = \"best_of_n\"\nsamples = 2\n", 6);
  run.run();
  // op0: sample 0 gets broken, then its fix gets slow; sample 1 gets slow at once.
  auto r = run.results()["op0"];
  CHECK(r.state == "passed");
  CHECK(r.candidates == std::vector<std::string>{"0/1:compile_error", "0/2:passed", "1/1:passed"});
  TaskRow task = run.loop->store().tasks_of_campaign(1).value().at(0);
  auto candidates = run.loop->store().candidates_of(task.id).value();
  for (const CandidateRow& c : candidates) {
    CAPTURE(c.id);
    CHECK(c.code_step_id.has_value());
    if (c.sample == 0 && c.generation == 2) {
      REQUIRE(c.parent_id.has_value());
      CHECK(std::any_of(candidates.begin(), candidates.end(), [&](const CandidateRow& p) {
        return p.id == *c.parent_id && p.sample == 0 && p.generation == 1;
      }));
    } else {
      CHECK(!c.parent_id.has_value());
    }
  }
}

TEST_CASE(
    "the report of a fix_loop run: speedup by generation, and the winner's lineage through its "
    "fix") {
  SearchRun run;
  run.submit(4, "", 6);
  run.run();
  // op0's first code is broken, its fix slow (generation 2); op1..op3 pass at once: slow,
  // medium, fast.
  auto report = campaign_report(run.loop->store(), 1);
  REQUIRE(report.ok());
  const nlohmann::json& g = (*report)["by_generation"];
  CHECK(g["generations"] == 2);
  REQUIRE(g["points"].size() == 2);
  CHECK(g["points"][0]["tasks"] == 3);
  CHECK(g["points"][0]["geomean"].get<double>() == doctest::Approx(std::cbrt(1.0 * 1.6 * 3.2)));
  CHECK(g["points"][1]["tasks"] == 4);
  CHECK(g["points"][1]["geomean"].get<double>() ==
        doctest::Approx(std::pow(1.0 * 1.0 * 1.6 * 3.2, 0.25)));
  const nlohmann::json& op0 = (*report)["tasks"][0];
  REQUIRE(op0["op_name"] == "op0");
  const nlohmann::json& lineage = op0["lineage"];
  REQUIRE(lineage.size() == 2);
  CHECK(lineage[0]["verdict"] == "compile_error");
  CHECK(lineage[0]["generation"] == 1);
  CHECK(lineage[1]["verdict"] == "passed");
  CHECK(lineage[1]["generation"] == 2);
  CHECK(lineage[1]["parent"] == lineage[0]["candidate"]);
  CHECK(op0["winner"] == lineage[1]["candidate"]);
  CHECK(lineage[1]["code_step"] == op0["best_step"]);
  // Each candidate's steps: its chain's since the previous candidate, ending with its verdict.
  for (const nlohmann::json& c : lineage) {
    const nlohmann::json& steps = c["steps"];
    REQUIRE(!steps.empty());
    CHECK(steps.back()["seq"] == c["verifier_step"]);
    CHECK(std::any_of(steps.begin(), steps.end(),
                      [&](const nlohmann::json& s) { return s["seq"] == c["code_step"]; }));
  }
  CHECK(lineage[1]["steps"][0]["seq"].get<int>() > lineage[0]["verifier_step"].get<int>());
}

TEST_CASE("target_speedup ends a best_of_n task as soon as a candidate reaches it") {
  SearchRun run;
  // op1 with seeds 0..3: slow, medium, fast, broken. Fast (3.2) reaches 3.0.
  run.submit(2, "[search]\nstrategy = \"best_of_n\"\nsamples = 4\ntarget_speedup = 3.0\n", 2);
  run.run();
  for (const auto& [op, r] : run.results()) {
    CAPTURE(op);
    CHECK(r.state == "passed");
    CHECK(r.best == 3.2);
  }
  // Nothing was judged after the fast candidate: the task ended there, its other jobs were
  // withdrawn and their late results ignored.
  const std::vector<TaskRow> tasks = run.loop->store().tasks_of_campaign(1).value();
  for (const TaskRow& t : tasks) {
    const std::vector<CandidateRow> candidates = run.loop->store().candidates_of(t.id).value();
    REQUIRE(!candidates.empty());
    CHECK(candidates.back().speedup == 3.2);
  }
}

TEST_CASE("a resumed campaign replays its answers; another sample_offset draws fresh ones") {
  SearchRun run;
  run.submit(1, "[search]\nstrategy = \"best_of_n\"\nsamples = 2\n", 2);
  run.run();
  const size_t asked = run.llm.request_count();
  CHECK(asked == 2);
  // The same campaign again: found by its content, nothing asked.
  run.submit(1, "[search]\nstrategy = \"best_of_n\"\nsamples = 2\n", 2);
  run.run();
  CHECK(run.llm.request_count() == asked);
  // Resampled: samples 2 and 3, a new campaign whose questions carry seeds 2 and 3.
  run.submit(1, "[search]\nstrategy = \"best_of_n\"\nsamples = 2\nsample_offset = 2\n", 2);
  run.run();
  REQUIRE(run.llm.request_count() == asked + 2);
  std::set<int64_t> seeds;
  for (const FakeRequest& r : run.llm.requests()) seeds.insert(r.body.value("seed", int64_t{0}));
  CHECK(seeds == std::set<int64_t>{0, 1, 2, 3});
  // Sample 0's request carries no seed, as requests did before samples existed.
  auto first = run.llm.requests();
  CHECK(first[0].body.contains("seed") != first[1].body.contains("seed"));
}

TEST_CASE(
    "a best_of_n campaign stopped mid-way resumes to the same result, no answered question asked "
    "again") {
  const std::string search = "[search]\nstrategy = \"best_of_n\"\nsamples = 3\n";
  SearchRun reference;
  reference.submit(4, search, 4);
  reference.run();
  const auto expected = reference.results();
  const size_t reference_requests = reference.llm.request_count();

  SearchRun run;
  run.submit(4, search, 4);
  int stops = 0;
  for (size_t at : {3u, 7u, 12u}) {
    run.run([&] { return run.llm.request_count() >= at; });
    run.crash();
    stops++;
    run.open();
  }
  run.run();
  CHECK(stops == 3);
  CHECK(run.results() == expected);
  // Every question is distinct (sample, task, fix), so a repeated body is a question asked
  // twice: none was, and no more were asked than without the stops.
  std::set<std::string> bodies;
  for (const FakeRequest& r : run.llm.requests()) {
    CAPTURE(r.body.dump());
    CHECK(bodies.insert(r.body.dump()).second);
  }
  CHECK(run.llm.request_count() == reference_requests);
}

TEST_CASE("bad [search] tables are refused naming the field") {
  CHECK(
      error("[search]\nstrategy = \"beam\"")
          .find("search.strategy: expected fix_loop, best_of_n, evolve or adaptive, got 'beam'") !=
      std::string::npos);
  CHECK(error("[search]\nstrategy = \"best_of_n\"\nsamples = 0")
            .find("c.toml:2:1: search.samples: expected 1..64, got 0") != std::string::npos);
  CHECK(error("[search]\nsamples = 3").find("search.samples: fix_loop runs one chain") !=
        std::string::npos);
  CHECK(
      error("[search]\nsample_offset = \"1\"").find("search.sample_offset: expected an integer") !=
      std::string::npos);
  CHECK(error("[search]\nsampels = 3").find("search.sampels") != std::string::npos);
  CHECK(error("[search]\nstrategy = \"best_of_n\"\nsamples = 2\ntarget_speedup = -1")
            .find("search.target_speedup") != std::string::npos);
  // Campaign budgets and the adaptive strategy's keys.
  CHECK(
      error("[search]\ncampaign_max_llm_calls = -5")
          .find(
              "c.toml:2:1: search.campaign_max_llm_calls: expected 0 (no limit) or more, got -5") !=
      std::string::npos);
  CHECK(error("[search]\n\ncampaign_max_device_s = \"1h\"")
            .find("c.toml:4:25: search.campaign_max_device_s: expected a number") !=
        std::string::npos);
  CHECK(
      error("[search]\ncampaign_max_cost_usd = -0.5")
          .find("search.campaign_max_cost_usd: expected 0 (none) or a positive number, got -0.5") !=
      std::string::npos);
  CHECK(error("[search]\npatience = 3")
            .find("search.patience: only strategy = \"adaptive\" uses it") != std::string::npos);
  CHECK(error("[search]\nstrategy = \"adaptive\"\npatience = 0")
            .find("search.patience: expected 1 or more, got 0") != std::string::npos);
  CHECK(error("[search]\nstrategy = \"adaptive\"\nexploration = -1")
            .find("search.exploration: expected 0 (none) or a positive number, got -1") !=
        std::string::npos);
  CHECK(error("[search]\nstrategy = \"adaptive\"\nparallel = 1.5")
            .find("search.parallel: expected an integer") != std::string::npos);
}

TEST_CASE(
    "a best_of_n task whose every chain fails ends failed with a verdict and each chain's reason") {
  SearchRun run;
  // Every answer is the broken variant: both chains use their limit_steps (code, verify).
  run.llm.set_responder([](const nlohmann::json&) {
    return std::string("```python\n# variant: broken\nclass ModelNew:\n    pass\n```\n");
  });
  run.submit(1, "[search]\nstrategy = \"best_of_n\"\nsamples = 2\n", 2);
  run.run();
  const TaskResult r = run.results()["op0"];
  CHECK(r.state == "failed");
  CHECK(r.verdict == "compile_error");
  CHECK(r.reason ==
        "sample 0: limit_steps (2) used up; last verdict: compile_error; "
        "sample 1: limit_steps (2) used up; last verdict: compile_error");
  CHECK(r.candidates == std::vector<std::string>{"0/1:compile_error", "1/1:compile_error"});
}

TEST_CASE("max_llm_calls bounds a best_of_n task's LLM calls, all chains together") {
  SearchRun run;
  run.llm.set_responder([](const nlohmann::json&) {
    return std::string("```python\n# variant: broken\nclass ModelNew:\n    pass\n```\n");
  });
  run.submit(1, "[search]\nstrategy = \"best_of_n\"\nsamples = 4\nmax_llm_calls = 2\n", 4);
  run.run();
  const TaskResult r = run.results()["op0"];
  CHECK(r.state == "failed");
  CHECK(r.verdict == "compile_error");
  CHECK(r.reason.find("max_llm_calls (2) used up") != std::string::npos);
  CHECK(run.llm.request_count() <= 2);
}

TEST_CASE("an LLM answer that comes after the Conductor is gone reaches nothing") {
  // At the end of a process the Conductor goes before the LLM client, whose destructor answers
  // the questions still in flight ("llm client stopped") on its thread: that answer must not
  // reach the loop through the Conductor that asked (an intermittent SIGSEGV at the end of
  // the target_speedup case, whose withdrawn chains leave questions in flight).
  SearchRun run;
  run.llm.push(FakeBehaviour::slow(600'000));  // never answered while the test runs
  run.submit(1, "", 2);
  REQUIRE(run.conductor->resume_all().ok());
  run.loop->turn();  // the question is sent once its pending row is committed
  REQUIRE(wait_until([&] { return run.llm.request_count() == 1; }, 30s));
  REQUIRE(run.client->in_flight() == 1);
  REQUIRE(!run.loop->has_posted());
  run.conductor.reset();
  run.client.reset();  // answers the question in flight
  CHECK(!run.loop->has_posted());
}

// ---- evolve ---------------------------------------------------------------------------------

namespace {

std::string variant_answer(const std::string& name) {
  return "```python\n# variant: " + name + "\nclass ModelNew:\n    pass\n```\n";
}

// The evolve pool: written from scratch, a kernel is broken or slow (by op and seed); a fix
// gives slow; "make it faster" gives the next faster variant (slow -> medium -> fast), except
// for one seed in five, which breaks it. So "fast" is reached only by improving a passing
// parent twice: never by a chain that stops at its first passing kernel.
std::string evolve_respond(const nlohmann::json& body) {
  const std::string prompt = body["messages"].back()["content"].get<std::string>();
  std::smatch m;
  REQUIRE(std::regex_search(prompt, m, std::regex("- op: op([0-9]+)")));
  const int64_t op = std::stoll(m[1]);
  const int64_t seed = body.value("seed", int64_t{0});
  if (std::regex_search(prompt, m,
                        std::regex("## The kernel to improve\n\n```python\n# variant: ([a-z]+)"))) {
    if ((op + seed) % 5 == 0) return variant_answer("broken");
    const std::string parent = m[1];
    return variant_answer(parent == "slow" ? "medium" : "fast");
  }
  if (prompt.find("failed verification. Fix it") != std::string::npos)
    return variant_answer("slow");
  return variant_answer((op + seed) % 3 == 0 ? "broken" : "slow");
}

// A task's evolve population as recorded: "island/generation sample:verdict speedup <- parent
// sample", sorted, and its migrants "candidate sample -> island after generation".
struct Population {
  std::vector<std::string> candidates;
  std::vector<std::string> migrants;
  bool operator==(const Population&) const = default;
};

Population population(Store& store, int64_t task_id) {
  Population p;
  const std::vector<CandidateRow> all = store.candidates_of(task_id).value();
  auto sample_of = [&](int64_t id) {
    for (const CandidateRow& c : all) {
      if (c.id == id) return c.sample;
    }
    FAIL("no candidate " << id);
    return int64_t{-1};
  };
  for (const CandidateRow& c : all) {
    std::string row = std::to_string(c.island) + "/" + std::to_string(c.generation) + " s" +
                      std::to_string(c.sample) + ":" + std::string(to_string(c.verdict)) + " " +
                      std::to_string(c.speedup.value_or(0));
    if (c.parent_id) row += " <- s" + std::to_string(sample_of(*c.parent_id));
    p.candidates.push_back(row);
  }
  const std::vector<MigrantRow> migrants = store.migrants_of(task_id).value();
  for (const MigrantRow& m : migrants) {
    p.migrants.push_back("s" + std::to_string(sample_of(m.candidate_id)) + " -> " +
                         std::to_string(m.island) + " after " + std::to_string(m.generation));
  }
  std::sort(p.candidates.begin(), p.candidates.end());
  return p;
}

const char* kEvolve =
    "[search]\nstrategy = \"evolve\"\nislands = 2\nisland_size = 2\ngenerations = 3\ninspirations "
    "= 2\n"
    "migrate_every = 1\nmax_llm_calls = 12\n";

}  // namespace

TEST_CASE(
    "evolve finds the fastest variant more often than fix_loop within 12 Coder calls a task") {
  SearchRun fix;
  fix.llm.set_responder(evolve_respond);
  fix.submit(8, "[search]\nstrategy = \"fix_loop\"\nmax_llm_calls = 12\n", 12);
  fix.run();
  SearchRun evolve;
  evolve.llm.set_responder(evolve_respond);
  evolve.submit(8, kEvolve, 2);
  evolve.run();

  for (SearchRun* r : {&fix, &evolve}) {
    for (const auto& [op, t] : r->results()) {
      CAPTURE(op);
      CHECK(t.state == "passed");
    }
    CHECK(r->max_asked_per_task() <= 12);  // the stated budget
  }
  const int fix_found = fix.found_fastest();
  const int evolve_found = evolve.found_fastest();
  MESSAGE("tasks (of 8) whose best kernel is the fastest variant: fix_loop "
          << fix_found << ", evolve " << evolve_found);
  CHECK(fix_found == 0);  // it stops at its first passing kernel: slow
  CHECK(evolve_found == 8);
  // Each task ran its 3 generations of 4 children; the reason says how the winner came.
  const TaskResult op1 = evolve.results()["op1"];
  CHECK(op1.reason.starts_with("passed (evolve, 3 of 3 generations: best score 3.20 from island "));
  CHECK(op1.candidates.size() == 12);

  // The lineage: generation 2 and 3 children have parents of earlier generations, and the
  // "make it faster" prompt shows the parent and the island's inspirations with profiles.
  Store& store = evolve.loop->store();
  const TaskRow task = store.tasks_of_campaign(1).value().at(1);
  const std::vector<CandidateRow> all = store.candidates_of(task.id).value();
  for (const CandidateRow& c : all) {
    CAPTURE(c.sample);
    CHECK(c.island == (c.sample / 2) % 2);
    CHECK(c.generation == c.sample / 4 + 1);
    CHECK(c.parent_id.has_value() == (c.generation > 1));
  }
  bool improved = false;
  for (const FakeRequest& r : evolve.llm.requests()) {
    const std::string prompt = r.body["messages"].back()["content"].get<std::string>();
    if (prompt.find("Make it faster") == std::string::npos) continue;
    improved = true;
    CHECK(prompt.find("## Other passing kernels of this search") != std::string::npos);
    CHECK(prompt.find("verdict: passed") != std::string::npos);  // the parent's
  }
  CHECK(improved);
  bool inspired = false;
  for (const FakeRequest& r : evolve.llm.requests()) {
    const std::string prompt = r.body["messages"].back()["content"].get<std::string>();
    inspired =
        inspired || prompt.find("### Inspiration 1: verdict passed, speedup") != std::string::npos;
  }
  CHECK(inspired);
  // Every request has its own seed (the child's sample) within a task: none collides.
  std::set<std::string> keys;
  for (const FakeRequest& r : evolve.llm.requests()) CHECK(keys.insert(r.body.dump()).second);
  // Migration after generations 1 and 2 (migrate_every = 1, not after the last): recorded.
  CHECK(!population(store, task.id).migrants.empty());
}

TEST_CASE(
    "an evolve campaign stopped mid-way resumes to the same population, no question asked again") {
  SearchRun reference;
  reference.llm.set_responder(evolve_respond);
  reference.submit(3, kEvolve, 2);
  reference.run();
  const auto expected = reference.results();
  std::vector<Population> expected_population;
  for (int64_t id = 1; id <= 3; ++id)
    expected_population.push_back(population(reference.loop->store(), id));

  SearchRun run;
  run.llm.set_responder(evolve_respond);
  run.submit(3, kEvolve, 2);
  int stops = 0;
  for (size_t at : {2u, 9u, 17u, 26u}) {
    run.run([&] { return run.llm.request_count() >= at; });
    run.crash();  // the coordinator's memory is dropped; the next process reads the store
    stops++;
    run.open();
  }
  run.run();
  CHECK(stops == 4);
  CHECK(run.results() == expected);
  for (int64_t id = 1; id <= 3; ++id) {
    CAPTURE(id);
    CHECK(population(run.loop->store(), id) == expected_population[static_cast<size_t>(id - 1)]);
  }
  std::set<std::string> bodies;
  for (const FakeRequest& r : run.llm.requests()) {
    CAPTURE(r.body.dump());
    CHECK(bodies.insert(r.body.dump()).second);
  }
  CHECK(run.llm.request_count() == reference.llm.request_count());
}

TEST_CASE("an op's own search: op0 evolves to the fastest variant while the others run fix_loop") {
  SearchRun run;
  run.llm.set_responder(evolve_respond);
  // The campaign's fix_loop and its max_llm_calls; op0 overrides the strategy (and its steps).
  run.submit(4, "[search]\nstrategy = \"fix_loop\"\nmax_llm_calls = 12\n", 12,
             "limit_steps = 2\nsearch = { strategy = \"evolve\", islands = 2, island_size = 2, "
             "generations = 3, "
             "inspirations = 2, migrate_every = 1 }\n");
  Store& store = run.loop->store();
  const std::vector<TaskRow> tasks = store.tasks_of_campaign(1).value();
  for (const TaskRow& t : tasks) {
    CAPTURE(t.spec.op_name);
    if (t.spec.op_name == "op0") {
      const SearchPolicy p = parse_search_text(t.spec.search).value();
      CHECK(p.strategy == "evolve");
      CHECK(p.max_llm_calls == 12);  // inherited from the campaign's [search]
    } else {
      CHECK(t.spec.search.empty());  // the campaign's
    }
  }
  run.run();
  std::map<std::string, TaskResult> results = run.results();
  REQUIRE(results.size() == 4);
  for (const auto& [op, t] : results) {
    CAPTURE(op);
    CHECK(t.state == "passed");
    if (op == "op0") {
      CHECK(t.best == 3.2);              // improved twice from a passing parent
      CHECK(t.candidates.size() == 12);  // 3 generations of 4 children
      CHECK(t.reason.starts_with("passed (evolve, 3 of 3 generations"));
    } else {
      CHECK(t.best != 3.2);  // stops at its first passing kernel
      CHECK(t.candidates.size() < 12);
    }
  }
  CHECK(run.max_asked_per_task() <= 12);
}

TEST_CASE("an op's search table: inherited fields, refused fields named ops[N] with file:line") {
  // Fields the op does not set come from the campaign's [search]; another strategy drops the
  // campaign strategy's own fields.
  TempDir dir;
  write_file(dir / "task.py", "class Model:\n    pass\n\ndef get_inputs():\n    return []\n");
  auto parse = [&](const std::string& search, const std::string& op) {
    std::string toml = "name = \"x\"\n" + search +
                       "\n[defaults]\nbackend = \"cpu\"\narch = \"x86_64\"\n"
                       "impl_type = \"cpp\"\n[[ops]]\nop_name = \"a\"\ntask_desc = \"task.py\"\n" +
                       op + "[[ops]]\nop_name = \"b\"\ntask_desc = \"task.py\"\n";
    auto c = parse_campaign(toml, dir.path(), "c.toml");
    REQUIRE_MESSAGE(c.ok(), c.status().to_string());
    REQUIRE(c->tasks.size() == 2);
    CHECK(c->tasks[1].spec.search.empty());  // op b: the campaign's
    return parse_search_text(c->tasks[0].spec.search).value();
  };
  SearchPolicy p = parse("[search]\nstrategy = \"best_of_n\"\nsamples = 4\nmax_tokens = 100\n",
                         "[ops.search]\ntarget_speedup = 2.0\n");
  CHECK(p.strategy == "best_of_n");
  CHECK(p.samples == 4);
  CHECK(p.max_tokens == 100);
  CHECK(p.target_speedup == 2.0);
  p = parse("[search]\nstrategy = \"evolve\"\nislands = 3\ncampaign_max_llm_calls = 50\n",
            "search = { strategy = \"fix_loop\" }\n");
  CHECK(p.strategy == "fix_loop");
  CHECK(p.islands == SearchPolicy{}.islands);
  CHECK(p.campaign_max_llm_calls == 50);  // the campaign's budget rules every task
  p = parse("",
            "search = { strategy = \"fix_loop\" }\n");  // the default policy, still the op's own
  CHECK(p == SearchPolicy{});

  CHECK(error("", "[ops.search]\nstrategy = \"best_of_n\"\nsamples = 0\n")
            .find("c.toml:11:1: ops[0].search.samples: expected 1..64, got 0") !=
        std::string::npos);
  CHECK(error("", "search = { strategy = \"evolve\", islands = 0 }\n")
            .find("c.toml:11:10: ops[0].search.islands: expected 1..64, got 0") !=
        std::string::npos);
  CHECK(error("", "search = { samples = 2 }\n")
            .find("ops[0].search.samples: fix_loop runs one chain") != std::string::npos);
  CHECK(error("", "search = { samples = \"2\" }\n")
            .find("ops[0].search.samples: expected an integer") != std::string::npos);
  CHECK(error("", "search = { sampels = 2 }\n").find("ops[0].search.sampels") != std::string::npos);
  CHECK(error("", "search = 3\n").find("ops[0].search: expected a table") != std::string::npos);
  // Campaign-wide fields and rules.
  CHECK(error("", "[ops.search]\ncampaign_max_llm_calls = 5\n")
            .find("c.toml:12:26: ops[0].search.campaign_max_llm_calls: a campaign-wide field; set "
                  "it in the "
                  "campaign's [search], not per op") != std::string::npos);
  CHECK(error("[search]\nstrategy = \"evolve\"", "search = { patience = 3 }\n")
            .find("ops[0].search.patience: a campaign-wide field") != std::string::npos);
  CHECK(error("", "search = { strategy = \"adaptive\" }\n")
            .find("ops[0].search.strategy: adaptive is a campaign-wide rule") != std::string::npos);
  CHECK(error("[search]\nstrategy = \"adaptive\"", "search = { max_llm_calls = 3 }\n")
            .find("ops[0].search: the campaign's strategy is adaptive") != std::string::npos);
}

TEST_CASE("stagnation ends an evolve task after generations without a better candidate") {
  SearchRun run;
  // Nothing ever improves: every answer is the slow variant.
  run.llm.set_responder([](const nlohmann::json&) { return variant_answer("slow"); });
  run.submit(1,
             "[search]\nstrategy = \"evolve\"\nislands = 1\nisland_size = 2\ngenerations = "
             "6\nstagnation = 2\n",
             2);
  run.run();
  const TaskResult r = run.results()["op0"];
  CHECK(r.state == "passed");
  CHECK(r.reason ==
        "passed (evolve, 3 of 6 generations: best score 1.00 from island 0, generation 1; stopped "
        "by stagnation "
        "(2): no better candidate in the last 2 generations)");
  CHECK(r.candidates.size() == 6);  // generations 1..3 of 2 children
}

TEST_CASE("each budget ends a task with its reason") {
  auto broken = [](const nlohmann::json&) { return variant_answer("broken"); };
  SUBCASE("max_tokens") {
    SearchRun run;
    run.llm.set_responder(broken);
    run.submit(1, "[search]\nmax_tokens = 100\n", 10);
    run.run();
    const TaskResult r = run.results()["op0"];
    CHECK(r.state == "failed");
    CHECK(r.reason.starts_with("max_tokens (100) used up: "));
    CHECK(r.reason.ends_with(" tokens; last verdict: compile_error"));
    CHECK(run.llm.request_count() == 1);
  }
  SUBCASE("max_cost_usd") {
    SearchRun run;
    run.crash();
    run.price_per_mtok = 10;  // USD per million tokens: a few thousand tokens cost ~0.03
    run.open();
    run.llm.set_responder(broken);
    run.submit(1, "[search]\nstrategy = \"best_of_n\"\nsamples = 2\nmax_cost_usd = 0.001\n", 10);
    run.run();
    const TaskResult r = run.results()["op0"];
    CHECK(r.state == "failed");
    CHECK(r.reason.find("max_cost_usd (0.001) used up: ") != std::string::npos);
    CHECK(run.llm.request_count() == 2);  // one answer each chain, asked at once
  }
  SUBCASE("max_device_seconds") {
    SearchRun run;
    run.job_run = Millis(30'000);
    run.llm.set_responder(broken);
    run.submit(1, "[search]\nmax_device_seconds = 50\n", 10);
    run.run();
    const TaskResult r = run.results()["op0"];
    CHECK(r.state == "failed");
    CHECK(r.reason ==
          "max_device_seconds (50) used up: 60 device-seconds; last verdict: compile_error");
    CHECK(r.candidates.size() == 2);  // two verify jobs of 30 s
  }
  SUBCASE("max_wall_s") {
    SearchRun run;
    run.llm.set_responder(broken);
    run.submit(1, "[search]\nmax_wall_s = 100\n", 10);
    run.run([&] { return !run.loop->store().steps_of(1).value().empty(); });
    run.clock.advance(std::chrono::seconds(200));
    run.run();
    const TaskResult r = run.results()["op0"];
    CHECK(r.state == "failed");
    CHECK(r.reason.starts_with(
        "max_wall_s (100) used up: 200 s since the first step; last verdict: "));
  }
  SUBCASE("an evolve task's budget ends it after the generation in flight") {
    SearchRun run;
    run.llm.set_responder(evolve_respond);
    run.submit(1,
               "[search]\nstrategy = \"evolve\"\nislands = 2\nisland_size = 2\ngenerations = "
               "5\nmax_llm_calls = 6\n",
               2);
    run.run();
    const TaskResult r = run.results()["op0"];
    CHECK(r.state == "passed");
    CHECK(r.reason.find("; stopped by max_llm_calls (6) used up)") != std::string::npos);
    CHECK(run.llm.request_count() == 6);
  }
}

TEST_CASE("bad evolve and budget parameters are refused naming the field") {
  const std::string evolve = "[search]\nstrategy = \"evolve\"\n";
  CHECK(error(evolve + "islands = 0").find("c.toml:2:1: search.islands: expected 1..64, got 0") !=
        std::string::npos);
  CHECK(error(evolve + "island_size = 65").find("search.island_size: expected 1..64, got 65") !=
        std::string::npos);
  CHECK(error(evolve + "generations = 3\nmigrate_every = 4")
            .find("search.migrate_every: expected 0..3 (0: never; at most generations), got 4") !=
        std::string::npos);
  CHECK(error(evolve + "migrants = 0").find("search.migrants: expected 1..16, got 0") !=
        std::string::npos);
  CHECK(error(evolve + "inspirations = -1").find("search.inspirations: expected 0..16, got -1") !=
        std::string::npos);
  CHECK(error(evolve + "islands = 64\nisland_size = 64\ngenerations = 2")
            .find("search.generations: islands * island_size * generations is 8192 children, more "
                  "than 4096") != std::string::npos);
  CHECK(error(evolve + "samples = 4")
            .find("search.samples: evolve sizes its population with islands") != std::string::npos);
  CHECK(error(evolve + "islands = 2.5").find("search.islands: expected an integer, got") !=
        std::string::npos);
  CHECK(error("[search]\nislands = 3").find("search.islands: only strategy = \"evolve\" uses it") !=
        std::string::npos);
  CHECK(error("[search]\nstagnation = 2")
            .find("search.stagnation: only strategy = \"evolve\" uses it") != std::string::npos);
  CHECK(error("[search]\nmax_tokens = -5")
            .find("search.max_tokens: expected 0 (no limit) or more, got -5") != std::string::npos);
  CHECK(error("[search]\nmax_cost_usd = -1.5")
            .find("search.max_cost_usd: expected 0 (none) or a positive number, got -1.5") !=
        std::string::npos);
  CHECK(error("[search]\nmax_wall_s = \"1h\"").find("search.max_wall_s: expected a number, got") !=
        std::string::npos);
  CHECK(error("[search]\nmax_device_secs = 5").find("search.max_device_secs") != std::string::npos);
  // A stored policy round-trips with every field it sets.
  SearchPolicy p;
  p.strategy = "evolve";
  p.islands = 3;
  p.max_cost_usd = 2.5;
  CHECK(parse_search_text(search_text(p)).value() == p);
}

namespace {

// The pool's answers, except op0's: every one of them fails to compile (a hopeless task).
std::string respond_op0_hopeless(const nlohmann::json& body) {
  const std::string prompt = body["messages"].back()["content"].get<std::string>();
  if (prompt.find("- op: op0\n") != std::string::npos) {
    return "```python\n# variant: broken\nclass ModelNew:\n    pass\n```\n";
  }
  return respond(body);
}

std::string respond_broken(const nlohmann::json&) {
  return "```python\n# variant: broken\nclass ModelNew:\n    pass\n```\n";
}

// Tasks whose best candidate reached `target`.
int at_target(SearchRun& run, double target) {
  int n = 0;
  for (const auto& [op, r] : run.results()) n += r.best >= target ? 1 : 0;
  return n;
}

}  // namespace

TEST_CASE(
    "adaptive gets more tasks to the target speedup than fix_loop and best_of_n at the same "
    "campaign budget") {
  // Four ops; op0 is hopeless. The campaign may make 8 LLM calls in all.
  const std::string budget = "target_speedup = 3.0\ncampaign_max_llm_calls = 8\n";
  SearchRun fix;
  fix.llm.set_responder(respond_op0_hopeless);
  fix.submit(4, "[search]\nstrategy = \"fix_loop\"\n" + budget, 8);
  fix.run();
  SearchRun best;
  best.llm.set_responder(respond_op0_hopeless);
  best.submit(4, "[search]\nstrategy = \"best_of_n\"\nsamples = 4\n" + budget, 2);
  best.run();
  SearchRun adapt;
  adapt.llm.set_responder(respond_op0_hopeless);
  adapt.submit(
      4, "[search]\nstrategy = \"adaptive\"\nsamples = 4\npatience = 2\nparallel = 1\n" + budget,
      2);
  adapt.run();

  for (SearchRun* r : {&fix, &best, &adapt}) CHECK(r->llm.request_count() <= 8);
  // fix_loop stops at the first kernel that passes: only op3's first one is fast.
  CHECK(at_target(fix, 3.0) == 1);
  // best_of_n spends the budget on the first tasks' chains, op0's hopeless ones included.
  CHECK(at_target(best, 3.0) == 1);
  const auto starved = best.results()["op3"];
  CHECK(starved.state == "failed");
  CHECK(starved.reason == "campaign_max_llm_calls (8) spent: 8 LLM calls");
  // adaptive moves the calls to the tasks that improve: every task but op0 reaches 3.0.
  CHECK(at_target(adapt, 3.0) == 3);
  const auto results = adapt.results();
  for (const char* op : {"op1", "op2", "op3"}) {
    CAPTURE(op);
    CHECK(results.at(op).state == "passed");
  }
  CHECK(results.at("op0").state == "failed");
  CHECK(results.at("op0").verdict == "compile_error");
  // Its chains ran one after another: each sample's single candidate, in order.
  CHECK(results.at("op1").candidates ==
        std::vector<std::string>{"0/1:passed", "1/1:passed", "2/1:passed"});
}

TEST_CASE("an adaptive task that stops improving is stopped early, saying so") {
  SearchRun run;
  run.llm.set_responder(respond_broken);
  run.submit(1, "[search]\nstrategy = \"adaptive\"\nsamples = 8\npatience = 3\n", 2);
  run.run();
  const TaskResult r = run.results()["op0"];
  CHECK(r.state == "failed");
  CHECK(r.verdict == "compile_error");
  CHECK(r.reason ==
        "adaptive: stagnant, no improvement in the last 3 LLM calls (patience; best progress 0)");
  CHECK(run.llm.request_count() == 3);  // of the 8 chains' calls it could have made
}

TEST_CASE("each campaign budget stops the campaign with its name in the reason") {
  SearchRun run;
  run.llm.set_responder(respond_broken);
  std::string search;
  size_t asked = 0;  // LLM calls the campaign makes before the budget stops it
  SUBCASE("LLM calls") {
    search = "campaign_max_llm_calls = 3";
    asked = 3;
  }
  SUBCASE("tokens: the first answers are paid for, then nothing more is asked") {
    search = "campaign_max_tokens = 1";
    asked = 2;  // both tasks asked before any answer was paid for
  }
  SUBCASE("cost") {
    run.price_per_mtok = 1000;  // USD per million tokens: a few cents an answer
    run.open();
    search = "campaign_max_cost_usd = 0.001";
    asked = 2;
  }
  SUBCASE("device-seconds: each verify job runs 10 s") {
    run.job_run = Millis(10'000);
    search = "campaign_max_device_s = 25";
    asked = 4;  // two rounds of both tasks: 20 s spent when the second began, 40 s after
  }
  SUBCASE("wall time: each verify job runs 40 s") {
    run.job_run = Millis(40'000);
    search = "campaign_max_wall_s = 100";
    asked = 4;  // 80 s gone when the second round began, 160 s after
  }
  const std::string name = search.substr(0, search.find(' '));
  run.submit(2, "[search]\n" + search + "\n", 20);
  run.run();
  CAPTURE(name);
  CHECK(run.llm.request_count() == asked);
  for (const auto& [op, r] : run.results()) {
    CAPTURE(op);
    CHECK(r.state == "failed");
    CHECK(r.verdict == "compile_error");
    CHECK(r.reason.starts_with(name + " ("));
    CHECK(r.reason.find(") spent: ") != std::string::npos);
  }
  // Everything started was recorded. Under an LLM budget each answer paid for is judged; under
  // device-seconds or wall time an answer arriving after the budget is spent is not (which of
  // the last two arrives first decides whether its job started in time).
  size_t judged = 0;
  for (const auto& [op, r] : run.results()) judged += r.candidates.size();
  const Store::CampaignSpend spend = run.loop->store().campaign_spend(1).value();
  CHECK(spend.llm_calls == static_cast<int64_t>(asked));
  if (name == "campaign_max_device_s" || name == "campaign_max_wall_s") {
    CHECK(judged >= asked - 1);
    CHECK(judged <= asked);
  } else {
    CHECK(judged == asked);
  }
}

TEST_CASE(
    "a budgeted adaptive campaign stopped mid-way counts what it spent and resumes to the same "
    "result") {
  const std::string search =
      "[search]\nstrategy = \"adaptive\"\nsamples = 4\npatience = 2\nparallel = 1\ntarget_speedup "
      "= 3.0\n"
      "campaign_max_llm_calls = 7\n";
  SearchRun reference;
  reference.llm.set_responder(respond_op0_hopeless);
  reference.submit(4, search, 2);
  reference.run();
  const auto expected = reference.results();
  CHECK(reference.llm.request_count() == 7);

  SearchRun run;
  run.llm.set_responder(respond_op0_hopeless);
  run.submit(4, search, 2);
  for (size_t at : {2u, 4u, 6u}) {
    run.run([&] { return run.llm.request_count() >= at; });
    run.crash();  // the in-memory state is gone: what was spent is read back from the store
    run.open();
  }
  run.run();
  CHECK(run.results() == expected);
  CHECK(run.llm.request_count() == 7);  // the budget, across four processes
}

TEST_CASE("a budgeted adaptive campaign holds back only its own tasks") {
  SearchRun run;
  // Campaign 1: adaptive, one task asking at a time, 2 LLM calls in all. Campaign 2: fix_loop.
  run.submit(
      3,
      "[search]\nstrategy = \"adaptive\"\nsamples = 4\nparallel = 1\ncampaign_max_llm_calls = 2\n",
      2);
  // Its questions differ from campaign 1's (sample_offset: seeds 4.., answers as seed 0's): two
  // tasks asking the very same question at once is another matter.
  run.submit(3, "[search]\nsample_offset = 4\n", 8);
  run.run();
  Store& store = run.loop->store();
  CHECK(store.campaign_spend(1).value().llm_calls == 2);
  const std::vector<TaskRow> held = store.tasks_of_campaign(1).value();
  REQUIRE(held.size() == 3);
  CHECK(std::any_of(held.begin(), held.end(), [](const TaskRow& t) {
    return t.reason == "campaign_max_llm_calls (2) spent: 2 LLM calls";
  }));
  // The other campaign ran as if alone: every task passed, none waited for a turn.
  const std::vector<TaskRow> other = store.tasks_of_campaign(2).value();
  REQUIRE(other.size() == 3);
  for (const TaskRow& t : other) {
    CAPTURE(t.spec.op_name);
    CHECK(t.state == TaskState::passed);
  }
  CHECK(store.campaign_spend(2).value().llm_calls == 4);  // op0 fixes once (broken, then slow)
}
