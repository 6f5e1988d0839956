// The adaptive rule and the campaign budgets as pure functions (adaptive.h): scripted tasks
// with known improvement curves, no Conductor. tests/search_test.cpp runs them end to end.
#include "coordinator/generation/adaptive.h"

#include <doctest/doctest.h>

#include <map>

using namespace kforge;

namespace {

SearchPolicy adaptive(int64_t patience, int64_t parallel = 1) {
  SearchPolicy p;
  p.strategy = "adaptive";
  p.patience = patience;
  p.parallel = parallel;
  return p;
}

// A task whose k-th LLM call (1-based) yields a candidate of progress curve[k-1] (the last
// value repeats).
struct Scripted {
  std::vector<double> curve;
  AdaptiveTask state;
  bool stopped = false;
  std::string reason;
};

// Gives `budget` LLM calls, one at a time (parallel = 1), to whichever task the rule lets
// ask; a stagnant task stops. Returns the calls each task got.
std::map<int64_t, int64_t> allocate(std::vector<Scripted>& tasks, const SearchPolicy& p,
                                    int64_t budget) {
  for (size_t i = 0; i < tasks.size(); ++i) tasks[i].state.task_id = static_cast<int64_t>(i + 1);
  std::map<int64_t, int64_t> calls;
  for (int64_t spent = 0; spent < budget;) {
    std::vector<AdaptiveTask> running;
    for (const Scripted& t : tasks) {
      if (!t.stopped) running.push_back(t.state);
    }
    if (running.empty()) break;
    bool asked = false;
    for (Scripted& t : tasks) {
      if (t.stopped) continue;
      const Gate g = adaptive_turn(p, running, t.state.task_id, 0, p.parallel);
      if (g.turn == Turn::stop) {
        t.stopped = true;
        t.reason = g.reason;
        break;  // the running set changed: decide again
      }
      if (g.turn != Turn::go) continue;
      const size_t k = static_cast<size_t>(t.state.calls);
      t.state.calls++;
      t.state.judged.emplace_back(t.state.calls, t.curve[std::min(k, t.curve.size() - 1)]);
      calls[t.state.task_id]++;
      spent++;
      asked = true;
      break;
    }
    if (!asked &&
        std::all_of(tasks.begin(), tasks.end(), [](const Scripted& t) { return !t.stopped; })) {
      FAIL("no task may ask while none is asking");
    }
  }
  return calls;
}

double total_best(const std::vector<Scripted>& tasks) {
  double sum = 0;
  for (const Scripted& t : tasks) sum += best_progress(t.state, t.state.calls);
  return sum;
}

}  // namespace

TEST_CASE("campaign budgets: each kind is spent at its limit and named in the reason") {
  Store::CampaignSpend spend;
  spend.llm_calls = 9;
  spend.tokens = 5000;
  spend.cost_usd = 0.5;
  spend.device_ms = 30'000;
  spend.wall_ms = 60'000;
  SearchPolicy p;
  CHECK(!spent_budget(p, spend, 0, true));  // no budget set

  p.campaign_max_llm_calls = 10;
  CHECK(!spent_budget(p, spend, 0, true));
  // A call in flight counts: the tenth is asked already.
  CHECK(spent_budget(p, spend, 1, true) == "campaign_max_llm_calls (10) spent: 10 LLM calls");
  // A verify job of code paid for already is not held back by an LLM budget.
  CHECK(!spent_budget(p, spend, 1, false));

  p = SearchPolicy{};
  p.campaign_max_tokens = 5000;
  CHECK(spent_budget(p, spend, 0, true) == "campaign_max_tokens (5000) spent: 5000 tokens");
  p = SearchPolicy{};
  p.campaign_max_cost_usd = 0.25;
  CHECK(spent_budget(p, spend, 0, true)
            ->starts_with("campaign_max_cost_usd (0.25) spent: 0.5000 USD"));
  p = SearchPolicy{};
  p.campaign_max_device_s = 30;
  CHECK(spent_budget(p, spend, 0, false) ==
        "campaign_max_device_s (30) spent: 30 device-seconds of verify jobs");
  CHECK(spent_budget(p, spend, 0, true));
  p.campaign_max_device_s = 31;
  CHECK(!spent_budget(p, spend, 0, false));
  p = SearchPolicy{};
  p.campaign_max_wall_s = 60;
  CHECK(spent_budget(p, spend, 0, false) ==
        "campaign_max_wall_s (60) spent: 60 s since the campaign was submitted");
}

