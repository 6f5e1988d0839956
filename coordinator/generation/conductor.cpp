#include "coordinator/generation/conductor.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <unordered_set>

#include "common/verify_job.h"

namespace kforge {
namespace {

constexpr const char* kSystemPrompt =
    "You are an expert GPU/NPU kernel engineer. Follow the instructions exactly and answer "
    "in the format they ask for.";

// An LLM step whose answer is usable (its call did not fail, its answer was not garbled).
bool usable(const StepRow& s) {
  return s.verdict != Outcome::garbled && s.verdict != Outcome::llm_error;
}

// The last usable step of `role`, or null.
const StepRow* last_good(const std::vector<StepRow>& steps, Role role) {
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    if (it->role == role && usable(*it)) return &*it;
  }
  return nullptr;
}

int count_role(const std::vector<StepRow>& steps, Role role) {
  int n = 0;
  for (const auto& s : steps) n += s.role == role ? 1 : 0;
  return n;
}

// The verifier's message for a prompt: verdict, message and the numbers a model can use.
std::string verifier_message(const std::vector<StepRow>& steps) {
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    if (it->role != Role::verifier) continue;
    if (!it->result) {  // not a verdict document
      return it->verdict ? std::string(to_string(*it->verdict)) : std::string();
    }
    const VerifyResult& r = *it->result;
    std::string out = "verdict: " + std::string(to_string(r.verdict)) + "\n" + r.message;
    if (r.checks) out += "\nchecks: " + to_json(*r.checks).dump();
    return out;
  }
  return "";
}

// Suggestions of a conductor step that came after the last verifier step.
std::string suggestions(const std::vector<StepRow>& steps) {
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    if (it->role == Role::verifier) return "";
    if (it->role == Role::conductor && usable(*it)) {
      auto decision = parse_conductor(it->output);
      return decision.ok() ? decision->suggestions : "";
    }
  }
  return "";
}

// An LLM call as recorded when it is asked (status pending).
LlmCallRow asked_call(int64_t task_id, const LlmEndpoint& endpoint, const LlmRequest& request) {
  LlmCallRow call;
  call.task_id = task_id;
  call.role = role_of(request.role);
  call.model = endpoint.model;
  call.request_key = request_key(endpoint, request);
  call.request = request_body(endpoint, request);
  call.status = LlmCallState::pending;
  return call;
}

// The same call with its answer (status ok).
LlmCallRow answered_call(LlmCallRow call, const LlmResponse& response) {
  call.model = response.model;
  call.response =
      nlohmann::json{{"content", response.content}, {"reasoning", response.reasoning}}.dump(
          -1, ' ', false, nlohmann::json::error_handler_t::replace);
  call.status = LlmCallState::ok;
  call.prompt_tokens = response.prompt_tokens;
  call.completion_tokens = response.completion_tokens;
  call.cost_usd = response.cost_usd;
  call.latency_ms = response.latency_ms;
  return call;
}

}  // namespace

// An LLM answer comes on the client's thread, possibly after the Conductor (and the loop it
// owns) is gone: at the end of a process the Conductor goes first and the client's destructor
// answers the questions in flight. post() reaches the loop only while the Conductor lives,
// and the work it posts runs only if the Conductor still lives when the loop turns.
class Conductor::Mailbox : public std::enable_shared_from_this<Mailbox> {
 public:
  explicit Mailbox(ConductorLoop& loop) : loop_(&loop) {}
  void post(std::function<void()> fn) {
    std::lock_guard lock(mu_);
    if (loop_ == nullptr) return;
    loop_->post([self = shared_from_this(), fn = std::move(fn)] {
      if (self->open()) fn();
    });
  }
  void close() {
    std::lock_guard lock(mu_);
    loop_ = nullptr;
  }

 private:
  bool open() {
    std::lock_guard lock(mu_);
    return loop_ != nullptr;
  }
  std::mutex mu_;
  ConductorLoop* loop_;  // null once closed
};

// Answers are committed on the LLM client's thread the moment they arrive, through a store
// connection of its own (SQLite serialises it with the loop's turns), so that a kill between
// arrival and the turn that uses the answer does not lose it.
struct Conductor::AnswerLog {
  explicit AnswerLog(std::filesystem::path db) : path(std::move(db)) {}
  Status record(const LlmCallRow& call) {
    std::lock_guard lock(mu);
    if (!store) {
      auto opened = Store::open(path);
      if (!opened.ok()) return opened.status();
      store = std::move(opened.value());
    }
    return store->record_llm_call(call);
  }
  const std::filesystem::path path;
  std::mutex mu;
  std::unique_ptr<Store> store;
};

ConductorOptions conductor_options(const Config& config, const std::filesystem::path& config_dir) {
  ConductorOptions options;
  options.verify_timeout_s = config.coordinator.verify_timeout_s;
  for (LlmRole role : all_of<LlmRole>()) {
    const LlmRoleConfig* c = &config.llm.of(role);
    if (c->provider.empty()) continue;
    LlmEndpoint e;
    e.provider = c->provider;
    // OpenAI's conventions fill what the role leaves out (llm_base_url, llm_key_env): the
    // key is read from the variable when the client starts, never logged.
    e.base_url = llm_base_url(*c);
    e.model = c->model;
    e.api_key_env = llm_key_env(*c);
    if (!c->api_key_file.empty()) {
      std::filesystem::path key = c->api_key_file;
      e.api_key_file = (key.is_absolute() ? key : config_dir / key).string();
    }
    e.temperature = c->temperature;
    e.max_tokens = static_cast<int>(c->max_tokens);
    e.timeout_s = static_cast<int>(c->timeout_s);
    e.concurrency = static_cast<int>(c->concurrency);
    e.max_retries = static_cast<int>(c->max_retries);
    e.price_prompt_per_mtok = c->price_prompt_per_mtok;
    e.price_completion_per_mtok = c->price_completion_per_mtok;
    e.replay_latency_ms = c->replay_latency_ms;
    if (!c->recording.empty()) {
      std::filesystem::path rec = c->recording;
      e.recording = (rec.is_absolute() ? rec : config_dir / rec).string();
    }
    options.endpoints[role] = e;
  }
  return options;
}

