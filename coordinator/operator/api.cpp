#include "coordinator/operator/api.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <unordered_map>

#include "common/build_info.h"
#include "common/fs.h"
#include "common/metrics.h"
#include "common/protocol.h"
#include "common/text.h"
#include "common/verify_job.h"
#include "coordinator/generation/prompts.h"
#include "coordinator/generation/search.h"
#include "coordinator/generation/task.h"
#include "coordinator/intake/campaign.h"
#include "coordinator/operator/outcome.h"
#include "coordinator/operator/report.h"
#include "coordinator/operator/watch.h"

namespace kforge {
namespace {

using json = nlohmann::json;

constexpr const char* kCancelledReason = "cancelled by operator";  // a cancelled task's reason

json nullable_ms(int64_t ms) {
  return ms > 0 ? json(ms) : json(nullptr);
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

int http_status(Code code) {
  switch (code) {
    case Code::invalid_argument: return 400;
    case Code::not_found: return 404;
    case Code::failed_precondition:
    case Code::already_exists: return 409;
    case Code::unavailable:
    case Code::no_space: return 503;
    default: return 500;
  }
}

ApiReply error_reply(const Status& st) {
  return ApiReply{http_status(st.code()), "application/json", dump({{"error", st.message()}})};
}
ApiReply json_reply(const json& j, int status = 200) {
  return ApiReply{status, "application/json", dump(j)};
}

// --- Objects (schema/api.md) ---------------------------------------------------------------

json usage_json(const LlmUsage& u) {
  return {{"calls", u.calls},
          {"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"cost_usd", u.cost_usd}};
}

Result<json> campaign_json(Store& store, const CampaignRow& c) {
  auto counts = store.task_counts(c.id);
  if (!counts.ok()) return counts.status();
  auto usage = store.llm_usage_of_campaign(c.id);
  if (!usage.ok()) return usage.status();
  json tasks = {{"total", 0}};
  int64_t total = 0;
  for (const auto& [state, n] : *counts) {
    tasks[std::string(to_string(state))] = n;
    total += n;
  }
  tasks["total"] = total;
  // The whole policy, defaults spelled out (the store keeps only what differs from them).
  json search = nullptr;
  if (auto p = parse_search_text(c.search); p.ok()) {
    search = search_json(*p, /*defaults=*/true);
  }
  return json{{"id", c.id},
              {"name", c.name},
              {"state", c.state},
              {"workflow", c.workflow},
              {"timing", c.timing},
              {"search", search},
              {"content_hash", c.content_hash},
              {"created_ms", c.created_ms},
              {"updated_ms", c.updated_ms},
              {"tasks", tasks},
              {"llm", usage_json(*usage)}};
}

json task_json(const TaskOutcome& o) {
  const TaskRow& t = o.task;
  json j = {{"task", t.id},
            {"campaign", t.campaign_id},
            {"op_name", t.spec.op_name},
            {"task_id", t.spec.task_id},
            {"backend", t.spec.backend},
            {"arch", t.spec.arch},
            {"impl_type", t.spec.impl_type},
            {"framework", t.spec.framework},
            {"task_type", t.spec.task_type},
            {"state", to_string(t.state)},
            {"verdict", to_string(o.verdict)},
            {"reason", t.reason},
            {"steps", t.steps_used},
            {"limit_steps", t.spec.limit_steps},
            {"speedup", o.speedup > 0 ? json(o.speedup) : json(nullptr)},
            {"best_step", o.best_step > 0 ? json(o.best_step) : json(nullptr)},
            {"llm_calls", o.usage.calls},
            {"prompt_tokens", o.usage.prompt_tokens},
            {"completion_tokens", o.usage.completion_tokens},
            {"cost_usd", o.usage.cost_usd},
            {"created_ms", t.created_ms},
            {"updated_ms", t.updated_ms}};
  // A task with a search policy of its own (its op's search table): the whole policy, as a
  // campaign shows its own. Absent: the campaign's.
  if (auto p = parse_search_text(t.spec.search); !t.spec.search.empty() && p.ok()) {
    j["search"] = search_json(*p, /*defaults=*/true);
  }
  return j;
}

Result<json> task_json(Store& store, const TaskRow& t) {
  auto o = task_outcome(store, t);
  if (!o.ok()) return o.status();
  return task_json(*o);
}

// How a done job ended, in a word or two ("" until it is done).
std::string job_outcome(const JobRow& job) {
  if (job.state != JobState::done || !job.result) return "";
  const proto::JobResult* r = &*job.result;
  if (!r->infra_error.empty()) return "infra_error: " + r->infra_error;
  if (r->timed_out) return "timed out";
  if (r->cancelled) return "cancelled";
  if (r->signal) return "signal " + std::to_string(r->signal);
  return "exit " + std::to_string(r->exit_code);
}

json job_json(const JobRow& j) {
  return {{"id", j.id},
          {"task", j.task_id ? json(*j.task_id) : json(nullptr)},
          {"kind", j.kind},
          {"state", j.state},
          {"epoch", j.epoch},
          {"attempts", j.attempts},
          {"agent", j.agent_id.empty() ? json(nullptr) : json(j.agent_id)},
          {"device", j.device_index >= 0 ? json(j.backend + ":" + std::to_string(j.device_index))
                                         : json(nullptr)},
          {"backend", j.backend},
          {"arch", j.arch},
          {"created_ms", j.created_ms},
          {"assigned_ms", nullable_ms(j.assigned_ms)},
          {"finished_ms", nullable_ms(j.finished_ms)},
          {"outcome", job_outcome(j)}};
}

Result<json> agent_json(Store& store, const AgentRow& a) {
  auto devices = store.devices_of(a.id);
  if (!devices.ok()) return devices.status();
  auto running = store.jobs_of_agent(a.id, JobState::assigned);
  if (!running.ok()) return running.status();
  std::map<std::string, int> per_device;
  for (const JobRow& j : *running) per_device[j.backend + ":" + std::to_string(j.device_index)]++;
  json devs = json::array();
  for (const DeviceRow& d : *devices) {
    std::string key = d.backend + ":" + std::to_string(d.index);
    devs.push_back({{"index", d.index},
                    {"backend", d.backend},
                    {"arch", d.arch},
                    {"name", d.name},
                    {"memory_mb", d.memory_mb},
                    {"running_jobs", per_device.count(key) ? per_device[key] : 0}});
  }
  json caps = json::parse(a.capabilities, nullptr, false);
  return json{{"id", a.id},
              {"host", a.host},
              {"state", a.state},
              {"drained", a.drained},
              {"drain_reason", a.drain_reason},
              {"drained_ms", nullable_ms(a.drained_ms)},
              {"incarnation", a.incarnation},
              {"registered_ms", a.registered_ms},
              {"last_seen_ms", a.last_seen_ms},
              {"capabilities", caps.is_object() ? caps : json::object()},
              {"running_jobs", running->size()},
              {"devices", devs}};
}

// --- Request parsing -----------------------------------------------------------------------

Result<int64_t> parse_id(const std::string& text, const std::string& what, int64_t min = 1) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || v < min) {
    return invalid_argument(what + ": expected " + (min > 0 ? "a positive" : "a non-negative") +
                            " integer, got '" + text + "'");
  }
  return v;
}

// An integer query parameter (absent: none; present but empty: an error); ids and limits are
// positive, offsets may be 0.
Result<std::optional<int64_t>> query_id(const ApiRequest& r, const std::string& key,
                                        int64_t min = 1) {
  auto it = r.query.find(key);
  if (it == r.query.end()) return std::optional<int64_t>();
  auto v = parse_id(it->second, "query parameter '" + key + "'", min);
  if (!v.ok()) return v.status();
  return std::optional<int64_t>(*v);
}

std::string query_text(const ApiRequest& r, const std::string& key) {
  auto it = r.query.find(key);
  return it == r.query.end() ? "" : it->second;
}

// A query parameter that names one of E's words (none when absent); invalid_argument naming
// the parameter and every word when it names none of them.
template <class E>
Result<std::optional<E>> query_enum(const ApiRequest& r, const std::string& key) {
  const std::string text = query_text(r, key);
  if (text.empty()) return std::optional<E>();
  if (std::optional<E> e = parse_enum<E>(text)) return e;
  return invalid_argument("query parameter '" + key + "': '" + text + "' is not one of " +
                          names_of<E>());
}

// Query parameters an endpoint does not know are refused: a typo ("stat=failed") must not
// answer every task as if no filter had been asked for. Text filters may not be empty.
Status check_query(const ApiRequest& r, std::initializer_list<const char*> known,
                   std::initializer_list<const char*> text = {}) {
  for (const auto& entry : r.query) {
    const std::string& key = entry.first;  // clang 14 cannot capture a structured binding
    const std::string& value = entry.second;
    if (std::find_if(known.begin(), known.end(), [&](const char* k) { return key == k; }) ==
        known.end()) {
      std::string list;
      for (const char* k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      return invalid_argument(
          "query parameter '" + key + "': not known here" +
          (list.empty() ? std::string(" (this endpoint takes none)") : " (known: " + list + ")"));
    }
    bool is_text = std::find_if(text.begin(), text.end(),
                                [&](const char* k) { return key == k; }) != text.end();
    if (is_text && value.empty())
      return invalid_argument("query parameter '" + key + "': empty (leave it out for all)");
  }
  return Status();
}

Result<json> parse_body(const ApiRequest& r) {
  // Checked before parsing, so that a body of a million '[' costs a scan, not a recursion.
  if (Status st = check_json_depth(r.body); !st.ok())
    return invalid_argument("request body: " + st.message());
  json body = json::parse(r.body, nullptr, false);
  if (body.is_discarded() || !body.is_object())
    return invalid_argument("request body: expected a JSON object");
  return body;
}

// Up to 64 characters of a JSON value, for an error message.
std::string shown_json(const json& value) {
  std::string text = value.dump(-1, ' ', true, json::error_handler_t::replace);
  return text.size() > 64 ? text.substr(0, 64) + "..." : text;
}

// A string field of `obj` (`where` names it in errors); `fallback` when absent. null is not
// a string: it is refused, not taken for absent.
Result<std::string> string_field(const json& obj, const std::string& where, const char* key,
                                 std::optional<std::string> fallback = std::nullopt) {
  auto it = obj.find(key);
  if (it == obj.end()) {
    if (fallback) return *fallback;
    return invalid_argument(where + key + ": missing (expected a string)");
  }
  if (!it->is_string())
    return invalid_argument(where + key + ": expected a string, got " + shown_json(*it));
  return it->get<std::string>();
}

// A request body's "workflow" (default when absent).
Result<Workflow> workflow_field(const json& body) {
  auto name = string_field(body, "", "workflow", std::string(to_string(Workflow::default_)));
  if (!name.ok()) return name.status();
  return parse_workflow(*name);
}

// A TaskSpec of a request body, checked by validate_task_spec for `workflow` (errors are
// prefixed with `where`, e.g. "tasks[3].").
Result<TaskSpec> spec_from_json(const json& obj, const std::string& where, Workflow workflow) {
  if (!obj.is_object())
    return invalid_argument(where.substr(0, where.size() - 1) + ": expected an object");
  TaskSpec spec;
  struct Field {
    const char* key;
    std::string* out;
    std::optional<std::string> fallback;
  };
  for (const Field& f :
       {Field{"op_name", &spec.op_name, std::nullopt},
        Field{"task_id", &spec.task_id, std::string("default")},
        Field{"task_desc", &spec.task_desc, std::nullopt},
        Field{"backend", &spec.backend, std::nullopt}, Field{"arch", &spec.arch, std::nullopt},
        Field{"impl_type", &spec.impl_type, std::nullopt},
        Field{"framework", &spec.framework, std::nullopt},
        Field{"task_type", &spec.task_type, std::string("precision_only")},
        Field{"candidate", &spec.candidate, std::string()}}) {
    auto v = string_field(obj, where, f.key, f.fallback);
    if (!v.ok()) return v.status();
    *f.out = *v;
  }
  if (auto it = obj.find("limit_steps"); it != obj.end()) {
    // Checked as the 64-bit value it is, before it is narrowed to an int.
    bool in_range = it->is_number_unsigned()
                        ? it->get<uint64_t>() <= static_cast<uint64_t>(kMaxLimitSteps)
                        : it->is_number_integer() && it->get<int64_t>() <= kMaxLimitSteps;
    if (!it->is_number_integer() || !in_range || it->get<int64_t>() < 1) {
      return invalid_argument(where + "limit_steps: expected an integer between 1 and " +
                              std::to_string(kMaxLimitSteps) + ", got " + shown_json(*it));
    }
    spec.limit_steps = static_cast<int>(it->get<int64_t>());
  }
  if (Status st = validate_task_spec(spec, workflow); !st.ok())
    return invalid_argument(where + st.message());
  return spec;
}

// --- Handlers ------------------------------------------------------------------------------

Result<json> list_campaigns(Store& store) {
  auto rows = store.campaigns();
  if (!rows.ok()) return rows.status();
  json out = json::array();
  for (const CampaignRow& c : *rows) {
    auto j = campaign_json(store, c);
    if (!j.ok()) return j.status();
    out.push_back(std::move(*j));
  }
  return out;
}

Result<CampaignRow> find_campaign(Store& store, int64_t id) {
  auto c = store.get_campaign(id);
  if (!c.ok() && c.status().code() == Code::not_found) {
    return not_found("no campaign " + std::to_string(id) + "; `kforge status` lists the campaigns");
  }
  return c;
}

Result<json> get_campaign(Store& store, int64_t id) {
  auto c = find_campaign(store, id);
  if (!c.ok()) return c.status();
  return campaign_json(store, *c);
}

// Runs store_campaign's transactions as coordinator turns (ApiBackend::write).
CampaignWriter campaign_writer(ApiBackend& backend) {
  return [&backend](const std::function<Status(Store&)>& fn) {
    return backend
        .write([&](Store& store) -> Result<json> {
          KF_RETURN_IF_ERROR(fn(store));
          return json::object();
        })
        .status();
  };
}

// The campaign file itself, with the files it names (schema/api.md): expanded here, batch by
// batch, so that neither side holds the expansion.
Result<json> submit_campaign_file(ApiBackend& backend, const json& body) {
  auto text = string_field(body, "", "campaign");
  if (!text.ok()) return text.status();
  auto file_name = string_field(body, "", "file_name", std::string("campaign.toml"));
  if (!file_name.ok()) return file_name.status();
  const json* files = nullptr;
  if (auto f = body.find("files"); f != body.end()) {
    if (!f->is_object()) {
      return invalid_argument(
          "files: expected an object of file texts by the path the campaign file names them by");
    }
    for (const auto& [path, file] : f->items()) {
      if (!file.is_string())
        return invalid_argument("files[\"" + path + "\"]: expected the file's text (a string)");
    }
    files = &*f;
  }
  CampaignFileReader read = [files](const std::string& written) -> Result<std::string> {
    if (files != nullptr) {
      if (auto f = files->find(written); f != files->end()) return f->get<std::string>();
    }
    return not_found(
        "was not sent with the campaign (\"files\" holds each file by the path the campaign "
        "file names it by)");
  };
  auto plan = plan_campaign(*text, read, *file_name);
  if (!plan.ok()) return plan.status();
  auto stored = store_campaign(campaign_writer(backend), *plan, *text);
  if (!stored.ok()) return stored.status();
  auto reader = backend.reader();
  if (!reader.ok()) return reader.status();
  auto row = (*reader)->get_campaign(stored->first);
  if (!row.ok()) return row.status();
  return json{{"id", stored->first},
              {"created", stored->second},
              {"tasks", plan->size()},
              {"state", row->state}};
}

Result<json> submit_campaign(ApiBackend& backend, const json& body) {
  if (body.contains("campaign")) return submit_campaign_file(backend, body);
  Campaign campaign;
  auto name = string_field(body, "", "name");
  if (!name.ok()) return name.status();
  if (name->empty()) return invalid_argument("name: expected a non-empty string, got \"\"");
  campaign.name = *name;
  auto workflow = workflow_field(body);
  if (!workflow.ok()) return workflow.status();
  campaign.workflow = *workflow;
  auto timing = string_field(body, "", "timing", std::string("kforge"));
  if (!timing.ok()) return timing.status();
  if (!timing_profiles().contains(*timing)) {
    return invalid_argument("timing: expected kforge or kernelbench, got \"" + *timing + "\"");
  }
  campaign.timing = *timing;
  // The policy as a Campaign shows it (absent: fix_loop), under the rules of a [search] table.
  if (auto it = body.find("search"); it != body.end()) {
    if (!it->is_object()) {
      return invalid_argument(
          "search: expected an object such as {\"strategy\": \"best_of_n\", \"samples\": 4}, got " +
          shown_json(*it));
    }
    auto policy = parse_search_text(it->dump());
    if (!policy.ok()) return policy.status();
    KF_RETURN_IF_ERROR(validate_search(*policy, campaign.workflow));
    campaign.search = *policy;
  }
  auto source = string_field(body, "", "source", std::string());
  if (!source.ok()) return source.status();
  auto tasks = body.find("tasks");
  if (tasks == body.end() || !tasks->is_array() || tasks->empty()) {
    return invalid_argument("tasks: expected a non-empty array of task specs");
  }
  if (tasks->size() > kMaxCampaignTasks) {
    return invalid_argument("tasks: " + std::to_string(tasks->size()) +
                            " tasks; a campaign holds at most " +
                            std::to_string(kMaxCampaignTasks));
  }
  // A campaign holds each (op_name, task_id, backend, arch, impl_type) once (the store's key):
  // a repeat refuses the whole campaign, before anything is stored.
  std::map<std::string, size_t> seen;
  for (size_t i = 0; i < tasks->size(); ++i) {
    auto spec = spec_from_json((*tasks)[i], "tasks[" + std::to_string(i) + "].", campaign.workflow);
    if (!spec.ok()) return spec.status();
    std::string key =
        json::array({spec->op_name, spec->task_id, spec->backend, spec->arch, spec->impl_type})
            .dump();
    if (auto [at, fresh] = seen.emplace(key, i); !fresh) {
      return invalid_argument(
          "tasks[" + std::to_string(i) + "]: repeats tasks[" + std::to_string(at->second) +
          "] (the same op_name, task_id, backend, arch and impl_type); nothing was stored");
    }
    CampaignTask t;
    t.candidate = spec->candidate;
    spec->candidate.clear();
    t.spec = std::move(*spec);
    campaign.tasks.push_back(std::move(t));
  }
  campaign.content_hash = hash_campaign(campaign);  // the server's own, whatever a client sent
  // In batches, one coordinator turn each (store_campaign).
  auto stored = store_campaign(campaign_writer(backend), campaign, *source);
  if (!stored.ok()) return stored.status();
  auto reader = backend.reader();
  if (!reader.ok()) return reader.status();
  auto ids = (*reader)->task_ids_of_campaign(stored->first);
  if (!ids.ok()) return ids.status();
  return json{{"id", stored->first},
              {"created", stored->second},
              {"tasks", campaign.tasks.size()},
              {"task_ids", *ids}};
}

// The answer to resuming a campaign (or one of its tasks) cancelled while it was submitting.
Status refused_resume(const CampaignRow& c) {
  return failed_precondition(
      "campaign " + std::to_string(c.id) + " (" + c.name +
      ") was cancelled while its tasks were being stored; only part of it was stored, "
      "and a cancelled submission stays cancelled: it does not run in part");
}

// Cancels (or resumes) every task of a campaign that can be, in one UPDATE: no task row is
// read (a million of them, with their texts, took seconds; issue 21). Actions answer
// nothing: the router reads the committed state back, after the Conductor has acted on the
// change.
Result<json> campaign_action(ApiBackend& backend, int64_t id, bool cancel) {
  return backend.write([&](Store& store) -> Result<json> {
    auto c = store.get_campaign(id);
    if (!c.ok()) return get_campaign(store, id).status();
    CampaignState state = c->state;
    if (cancel) {
      // A campaign cancelled while it is being stored stops there (store_campaign) and stays
      // cancelled: its stored part must not run as if it were the campaign.
      const std::string reason(c->state == CampaignState::submitting ? kCancelledWhileSubmitting
                                                                     : kCancelledReason);
      auto cancelled = store.cancel_campaign_tasks(id, reason);
      if (!cancelled.ok()) return cancelled.status();
      // A campaign that had finished stays finished: there was nothing to cancel.
      if (*cancelled > 0) state = CampaignState::cancelled;
    } else {
      auto refused = store.any_cancelled_with(id, std::string(kCancelledWhileSubmitting));
      if (!refused.ok()) return refused.status();
      if (*refused) return refused_resume(*c);
      auto resumed = store.resume_campaign_tasks(id);
      if (!resumed.ok()) return resumed.status();
      auto counts = store.task_counts(id);
      if (!counts.ok()) return counts.status();
      if (counts->at(TaskState::pending) > 0 || counts->at(TaskState::running) > 0) {
        state = CampaignState::running;
      }
    }
    KF_RETURN_IF_ERROR(store.set_campaign_state(id, state));
    return json::object();
  });
}

Result<TaskRow> find_task(Store& store, int64_t id) {
  auto t = store.get_task(id);
  if (!t.ok() && t.status().code() == Code::not_found) {
    return not_found("no task " + std::to_string(id) + "; `kforge tasks` lists them");
  }
  return t;
}

Result<json> task_detail(Store& store, int64_t id) {
  auto t = find_task(store, id);
  if (!t.ok()) return t.status();
  auto steps = store.steps_of(id);  // read once: for the outcome and for the trace
  if (!steps.ok()) return steps.status();
  auto o = task_outcome(store, *t, *steps);
  if (!o.ok()) return o.status();
  json j = task_json(*o);
  auto jobs = store.jobs_of_task(id);
  if (!jobs.ok()) return jobs.status();
  j["task_desc"] = t->spec.task_desc;
  // The code that passed, as the Verifier ran it (one extractor: the Conductor's).
  json code = nullptr;
  if (o->best_step > 0) {
    for (const StepRow& step : *steps) {
      if (step.seq != o->best_step) continue;
      auto extracted = extract_code(step.output, t->spec.impl_type);
      if (extracted.ok()) code = *extracted;
    }
  }
  j["code"] = std::move(code);
  json s = json::array();
  for (const StepRow& step : *steps) {
    s.push_back({{"seq", step.seq},
                 {"id", step.id},
                 {"sample", step.sample},
                 {"role", to_string(step.role)},
                 {"input", step.input},
                 {"output", step.output},
                 {"verdict", to_string(step.verdict)},
                 {"counted", step.counted},
                 {"created_ms", step.created_ms}});
  }
  j["trace"] = std::move(s);
  json js = json::array();
  for (const JobRow& job : *jobs) js.push_back(job_json(job));
  j["jobs"] = std::move(js);
  return j;
}

Result<json> task_action(ApiBackend& backend, int64_t id, bool cancel) {
  return backend.write([&](Store& store) -> Result<json> {
    auto t = find_task(store, id);
    if (!t.ok()) return t.status();
    const TaskState state = t->state;
    if (state == TaskState::passed || state == TaskState::failed) {
      return failed_precondition("task " + std::to_string(id) + " has finished (" +
                                 std::string(to_string(state)) + "); nothing to " +
                                 (cancel ? "cancel" : "resume"));
    }
    if (cancel && !finished(state)) {
      KF_RETURN_IF_ERROR(
          store.set_task_state(id, TaskState::cancelled, Outcome::cancelled, kCancelledReason));
    } else if (!cancel && state == TaskState::cancelled) {
      if (t->reason == kCancelledWhileSubmitting) {
        auto c = store.get_campaign(t->campaign_id);
        if (!c.ok()) return c.status();
        return refused_resume(*c);
      }
      KF_RETURN_IF_ERROR(store.set_task_state(id, TaskState::pending));
      auto c = store.get_campaign(t->campaign_id);
      if (c.ok() && c->state != CampaignState::running) {
        KF_RETURN_IF_ERROR(store.set_campaign_state(t->campaign_id, CampaignState::running));
      }
    }
    return json::object();
  });
}

// Tasks by id, a page at a time. `after` (keyset: ids above the cursor the previous page's
// X-Next-After named) costs what the page returns at any depth: the filters run in SQL
// through an index and only the page's rows are read. `offset` still works, walking the tasks
// it skips. `verdict` is a task's outcome (read per task), so a page of a rare verdict reads
// more rows than it returns. `next_after` is set when the page is full (there may be more).
Result<json> list_tasks(Store& store, const ApiRequest& r, std::optional<int64_t>* next_after) {
  KF_RETURN_IF_ERROR(check_query(r,
                                 {"campaign", "state", "op", "verdict", "limit", "offset", "after"},
                                 {"state", "op", "verdict"}));
  auto campaign = query_id(r, "campaign");
  if (!campaign.ok()) return campaign.status();
  auto limit = query_id(r, "limit");
  if (!limit.ok()) return limit.status();
  auto offset = query_id(r, "offset", 0);  // matching tasks to skip first (paging with limit)
  if (!offset.ok()) return offset.status();
  auto after = query_id(r, "after", 0);  // keyset paging: tasks with ids above this
  if (!after.ok()) return after.status();
  auto state = query_enum<TaskState>(r, "state");
  if (!state.ok()) return state.status();
  auto verdict = query_enum<Outcome>(r, "verdict");
  if (!verdict.ok()) return verdict.status();
  const std::optional<Outcome> wanted_verdict = *verdict;
  if (*campaign) {
    if (auto c = get_campaign(store, **campaign); !c.ok()) return c.status();
  }
  TaskQuery query;
  query.campaign_id = *campaign;
  query.state = *state;
  query.op_name = query_text(r, "op");
  query.after_id = after->value_or(0);
  int64_t skip = offset->value_or(0);
  const int64_t wanted = limit->value_or(-1);
  if (!wanted_verdict) {  // every row read is answered: offset and limit go to SQL
    query.offset = skip;
    query.limit = wanted;
    skip = 0;
  } else {
    query.limit = 1000;  // rows read per query while the verdict filter picks
  }
  json out = json::array();
  for (;;) {
    auto ids = store.task_ids(query);
    if (!ids.ok()) return ids.status();
    for (int64_t id : *ids) {
      auto t = store.get_task(id);
      if (!t.ok()) return t.status();
      auto o = task_outcome(store, *t);
      if (!o.ok()) return o.status();
      if (wanted_verdict && o->verdict != wanted_verdict) continue;
      if (skip > 0) {
        --skip;
        continue;
      }
      out.push_back(task_json(*o));
      if (wanted > 0 && static_cast<int64_t>(out.size()) >= wanted) {
        *next_after = id;
        return out;
      }
    }
    if (!wanted_verdict || static_cast<int64_t>(ids->size()) < query.limit) return out;
    query.after_id = ids->back();
  }
}

Result<json> submit_task(ApiBackend& backend, const json& body) {
  auto workflow = workflow_field(body);
  if (!workflow.ok()) return workflow.status();
  auto spec = spec_from_json(body, "", *workflow);
  if (!spec.ok()) return spec.status();
  return backend.write([&](Store& store) -> Result<json> {
    auto stored = store_task(store, *spec, *workflow);
    if (!stored.ok()) return stored.status();
    auto t = store.get_task(stored->first);
    if (!t.ok()) return t.status();
    return json{{"task", t->id}, {"campaign", t->campaign_id}, {"created", stored->second}};
  });
}

// The one agent whose id is `prefix` or starts with it.
Result<AgentRow> find_agent(Store& store, const std::string& prefix) {
  auto agents = store.agents();
  if (!agents.ok()) return agents.status();
  std::vector<const AgentRow*> matches;
  for (const AgentRow& a : *agents) {
    if (a.id == prefix) return a;
    if (a.id.rfind(prefix, 0) == 0) matches.push_back(&a);
  }
  if (matches.size() != 1) {
    return Status(matches.empty() ? Code::not_found : Code::invalid_argument,
                  std::string(matches.empty() ? "no" : "more than one") + " agent matches '" +
                      prefix + "'; `kforge agents` lists them");
  }
  return *matches[0];
}

Result<json> list_agents(Store& store) {
  auto agents = store.agents();
  if (!agents.ok()) return agents.status();
  json out = json::array();
  for (const AgentRow& a : *agents) {
    auto j = agent_json(store, a);
    if (!j.ok()) return j.status();
    out.push_back(std::move(*j));
  }
  return out;
}

// The operator's reason of a drain request: the body's optional "reason", one line of at most
// kMaxDrainReason bytes (it is shown in listings and terminals).
constexpr size_t kMaxDrainReason = 256;
Result<std::string> drain_reason(const ApiRequest& r) {
  if (r.body.empty()) return std::string();
  auto body = parse_body(r);
  if (!body.ok()) return body.status();
  auto reason = string_field(*body, "", "reason", std::string());
  if (!reason.ok()) return reason.status();
  if (reason->size() > kMaxDrainReason) {
    return invalid_argument("reason: expected at most " + std::to_string(kMaxDrainReason) +
                            " bytes, got " + std::to_string(reason->size()));
  }
  for (unsigned char c : *reason) {
    if (c < 0x20 || c == 0x7f)
      return invalid_argument("reason: expected one line of text, without control characters");
  }
  return reason;
}

// Drains (or undrains) the agents `select` picks from the store's agents, as one write, and
// answers their ids; `select` returns not_found when it picks none.
Result<json> drain_agents(ApiBackend& backend, bool drained, const std::string& reason,
                          const std::function<Result<std::vector<AgentRow>>(Store&)>& select) {
  return backend.write([&](Store& store) -> Result<json> {
    auto picked = select(store);
    if (!picked.ok()) return picked.status();
    json ids = json::array();
    for (const AgentRow& a : *picked) {
      KF_RETURN_IF_ERROR(store.set_agent_drained(a.id, drained, reason));
      ids.push_back(a.id);
    }
    return ids;
  });
}

// Every agent registered from `host` (live, lost or gone: a drain outlives re-registration).
Result<std::vector<AgentRow>> agents_of_host(Store& store, const std::string& host) {
  auto agents = store.agents();
  if (!agents.ok()) return agents.status();
  std::vector<AgentRow> out;
  for (const AgentRow& a : *agents) {
    if (a.host == host) out.push_back(a);
  }
  if (out.empty()) return not_found("no agent on host '" + host + "'; `kforge agents` lists them");
  return out;
}

Result<json> list_jobs(Store& store, const ApiRequest& r, std::optional<int64_t>* next_after) {
  KF_RETURN_IF_ERROR(check_query(r, {"state", "task", "limit", "offset", "after"}, {"state"}));
  JobFilter filter;
  auto task = query_id(r, "task");
  if (!task.ok()) return task.status();
  filter.task_id = *task;
  auto limit = query_id(r, "limit");
  if (!limit.ok()) return limit.status();
  filter.limit = *limit;
  auto offset = query_id(r, "offset", 0);  // matching jobs to skip first (paging with limit)
  if (!offset.ok()) return offset.status();
  filter.offset = offset->value_or(0);
  auto after = query_id(r, "after", 0);  // keyset paging: jobs with ids above this
  if (!after.ok()) return after.status();
  filter.after_id = after->value_or(0);
  auto state = query_enum<JobState>(r, "state");
  if (!state.ok()) return state.status();
  filter.state = *state;
  json out = json::array();  // filtered and paged in SQL; no spec is read, no result kept
  int64_t last = 0;
  KF_RETURN_IF_ERROR(store.list_jobs(filter, [&](const JobRow& j) {
    out.push_back(job_json(j));
    last = j.id;
  }));
  if (filter.limit && static_cast<int64_t>(out.size()) == *filter.limit) *next_after = last;
  return out;
}

// The cluster in one answer, as Slurm's sinfo and `ray status` show it: hosts, their devices
// by state, the queue, running jobs and the tasks finished in the last hour (schema/api.md
// Cluster). A device is idle, busy, draining (drained, still running a job), drained, or down
// (its agent is lost); a gone agent offers none.
Result<json> cluster_summary(Store& store, const ApiRequest& r) {
  KF_RETURN_IF_ERROR(check_query(r, {}));
  static const char* const kDeviceStates[] = {"idle", "busy", "draining", "drained", "down"};
  auto device_counts = [] {
    json j = json::object();
    for (const char* st : kDeviceStates) j[st] = 0;
    return j;
  };
  auto agents = store.agents();
  if (!agents.ok()) return agents.status();
  json devices = device_counts(),
       agent_states = {{"live", 0}, {"lost", 0}, {"gone", 0}, {"drained", 0}};
  std::map<std::string, json> hosts;              // by name
  std::map<std::string, AgentState> host_states;  // by name
  for (const AgentRow& a : *agents) {
    auto aj = agent_json(store, a);
    if (!aj.ok()) return aj.status();
    const std::string state(to_string(a.state));
    agent_states[state] = agent_states.value(state, 0) + 1;
    if (a.drained && a.state == AgentState::live)
      agent_states["drained"] = agent_states["drained"].get<int64_t>() + 1;
    json& h = hosts[a.host];
    if (h.is_null()) {
      h = {{"host", a.host},     {"agents", json::array()}, {"drained", false},
           {"drain_reason", ""}, {"running_jobs", 0},       {"devices", device_counts()}};
      host_states[a.host] = AgentState::gone;
    }
    h["agents"].push_back(a.id);
    // A host is as alive as its most alive agent, and drained when its live agents all are.
    AgentState& hs = host_states[a.host];
    if (a.state == AgentState::live && hs != AgentState::live) {
      hs = AgentState::live;
      h["drained"] = a.drained;
    } else if (a.state == AgentState::live) {
      h["drained"] = h["drained"].get<bool>() && a.drained;
    } else if (a.state == AgentState::lost && hs == AgentState::gone) {
      hs = AgentState::lost;
    }
    h["state"] = to_string(hs);
    if (a.drained && h["drain_reason"].get_ref<const std::string&>().empty())
      h["drain_reason"] = a.drain_reason;
    if (a.state == AgentState::gone) continue;
    h["running_jobs"] = h["running_jobs"].get<int64_t>() + (*aj)["running_jobs"].get<int64_t>();
    for (const json& d : (*aj)["devices"]) {
      bool busy = d.value("running_jobs", 0) > 0;
      const char* st = a.state != AgentState::live ? "down"
                       : a.drained                 ? (busy ? "draining" : "drained")
                       : busy                      ? "busy"
                                                   : "idle";
      h["devices"][st] = h["devices"][st].get<int64_t>() + 1;
      devices[st] = devices[st].get<int64_t>() + 1;
    }
  }
  json host_list = json::array();
  for (auto& entry : hosts) host_list.push_back(std::move(entry.second));
  int64_t total_devices = 0;
  for (const char* st : kDeviceStates) total_devices += devices[st].get<int64_t>();
  devices["total"] = total_devices;

  auto counts = store.task_counts(0);
  if (!counts.ok()) return counts.status();
  json tasks = json::object();
  for (const auto& [state, n] : *counts) tasks[std::string(to_string(state))] = n;
  auto queued = store.count_jobs(JobState::queued);
  if (!queued.ok()) return queued.status();
  auto running = store.count_jobs(JobState::assigned);
  if (!running.ok()) return running.status();
  auto campaigns = store.campaigns();
  if (!campaigns.ok()) return campaigns.status();
  int64_t running_campaigns = 0;
  for (const CampaignRow& c : *campaigns) running_campaigns += c.state == CampaignState::running;
  const int64_t now = SystemClock::instance().wall_ms(), window_ms = 3600 * 1000;
  auto finished = store.tasks_finished_since(now - window_ms);
  if (!finished.ok()) return finished.status();
  return json{{"now_ms", now},
              {"hosts", std::move(host_list)},
              {"agents", agent_states},
              {"devices", devices},
              {"jobs", {{"queued", *queued}, {"running", *running}}},
              {"tasks", tasks},
              {"campaigns", {{"running", running_campaigns}, {"total", campaigns->size()}}},
              {"throughput",
               {{"window_s", window_ms / 1000},
                {"tasks_finished", *finished},
                {"tasks_per_hour", *finished}}}};
}

// Device-seconds of jobs running per time bucket, for the dashboard's occupancy chart.
Result<json> timeline(Store& store, const ApiRequest& r) {
  KF_RETURN_IF_ERROR(check_query(r, {"campaign", "buckets"}));
  auto campaign = query_id(r, "campaign");
  if (!campaign.ok()) return campaign.status();
  auto buckets_q = query_id(r, "buckets");
  if (!buckets_q.ok()) return buckets_q.status();
  int64_t buckets = std::min<int64_t>(buckets_q->value_or(60), 1000);
  auto jobs = store.job_leases(campaign->value_or(0));  // leases only: no spec or result
  if (!jobs.ok()) return jobs.status();
  int64_t now = SystemClock::instance().wall_ms();
  std::vector<std::pair<int64_t, int64_t>> spans;  // [assigned, finished or now)
  for (const JobLease& j : *jobs) {
    if (j.assigned_ms <= 0) continue;
    int64_t end = j.state == JobState::assigned ? now : j.finished_ms;
    if (end < j.assigned_ms) continue;
    spans.emplace_back(j.assigned_ms, end);
  }
  auto agents = store.agents();
  if (!agents.ok()) return agents.status();
  int64_t devices = 0;
  for (const AgentRow& a : *agents) {
    if (a.state != AgentState::live) continue;
    auto d = store.devices_of(a.id);
    if (d.ok()) devices += static_cast<int64_t>(d->size());
  }
  json out = {{"devices", devices}, {"busy", json::array()}};
  if (spans.empty()) {
    out["start_ms"] = now;
    out["end_ms"] = now;
    out["bucket_ms"] = 0;
    return out;
  }
  int64_t start = spans.front().first, end = spans.front().second;
  for (const auto& [a, b] : spans) {
    start = std::min(start, a);
    end = std::max(end, b);
  }
  int64_t width = std::max<int64_t>((end - start + buckets - 1) / buckets, 1);
  std::vector<double> busy(static_cast<size_t>(buckets), 0.0);
  for (const auto& [a, b] : spans) {
    for (int64_t i = (a - start) / width; i < buckets && start + i * width < b; ++i) {
      int64_t lo = std::max(a, start + i * width), hi = std::min(b, start + (i + 1) * width);
      if (hi > lo) busy[static_cast<size_t>(i)] += static_cast<double>(hi - lo) / 1000.0;
    }
  }
  out["start_ms"] = start;
  out["end_ms"] = end;
  out["bucket_ms"] = width;
  out["busy"] = busy;
  return out;
}

// --- What an operator watches (watch.h) -------------------------------------------------------

// `stall_s=`: how long a campaign may go without a change before it is stalled.
Result<int64_t> stall_seconds(const ApiRequest& r) {
  auto stall = query_id(r, "stall_s");
  if (!stall.ok()) return stall.status();
  return stall->value_or(kDefaultStallS);
}

Result<json> progress(Store& store, const ApiRequest& r, int64_t id) {
  KF_RETURN_IF_ERROR(check_query(r, {"buckets", "stall_s"}));
  auto buckets = query_id(r, "buckets");
  if (!buckets.ok()) return buckets.status();
  auto stall = stall_seconds(r);
  if (!stall.ok()) return stall.status();
  auto c = find_campaign(store, id);
  if (!c.ok()) return c.status();
  return campaign_progress(store, *c, std::min<int64_t>(buckets->value_or(30), 200),
                           SystemClock::instance().wall_ms(), *stall);
}

Result<json> list_alerts(Store& store, const ApiRequest& r, ApiBackend& backend) {
  KF_RETURN_IF_ERROR(check_query(r, {"stall_s"}));
  auto stall = stall_seconds(r);
  if (!stall.ok()) return stall.status();
  return alerts(store, backend.alarms(), SystemClock::instance().wall_ms(), *stall);
}

Result<json> llm(Store& store, const ApiRequest& r, ApiBackend& backend) {
  KF_RETURN_IF_ERROR(check_query(r, {"campaign"}));
  auto campaign = query_id(r, "campaign");
  if (!campaign.ok()) return campaign.status();
  if (*campaign) KF_RETURN_IF_ERROR(find_campaign(store, **campaign).status());
  return llm_health(store, backend.live_metrics(), campaign->value_or(0));
}

Result<json> compare(Store& store, const ApiRequest& r, std::optional<int64_t>* next_after) {
  KF_RETURN_IF_ERROR(check_query(r, {"a", "b", "after", "limit"}));
  auto a = query_id(r, "a"), b = query_id(r, "b");
  if (!a.ok()) return a.status();
  if (!b.ok()) return b.status();
  if (!*a || !*b)
    return invalid_argument(
        "query parameters 'a' and 'b': the two campaigns to compare, both required");
  auto limit = query_id(r, "limit");
  if (!limit.ok()) return limit.status();
  auto after = query_id(r, "after", 0);
  if (!after.ok()) return after.status();
  auto ca = find_campaign(store, **a);
  if (!ca.ok()) return ca.status();
  auto cb = find_campaign(store, **b);
  if (!cb.ok()) return cb.status();
  return compare_campaigns(store, *ca, *cb, after->value_or(0),
                           std::min<int64_t>(limit->value_or(500), 5000), next_after);
}

Result<std::string> metrics(Store& store, ApiBackend& backend) {
  std::string out;
  metric_family(out, "kforge_build_info", "gauge",
                "1; the labels name the version and commit of this coordinator");
  metric_sample(out, "kforge_build_info", {{"version", KFORGE_VERSION}, {"commit", build_commit()}},
                1);
  auto counts = store.task_counts(0);
  if (!counts.ok()) return counts.status();
  metric_family(out, "kforge_tasks", "gauge", "tasks by state, every campaign");
  for (const auto& [state, n] : *counts) {
    metric_sample(out, "kforge_tasks", {{"state", std::string(to_string(state))}},
                  static_cast<double>(n));
  }
  metric_family(out, "kforge_jobs", "gauge", "jobs by state");
  for (JobState st : all_of<JobState>()) {
    auto n = store.count_jobs(st);
    if (!n.ok()) return n.status();
    metric_sample(out, "kforge_jobs", {{"state", std::string(to_string(st))}},
                  static_cast<double>(*n));
  }
  auto campaigns = store.campaigns();
  if (!campaigns.ok()) return campaigns.status();
  std::map<CampaignState, int> by_state;
  for (const CampaignRow& c : *campaigns) by_state[c.state]++;
  metric_family(out, "kforge_campaigns", "gauge", "campaigns by state");
  for (CampaignState state :
       {CampaignState::running, CampaignState::finished, CampaignState::cancelled}) {
    metric_sample(out, "kforge_campaigns", {{"state", std::string(to_string(state))}},
                  by_state[state]);
  }
  auto usage = store.llm_usage_of_campaign(0);
  if (!usage.ok()) return usage.status();
  metric_family(out, "kforge_llm_stored_calls", "gauge",
                "LLM answers stored (every campaign, every run)");
  metric_sample(out, "kforge_llm_stored_calls", {}, static_cast<double>(usage->calls));
  metric_family(out, "kforge_llm_stored_tokens", "gauge", "tokens of the stored LLM answers");
  metric_sample(out, "kforge_llm_stored_tokens", {{"kind", "prompt"}},
                static_cast<double>(usage->prompt_tokens));
  metric_sample(out, "kforge_llm_stored_tokens", {{"kind", "completion"}},
                static_cast<double>(usage->completion_tokens));
  metric_family(out, "kforge_llm_stored_cost_usd", "gauge", "cost of the stored LLM answers");
  metric_sample(out, "kforge_llm_stored_cost_usd", {}, usage->cost_usd);
  out += backend.live_metrics();
  return out;
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) parts.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return parts;
}

ApiReply reply(const Result<json>& r, int ok_status = 200) {
  if (!r.ok()) return error_reply(r.status());
  return json_reply(*r, ok_status);
}

// The method an endpoint of this shape takes ("" for no endpoint): a known path asked with
// another method is a 405, not a 404.
std::string endpoint_method(const std::vector<std::string>& parts) {
  const size_t n = parts.size();
  if (n == 1 && parts[0] == "metrics") return "GET";
  if (n < 3 || parts[0] != "api" || parts[1] != "v1") return "";
  const std::string& what = parts[2];
  if (n == 3 && (what == "health" || what == "agents" || what == "jobs" || what == "timeline" ||
                 what == "cluster" || what == "alerts" || what == "llm" || what == "compare")) {
    return "GET";
  }
  if (what == "campaigns" || what == "tasks") {
    if (n == 3) return "GET or POST";
    if (n == 4) return "GET";
    if (n == 5 && what == "campaigns" && (parts[4] == "report" || parts[4] == "progress"))
      return "GET";
    if (n == 5 && (parts[4] == "cancel" || parts[4] == "resume")) return "POST";
  }
  if ((what == "agents" || what == "hosts") && n == 5 &&
      (parts[4] == "drain" || parts[4] == "undrain"))
    return "POST";
  return "";
}

ApiReply method_not_allowed(const ApiRequest& r, const std::string& allowed) {
  return ApiReply{405, "application/json",
                  dump({{"error", r.method + " " + r.path + ": this endpoint takes " + allowed +
                                      " (schema/api.md)"}})};
}

ApiReply route(const ApiRequest& r, ApiBackend& backend) {
  auto parts = split_path(r.path);
  const bool get = r.method == "GET" || r.method == "HEAD", post = r.method == "POST";
  if (!get && !post) {
    std::string allowed = endpoint_method(parts);
    if (!allowed.empty()) return method_not_allowed(r, allowed);
    return error_reply(
        not_found("no such endpoint: " + r.method + " " + r.path + " (schema/api.md lists them)"));
  }
  if (parts.size() == 1 && parts[0] == "metrics" && get) {
    auto store = backend.reader();
    if (!store.ok()) return error_reply(store.status());
    auto text = metrics(**store, backend);
    if (!text.ok()) return error_reply(text.status());
    return ApiReply{200, "text/plain; version=0.0.4; charset=utf-8", *text};
  }
  if (parts.size() < 3 || parts[0] != "api" || parts[1] != "v1") {
    return error_reply(
        not_found("no such path " + r.path + "; the API lives under /api/v1 (schema/api.md)"));
  }
  const std::string& what = parts[2];
  const size_t n = parts.size();
  // Submissions write only (the store they create may not exist yet).
  if (n == 3 && post && (what == "campaigns" || what == "tasks")) {
    auto body = parse_body(r);
    if (!body.ok()) return error_reply(body.status());
    auto res = what == "campaigns" ? submit_campaign(backend, *body) : submit_task(backend, *body);
    return reply(res, res.ok() && res->value("created", false) ? 201 : 200);
  }
  auto store = backend.reader();
  if (!store.ok()) return error_reply(store.status());
  Store& s = **store;
  auto id_at = [&](size_t i, const std::string& name) { return parse_id(parts[i], name + " id"); };

  if (what == "health" && n == 3 && get) {
    return json_reply({{"ok", true},
                       {"version", KFORGE_VERSION},
                       {"schema_version", s.schema_version()},
                       {"alarms", backend.alarms()}});
  }
  if (what == "campaigns") {
    if (n == 3 && get) return reply(list_campaigns(s));
    if (n >= 4) {
      auto id = id_at(3, "campaign");
      if (!id.ok()) return error_reply(id.status());
      if (n == 4 && get) return reply(get_campaign(s, *id));
      if (n == 5 && get && parts[4] == "report") {
        auto report = campaign_report(s, *id);
        if (!report.ok() && report.status().code() == Code::not_found)
          return error_reply(get_campaign(s, *id).status());
        return reply(report);
      }
      if (n == 5 && get && parts[4] == "progress") return reply(progress(s, r, *id));
      if (n == 5 && post && (parts[4] == "cancel" || parts[4] == "resume")) {
        auto done = campaign_action(backend, *id, parts[4] == "cancel");
        return done.ok() ? reply(get_campaign(s, *id)) : error_reply(done.status());
      }
    }
  }
  if (what == "tasks") {
    if (n == 3 && get) {
      std::optional<int64_t> next_after;
      ApiReply answer = reply(list_tasks(s, r, &next_after));
      if (answer.status == 200 && next_after)
        answer.headers.emplace_back("X-Next-After", std::to_string(*next_after));
      return answer;
    }
    if (n >= 4) {
      auto id = id_at(3, "task");
      if (!id.ok()) return error_reply(id.status());
      if (n == 4 && get) return reply(task_detail(s, *id));
      if (n == 5 && post && (parts[4] == "cancel" || parts[4] == "resume")) {
        auto done = task_action(backend, *id, parts[4] == "cancel");
        if (!done.ok()) return error_reply(done.status());
        auto t = find_task(s, *id);
        return t.ok() ? reply(task_json(s, *t)) : error_reply(t.status());
      }
    }
  }
  if ((what == "agents" || what == "hosts") && n == 5 && post &&
      (parts[4] == "drain" || parts[4] == "undrain")) {
    const bool drained = parts[4] == "drain";
    auto reason = drain_reason(r);
    if (!reason.ok()) return error_reply(reason.status());
    const std::string& name = parts[3];
    auto done = drain_agents(backend, drained, *reason,
                             [&](Store& writable) -> Result<std::vector<AgentRow>> {
                               if (what == "hosts") return agents_of_host(writable, name);
                               auto a = find_agent(writable, name);
                               if (!a.ok()) return a.status();
                               return std::vector<AgentRow>{*a};
                             });
    if (!done.ok()) return error_reply(done.status());
    json out = json::array();
    for (const json& id : *done) {
      auto a = find_agent(s, id.get<std::string>());
      if (!a.ok()) return error_reply(a.status());
      auto aj = agent_json(s, *a);
      if (!aj.ok()) return error_reply(aj.status());
      out.push_back(std::move(*aj));
    }
    // An agent's drain answers the Agent, a host's every Agent of the host.
    return json_reply(what == "agents" ? out[0] : out);
  }
  if (what == "agents" && n == 3 && get) return reply(list_agents(s));
  if (what == "cluster" && n == 3 && get) return reply(cluster_summary(s, r));
  if (what == "alerts" && n == 3 && get) return reply(list_alerts(s, r, backend));
  if (what == "llm" && n == 3 && get) return reply(llm(s, r, backend));
  if ((what == "jobs" || what == "compare") && n == 3 && get) {
    std::optional<int64_t> next_after;
    ApiReply answer =
        reply(what == "jobs" ? list_jobs(s, r, &next_after) : compare(s, r, &next_after));
    if (answer.status == 200 && next_after)
      answer.headers.emplace_back("X-Next-After", std::to_string(*next_after));
    return answer;
  }
  if (what == "timeline" && n == 3 && get) return reply(timeline(s, r));
  if (std::string allowed = endpoint_method(parts); !allowed.empty())
    return method_not_allowed(r, allowed);
  return error_reply(
      not_found("no such endpoint: " + r.method + " " + r.path + " (schema/api.md lists them)"));
}

}  // namespace

namespace {

void replace_all(std::string& text, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
}

// Errors leave without the server's paths: a 5xx says only that it failed (the log has the
// details), any other names no file of the data directory.
ApiReply redact(ApiReply reply, const ApiBackend& backend) {
  if (reply.status < 400 || reply.content_type != "application/json" ||
      backend.database_path().empty())
    return reply;
  json doc = json::parse(reply.body, nullptr, false);
  if (!doc.is_object() || !doc.contains("error") || !doc["error"].is_string()) return reply;
  std::string message = doc["error"].get<std::string>();
  if (reply.status >= 500 && reply.status != 503) {
    spdlog::error("operator api: {}", message);
    message = "internal error; the coordinator's log has the details";
  } else {
    std::filesystem::path db = backend.database_path();
    for (const std::filesystem::path& p : {db, std::filesystem::absolute(db)}) {
      replace_all(message, p.string() + ": ", "");
      replace_all(message, p.string(), "the database");
      replace_all(message, p.parent_path().string() + "/", "");
    }
  }
  reply.body = dump({{"error", message}});
  return reply;
}

}  // namespace

ApiReply handle_api(const ApiRequest& request, ApiBackend& backend) {
  ApiReply reply;
  try {
    reply = route(request, backend);
  } catch (const std::exception& e) {  // a bug must cost one request, not the server
    reply = error_reply(internal_error(std::string("internal error: ") + e.what()));
  }
  return redact(std::move(reply), backend);
}

Result<Store*> LocalApiBackend::reader() {
  if (!reader_) {
    if (!std::filesystem::exists(db_path_)) {
      return not_found("no kforge database at " + db_path_.string() +
                       "; pass --data with the coordinator's data directory, or --coordinator URL");
    }
    auto s = Store::open_readonly(db_path_);
    if (!s.ok()) return s.status();
    reader_ = std::move(s.value());
  }
  return reader_.get();
}

Result<nlohmann::json> LocalApiBackend::write(const WriteFn& fn) {
  if (!std::filesystem::exists(
          db_path_)) {  // a new data directory: private, as the coordinator makes it
    KF_RETURN_IF_ERROR(ensure_private_dir(db_path_.parent_path()));
    KF_RETURN_IF_ERROR(ensure_private_file(db_path_));
  }
  auto store = Store::open(db_path_);
  if (!store.ok()) return store.status();
  KF_RETURN_IF_ERROR((*store)->begin());
  auto r = fn(**store);
  if (!r.ok()) {
    (*store)->rollback();
    return r;
  }
  KF_RETURN_IF_ERROR((*store)->commit());
  return r;
}

}  // namespace kforge