TEST_CASE("a task's progress and best(n) come from its judged candidates") {
  CHECK(progress(Verdict::passed, 2.5) == 3.5);
  CHECK(progress(Verdict::precision_mismatch, 0) == 0.5);
  CHECK(progress(Verdict::runtime_error, 0) == 0.25);
  CHECK(progress(Verdict::compile_error, 0) == 0);
  // Task 1: code, verify (compile_error), code, verify (passed 1.6); task 2: nothing yet.
  std::vector<Store::SearchStep> steps = {
      {1, true, std::nullopt, 0},  {1, false, Verdict::compile_error, 0},
      {1, true, std::nullopt, 0},  {1, false, Verdict::passed, 1.6},
      {2, false, std::nullopt, 0},  // the row of a task without steps
  };
  auto tasks = adaptive_tasks(steps);
  REQUIRE(tasks.size() == 2);
  CHECK(tasks[0].calls == 2);
  CHECK(tasks[0].judged == std::vector<std::pair<int64_t, double>>{{1, 0.0}, {2, 2.6}});
  CHECK(best_progress(tasks[0], 1) == 0);
  CHECK(best_progress(tasks[0], 2) == 2.6);
  CHECK(tasks[1].calls == 0);
  CHECK(tasks[1].judged.empty());
  // Its index: the gain per call over the last min(patience, calls) calls, plus exploration.
  const SearchPolicy p = adaptive(4);
  CHECK(adaptive_index(tasks[0], 2, p) ==
        doctest::Approx(2.6 / 2 + std::sqrt(std::log(3.0) / 3.0)));
  CHECK(adaptive_index(tasks[1], 2, p) == doctest::Approx(std::sqrt(std::log(3.0))));
}

TEST_CASE("the adaptive rule gives the budget to the tasks that improve and stops stagnant ones") {
  std::vector<Scripted> tasks = {
      {{0, 0, 0, 0, 0, 0}},                    // 1: hopeless, every candidate fails to compile
      {{2.0, 2.0, 2.0, 2.0}},                  // 2: passes at 1x at once, never faster
      {{0.25, 2.0, 2.6, 3.2, 3.8, 4.4, 5.0}},  // 3: keeps getting faster
  };
  const SearchPolicy p = adaptive(/*patience=*/2);
  const auto calls = allocate(tasks, p, 12);
  // The rest of the budget went where it paid: the improving task got most of it, the
  // hopeless one was tried once and never again while the other improved.
  CHECK(calls.at(1) == 1);
  CHECK(calls.at(3) == 8);
  CHECK(!tasks[2].stopped);
  CHECK(best_progress(tasks[2].state, tasks[2].state.calls) == 5.0);
  // The plateaued one stopped after `patience` calls without improvement, saying so.
  CHECK(tasks[1].stopped);
  CHECK(calls.at(2) == 3);  // improved on its first call, then two without
  CHECK(tasks[1].reason ==
        "adaptive: stagnant, no improvement in the last 2 LLM calls (patience; best progress 2)");

  // With budget to spare every task ends stagnant: the hopeless one after `patience` calls,
  // the improving one once its curve flattens (7 improving calls, then 2 without).
  std::vector<Scripted> spare = {
      {{0, 0, 0, 0, 0, 0}}, {{2.0, 2.0, 2.0, 2.0}}, {{0.25, 2.0, 2.6, 3.2, 3.8, 4.4, 5.0}}};
  const auto spent = allocate(spare, p, 100);
  for (const Scripted& t : spare) CHECK(t.stopped);
  CHECK(spent.at(1) == 2);
  CHECK(spare[0].reason ==
        "adaptive: stagnant, no improvement in the last 2 LLM calls (patience; best progress 0)");
  CHECK(spent.at(2) == 3);
  CHECK(spent.at(3) == 9);

  // The same budget split evenly (round robin, as tasks running side by side would): less.
  std::vector<Scripted> even = {
      {{0, 0, 0, 0, 0, 0}}, {{2.0, 2.0, 2.0, 2.0}}, {{0.25, 2.0, 2.6, 3.2, 3.8, 4.4, 5.0}}};
  for (int64_t k = 0; k < 12; ++k) {
    Scripted& t = even[static_cast<size_t>(k % 3)];
    t.state.calls++;
    t.state.judged.emplace_back(t.state.calls,
                                t.curve[std::min(static_cast<size_t>(k / 3), t.curve.size() - 1)]);
  }
  CHECK(total_best(tasks) > total_best(even));
}

TEST_CASE("the adaptive rule: an untried task is explored, slots bound the tasks asking at once") {
  AdaptiveTask tried{1, 3, {{1, 0.0}, {2, 0.0}, {3, 0.25}}};
  AdaptiveTask fresh{2, 0, {}};
  const SearchPolicy p = adaptive(/*patience=*/4, /*parallel=*/1);
  // The fresh task's exploration term wins over a task that barely improves.
  CHECK(adaptive_turn(p, {tried, fresh}, 2, 0, 1).turn == Turn::go);
  CHECK(adaptive_turn(p, {tried, fresh}, 1, 0, 1).turn == Turn::wait);
  // With two slots both ask; with the only slot taken, neither.
  CHECK(adaptive_turn(p, {tried, fresh}, 1, 0, 2).turn == Turn::go);
  CHECK(adaptive_turn(p, {tried, fresh}, 2, 1, 1).turn == Turn::wait);
  // A busy task (its action in flight) is not waiting: the other one gets the slot.
  fresh.busy = true;
  CHECK(adaptive_turn(p, {tried, fresh}, 1, 0, 1).turn == Turn::go);
  // Deterministic: ties go to the lower task id.
  AdaptiveTask a{5, 0, {}}, b{4, 0, {}};
  CHECK(adaptive_turn(p, {a, b}, 4, 0, 1).turn == Turn::go);
  CHECK(adaptive_turn(p, {a, b}, 5, 0, 1).turn == Turn::wait);
}