std::string latest_code(const std::vector<StepRow>& steps, const std::string& impl_type) {
  const StepRow* coder = last_good(steps, Role::coder);
  if (coder == nullptr) return "";
  auto code = extract_code(coder->output, impl_type);
  return code.ok() ? *code : "";
}

namespace {

class CoordinatorLoop : public ConductorLoop {
 public:
  explicit CoordinatorLoop(Coordinator& coordinator) : c_(coordinator) {}
  Store& store() override { return c_.store(); }
  std::filesystem::path store_path() const override { return c_.store_path(); }
  Result<int64_t> submit(const NewJob& job, const proto::Assign& assign) override {
    return c_.submit(job, assign);
  }
  Status cancel(int64_t job_id) override { return c_.cancel(job_id); }
  size_t devices() const override { return c_.pool().devices(); }
  void post(std::function<void()> fn) override { c_.post(std::move(fn)); }
  void after_commit(std::function<void()> fn) override { c_.after_commit(std::move(fn)); }
  void add_result_listener(ResultListener listener) override {
    c_.add_result_listener(std::move(listener));
  }
  void add_reload_listener(std::function<void()> fn) override {
    c_.add_reload_listener(std::move(fn));
  }

 private:
  Coordinator& c_;
};

}  // namespace

std::unique_ptr<ConductorLoop> coordinator_loop(Coordinator& coordinator) {
  return std::make_unique<CoordinatorLoop>(coordinator);
}

Conductor::Conductor(Coordinator& coordinator, LlmClient* llm, PromptLibrary prompts,
                     ConductorOptions options)
    : Conductor(coordinator_loop(coordinator), nullptr, llm, std::move(prompts),
                std::move(options)) {}

Conductor::Conductor(ConductorLoop& loop, LlmClient* llm, PromptLibrary prompts,
                     ConductorOptions options)
    : Conductor(nullptr, &loop, llm, std::move(prompts), std::move(options)) {}

Conductor::Conductor(std::unique_ptr<ConductorLoop> own_loop, ConductorLoop* loop, LlmClient* llm,
                     PromptLibrary prompts, ConductorOptions options)
    : own_loop_(std::move(own_loop)),
      loop_(loop != nullptr ? *loop : *own_loop_),
      llm_(llm),
      prompts_(std::move(prompts)),
      options_(std::move(options)),
      answers_(std::make_shared<AnswerLog>(loop_.store_path())),
      mailbox_(std::make_shared<Mailbox>(loop_)) {
  loop_.add_result_listener([this](const JobRow& job, const proto::JobResult& result) {
    if (!job.task_id) return;
    guarded(*job.task_id, [&] { on_job_result(job, result); });
  });
  loop_.add_reload_listener([this] { reload(); });
}

Conductor::~Conductor() {
  mailbox_->close();
}

void Conductor::reload() {
  // Actions in flight are forgotten (a job's result, when it comes, is stored and not used;
  // an LLM answer goes to the task's next start, which waits for it instead of asking again);
  // the tasks start again once the work replayed before this post has run.
  active_.clear();
  active_by_campaign_.clear();
  to_resume_.clear();
  reloading_ = true;
  loop_.post([this] {
    reloading_ = false;
    if (Status st = resume_all(); !st.ok()) spdlog::error("conductor: {}", st.to_string());
  });
}

ConductorPolicy Conductor::policy(const Active& active) const {
  ConductorPolicy p;
  p.workflow = active.workflow;
  p.conductor_model = options_.endpoints.count(LlmRole::conductor) > 0;
  return p;
}

bool Conductor::check(const Status& st, int64_t task_id) {
  if (st.ok()) return true;
  spdlog::error("task {}: {}", task_id, st.to_string());
  if (failed_.ok()) failed_ = st;
  return false;
}

void Conductor::guarded(int64_t task_id, const std::function<void()>& fn) {
  failed_ = Status();
  Status st = loop_.store().atomically([&] {
    fn();
    return failed_;
  });
  failed_ = Status();
  if (!st.ok()) on_store_error(task_id, st);
}

void Conductor::on_store_error(int64_t task_id, const Status& error) {
  // The event's writes are gone: forget what memory holds of the task (callbacks of its
  // action in flight are ignored) and start it again from what is stored.
  store_errors_total_++;
  deactivate(task_id);
  std::string what = error.message();
  const std::string db = loop_.store_path().string() + ": ";
  if (what.rfind(db, 0) == 0) what = what.substr(db.size());  // the reason is shown to users
  if (++store_errors_[task_id] < kMaxStoreErrors) {
    spdlog::warn("task {}: store error, its event rolled back; starting it again ({} of {}): {}",
                 task_id, store_errors_[task_id], kMaxStoreErrors, what);
    loop_.post([this, task_id] { start(task_id); });
    return;
  }
  Store& store = loop_.store();
  int64_t campaign_id = 0;
  Status marked = store.atomically([&] {
    auto task = store.get_task(task_id);
    if (!task.ok()) return task.status();
    campaign_id = task->campaign_id;
    return store.set_task_state(task_id, TaskState::failed, Outcome::infra_error,
                                "store error: " + what);
  });
  if (!marked.ok()) {  // the store is failing: the next resume tries again
    spdlog::error("task {}: cannot record its failure: {}", task_id, marked.to_string());
    return;
  }
  spdlog::error("task {} failed after {} store errors: {}", task_id, kMaxStoreErrors, what);
  finished(task_id, campaign_id, false);
}

void Conductor::take_interrupted_calls() {
  if (interrupted_calls_) return;
  auto taken = loop_.store().take_pending_llm_calls();
  if (!taken.ok()) {
    spdlog::error("conductor: {}", taken.status().to_string());
    return;
  }
  interrupted_calls_ = *taken;
  if (*taken > 0) {
    spdlog::warn(
        "{} LLM calls were in flight when the previous coordinator process ended; their tasks ask "
        "them again",
        *taken);
  }
  // A campaign whose submission the previous process did not finish stays submitting (none
  // of its tasks runs) until it is submitted again.
  auto interrupted = loop_.store().interrupted_submissions();
  if (!interrupted.ok()) {
    spdlog::error("conductor: {}", interrupted.status().to_string());
    return;
  }
  for (int64_t id : *interrupted) {
    spdlog::warn(
        "campaign {}: its submission stopped before all its tasks were stored; none runs until "
        "the same campaign file is submitted again, which stores the rest",
        id);
  }
}

