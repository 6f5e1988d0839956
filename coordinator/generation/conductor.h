// coordinator/generation/: what turns a task into a verified kernel -- the Conductor (this
// file) and its pure rules (conductor_rules.h), the search strategies (search.h; evolve.h,
// adaptive.h with the campaign budgets), the prompt templates (prompts.h), the LLM client
// (llm.h) and the Task API over them (task.h).
//
// The Conductor: drives every task of the coordinator from design to a verified kernel.
//
// Runs on the coordinator's loop thread. A task's state is its recorded steps (see
// conductor_rules.h); after each event the Conductor reads them, decides, and starts the
// next action: an LLM call (Designer, Coder, conductor model) or a verify job on a device
// of the task's backend and arch. A task runs one chain per sample index of its campaign's
// search policy (search.h; fix_loop: one), each decided on its own steps; at most one action
// per chain is in flight.
//
// Nothing is paid twice (docs/architecture.md invariant 3): a question is recorded as a pending
// llm_calls row in the turn that asks it and sent once that turn has committed; its answer is
// committed the moment it arrives, on the LLM client's thread through a connection of its own,
// before the loop uses it; a resumed task looks its question up there first. A verify job is found
// again by (task, step seq) instead of being submitted a second time. Pending rows found at
// start-up are the calls in flight when the previous process ended (a metric).
//
// A store error never strands a task: each event's work for a task runs under a savepoint;
// when a store operation fails, its writes are rolled back, the task is forgotten in memory
// and started again from what is stored; after kMaxStoreErrors it is failed with the error
// as its reason.
//
// The Conductor reaches the coordinator only through ConductorLoop (the store, jobs, the
// loop's turns), so that its decisions are tested without a live loop (tests/conductor_test.cpp),
// as DevicePool's are.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

#include "common/config.h"
#include "common/metrics.h"
#include "coordinator/generation/adaptive.h"
#include "coordinator/generation/conductor_rules.h"
#include "coordinator/generation/evolve.h"
#include "coordinator/generation/llm.h"
#include "coordinator/generation/prompts.h"
#include "coordinator/generation/search.h"
#include "coordinator/scheduling/coordinator.h"

namespace kforge {

// The retry limits of the rules (max_code_fixes, max_infra_retries) are ConductorPolicy's
// defaults (conductor_rules.h); a verify job's memory limit is the agent's (agent.limits).
struct ConductorOptions {
  std::map<LlmRole, LlmEndpoint> endpoints;  // one per configured role ([llm.ROLE])
  uint32_t verify_timeout_s = 300;  // wall clock per verify job (coordinator.verify_timeout_s)
  // Tasks driven at once (at least twice the devices of the live agents): the rest wait in
  // the store, pending, and are started in id order as places free up.
  size_t max_active_tasks = 10'000;
  // Wall time for the max_wall_s stop rule ([search], search.h); tests pass a ManualClock.
  Clock* clock = &SystemClock::instance();

  bool operator==(const ConductorOptions&) const = default;
};

// The options a Config gives the Conductor, for both daemons (kforge-coordinator, kforge run):
// the configured LLM roles ([llm.*]; relative recording paths resolve against `config_dir`;
// a role that is not replay and sets no base_url takes $OPENAI_BASE_URL, one that sets neither
// api_key_env nor api_key_file sends $OPENAI_API_KEY when that is set) and
// coordinator.verify_timeout_s.
ConductorOptions conductor_options(const Config& config, const std::filesystem::path& config_dir);

// What the Conductor needs of the coordinator's loop. Every call is made on the loop thread,
// except post(). A Coordinator provides it (coordinator_loop); tests give a fake that runs
// posted and after-commit work when the test says.
class ConductorLoop {
 public:
  virtual ~ConductorLoop() = default;
  virtual Store& store() = 0;
  // The store's file: answers arriving on the LLM client's thread are committed through a
  // connection of its own to it.
  virtual std::filesystem::path store_path() const = 0;
  // Queues a verify job (Coordinator::submit) / withdraws one (Coordinator::cancel).
  virtual Result<int64_t> submit(const NewJob& job, const proto::Assign& assign) = 0;
  virtual Status cancel(int64_t job_id) = 0;
  // The devices of the live agents (DevicePool::devices): the window of tasks driven at once
  // is at least twice as many.
  virtual size_t devices() const = 0;
  // Runs `fn` on the loop thread in a coming turn. Thread-safe.
  virtual void post(std::function<void()> fn) = 0;
  // Runs `fn` once the current turn has committed.
  virtual void after_commit(std::function<void()> fn) = 0;
  // `listener` hears every recorded job result; `fn` runs after the loop reloaded its view
  // from the store (the end of a no-space alarm: turns were rolled back).
  virtual void add_result_listener(ResultListener listener) = 0;
  virtual void add_reload_listener(std::function<void()> fn) = 0;
};

// `coordinator` as a ConductorLoop.
std::unique_ptr<ConductorLoop> coordinator_loop(Coordinator& coordinator);

class Conductor {
 public:
  // `llm` may be null when no task needs one (verify_only campaigns).
  Conductor(Coordinator& coordinator, LlmClient* llm, PromptLibrary prompts,
            ConductorOptions options);
  // REQUIRES: `loop` outlives the Conductor.
  Conductor(ConductorLoop& loop, LlmClient* llm, PromptLibrary prompts, ConductorOptions options);
  // Closes the way back for LLM answers still in flight: one that arrives later is dropped
  // (its pending row has the task's next start ask again, or find the answer stored).
  ~Conductor();
  Conductor(const Conductor&) = delete;
  Conductor& operator=(const Conductor&) = delete;

