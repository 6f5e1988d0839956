#include "coordinator/operator/watch.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "coordinator/operator/outcome.h"

namespace kforge {
namespace {

using json = nlohmann::json;

constexpr int64_t kHourMs = 3600 * 1000;

}  // namespace

Result<json> campaign_progress(Store& store, const CampaignRow& c, int64_t buckets, int64_t now,
                               int64_t stall_s) {
  auto counts = store.task_counts(c.id);
  if (!counts.ok()) return counts.status();
  auto activity = store.campaign_activity(c.id, now - kHourMs);
  if (!activity.ok()) return activity.status();
  auto& n = *counts;
  const int64_t total = n[TaskState::pending] + n[TaskState::running] + n[TaskState::passed] +
                        n[TaskState::failed] + n[TaskState::cancelled];
  const int64_t finished = n[TaskState::passed] + n[TaskState::failed],
                remaining = n[TaskState::pending] + n[TaskState::running];
  const bool live = c.state == CampaignState::running && remaining > 0;
  const int64_t last_change = std::max(activity->last_change_ms, c.created_ms);
  // A live campaign's clock runs on; an ended one's stopped at its last change.
  const int64_t end = live ? now : std::max(last_change, c.created_ms);
  const int64_t elapsed = std::max<int64_t>(end - c.created_ms, 0);
  json per_hour = elapsed > 0
                      ? json(static_cast<double>(finished) * kHourMs / static_cast<double>(elapsed))
                      : json(nullptr);
  // The ETA at the last hour's pace, else at the whole run's.
  double rate = activity->finished_since > 0 ? static_cast<double>(activity->finished_since)
                : per_hour.is_null()         ? 0.0
                                             : per_hour.get<double>();
  json eta = live && rate > 0
                 ? json(static_cast<int64_t>(static_cast<double>(remaining) / rate * kHourMs))
                 : json(nullptr);
  const bool stalled = live && now - last_change > stall_s * 1000;
  json out = {
      {"campaign", c.id},
      {"state", c.state},
      {"now_ms", now},
      {"started_ms", c.created_ms},
      {"elapsed_ms", elapsed},
      {"tasks",
       {{"total", total},
        {"pending", n[TaskState::pending]},
        {"running", n[TaskState::running]},
        {"passed", n[TaskState::passed]},
        {"failed", n[TaskState::failed]},
        {"cancelled", n[TaskState::cancelled]},
        {"finished", finished},
        {"remaining", remaining}}},
      {"tasks_per_hour", per_hour},
      {"last_hour", {{"window_s", kHourMs / 1000}, {"tasks_finished", activity->finished_since}}},
      {"eta_ms", eta},
      {"queue",
       {{"pending_tasks", n[TaskState::pending]},
        {"queued_jobs", activity->queued_jobs},
        {"running_jobs", activity->running_jobs}}},
      {"last_change_ms", last_change},
      {"stalled", stalled},
      {"stall_after_s", stall_s}};
  if (buckets <= 0) return out;
  const int64_t width = std::max<int64_t>((elapsed + buckets - 1) / buckets, 1);
  auto ended = store.ended_by_bucket(c.id, c.created_ms, width, buckets);
  if (!ended.ok()) return ended.status();
  json series = json::object();
  for (TaskState state : {TaskState::passed, TaskState::failed, TaskState::cancelled}) {
    series[to_string(state)] = std::vector<int64_t>(buckets, 0);
  }
  for (const Store::EndedBucket& b : *ended)
    series[to_string(b.state)][static_cast<size_t>(b.bucket)] = b.count;
  series["start_ms"] = c.created_ms;
  series["bucket_ms"] = width;
  out["outcomes"] = std::move(series);
  return out;
}

Result<json> alerts(Store& store, const json& alarms, int64_t now, int64_t stall_s) {
  json out = json::array();
  auto agents = store.agents();
  if (!agents.ok()) return agents.status();
  for (const AgentRow& a : *agents) {
    if (a.state != AgentState::lost) continue;
    out.push_back(
        {{"kind", "agent_lost"},
         {"agent", a.id},
         {"host", a.host},
         {"since_ms", a.last_seen_ms},
         {"message",
          "agent " + a.id.substr(0, 12) + " on " + a.host +
              " is lost: its heartbeats stopped; its running jobs went back to the queue"}});
  }
  auto campaigns = store.campaigns();
  if (!campaigns.ok()) return campaigns.status();
  for (const CampaignRow& c : *campaigns) {
    if (c.state != CampaignState::running) continue;
    auto p = campaign_progress(store, c, 0, now, stall_s);
    if (!p.ok()) return p.status();
    if (!(*p)["stalled"].get<bool>()) continue;
    const json& t = (*p)["tasks"];
    const std::string patience =
        stall_s >= 120 ? std::to_string(stall_s / 60) + " min" : std::to_string(stall_s) + " s";
    out.push_back(
        {{"kind", "campaign_stalled"},
         {"campaign", c.id},
         {"since_ms", (*p)["last_change_ms"]},
         {"message",
          "campaign " + std::to_string(c.id) + " (" + c.name + ") has not moved for more than " +
              patience + ": " + std::to_string(t["pending"].get<int64_t>()) + " pending, " +
              std::to_string(t["running"].get<int64_t>()) + " running, " +
              std::to_string((*p)["queue"]["queued_jobs"].get<int64_t>()) + " jobs queued"}});
  }
  for (const json& alarm : alarms) {
    out.push_back({{"kind", alarm.value("name", "alarm")},
                   {"since_ms", alarm.value("since_ms", int64_t{0})},
                   {"message", alarm.value("message", "")}});
  }
  return out;
}

namespace {

// One sample of the Prometheus text format: `name{k="v",...} value`.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

std::vector<Sample> samples(const std::string& text, const std::string& prefix) {
  std::vector<Sample> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(prefix, 0) != 0) continue;
    Sample s;
    size_t brace = line.find('{'), space = line.rfind(' ');
    if (space == std::string::npos) continue;
    s.name = line.substr(0, std::min(brace, line.find(' ')));
    if (brace != std::string::npos && brace < space) {
      std::string body = line.substr(brace + 1, line.rfind('}') - brace - 1);
      for (size_t i = 0; i < body.size();) {  // k="v", ...; kforge's label values have no '"'
        size_t eq = body.find("=\"", i),
               close = eq == std::string::npos ? eq : body.find('"', eq + 2);
        if (close == std::string::npos) break;
        s.labels[body.substr(i, eq - i)] = body.substr(eq + 2, close - eq - 2);
        i = close + 2;
      }
    }
    try {
      s.value = std::stod(line.substr(space + 1));
    } catch (const std::exception&) {
      continue;
    }
    out.push_back(std::move(s));
  }
  return out;
}