void Conductor::on_finish(int64_t task_id, std::function<void(bool passed)> done) {
  waiters_[task_id].push_back(std::move(done));
}

Status Conductor::resume_all() {
  if (reloading_) return Status();
  take_interrupted_calls();
  // The tasks the store lists as running: those driven here, and after a restart the ones
  // that were in flight (never more than the window, whatever the campaign's size).
  std::unordered_set<int64_t> running;
  to_resume_.clear();
  TaskQuery query;
  query.state = TaskState::running;
  query.limit = static_cast<int64_t>(kPage);
  for (;;) {
    auto page = loop_.store().task_ids(query);
    if (!page.ok()) return page.status();
    for (int64_t id : *page) {
      running.insert(id);
      if (!active_.count(id)) to_resume_.push_back(id);
    }
    if (page->size() < kPage) break;
    query.after_id = page->back();
  }
  // A task driven here that the store no longer lists as running was cancelled (by the
  // operator API, or `kforge cancel` on the database): stop it and withdraw its jobs.
  std::vector<int64_t> cancelled;
  for (const auto& [id, active] : active_) {
    if (!running.count(id)) cancelled.push_back(id);
  }
  for (int64_t id : cancelled) stop(id);
  std::reverse(to_resume_.begin(), to_resume_.end());  // taken from the back: oldest first
  pending_left_ = true;                                // the store may hold new pending tasks
  if (!to_resume_.empty()) spdlog::info("conductor resuming {} running tasks", to_resume_.size());
  pump();
  return Status();
}

size_t Conductor::window() const {
  return std::max(options_.max_active_tasks, 2 * loop_.devices());
}

void Conductor::pump() {
  pump_posted_ = false;
  if (reloading_) return;
  // A turn that starts tasks delays its dispatch and its messages: kStartsPerTurn at most,
  // and no more once kPumpMs have gone by (a start reads the task and its steps).
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(kPumpMs);
  size_t budget = kStartsPerTurn;
  while (budget > 0 && !to_resume_.empty()) {
    int64_t id = to_resume_.back();
    to_resume_.pop_back();
    start(id);
    budget = std::chrono::steady_clock::now() < until ? budget - 1 : 0;
  }
  bool more = !to_resume_.empty();
  size_t window = this->window();
  if (!more && budget > 0 && active_.size() < window) {
    // Pending tasks in id order, through the state index: the queue stays in the store.
    TaskQuery query;
    query.state = TaskState::pending;
    query.startable = true;
    query.limit = static_cast<int64_t>(std::min(budget, window - active_.size()));
    auto ids = loop_.store().task_ids(query);
    if (!ids.ok()) {
      spdlog::error("conductor: {}", ids.status().to_string());
      return;
    }
    pending_left_ = static_cast<int64_t>(ids->size()) == query.limit;
    for (int64_t id : *ids) {
      if (std::chrono::steady_clock::now() >= until) {  // the rest of the page in a coming turn
        pending_left_ = true;
        break;
      }
      start(id);
    }
    more = pending_left_ && active_.size() < window;
  }
  if (more) schedule_pump();
}

void Conductor::schedule_pump() {
  if (pump_posted_ || (!pending_left_ && to_resume_.empty())) return;
  pump_posted_ = true;
  loop_.post([this] { pump(); });
}

void Conductor::activate(int64_t task_id, Active active) {
  active_by_campaign_[active.campaign_id]++;
  active_[task_id] = std::move(active);
}

void Conductor::deactivate(int64_t task_id) {
  auto it = active_.find(task_id);
  if (it == active_.end()) return;
  if (auto parked = parked_.find(it->second.campaign_id); parked != parked_.end())
    parked->second.erase(task_id);
  auto c = active_by_campaign_.find(it->second.campaign_id);
  if (c != active_by_campaign_.end() && --c->second == 0) active_by_campaign_.erase(c);
  active_.erase(it);
}

void Conductor::withdraw_jobs(int64_t task_id) {
  auto jobs = loop_.store().jobs_of_task(task_id);
  if (!check(jobs.status(), task_id)) return;
  for (const JobRow& job : *jobs) {
    if (job.state == JobState::queued || job.state == JobState::assigned)
      check(loop_.cancel(job.id), task_id);
  }
}

void Conductor::stop(int64_t task_id) {
  auto it = active_.find(task_id);
  const int64_t campaign_id = it != active_.end() ? it->second.campaign_id : 0;
  deactivate(task_id);
  withdraw_jobs(task_id);
  spdlog::info("task {} cancelled", task_id);
  schedule_pump();           // a place in the window is free
  wake_parked(campaign_id);  // its turn to ask, if it had one, is free
  auto waiters = std::move(waiters_[task_id]);
  waiters_.erase(task_id);
  for (auto& w : waiters) w(false);
}

void Conductor::start(int64_t task_id) {
  if (active_.count(task_id)) return;
  take_interrupted_calls();
  guarded(task_id, [&] { start_unguarded(task_id); });
}

void Conductor::start_unguarded(int64_t task_id) {
  auto task = loop_.store().get_task(task_id);
  if (!check(task.status(), task_id)) return;
  if (kforge::finished(task->state)) return;
  auto campaign = loop_.store().get_campaign(task->campaign_id);
  if (!check(campaign.status(), task_id)) return;
  const Workflow workflow = campaign->workflow;
  // The task's own policy (its op's search table over the campaign's, carrying the campaign's
  // campaign-wide fields), else the campaign's.
  const bool own = !task->spec.search.empty();
  auto search = parse_search_text(own ? task->spec.search : campaign->search);
  if (!search.ok()) {
    activate(task_id, Active{workflow, task->campaign_id, campaign->timing, {}, {}});
    fail(task_id, (own ? "task " + std::to_string(task_id)
                       : "campaign " + std::to_string(task->campaign_id)) +
                      ": " + search.status().message());
    return;
  }
  activate(task_id, Active{workflow, task->campaign_id, campaign->timing, *search, {}});
  if (task->state == TaskState::pending)
    check(loop_.store().set_task_state(task_id, TaskState::running), task_id);
  advance(task_id);
}