  // --- loop thread ---
  // Starts (or resumes) a task; a finished task is left alone.
  void start(int64_t task_id);
  // Brings the tasks driven here in line with the store: stops those cancelled there, resumes
  // those it lists as running (after a restart: the tasks in flight), then starts pending
  // ones in id order while fewer than the window (ConductorOptions::max_active_tasks, or
  // twice the live devices) are driven. Starts at most kStartsPerTurn tasks (or kPumpMs
  // worth) per loop turn, the rest in the next turns, so a restart dispatches at once. Reads task
  // ids through the state index, never the rows of waiting tasks. Call it at start and whenever
  // another process may have changed tasks (Coordinator::add_change_listener).
  Status resume_all();
  // Called with every recorded job result (a Coordinator result listener).
  void on_job_result(const JobRow& job, const proto::JobResult& result);
  // Called once when the task ends (passed or not).
  void on_finish(int64_t task_id, std::function<void(bool passed)> done);
  size_t active() const { return active_.size(); }
  // How many tasks may be driven at once now.
  size_t window() const;
  static constexpr size_t kStartsPerTurn = 1000;
  static constexpr int64_t kPumpMs = 20;  // and no more starts in a turn after this long
  // Store errors a task may hit before it is failed with the last one.
  static constexpr int kMaxStoreErrors = 3;
  // Appends the LLM requests this process made (by role and outcome), their retries,
  // tokens, cost and latency, in Prometheus text format.
  void render_metrics(std::string& out) const;

 private:
  struct Active {
    Workflow workflow = Workflow::default_;  // of the task's campaign
    int64_t campaign_id = 0;
    std::string timing = "kforge";  // of the task's campaign: its verify jobs' trials and runs
    SearchPolicy search;            // of the task's campaign: its chains (search.h)
    // Chains with an action in flight: sample -> the token identifying that action (callbacks
    // of any other, stale, action are ignored) and whether it is an LLM call (max_llm_calls
    // counts the calls in flight too).
    struct Busy {
      int64_t token = 0;
      bool llm = false;
    };
    std::map<int64_t, Busy> busy;
  };

  // What LLM answers cost since start-up (answers found in llm_calls cost nothing).
  struct LlmStats {
    std::map<std::pair<LlmRole, bool>, int64_t> requests;  // by (role, answered ok)
    int64_t retries = 0;
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
    double cost_usd = 0;
    Histogram latency{latency_buckets_s()};
    void observe(LlmRole role, const LlmResponse& response);
  };

  struct AnswerLog;  // the LLM thread's connection: answers committed when they arrive
  class Mailbox;     // the LLM thread's way to the loop, closed when the Conductor goes

  // `loop` when not null, else `own_loop`.
  Conductor(std::unique_ptr<ConductorLoop> own_loop, ConductorLoop* loop, LlmClient* llm,
            PromptLibrary prompts, ConductorOptions options);