// The q-quantile of a cumulative histogram (bounds ascending, +Inf last), interpolated within
// its bucket as Prometheus' histogram_quantile does; null without observations.
json quantile(const std::vector<std::pair<double, double>>& cumulative, double q) {
  if (cumulative.empty() || cumulative.back().second <= 0) return nullptr;
  double rank = q * cumulative.back().second, lower = 0, below = 0;
  for (const auto& [bound, count] : cumulative) {
    if (count >= rank) {
      if (std::isinf(bound)) return lower;  // beyond the last bound: its lower edge
      double in_bucket = count - below;
      return in_bucket > 0 ? lower + (bound - lower) * (rank - below) / in_bucket : bound;
    }
    lower = bound;
    below = count;
  }
  return lower;
}

}  // namespace

Result<json> llm_health(Store& store, const std::string& metrics_text, int64_t campaign_id) {
  json by_role = json::object();
  double ok = 0, errors = 0, retries = 0, sum_s = 0, count = 0;
  std::vector<std::pair<double, double>> buckets;
  const std::vector<Sample> all = samples(metrics_text, "kforge_llm_");
  for (const Sample& s : all) {
    if (s.name == "kforge_llm_requests_total") {
      const std::string role = s.labels.count("role") ? s.labels.at("role") : "";
      const bool failed = s.labels.count("outcome") && s.labels.at("outcome") != "ok";
      (failed ? errors : ok) += s.value;
      json& r = by_role[role];
      if (r.is_null()) r = {{"role", role}, {"ok", 0}, {"error", 0}};
      r[failed ? "error" : "ok"] =
          r[failed ? "error" : "ok"].get<int64_t>() + static_cast<int64_t>(s.value);
    } else if (s.name == "kforge_llm_retries_total") {
      retries = s.value;
    } else if (s.name == "kforge_llm_latency_seconds_bucket" && s.labels.count("le")) {
      const std::string& le = s.labels.at("le");
      buckets.emplace_back(le == "+Inf" ? INFINITY : std::stod(le), s.value);
    } else if (s.name == "kforge_llm_latency_seconds_sum") {
      sum_s = s.value;
    } else if (s.name == "kforge_llm_latency_seconds_count") {
      count = s.value;
    }
  }
  std::sort(buckets.begin(), buckets.end());
  json roles = json::array();
  for (auto& role : by_role) roles.push_back(std::move(role));  // by name
  auto stored = store.llm_usage_by_role(campaign_id);
  if (!stored.ok()) return stored.status();
  json stored_roles = json::array();
  int64_t stored_calls = 0, stored_errors = 0;
  for (const RoleUsage& r : *stored) {
    stored_roles.push_back({{"role", r.role}, {"calls", r.usage.calls}, {"errors", r.errors}});
    stored_calls += r.usage.calls;
    stored_errors += r.errors;
  }
  return json{
      {"live", !all.empty()},
      {"requests", {{"ok", static_cast<int64_t>(ok)}, {"error", static_cast<int64_t>(errors)}}},
      {"by_role", roles},
      {"retries", static_cast<int64_t>(retries)},
      {"latency",
       {{"count", static_cast<int64_t>(count)},
        {"mean_s", count > 0 ? json(sum_s / count) : json(nullptr)},
        {"p50_s", quantile(buckets, 0.5)},
        {"p90_s", quantile(buckets, 0.9)},
        {"p99_s", quantile(buckets, 0.99)}}},
      {"stored",
       {{"campaign", campaign_id > 0 ? json(campaign_id) : json(nullptr)},
        {"calls", stored_calls},
        {"errors", stored_errors},
        {"by_role", stored_roles}}}};
}