void Conductor::advance(int64_t task_id, bool wake) {
  auto it = active_.find(task_id);
  const int64_t campaign_id = it != active_.end() ? it->second.campaign_id : 0;
  // One task's failure or exception never touches another task.
  try {
    advance_unguarded(task_id);
  } catch (const std::exception& e) {
    fail(task_id, std::string("internal error in the conductor: ") + e.what());
  }
  if (wake) wake_parked(campaign_id);
}

bool Conductor::current(int64_t task_id, int64_t sample, int64_t token) const {
  auto it = active_.find(task_id);
  if (it == active_.end()) return false;
  auto busy = it->second.busy.find(sample);
  return busy != it->second.busy.end() && busy->second.token == token;
}

void Conductor::advance_unguarded(int64_t task_id) {
  // One action is started per pass, then the steps are read again: starting it may have moved
  // chains on already (answers found stored run on_llm, and advance, at once).
  for (;;) {
    auto it = active_.find(task_id);
    if (it == active_.end()) return;
    auto task = loop_.store().get_task(task_id);
    auto steps = loop_.store().steps_of(task_id);
    if (!check(task.status(), task_id) || !check(steps.status(), task_id)) return;
    const SearchPolicy& search = it->second.search;
    std::map<int64_t, std::vector<StepRow>> chains;  // by sample
    for (int64_t sample : search.chains()) chains[sample];
    int64_t llm_calls = 0;
    for (const StepRow& step : *steps) {
      if (auto chain = chains.find(step.sample); chain != chains.end())
        chain->second.push_back(step);
      llm_calls += step.role != Role::verifier ? 1 : 0;
    }
    for (const auto& [sample, busy] : it->second.busy)
      llm_calls += busy.llm ? 1 : 0;  // asked, unanswered
    SearchUsage usage;
    usage.llm_calls = llm_calls;
    if (needs_usage(search) && !usage_of(task_id, *steps, search, usage)) return;
    std::optional<EvolvePlan> evolve;
    if (search.strategy == "evolve") {
      evolve = evolve_plan(*task, *steps);
      if (!evolve) return;
      // Migrations due after a completed generation, before its successors choose parents.
      const std::vector<MigrantRow> due = evolve->due_migrants(task_id);
      for (const MigrantRow& m : due) {
        if (!check(loop_.store().record_migrant(m), task_id)) return;
      }
      if (!due.empty()) continue;
      if (search.stagnation > 0 && it->second.busy.empty() &&
          evolve->stagnant_generations() >= search.stagnation) {
        withdraw_jobs(task_id);
        finish(task_id, evolve->finish("stagnation (" + std::to_string(search.stagnation) +
                                       "): no better candidate in the last " +
                                       std::to_string(search.stagnation) + " generations"));
        return;
      }
    }
    // A passing candidate as fast as the target ends every chain.
    if (search.target_speedup > 0) {
      auto candidates = loop_.store().candidates_of(task_id);
      if (!check(candidates.status(), task_id)) return;
      for (const CandidateRow& c : *candidates) {
        if (c.verdict != Verdict::passed || !c.speedup || *c.speedup < search.target_speedup)
          continue;
        withdraw_jobs(task_id);
        Action done;
        done.passed = true;
        done.verdict = Outcome::passed;
        done.reason = "passed (target_speedup reached by sample " + std::to_string(c.sample) + ")";
        finish(task_id, done);
        return;
      }
    }
    std::vector<std::pair<int64_t, Action>> ended;  // chains that ended, with how
    std::string stopped;                            // the budget that ended a chain, if any
    bool running = false;
    bool started = false;
    Gate held;  // a campaign budget or the adaptive rule holding an action back (gate)
    for (const auto& [sample, chain] : chains) {
      if (running && search.strategy == "adaptive") break;  // its chains run one after another
      if (it->second.busy.count(sample)) {
        running = true;
        continue;
      }
      // An evolve child of a later generation waits (no action).
      std::optional<Action> next = evolve
                                       ? evolve->action(sample)
                                       : decide(policy(it->second), task->spec.limit_steps, chain);
      if (!next) continue;
      Action action = *next;
      spdlog::debug("task {} ({}/{}) sample {}: {} after {} steps", task_id, task->spec.op_name,
                    task->spec.task_id, sample, action_name(action), chain.size());
      const bool asks = action.kind != ActionKind::verify && action.kind != ActionKind::finish;
      if (std::string used_up =
              action.kind == ActionKind::finish ? "" : budget_used_up(search, usage, asks);
          !used_up.empty()) {
        stopped = used_up;
        action = Action{};
        action.verdict = last_verdict(chain);
        action.reason = used_up + "; last verdict: " +
                        std::string(action.verdict ? to_string(*action.verdict) : "none");
      }
      if (action.kind == ActionKind::finish) {
        ended.emplace_back(sample, action);
        continue;
      }
      if (held = gate(task_id, asks); held.turn != Turn::go) break;
      if (asks) {
        ask_llm(*task, chain, action, sample, evolve ? &*evolve : nullptr);
      } else {
        verify(*task, chain, sample);
      }
      started = true;
      break;
    }
    // A store error rolls the event back (guarded): nothing more this event. One chain
    // (fix_loop) has nothing else to start: the steps are not read again, as before chains.
    if (!failed_.ok() || (started && chains.size() == 1)) return;
    if (held.turn == Turn::stop && it->second.busy.empty()) stop_task(task_id, *steps, held.reason);
    if (held.turn != Turn::go) return;  // stopped, or waits (parked) or for what is in flight
    if (started) continue;
    if (running) return;
    if (evolve) {  // every generation done, or a budget used up
      finish(task_id, evolve->finish(stopped));
      return;
    }
    if (ended.size() == 1) {  // one chain (fix_loop): its end is the task's
      finish(task_id, ended[0].second);
      return;
    }
    // Several chains: passed when any passed; the best candidate is the task's kernel (outcome.h).
    // Failed: the verdict of the chain that ended last (its last step is the task's latest).
    Action done;
    int last_seq = -1;
    for (const auto& [sample, action] : ended) {
      done.passed = done.passed || action.passed;
      if (!action.passed) {
        done.reason += (done.reason.empty() ? "sample " : "; sample ") + std::to_string(sample) +
                       ": " + action.reason;
      }
      const std::vector<StepRow>& chain = chains[sample];
      const int seq = chain.empty() ? 0 : chain.back().seq;
      if (seq > last_seq) {
        last_seq = seq;
        done.verdict = action.verdict;
      }
    }
    if (done.passed) {
      done.verdict = Outcome::passed;
      done.reason = "passed";
    }
    finish(task_id, done);
    return;
  }
}