  // Runs `fn` (an event's work for the task) under a savepoint; a store error inside it
  // (check() failing) rolls its writes back and goes to on_store_error.
  void guarded(int64_t task_id, const std::function<void()>& fn);
  void on_store_error(int64_t task_id, const Status& error);
  void start_unguarded(int64_t task_id);
  void take_interrupted_calls();  // once, before the first question is asked
  // Starts queued work: tasks to resume, then pending ones while the window has room;
  // kStartsPerTurn at most, the rest in a coming turn.
  void pump();
  // pump() in a coming turn (once, however often asked), unless nothing waits: no task to
  // resume and the last look at the pending ones found fewer than it asked for (resume_all,
  // called whenever tasks may have been added, looks again).
  void schedule_pump();
  void activate(int64_t task_id, Active active);
  void deactivate(int64_t task_id);
  void stop(int64_t task_id);  // the task was cancelled: forget it, withdraw its jobs
  // The coordinator reloaded from the store after a no-space alarm: turns that moved tasks on
  // were rolled back, so every task is started again from its stored steps, after the
  // replayed LLM answers of those turns are stored (nothing received is asked again).
  void reload();
  // Decides the next action of every chain of the task without one in flight (decide() on the
  // chain's steps; evolve: EvolvePlan::action, the current generation's children only) and
  // starts it unless a budget forbids it (search.h) or the campaign's gate holds it back;
  // ends the task when every chain has ended or a stop rule (target_speedup, evolve's
  // stagnation) holds. `wake`: then give the campaign's waiting (parked) tasks their turn
  // (wake_parked).
  void advance(int64_t task_id, bool wake = true);
  void advance_unguarded(int64_t task_id);
  // Campaign budgets and the adaptive rule (adaptive.h) for an action of the task that asks
  // the LLM (`asks`) or runs a verify job: go, wait (the task is parked until another task of
  // its campaign moves on) or stop (the reason).
  Gate gate(int64_t task_id, bool asks);
  // Ends the task for a gate's `reason`: passed when a candidate passed.
  void stop_task(int64_t task_id, const std::vector<StepRow>& steps, const std::string& reason);
  // In a coming turn, decides again for the parked tasks of the campaign that the adaptive
  // rule moves now (adaptive_movers).
  void wake_parked(int64_t campaign_id);
  // The campaign's LLM calls in flight (asked, unanswered), by task driven here.
  std::map<int64_t, int64_t> asking(int64_t campaign_id) const;
  // The campaign's running tasks as the adaptive rule sees them (recorded steps, actions in
  // flight). A store error is check()ed against `task_id`.
  std::vector<AdaptiveTask> adaptive_view(int64_t task_id, int64_t campaign_id);
  // The campaign's `parallel`, resolved (0: the live devices, at least 1).
  int64_t slots(const SearchPolicy& search) const;
  // Whether `token` is the action in flight of the task's chain `sample`.
  bool current(int64_t task_id, int64_t sample, int64_t token) const;
  // `chain`: the steps of chain `sample`.
  // `evolve`: the task's evolve plan when its strategy is evolve (a child's parent and
  // inspirations go into its Coder prompt).
  void ask_llm(const TaskRow& task, const std::vector<StepRow>& chain, const Action& action,
               int64_t sample, const EvolvePlan* evolve = nullptr);
  // The task's evolve plan from its steps, candidates and migrants (none on a store error).
  std::optional<EvolvePlan> evolve_plan(const TaskRow& task, const std::vector<StepRow>& steps);
  // Fills what the task used of the budgets its policy sets (search.h); false on a store error.
  bool usage_of(int64_t task_id, const std::vector<StepRow>& steps, const SearchPolicy& search,
                SearchUsage& usage);
  void on_llm(int64_t task_id, int64_t sample, int64_t token, const LlmRequest& request,
              const LlmResponse& response, bool from_cache);
  void verify(const TaskRow& task, const std::vector<StepRow>& chain, int64_t sample);
  // Records the verdict as the chain's step and, unless infra_error, the judged candidate.
  void record_verdict(int64_t task_id, int64_t sample, const std::vector<StepRow>& chain,
                      int64_t job_id, const VerifyResult& result);
  void withdraw_jobs(int64_t task_id);  // cancels its queued and running jobs
  void finish(int64_t task_id, const Action& action);
  void fail(int64_t task_id, const std::string& reason);
  // The task ended (recorded): tells its waiters, and finishes the campaign when none of its
  // tasks is left.
  void finished(int64_t task_id, int64_t campaign_id, bool passed);
  ConductorPolicy policy(const Active& active) const;
  bool check(const Status& st, int64_t task_id);

  std::unique_ptr<ConductorLoop> own_loop_;  // with the Coordinator constructor
  ConductorLoop& loop_;
  LlmClient* llm_;
  PromptLibrary prompts_;
  ConductorOptions options_;
  std::unordered_map<int64_t, Active> active_;
  std::unordered_map<int64_t, size_t> active_by_campaign_;  // campaign -> its tasks in active_
  std::vector<int64_t> to_resume_;  // running in the store, not driven yet (newest first)
  bool pump_posted_ = false;
  bool pending_left_ = true;               // false once a page of pending tasks came back short
  static constexpr size_t kPage = 10'000;  // ids read per query
  std::unordered_map<int64_t, std::vector<std::function<void(bool)>>> waiters_;
  int64_t next_token_ = 1;
  bool reloading_ = false;  // between reload() and its resume_all(): no task starts
  LlmStats llm_stats_;
  std::shared_ptr<AnswerLog> answers_;             // shared with callbacks that may outlive a turn
  std::shared_ptr<Mailbox> mailbox_;               // likewise; they may outlive the Conductor too
  Status failed_;                                  // the first store error of the guarded event
  std::unordered_map<int64_t, int> store_errors_;  // by task, until it finishes
  int64_t store_errors_total_ = 0;
  std::optional<int64_t> interrupted_calls_;  // pending rows found at start-up
  // Questions sent and not answered yet, by request key: which start of which task gets the
  // answer. A task started again while its question is in flight (after a no-space alarm, a
  // store error, a cancel and resume) waits for that answer instead of asking, and paying,
  // again.
  struct Asked {
    int64_t task_id = 0;
    int64_t sample = 0;
    int64_t token = 0;
  };
  std::unordered_map<std::string, Asked> in_flight_;
  // By campaign: its tasks the adaptive rule told to wait (gate), and whether a wake is posted.
  std::unordered_map<int64_t, std::set<int64_t>> parked_;
  std::set<int64_t> wake_posted_;
};

// The code of the latest coder step that produced code, if any ("" otherwise).
std::string latest_code(const std::vector<StepRow>& steps, const std::string& impl_type);

}  // namespace kforge