namespace {

json side_json(const TaskOutcome& o) {
  return {{"task", o.task.id},
          {"state", to_string(o.task.state)},
          {"verdict", to_string(o.verdict)},
          {"speedup", o.speedup > 0 ? json(o.speedup) : json(nullptr)}};
}

}  // namespace

Result<json> compare_campaigns(Store& store, const CampaignRow& a, const CampaignRow& b,
                               int64_t after_id, int64_t limit,
                               std::optional<int64_t>* next_after) {
  auto pairs = store.paired_tasks(a.id, b.id, after_id, limit);
  if (!pairs.ok()) return pairs.status();
  json rows = json::array();
  int64_t both = 0, b_faster = 0, a_faster = 0;
  double log_ratio = 0, log_a = 0, log_b = 0;
  for (const auto& [ida, idb] : *pairs) {
    auto ta = store.get_task(ida);
    if (!ta.ok()) return ta.status();
    auto oa = task_outcome(store, *ta);
    if (!oa.ok()) return oa.status();
    json row = {{"op_name", ta->spec.op_name},
                {"task_id", ta->spec.task_id},
                {"backend", ta->spec.backend},
                {"arch", ta->spec.arch},
                {"impl_type", ta->spec.impl_type},
                {"a", side_json(*oa)},
                {"b", nullptr},
                {"ratio", nullptr}};
    if (idb > 0) {
      auto tb = store.get_task(idb);
      if (!tb.ok()) return tb.status();
      auto ob = task_outcome(store, *tb);
      if (!ob.ok()) return ob.status();
      row["b"] = side_json(*ob);
      if (oa->speedup > 0 && ob->speedup > 0) {
        const double ratio = ob->speedup / oa->speedup;
        row["ratio"] = ratio;
        ++both;
        b_faster += ratio > 1;
        a_faster += ratio < 1;
        log_ratio += std::log(ratio);
        log_a += std::log(oa->speedup);
        log_b += std::log(ob->speedup);
      }
    }
    rows.push_back(std::move(row));
  }
  if (limit > 0 && static_cast<int64_t>(pairs->size()) == limit) *next_after = pairs->back().first;
  auto ca = store.task_counts(a.id);
  if (!ca.ok()) return ca.status();
  auto cb = store.task_counts(b.id);
  if (!cb.ok()) return cb.status();
  auto sum = [](const std::map<TaskState, int64_t>& m) {
    int64_t t = 0;
    for (const auto& entry : m) t += entry.second;
    return t;
  };
  auto paired = store.paired_count(a.id, b.id);
  if (!paired.ok()) return paired.status();
  const int64_t na = sum(*ca), nb = sum(*cb);
  auto geomean = [&](double logs) {
    return both > 0 ? json(std::exp(logs / static_cast<double>(both))) : json(nullptr);
  };
  return json{{"a", {{"id", a.id}, {"name", a.name}, {"state", a.state}}},
              {"b", {{"id", b.id}, {"name", b.name}, {"state", b.state}}},
              {"counts",
               {{"a_tasks", na},
                {"b_tasks", nb},
                {"paired", *paired},
                {"only_a", na - *paired},
                {"only_b", nb - *paired}}},
              {"page",
               {{"rows", rows.size()},
                {"both_timed", both},
                {"b_faster", b_faster},
                {"a_faster", a_faster},
                {"geomean_a", geomean(log_a)},
                {"geomean_b", geomean(log_b)},
                {"geomean_ratio", geomean(log_ratio)}}},
              {"rows", std::move(rows)}};
}

}  // namespace kforge