std::optional<EvolvePlan> Conductor::evolve_plan(const TaskRow& task,
                                                 const std::vector<StepRow>& steps) {
  auto candidates = loop_.store().candidates_of(task.id);
  auto migrants = loop_.store().migrants_of(task.id);
  if (!check(candidates.status(), task.id) || !check(migrants.status(), task.id))
    return std::nullopt;
  const Active& active = active_[task.id];
  return EvolvePlan(active.search, policy(active), task.spec.limit_steps, steps,
                    std::move(*candidates), std::move(*migrants));
}

bool Conductor::usage_of(int64_t task_id, const std::vector<StepRow>& steps,
                         const SearchPolicy& search, SearchUsage& usage) {
  if (search.max_tokens > 0 || search.max_cost_usd > 0) {
    auto llm = loop_.store().llm_usage_of_task(task_id);
    if (!check(llm.status(), task_id)) return false;
    usage.tokens = llm->prompt_tokens + llm->completion_tokens;
    usage.cost_usd = llm->cost_usd;
  }
  if (search.max_device_seconds > 0) {
    auto ms = loop_.store().device_ms_of_task(task_id);  // summed in SQL, no job row read
    if (!check(ms.status(), task_id)) return false;
    usage.device_seconds = static_cast<double>(*ms) / 1000.0;
  }
  if (search.max_wall_s > 0 && !steps.empty()) {
    usage.wall_s =
        static_cast<double>(options_.clock->wall_ms() - steps.front().created_ms) / 1000.0;
  }
  return true;
}

void Conductor::ask_llm(const TaskRow& task, const std::vector<StepRow>& steps,
                        const Action& action, int64_t sample, const EvolvePlan* evolve) {
  const LlmRole role = action.kind == ActionKind::design ? LlmRole::designer
                       : action.kind == ActionKind::code ? LlmRole::coder
                                                         : LlmRole::conductor;
  const std::string name(to_string(role));
  auto endpoint = options_.endpoints.find(role);
  if (endpoint == options_.endpoints.end() || llm_ == nullptr) {
    fail(task.id, "no LLM is configured for the " + name + " role");
    return;
  }
  std::string template_name = role == LlmRole::conductor ? "conductor"
                              : action.fix               ? name + "_fix"
                                                         : name;
  const StepRow* design = last_good(steps, Role::designer);
  auto values = prompts_.task_values(task.spec);
  if (!values.ok()) {
    fail(task.id, "cannot build the " + template_name + " prompt: " + values.status().message());
    return;
  }
  (*values)["design"] = design ? extract_design(design->output).value_or(design->output) : "";
  (*values)["previous_code"] = latest_code(steps, task.spec.impl_type);
  (*values)["verifier_message"] = verifier_message(steps);
  (*values)["suggestions"] =
      suggestions(steps) + (action.reason.empty() ? "" : "\nNote: " + action.reason);
  (*values)["inspirations"] = "";
  // An evolve child with a parent: the parent's code and verdict, to improve or to fix.
  if (const CandidateRow* parent =
          evolve && role == LlmRole::coder ? evolve->parent(sample) : nullptr) {
    template_name = evolve->coder_template(sample);
    (*values)["previous_code"] = evolve->code(*parent, task.spec.impl_type);
    const StepRow* judged = evolve->step(parent->step_id);
    (*values)["verifier_message"] = judged ? verifier_message({*judged}) : "";
    (*values)["inspirations"] = evolve->inspirations_text(sample, task.spec.impl_type);
    if (const StepRow* parent_design = evolve->design_of(*parent); parent_design && !design) {
      (*values)["design"] = extract_design(parent_design->output).value_or(parent_design->output);
    }
  }
  auto prompt = prompts_.render(template_name, *values);
  if (!prompt.ok()) {
    fail(task.id, "cannot build the " + template_name + " prompt: " + prompt.status().message());
    return;
  }
  LlmRequest request;
  request.role = role;
  request.messages = {{"system", kSystemPrompt}, {"user", *prompt}};
  request.replay_key = task.spec.op_name + "/" + task.spec.task_id + "/" + name + "/" +
                       std::to_string(count_role(steps, role_of(role)) + 1) +
                       (sample != 0 ? "/s" + std::to_string(sample) : "");
  request.sample = sample;
  const int64_t token = next_token_++;
  active_[task.id].busy[sample] = {token, /*llm=*/true};

  // A question already answered (before a restart) is not asked again.
  std::string key = request_key(endpoint->second, request);
  Store& store = loop_.store();
  auto cached = store.find_llm_call(key);
  if (!check(cached.status(), task.id)) return;
  if (cached->has_value()) {
    LlmResponse response;
    response.ok = true;
    auto body = nlohmann::json::parse((*cached)->response, nullptr, false);
    response.content = body.is_object() ? body.value("content", "") : (*cached)->response;
    response.reasoning = body.is_object() ? body.value("reasoning", "") : "";
    response.request_key = key;
    on_llm(task.id, sample, token, request, response, /*from_cache=*/true);
    return;
  }
  // Asked already and still in flight: its answer comes to this start of the task.
  if (auto asked = in_flight_.find(key); asked != in_flight_.end()) {
    asked->second = Asked{task.id, sample, token};
    return;
  }
  // Pending until its answer arrives: a pending row at start-up is a call a crash cut off.
  LlmCallRow call = asked_call(task.id, endpoint->second, request);
  if (!check(store.record_llm_call(call), task.id)) return;
  // Sent once the pending row is committed, unless the task moved on meanwhile (its event
  // rolled back, or it was cancelled).
  const int64_t task_id = task.id;
  loop_.after_commit([this, task_id, sample, token, request, call, endpoint = endpoint->second] {
    if (!current(task_id, sample, token)) {
      check(loop_.store().forget_pending_llm_call(call.request_key), task_id);
      return;
    }
    in_flight_[call.request_key] = Asked{task_id, sample, token};
    // The callback keeps the request once, not its stored row too: a question waiting for an
    // LLM slot costs its prompt twice (here and in the client), whatever the queue's length.
    llm_->submit(request, [this, answers = answers_, mailbox = mailbox_, task_id, sample, token,
                           request, endpoint, key = call.request_key](LlmResponse response) {
      if (response.ok) {
        // On failure the loop stores it with its turn (on_llm).
        if (Status st =
                answers->record(answered_call(asked_call(task_id, endpoint, request), response));
            !st.ok()) {
          spdlog::warn("task {}: {} answer not stored on arrival: {}", task_id,
                       to_string(request.role), st.to_string());
        }
      }
      mailbox->post([this, task_id, sample, token, request, response, key] {
        // To the task's latest start; a turn replayed after a no-space alarm finds the
        // entry gone and still stores the answer (on_llm), for the next start to find.
        Asked to{task_id, sample, token};
        if (auto asked = in_flight_.find(key); asked != in_flight_.end()) {
          to = asked->second;
          in_flight_.erase(asked);
        }
        guarded(to.task_id,
                [&] { on_llm(to.task_id, to.sample, to.token, request, response, false); });
      });
    });
  });
}

void Conductor::on_llm(int64_t task_id, int64_t sample, int64_t token, const LlmRequest& request,
                       const LlmResponse& response, bool from_cache) {
  Store& store = loop_.store();
  const LlmRole role = request.role;
  if (!from_cache) {
    // Stored before it is used: on arrival, or here if that failed (recording a stored answer
    // again changes nothing); stored even when the task was cancelled meanwhile, so that
    // resuming it does not pay again. A failed request leaves nothing to keep.
    LlmCallRow asked = asked_call(task_id, options_.endpoints.at(role), request);
    Status st = response.ok ? store.record_llm_call(answered_call(asked, response))
                            : store.forget_pending_llm_call(asked.request_key);
    if (!check(st, task_id)) return;
  }
  if (!from_cache) llm_stats_.observe(role, response);
  if (!current(task_id, sample, token)) return;  // cancelled or superseded
  active_[task_id].busy.erase(sample);
  StepRow step;
  step.task_id = task_id;
  step.sample = sample;
  step.role = role_of(role);
  step.input = request.messages.back().content;
  if (!response.ok) {
    step.output = response.error;
    step.verdict = Outcome::llm_error;
    step.counted = false;
    spdlog::warn("task {}: {} call failed: {}", task_id, to_string(role), response.error);
  } else {
    step.output = response.content;
    auto task = store.get_task(task_id);
    if (!check(task.status(), task_id)) return;
    // A usable answer has no verdict; the conductor's decision is read from its output.
    bool ok = false;
    if (role == LlmRole::designer) {
      ok = extract_design(response.content).ok();
    } else if (role == LlmRole::coder) {
      ok = extract_code(response.content, task->spec.impl_type).ok();
    } else {
      ok = parse_conductor(response.content).ok();
      step.counted = false;
    }
    if (!ok) step.verdict = Outcome::garbled;
  }
  if (!check(store.record_step(step).status(), task_id)) return;
  advance(task_id);
}

void Conductor::verify(const TaskRow& task, const std::vector<StepRow>& steps, int64_t sample) {
  Store& store = loop_.store();
  // The job's identity: the seq after the chain's last step (the verdict is recorded as the
  // task's next step, which is this seq when the task has one chain). No other chain's state
  // has this last step, so it names this chain and this point of it.
  const int seq = steps.empty() ? 1 : steps.back().seq + 1;
  active_[task.id].busy[sample] = {next_token_++, /*llm=*/false};
  auto existing = store.job_for_task_seq(task.id, seq);
  if (!check(existing.status(), task.id)) return;
  if (existing->has_value()) {
    const JobRow& job = **existing;
    if (job.state == JobState::done) {
      on_job_result(job, job.result.value_or(proto::JobResult{}));
      return;
    }
    if (job.state != JobState::cancelled) return;  // queued or running: its result will come
  }
  std::string candidate = active_[task.id].workflow == Workflow::verify_only
                              ? task.spec.candidate
                              : latest_code(steps, task.spec.impl_type);
  VerifySpec spec;
  spec.op_name = task.spec.op_name;
  spec.target = Target{task.spec.backend, task.spec.arch, task.spec.impl_type, task.spec.framework};
  spec.task_type = task.spec.task_type;
  if (auto profile = timing_profiles().find(active_[task.id].timing);
      profile != timing_profiles().end()) {
    spec.options = profile->second;
  }
  proto::Assign assign;
  assign.files = verify_files(spec, task.spec.task_desc, candidate);
  assign.timeout_ms = static_cast<uint64_t>(options_.verify_timeout_s) * 1000;
  NewJob job;
  job.task_id = task.id;
  job.task_seq = seq;
  job.kind = JobKind::verify;
  job.backend = task.spec.backend;
  job.arch = task.spec.arch;
  job.exclusive = task.spec.task_type == "profile";  // timings need the device alone
  auto id = loop_.submit(job, assign);
  if (!check(id.status(), task.id)) return;
  spdlog::info("task {} ({}/{}): verify job {} (step {})", task.id, task.spec.op_name,
               task.spec.task_id, *id, seq);
}

void Conductor::on_job_result(const JobRow& job, const proto::JobResult& result) {
  if (!job.task_id || !job.task_seq) return;
  int64_t task_id = *job.task_id;
  auto active = active_.find(task_id);
  if (active == active_.end()) return;
  auto steps = loop_.store().steps_of(task_id);
  if (!check(steps.status(), task_id)) return;
  // The chain the job verifies: the one whose last step it follows (verify()); none when its
  // verdict is recorded already.
  std::optional<int64_t> sample;
  std::vector<StepRow> chain;
  for (int64_t s : active->second.search.chains()) {
    std::vector<StepRow> of;
    for (const StepRow& step : *steps) {
      if (step.sample == s) of.push_back(step);
    }
    if (*job.task_seq == (of.empty() ? 1 : of.back().seq + 1)) {
      sample = s;
      chain = std::move(of);
      break;
    }
  }
  if (!sample) return;
  VerifyResult verdict;
  if (!result.infra_error.empty()) {
    verdict = verify_failure(Verdict::infra_error,
                             "the agent could not run the job: " + result.infra_error);
  } else if (result.verify) {
    verdict = *result.verify;
  } else {
    verdict = verify_failure(Verdict::infra_error, "the job produced no verdict document");
  }
  record_verdict(task_id, *sample, chain, job.id, verdict);
}

void Conductor::record_verdict(int64_t task_id, int64_t sample, const std::vector<StepRow>& chain,
                               int64_t job_id, const VerifyResult& result) {
  active_[task_id].busy.erase(sample);
  StepRow step;
  step.task_id = task_id;
  step.sample = sample;
  step.role = Role::verifier;
  step.input = "job " + std::to_string(job_id);
  step.result = result;
  step.verdict = outcome_of(result.verdict);
  // Infrastructure failures cost the task nothing.
  step.counted = result.verdict != Verdict::infra_error;
  auto step_id = loop_.store().record_step(step);
  if (!check(step_id.status(), task_id)) return;
  if (result.verdict != Verdict::infra_error) {
    auto recorded = loop_.store().candidates_of(task_id);
    if (!check(recorded.status(), task_id)) return;
    CandidateRow c;
    c.task_id = task_id;
    c.sample = sample;
    c.step_id = *step_id;
    if (const StepRow* coder = last_good(chain, Role::coder)) c.code_step_id = coder->id;
    for (const CandidateRow& r : *recorded) {
      if (r.sample != sample) continue;
      c.parent_id = r.id;
      c.generation = r.generation + 1;
    }
    c.verdict = result.verdict;
    if (result.profile) c.speedup = result.profile->speedup;
    if (active_[task_id].search.strategy == "evolve") {  // its island, generation and chosen parent
      auto task = loop_.store().get_task(task_id);
      auto steps = loop_.store().steps_of(task_id);
      if (!check(task.status(), task_id) || !check(steps.status(), task_id)) return;
      auto plan = evolve_plan(*task, *steps);
      if (!plan) return;
      const EvolveChild child = plan->child(sample);
      const CandidateRow* parent = plan->parent(sample);
      c.island = child.island;
      c.generation = child.generation;
      c.parent_id = parent ? std::optional<int64_t>(parent->id) : std::nullopt;
    }
    const bool fast = c.speedup && std::isfinite(*c.speedup) && *c.speedup > 0;
    c.score = result.verdict != Verdict::passed ? 0 : fast ? *c.speedup : 1;
    if (!check(loop_.store().record_candidate(c).status(), task_id)) return;
  }
  advance(task_id);
}

void Conductor::finish(int64_t task_id, const Action& action) {
  const TaskState state = action.passed ? TaskState::passed : TaskState::failed;
  if (!check(loop_.store().set_task_state(task_id, state, action.verdict, action.reason),
             task_id)) {
    return;
  }
  spdlog::info("task {} {}: {}", task_id, action.passed ? "passed" : "failed", action.reason);
  int64_t campaign_id = active_[task_id].campaign_id;
  deactivate(task_id);
  finished(task_id, campaign_id, action.passed);
}

void Conductor::finished(int64_t task_id, int64_t campaign_id, bool passed) {
  store_errors_.erase(task_id);
  auto waiters = std::move(waiters_[task_id]);
  waiters_.erase(task_id);
  for (auto& w : waiters) w(passed);
  schedule_pump();  // a place in the window is free
  // The campaign is finished when none of its tasks is: none driven here, none waiting or
  // left running in the store (asked only when its last driven task ends).
  if (active_by_campaign_.count(campaign_id)) return;
  auto unfinished = loop_.store().campaign_unfinished(campaign_id);
  if (!unfinished.ok() || *unfinished) return;
  check(loop_.store().set_campaign_state(campaign_id, CampaignState::finished), task_id);
  spdlog::info("campaign {} finished", campaign_id);
}

void Conductor::fail(int64_t task_id, const std::string& reason) {
  Action a;
  a.kind = ActionKind::finish;
  a.passed = false;
  a.verdict = Outcome::infra_error;  // the task or the coordinator is at fault
  a.reason = reason;
  finish(task_id, a);
}

std::map<int64_t, int64_t> Conductor::asking(int64_t campaign_id) const {
  std::map<int64_t, int64_t> out;
  for (const auto& [id, active] : active_) {
    if (active.campaign_id != campaign_id) continue;
    int64_t& n = out[id];
    for (const auto& [sample, busy] : active.busy) n += busy.llm ? 1 : 0;
  }
  return out;
}

std::vector<AdaptiveTask> Conductor::adaptive_view(int64_t task_id, int64_t campaign_id) {
  auto steps = loop_.store().running_search_steps(campaign_id);
  if (!check(steps.status(), task_id)) return {};
  std::vector<AdaptiveTask> tasks = adaptive_tasks(*steps);
  std::map<int64_t, int64_t> calls = asking(campaign_id);
  for (AdaptiveTask& t : tasks) {
    auto active = active_.find(t.task_id);
    t.calls += calls[t.task_id];
    t.busy = active != active_.end() && !active->second.busy.empty();
  }
  return tasks;
}

int64_t Conductor::slots(const SearchPolicy& search) const {
  return search.parallel > 0 ? search.parallel
                             : std::max<int64_t>(1, static_cast<int64_t>(loop_.devices()));
}

Gate Conductor::gate(int64_t task_id, bool asks) {
  const Active& active = active_.at(task_id);
  const SearchPolicy& search = active.search;
  const bool adaptive = asks && search.strategy == "adaptive";
  if (!search.budgeted() && !adaptive) return Gate{};
  // What is in flight is known here only: the campaign's LLM calls asked, unanswered.
  int64_t in_flight = 0;
  for (const auto& [id, n] : asking(active.campaign_id)) in_flight += n;
  auto spend = loop_.store().campaign_spend(active.campaign_id);
  if (!check(spend.status(), task_id)) return Gate{Turn::wait, ""};
  if (auto why = spent_budget(search, *spend, in_flight, asks)) return Gate{Turn::stop, *why};
  if (!adaptive) return Gate{};
  std::vector<AdaptiveTask> tasks = adaptive_view(task_id, active.campaign_id);
  if (!failed_.ok()) return Gate{Turn::wait, ""};
  Gate gate = adaptive_turn(search, std::move(tasks), task_id, in_flight, slots(search));
  if (gate.turn == Turn::wait) {
    parked_[active.campaign_id].insert(task_id);
  } else {
    parked_[active.campaign_id].erase(task_id);
  }
  return gate;
}

void Conductor::stop_task(int64_t task_id, const std::vector<StepRow>& steps,
                          const std::string& reason) {
  auto candidates = loop_.store().candidates_of(task_id);
  if (!check(candidates.status(), task_id)) return;
  Action done;
  done.passed = std::any_of(candidates->begin(), candidates->end(),
                            [](const CandidateRow& c) { return c.verdict == Verdict::passed; });
  done.verdict = done.passed ? std::optional<Outcome>(Outcome::passed) : last_verdict(steps);
  done.reason = done.passed ? "passed; then " + reason : reason;
  finish(task_id, done);
}

void Conductor::wake_parked(int64_t campaign_id) {
  auto parked = parked_.find(campaign_id);
  if (parked == parked_.end() || parked->second.empty() || !wake_posted_.insert(campaign_id).second)
    return;
  loop_.post([this, campaign_id] {
    wake_posted_.erase(campaign_id);
    const std::set<int64_t>& waiting = parked_[campaign_id];
    if (waiting.empty()) return;
    // Only the tasks the rule moves now are decided on again (each such decision reads the
    // campaign): the rest keep waiting for the next wake.
    const int64_t any = *waiting.begin();
    std::vector<AdaptiveTask> tasks;
    guarded(any, [&] { tasks = adaptive_view(any, campaign_id); });
    int64_t in_flight = 0;
    for (const auto& [id, n] : asking(campaign_id)) in_flight += n;
    const SearchPolicy& search = active_.at(any).search;
    bool ended = false;  // a task stopped (stagnant, a budget): its place goes to another
    for (int64_t id : adaptive_movers(search, tasks, in_flight, slots(search))) {
      if (!parked_[campaign_id].count(id) || !active_.count(id)) continue;
      guarded(id, [&] { advance(id, /*wake=*/false); });
      ended = ended || !active_.count(id);
    }
    if (ended) wake_parked(campaign_id);
  });
}

void Conductor::LlmStats::observe(LlmRole role, const LlmResponse& response) {
  requests[{role, response.ok}]++;
  retries += response.attempts > 1 ? response.attempts - 1 : 0;
  prompt_tokens += response.prompt_tokens;
  completion_tokens += response.completion_tokens;
  cost_usd += response.cost_usd;
  latency.observe(static_cast<double>(response.latency_ms) / 1000.0);
}

void Conductor::render_metrics(std::string& out) const {
  const LlmStats& s = llm_stats_;
  metric_family(out, "kforge_llm_requests_total", "counter",
                "LLM requests answered since start-up, by role and outcome (stored answers reused "
                "on resume are not counted)");
  for (const auto& [key, n] : s.requests) {
    metric_sample(
        out, "kforge_llm_requests_total",
        {{"role", std::string(to_string(key.first))}, {"outcome", key.second ? "ok" : "error"}},
        static_cast<double>(n));
  }
  metric_family(out, "kforge_llm_retries_total", "counter",
                "extra HTTP attempts after 429, 5xx, timeouts");
  metric_sample(out, "kforge_llm_retries_total", {}, static_cast<double>(s.retries));
  metric_family(out, "kforge_llm_tokens_total", "counter", "tokens of LLM answers since start-up");
  metric_sample(out, "kforge_llm_tokens_total", {{"kind", "prompt"}},
                static_cast<double>(s.prompt_tokens));
  metric_sample(out, "kforge_llm_tokens_total", {{"kind", "completion"}},
                static_cast<double>(s.completion_tokens));
  metric_family(out, "kforge_llm_cost_usd_total", "counter",
                "cost of LLM answers since start-up, from the configured prices");
  metric_sample(out, "kforge_llm_cost_usd_total", {}, s.cost_usd);
  s.latency.render(out, "kforge_llm_latency_seconds",
                   "LLM request latency, retries and backoff included");
  metric_family(out, "kforge_conductor_active_tasks", "gauge",
                "tasks the Conductor is driving now");
  metric_sample(out, "kforge_conductor_active_tasks", {}, static_cast<double>(active_.size()));
  metric_family(out, "kforge_llm_calls_interrupted", "gauge",
                "LLM calls in flight when the previous coordinator process ended (pending at "
                "start-up): asked, "
                "maybe paid, never answered");
  metric_sample(out, "kforge_llm_calls_interrupted", {},
                static_cast<double>(interrupted_calls_.value_or(0)));
  metric_family(
      out, "kforge_conductor_store_errors_total", "counter",
      "store errors that rolled back a task's event since start-up (the task is started again, or "
      "failed after " +
          std::to_string(kMaxStoreErrors) + ")");
  metric_sample(out, "kforge_conductor_store_errors_total", {},
                static_cast<double>(store_errors_total_));
}

}  // namespace kforge
