// Campaign reports (see report.h; the fields and metrics are defined in docs/reports.md).
#include "coordinator/operator/report.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <tuple>
#include <vector>

#include "common/text.h"
#include "coordinator/generation/search.h"
#include "coordinator/operator/outcome.h"

namespace kforge {
namespace {

using nlohmann::json;

// `s` with every invalid UTF-8 sequence replaced by U+FFFD (what the store holds is not
// checked on the way in; a JSON document must be valid UTF-8).
std::string valid_utf8(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    unsigned char c = p[i];
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    }
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are invalid too.
    if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
               (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)) {
      ok = false;
    }
    if (ok) {
      out.append(s, i, len);
      i += len;
    } else {
      out.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return out;
}

json nullable(double v, bool present) {
  return present ? json(v) : json(nullptr);
}

// {"count", "of", "value"}: value = count / of, null when of is 0.
json fraction(int64_t count, int64_t of) {
  return {{"count", count},
          {"of", of},
          {"value",
           of > 0 ? json(static_cast<double>(count) / static_cast<double>(of)) : json(nullptr)}};
}

json geomean(const std::vector<double>& values) {
  if (values.empty()) return nullptr;
  double log_sum = 0;
  for (double v : values) log_sum += std::log(v);
  return std::exp(log_sum / static_cast<double>(values.size()));
}

// KernelBench's unbiased estimate of "at least one of k samples out of n, c of them good":
// 1 - C(n-c, k) / C(n, k).
double at_k(int64_t n, int64_t c, int64_t k) {
  if (n - c < k) return 1.0;
  double none = 1.0;
  for (int64_t i = n - c + 1; i <= n; ++i)
    none *= 1.0 - static_cast<double>(k) / static_cast<double>(i);
  return 1.0 - none;
}

// The median of `values` (sorted here); null when empty.
json median(std::vector<double> values) {
  if (values.empty()) return nullptr;
  std::sort(values.begin(), values.end());
  size_t m = values.size() / 2;
  return values.size() % 2 ? values[m] : (values[m - 1] + values[m]) / 2;
}

// The done jobs one device ran for the campaign (key: agent, backend, device index).
struct DeviceUse {
  int64_t jobs = 0;
  int64_t busy_ms = 0;
  std::set<std::string> job_archs;  // the non-empty archs its jobs asked for
};
using DeviceKey = std::tuple<std::string, std::string, int>;

// device.per_device: one row per device, by host, backend, index (then agent id), with its
// host and arch from the agents and devices tables; utilisation is over the campaign's
// device window `window_ms`. An agent the store does not know has host null; a device its
// agent no longer lists takes the arch its jobs asked for, null when they disagree or asked
// for none.
Result<json> per_device_json(Store& store, const std::map<DeviceKey, DeviceUse>& uses,
                             int64_t window_ms) {
  auto agents = store.agents();
  if (!agents.ok()) return agents.status();
  std::map<std::string, std::string> hosts;
  for (const AgentRow& a : *agents) hosts[a.id] = a.host;
  std::map<std::string, std::vector<DeviceRow>> devices;
  struct Row {
    std::string host;  // "" when unknown (sorts first)
    DeviceKey key;
    json doc;
  };
  std::vector<Row> rows;
  for (const auto& [key, use] : uses) {
    const auto& [agent_id, backend, index] = key;
    if (!devices.count(agent_id)) {
      auto d = store.devices_of(agent_id);
      if (!d.ok()) return d.status();
      devices[agent_id] = std::move(d).value();
    }
    json arch =
        use.job_archs.size() == 1 ? json(valid_utf8(*use.job_archs.begin())) : json(nullptr);
    for (const DeviceRow& d : devices[agent_id]) {
      if (d.index == index && d.backend == backend) arch = valid_utf8(d.arch);
    }
    auto host = hosts.find(agent_id);
    const double busy_seconds = static_cast<double>(use.busy_ms) / 1000.0;
    rows.push_back({host == hosts.end() ? std::string() : host->second,
                    key,
                    {{"agent", valid_utf8(agent_id)},
                     {"host", host == hosts.end() ? json(nullptr) : json(valid_utf8(host->second))},
                     {"device", valid_utf8(backend) + ":" + std::to_string(index)},
                     {"arch", arch},
                     {"jobs", use.jobs},
                     {"busy_seconds", busy_seconds},
                     {"utilisation", window_ms > 0 ? json(static_cast<double>(use.busy_ms) /
                                                          static_cast<double>(window_ms))
                                                   : json(nullptr)}}});
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    const auto& [a_agent, a_backend, a_index] = a.key;
    const auto& [b_agent, b_backend, b_index] = b.key;
    return std::tie(a.host, a_backend, a_index, a_agent) <
           std::tie(b.host, b_backend, b_index, b_agent);
  });
  json out = json::array();
  for (Row& row : rows) out.push_back(std::move(row.doc));
  return out;
}

json usage_json(const LlmUsage& u) {
  return {{"calls", u.calls},
          {"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"cost_usd", u.cost_usd}};
}

// A candidate's measured speedup when it passed with one (a finite positive number), else 0.
double passed_speedup(const CandidateRow& c) {
  if (c.verdict != Verdict::passed || !c.speedup) return 0;
  return std::isfinite(*c.speedup) && *c.speedup > 0 ? *c.speedup : 0;
}

// Whether `c` counts towards fast_p: passed, and for p > 0 measured faster than p.
bool fast_at(const CandidateRow& c, double p) {
  return c.verdict == Verdict::passed && (p == 0 || passed_speedup(c) > p);
}

// The value at quantile q (0..1) of sorted `v`, interpolated between neighbours (numpy's
// default). REQUIRES: v is sorted and not empty.
double quantile(const std::vector<double>& v, double q) {
  const double at = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(at));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (at - static_cast<double>(lo));
}

// A task's best measured speedup so far, by generation: one point per generation at which it
// improved, in order (a step function).
struct BestPoint {
  int64_t generation = 0;
  double speedup = 0;
  int64_t candidate = 0;
};
std::vector<BestPoint> best_by_generation(const std::vector<CandidateRow>& candidates) {
  std::map<int64_t, const CandidateRow*> best;  // by generation: its fastest passed candidate
  for (const CandidateRow& c : candidates) {
    const double s = passed_speedup(c);
    if (s <= 0) continue;
    auto [it, fresh] = best.emplace(c.generation, &c);
    if (!fresh && s > passed_speedup(*it->second)) it->second = &c;
  }
  std::vector<BestPoint> out;
  for (const auto& [generation, c] : best) {
    const double s = passed_speedup(*c);
    if (out.empty() || s > out.back().speedup) out.push_back({generation, s, c->id});
  }
  return out;
}

// The winner's lineage: the candidates from the first ancestor to `winner` through parent_id
// (a parent outside `candidates` ends it), each with the steps of its chain that made it (after
// the chain's previous candidate, up to its own verifier step).
json lineage_json(const std::vector<CandidateRow>& candidates, const std::vector<StepRow>& steps,
                  int64_t winner) {
  std::map<int64_t, const CandidateRow*> by_id;
  for (const CandidateRow& c : candidates) by_id[c.id] = &c;
  std::map<int64_t, const StepRow*> step_by_id;
  for (const StepRow& s : steps) step_by_id[s.id] = &s;
  std::vector<const CandidateRow*> chain;
  std::set<int64_t> seen;  // a parent cycle (a bad row) ends the walk
  for (auto it = by_id.find(winner); it != by_id.end() && seen.insert(it->first).second;
       it = it->second->parent_id ? by_id.find(*it->second->parent_id) : by_id.end()) {
    chain.push_back(it->second);
  }
  std::reverse(chain.begin(), chain.end());
  json out = json::array();
  for (const CandidateRow* c : chain) {
    auto judged = step_by_id.find(c->step_id);
    const int seq = judged == step_by_id.end() ? 0 : judged->second->seq;
    int after = 0;  // the seq of the previous candidate of its chain
    for (const CandidateRow& other : candidates) {
      auto s = step_by_id.find(other.step_id);
      if (other.sample == c->sample && s != step_by_id.end() && s->second->seq < seq)
        after = std::max(after, s->second->seq);
    }
    json made = json::array();
    for (const StepRow& s : steps) {
      if (s.sample != c->sample || s.seq <= after || s.seq > seq) continue;
      made.push_back({{"seq", s.seq},
                      {"id", s.id},
                      {"role", to_string(s.role)},
                      {"verdict", to_string(s.verdict)}});
    }
    const double speed = passed_speedup(*c);
    json code_step = nullptr;
    if (c->code_step_id) {
      auto s = step_by_id.find(*c->code_step_id);
      if (s != step_by_id.end()) code_step = s->second->seq;
    }
    out.push_back({{"candidate", c->id},
                   {"parent", c->parent_id ? json(*c->parent_id) : json(nullptr)},
                   {"sample", c->sample},
                   {"island", c->island},
                   {"generation", c->generation},
                   {"verdict", to_string(c->verdict)},
                   {"speedup", nullable(speed, speed > 0)},
                   {"score", c->score},
                   {"verifier_step", seq > 0 ? json(seq) : json(nullptr)},
                   {"code_step", code_step},
                   {"steps", made}});
  }
  return out;
}

}  // namespace

Result<json> campaign_report(Store& store, int64_t campaign_id) {
  auto campaign = store.get_campaign(campaign_id);
  if (!campaign.ok()) {
    const Status& st = campaign.status();
    if (st.code() == Code::not_found) {
      return not_found("campaign report: no campaign with id " + std::to_string(campaign_id) +
                       " (" + st.message() + ")");
    }
    return st;
  }
  // Task ids first, each row read in its turn: the rows (with their reference sources) of a
  // large campaign are never all in memory, only the report's own lines are.
  TaskQuery query;
  query.campaign_id = campaign_id;
  auto task_ids = store.task_ids(query);
  if (!task_ids.ok()) return task_ids.status();
  auto roles = store.llm_usage_by_role(campaign_id);
  if (!roles.ok()) return roles.status();
  auto leases = store.job_leases(campaign_id);  // times and devices only, one read
  if (!leases.ok()) return leases.status();
  std::map<int64_t, std::vector<JobLease>> jobs_of_task;  // by task; each by job id
  for (JobLease& j : *leases) {
    if (j.task_id) jobs_of_task[*j.task_id].push_back(std::move(j));
  }

  json doc;
  doc["report_version"] = kReportVersion;
  doc["campaign"] = {{"id", campaign->id},
                     {"name", valid_utf8(campaign->name)},
                     {"state", campaign->state},
                     {"workflow", campaign->workflow},
                     {"content_hash", valid_utf8(campaign->content_hash)},
                     {"created_ms", campaign->created_ms},
                     {"updated_ms", campaign->updated_ms}};

  json by_state = {{"pending", 0}, {"running", 0}, {"passed", 0}, {"failed", 0}, {"cancelled", 0}};
  json by_type = {{"profile", 0}, {"precision_only", 0}};
  const int64_t total = static_cast<int64_t>(task_ids->size());
  int64_t passed = 0, fast1 = 0, fast2 = 0;
  int64_t profiled = 0, profiled_passed = 0, profiled_fast1 = 0, profiled_fast2 = 0;
  std::array<int64_t, kFastP.size()> fast_p{}, profiled_fast_p{};  // tasks, per p of kFastP
  std::vector<std::vector<BestPoint>> improving;  // per task with a measured kernel
  int64_t generations = 0;                        // the deepest generation of any candidate
  std::vector<double> speedups, unflagged;
  json suspicious = json::array();
  json rows = json::array();
  std::vector<double> passed_steps;
  std::map<int, int64_t> steps_histogram;
  struct VerdictCount {
    int64_t steps = 0;
    int64_t tasks = 0;
  };
  std::map<std::string, VerdictCount> verdicts;
  int64_t verifier_steps = 0;
  int64_t device_jobs = 0, device_ms = 0;
  std::map<DeviceKey, DeviceUse> device_uses;
  int64_t window_start_ms = 0, window_end_ms = 0;  // first assignment, last result (done jobs)
  int64_t start_ms = 0, end_ms = 0;
  // A search of several chains a task (docs/campaigns.md): per task, the chains that produced
  // a passing kernel, and one faster than the reference.
  auto search = parse_search_text(campaign->search);
  if (!search.ok()) return search.status();
  const int64_t chains = search->samples;
  // Per task, per p of kFastP: the chains with a candidate that counts for fast_p.
  std::vector<std::array<int64_t, kFastP.size()>> good_chains;

  for (int64_t task_id : *task_ids) {
    auto row = store.get_task(task_id);
    if (!row.ok()) return row.status();
    const TaskRow& t = *row;
    auto steps = store.steps_of(t.id);
    if (!steps.ok()) return steps.status();
    auto outcome = task_outcome(store, t, *steps);
    if (!outcome.ok()) return outcome.status();
    const TaskOutcome& o = *outcome;
    auto candidates = store.candidates_of(t.id);
    if (!candidates.ok()) return candidates.status();
    const std::string state(to_string(t.state));
    const std::string task_type = valid_utf8(t.spec.task_type);
    by_state[state] = by_state.value(state, 0) + 1;
    by_type[task_type] = by_type.value(task_type, 0) + 1;
    const bool is_profile = t.spec.task_type == "profile";
    const bool ok = t.state == TaskState::passed;
    const bool measured = ok && o.speedup > 0;
    if (is_profile) ++profiled;
    if (ok) {
      ++passed;
      passed_steps.push_back(t.steps_used);
      ++steps_histogram[t.steps_used];
      if (is_profile) ++profiled_passed;
    }
    if (measured && o.speedup > 1) {
      ++fast1;
      if (is_profile) ++profiled_fast1;
    }
    if (measured && o.speedup > 2) {
      ++fast2;
      if (is_profile) ++profiled_fast2;
    }
    for (size_t i = 0; i < kFastP.size(); ++i) {
      if (!ok || (kFastP[i] > 0 && !(measured && o.speedup > kFastP[i]))) continue;
      ++fast_p[i];
      if (is_profile) ++profiled_fast_p[i];
    }
    const bool above = measured && o.speedup > kSuspiciousSpeedup;
    const bool flagged = ok && (above || o.harness_suspicious);
    if (measured) {
      speedups.push_back(o.speedup);
      if (!flagged) unflagged.push_back(o.speedup);
    }
    if (flagged) {
      suspicious.push_back({{"task", t.id},
                            {"op_name", valid_utf8(t.spec.op_name)},
                            {"task_id", valid_utf8(t.spec.task_id)},
                            {"speedup", nullable(o.speedup, measured)},
                            {"above_threshold", above},
                            {"harness_flag", o.harness_suspicious}});
    }
    std::map<std::string, bool> seen;
    for (const std::optional<Outcome>& v : o.verifier_verdicts) {
      std::string key(v ? to_string(*v) : "(none)");
      ++verdicts[key].steps;
      if (!seen[key]) {
        seen[key] = true;
        ++verdicts[key].tasks;
      }
      ++verifier_steps;
    }
    int64_t task_jobs = 0, task_ms = 0;
    for (const JobLease& j : jobs_of_task[t.id]) {
      // The final lease of a done job, assignment to result (a requeue resets assigned_ms).
      if (j.state != JobState::done || j.assigned_ms <= 0 || j.finished_ms < j.assigned_ms)
        continue;
      const bool first_job = device_jobs + task_jobs == 0;
      ++task_jobs;
      task_ms += j.finished_ms - j.assigned_ms;
      DeviceUse& use = device_uses[{j.agent_id, j.backend, j.device_index}];
      ++use.jobs;
      use.busy_ms += j.finished_ms - j.assigned_ms;
      if (!j.arch.empty()) use.job_archs.insert(j.arch);
      window_start_ms = first_job ? j.assigned_ms : std::min(window_start_ms, j.assigned_ms);
      window_end_ms = first_job ? j.finished_ms : std::max(window_end_ms, j.finished_ms);
    }
    device_jobs += task_jobs;
    device_ms += task_ms;
    if (chains > 1) {
      std::array<int64_t, kFastP.size()> good{};
      for (size_t i = 0; i < kFastP.size(); ++i) {
        std::set<int64_t> samples;
        for (const CandidateRow& c : *candidates) {
          if (fast_at(c, kFastP[i])) samples.insert(c.sample);
        }
        good[i] = static_cast<int64_t>(samples.size());
      }
      good_chains.push_back(good);
    }
    for (const CandidateRow& c : *candidates) generations = std::max(generations, c.generation);
    std::vector<BestPoint> best = best_by_generation(*candidates);
    json best_json = json::array();
    for (const BestPoint& b : best) {
      best_json.push_back(
          {{"generation", b.generation}, {"speedup", b.speedup}, {"candidate", b.candidate}});
    }
    if (!best.empty()) improving.push_back(std::move(best));
    // The winner: the candidate the outcome's passing verifier step judged.
    json winner = nullptr, lineage = json::array();
    for (const CandidateRow& c : *candidates) {
      if (o.best_verdict_step_id == 0 || c.step_id != o.best_verdict_step_id) continue;
      winner = c.id;
      lineage = lineage_json(*candidates, *steps, c.id);
    }
    start_ms = rows.empty() ? t.created_ms : std::min(start_ms, t.created_ms);
    end_ms = rows.empty() ? t.updated_ms : std::max(end_ms, t.updated_ms);

    rows.push_back({{"task", t.id},
                    {"op_name", valid_utf8(t.spec.op_name)},
                    {"task_id", valid_utf8(t.spec.task_id)},
                    {"backend", valid_utf8(t.spec.backend)},
                    {"arch", valid_utf8(t.spec.arch)},
                    {"impl_type", valid_utf8(t.spec.impl_type)},
                    {"framework", valid_utf8(t.spec.framework)},
                    {"task_type", task_type},
                    {"state", state},
                    {"verdict", to_string(o.verdict)},
                    {"reason", valid_utf8(t.reason)},
                    {"steps", t.steps_used},
                    {"limit_steps", t.spec.limit_steps},
                    {"best_step", o.best_step > 0 ? json(o.best_step) : json(nullptr)},
                    {"speedup", nullable(o.speedup, measured)},
                    {"candidate_us", nullable(o.candidate_us, ok && o.candidate_us > 0)},
                    {"reference_us", nullable(o.reference_us, ok && o.reference_us > 0)},
                    {"suspicious", flagged},
                    {"verifier_steps", static_cast<int64_t>(o.verifier_verdicts.size())},
                    {"llm_calls", o.usage.calls},
                    {"prompt_tokens", o.usage.prompt_tokens},
                    {"completion_tokens", o.usage.completion_tokens},
                    {"cost_usd", o.usage.cost_usd},
                    {"device_jobs", task_jobs},
                    {"device_seconds", static_cast<double>(task_ms) / 1000.0},
                    {"candidates", static_cast<int64_t>(candidates->size())},
                    {"best_by_generation", std::move(best_json)},
                    {"winner", winner},
                    {"lineage", std::move(lineage)}});
  }

  doc["counts"] = {{"total", total}, {"by_state", by_state}, {"by_task_type", by_type}};

  std::vector<double> sorted = speedups;
  std::sort(sorted.begin(), sorted.end());
  doc["metrics"] = {{"fast_0", fraction(passed, total)},
                    {"fast_1", fraction(fast1, total)},
                    {"fast_2", fraction(fast2, total)},
                    {"profiled",
                     {{"tasks", profiled},
                      {"fast_0", fraction(profiled_passed, profiled)},
                      {"fast_1", fraction(profiled_fast1, profiled)},
                      {"fast_2", fraction(profiled_fast2, profiled)}}},
                    {"speedup",
                     {{"measured", static_cast<int64_t>(speedups.size())},
                      {"geomean", geomean(speedups)},
                      {"unflagged", static_cast<int64_t>(unflagged.size())},
                      {"geomean_unflagged", geomean(unflagged)},
                      {"min", sorted.empty() ? json(nullptr) : json(sorted.front())},
                      {"median", median(speedups)},
                      {"max", sorted.empty() ? json(nullptr) : json(sorted.back())}}},
                    {"suspicious_threshold", kSuspiciousSpeedup}};
  json fast_p_json = json::array(), profiled_fast_p_json = json::array();
  for (size_t i = 0; i < kFastP.size(); ++i) {
    json f = fraction(fast_p[i], total), pf = fraction(profiled_fast_p[i], profiled);
    f["p"] = pf["p"] = kFastP[i];
    fast_p_json.push_back(std::move(f));
    profiled_fast_p_json.push_back(std::move(pf));
  }
  doc["metrics"]["fast_p"] = std::move(fast_p_json);
  doc["metrics"]["profiled"]["fast_p"] = std::move(profiled_fast_p_json);
  if (chains > 1) {
    // pass@k and fast_p@k for k = 1, 2, 4, ... and the number of chains; a chain stopped early
    // (target_speedup, max_llm_calls) counts as one that found nothing.
    doc["search"] = json::parse(search_text(*search));
    json at = json::array();
    const double n = static_cast<double>(good_chains.size());
    for (int64_t k = 1;; k = std::min(2 * k, chains)) {
      json row = {{"k", k}}, by_p = json::array();
      for (size_t i = 0; i < kFastP.size(); ++i) {
        double sum = 0;
        for (const auto& good : good_chains) sum += at_k(chains, good[i], k);
        json value = good_chains.empty() ? json(nullptr) : json(sum / n);
        if (kFastP[i] == 0) row["pass"] = value;
        if (kFastP[i] == 1) row["fast_1"] = value;
        by_p.push_back({{"p", kFastP[i]}, {"value", value}});
      }
      row["fast_p"] = std::move(by_p);
      at.push_back(std::move(row));
      if (k == chains) break;
    }
    doc["metrics"]["at_k"] = at;
  }
  // The best speedup so far by generation, over the tasks with a measured kernel by then.
  json points = json::array();
  for (int64_t g = 1; g <= generations; ++g) {
    std::vector<double> best;
    for (const std::vector<BestPoint>& task : improving) {
      const BestPoint* at = nullptr;
      for (const BestPoint& b : task) {
        if (b.generation <= g) at = &b;
      }
      if (at != nullptr) best.push_back(at->speedup);
    }
    std::sort(best.begin(), best.end());
    auto q = [&](double f) { return best.empty() ? json(nullptr) : json(quantile(best, f)); };
    points.push_back({{"generation", g},
                      {"tasks", static_cast<int64_t>(best.size())},
                      {"geomean", geomean(best)},
                      {"p25", q(0.25)},
                      {"median", q(0.5)},
                      {"p75", q(0.75)},
                      {"max", q(1)}});
  }
  doc["by_generation"] = {{"generations", generations},
                          {"tasks_measured", static_cast<int64_t>(improving.size())},
                          {"points", std::move(points)}};
  doc["suspicious"] = suspicious;
  doc["tasks"] = rows;

  json histogram = json::array();
  for (const auto& [steps, count] : steps_histogram)
    histogram.push_back({{"steps", steps}, {"tasks", count}});
  double steps_sum = 0;
  for (double s : passed_steps) steps_sum += s;
  doc["steps_used"] = {
      {"passed", passed},
      {"histogram", histogram},
      {"min", steps_histogram.empty() ? json(nullptr) : json(steps_histogram.begin()->first)},
      {"median", median(passed_steps)},
      {"mean", passed_steps.empty() ? json(nullptr)
                                    : json(steps_sum / static_cast<double>(passed_steps.size()))},
      {"max", steps_histogram.empty() ? json(nullptr) : json(steps_histogram.rbegin()->first)}};

  std::vector<std::pair<std::string, VerdictCount>> verdict_list(verdicts.begin(), verdicts.end());
  std::stable_sort(verdict_list.begin(), verdict_list.end(),
                   [](const auto& a, const auto& b) { return a.second.steps > b.second.steps; });
  json verdict_counts = json::array();
  for (const auto& [verdict, count] : verdict_list) {
    verdict_counts.push_back(
        {{"verdict", verdict}, {"steps", count.steps}, {"tasks", count.tasks}});
  }
  doc["verdicts"] = {{"verifier_steps", verifier_steps}, {"counts", verdict_counts}};

  LlmUsage llm_total;
  int64_t llm_errors = 0;
  json by_role = json::array();
  for (const RoleUsage& r : *roles) {
    llm_total.calls += r.usage.calls;
    llm_total.prompt_tokens += r.usage.prompt_tokens;
    llm_total.completion_tokens += r.usage.completion_tokens;
    llm_total.cost_usd += r.usage.cost_usd;
    llm_errors += r.errors;
    json role = usage_json(r.usage);
    role["role"] = r.role;
    role["errors"] = r.errors;
    by_role.push_back(role);
  }
  json llm = usage_json(llm_total);
  llm["errors"] = llm_errors;
  llm["cost_per_passed_usd"] =
      passed > 0 ? json(llm_total.cost_usd / static_cast<double>(passed)) : json(nullptr);
  llm["by_role"] = by_role;
  doc["llm"] = llm;

  const double wall_seconds = static_cast<double>(end_ms - start_ms) / 1000.0;
  const double device_seconds = static_cast<double>(device_ms) / 1000.0;
  const int64_t window_ms = window_end_ms - window_start_ms;
  auto per_device = per_device_json(store, device_uses, window_ms);
  if (!per_device.ok()) return per_device.status();
  doc["device"] = {
      {"jobs", device_jobs},
      {"seconds", device_seconds},
      {"hours", device_seconds / 3600.0},
      {"mean_busy_devices", wall_seconds > 0 ? json(device_seconds / wall_seconds) : json(nullptr)},
      {"devices_used", static_cast<int64_t>(device_uses.size())},
      {"window_seconds",
       device_jobs > 0 ? json(static_cast<double>(window_ms) / 1000.0) : json(nullptr)},
      {"jobs_per_minute", window_ms > 0 ? json(static_cast<double>(device_jobs) * 60000.0 /
                                               static_cast<double>(window_ms))
                                        : json(nullptr)},
      {"per_device", std::move(per_device).value()}};
  doc["wall"] = {{"start_ms", rows.empty() ? json(nullptr) : json(start_ms)},
                 {"end_ms", rows.empty() ? json(nullptr) : json(end_ms)},
                 {"seconds", rows.empty() ? json(nullptr) : json(wall_seconds)}};
  return doc;
}

// ---- HTML ----------------------------------------------------------------------------------

// coordinator/operator/report.html, embedded at build time: the page (head, style, footer)
// around the body report_html builds.
extern const char* const kReportHtml;
// coordinator/operator/report_parts.html, embedded at build time: the markup of the body's
// pieces, each between {{#name}} and {{/name}}.
extern const char* const kReportParts;

namespace {

// &, <, >, " and ' as entities: safe in element content and in quoted attributes.
std::string esc(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

using Values = std::initializer_list<std::pair<std::string_view, std::string>>;

// `text` with each {{key}} replaced by its value escaped and each {{{key}}} by its value
// verbatim (values are not scanned). The templates are ours: each of their placeholders has a
// value (report_test renders every piece and finds no placeholder left).
std::string fill_template(std::string_view text, Values values) {
  std::string out;
  size_t at = 0;
  for (size_t open; (open = text.find("{{", at)) != std::string_view::npos;) {
    const bool raw = text.substr(open, 3) == "{{{";
    const size_t start = open + (raw ? 3 : 2);
    const size_t close = text.find(raw ? "}}}" : "}}", start);
    const std::string_view key = text.substr(start, close - start);
    out += text.substr(at, open - at);
    for (const auto& [name, value] : values) {
      if (name == key) out += raw ? value : esc(value);
    }
    at = close + (raw ? 3 : 2);
  }
  out += text.substr(at);
  return out;
}

// The piece `name` of report_parts.html, filled with `values`.
std::string part(std::string_view name, Values values = {}) {
  const std::string_view parts = kReportParts;
  const std::string open = "{{#" + std::string(name) + "}}";
  const size_t start = parts.find(open) + open.size();
  const size_t end = parts.find("{{/" + std::string(name) + "}}", start);
  return fill_template(parts.substr(start, end - start), values);
}

// The value at `path` inside `j`, or null when a step is missing or not an object.
const json* field(const json& j, std::initializer_list<const char*> path) {
  const json* cur = &j;
  for (const char* key : path) {
    if (!cur->is_object()) return nullptr;
    auto it = cur->find(key);
    if (it == cur->end()) return nullptr;
    cur = &*it;
  }
  return cur;
}

std::optional<double> num(const json& j, std::initializer_list<const char*> path) {
  const json* v = field(j, path);
  if (v == nullptr || !v->is_number()) return std::nullopt;
  double d = v->get<double>();
  return std::isfinite(d) ? std::optional<double>(d) : std::nullopt;
}

std::string str(const json& j, std::initializer_list<const char*> path) {
  const json* v = field(j, path);
  return v != nullptr && v->is_string() ? v->get<std::string>() : std::string();
}

const json& array_at(const json& j, std::initializer_list<const char*> path) {
  static const json empty = json::array();
  const json* v = field(j, path);
  return v != nullptr && v->is_array() ? *v : empty;
}

// A whole number in 0..max at `path` (what a plot can draw), else none.
std::optional<int64_t> small_count(const json& j, std::initializer_list<const char*> path,
                                   double max = 1e12) {
  std::optional<double> v = num(j, path);
  if (!v || *v < 0 || *v > max) return std::nullopt;
  return static_cast<int64_t>(*v);
}

constexpr const char* kNone = "–";

std::string printf_str(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string count_str(std::optional<double> v) {
  if (!v) return kNone;
  std::string digits = printf_str("%.0f", *v);
  size_t first = digits[0] == '-' ? 1 : 0;
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > first && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string fixed_str(std::optional<double> v) {
  return v ? printf_str("%.1f", *v) : kNone;
}

std::string pct_str(std::optional<double> v) {
  return v ? printf_str("%.1f%%", *v * 100) : kNone;
}

std::string speedup_str(std::optional<double> v) {
  if (!v) return kNone;
  return printf_str(*v >= 100 ? "%.0f×" : "%.2f×", *v);
}

// A threshold such as 10x: "10×" (no needless decimals).
std::string threshold_str(std::optional<double> v) {
  return v ? printf_str("%g×", *v) : kNone;
}

std::string usd_str(std::optional<double> v) {
  if (!v) return kNone;
  return printf_str(*v >= 1 || *v == 0 ? "$%.2f" : "$%.4f", *v);
}

std::string us_str(std::optional<double> v) {
  if (!v) return kNone;
  if (*v >= 1e6) return printf_str("%.2f s", *v / 1e6);
  if (*v >= 1e3) return printf_str("%.2f ms", *v / 1e3);
  return printf_str("%.1f µs", *v);
}

// common/text.h's duration_str, or kNone.
std::string duration_str(std::optional<double> seconds) {
  return seconds ? kforge::duration_str(*seconds) : kNone;
}

std::string utc_str(std::optional<double> ms) {
  if (!ms || std::fabs(*ms) > 1e15) return kNone;
  return fmt::format("{:%Y-%m-%d %H:%M:%S} UTC", fmt::gmtime(static_cast<std::time_t>(*ms / 1000)));
}

// At most `max_bytes` of `s`, cut at a UTF-8 character boundary, with "…" when cut.
std::string truncated(const std::string& s, size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return s.substr(0, cut) + "…";
}

std::string fmt(double v) {
  return printf_str("%.1f", v);
}

// A y-axis step giving at most about five gridlines up to `max_count`.
int count_step(int64_t max_count) {
  int64_t step = 1;
  while (max_count / step > 5) step = step == 1 ? 2 : step == 2 ? 5 : step * 2;
  return static_cast<int>(step);
}

struct Plot {
  double width = 640, height = 240, left = 48, right = 16, top = 18, bottom = 44;
  double plot_w() const { return width - left - right; }
  double plot_h() const { return height - top - bottom; }
};

std::string svg_open(const Plot& p, const std::string& title) {
  return part("svg_open", {{"width", fmt(p.width)}, {"height", fmt(p.height)}, {"title", title}});
}

// The x axis at height `y0`, its label under it, and the end of the <svg>.
std::string x_axis(const Plot& p, double y0, const std::string& label) {
  return part("x_axis", {{"x1", fmt(p.left)},
                         {"x2", fmt(p.left + p.plot_w())},
                         {"y", fmt(y0)},
                         {"label_x", fmt(p.left + p.plot_w() / 2)},
                         {"label_y", fmt(p.height - 6)},
                         {"label", label}});
}

// A horizontal line across the plot at height `y`, of class `cls` ("grid" or "ref").
std::string gridline(const Plot& p, const char* cls, double y) {
  return part(
      "gridline",
      {{"class", cls}, {"x1", fmt(p.left)}, {"x2", fmt(p.left + p.plot_w())}, {"y", fmt(y)}});
}

// An axis label at (x, y), its `anchor` "start", "middle" or "end".
std::string tick(double x, double y, const char* anchor, const std::string& text) {
  return part("tick", {{"x", fmt(x)}, {"y", fmt(y)}, {"anchor", anchor}, {"text", text}});
}

// A bar from (x, y), `w` wide and `h` high, of class `cls`, with `title` as its tooltip.
std::string bar(const char* cls, double x, double y, double w, double h, const std::string& title) {
  return part("bar", {{"class", cls},
                      {"x", fmt(x)},
                      {"y", fmt(y)},
                      {"width", fmt(w)},
                      {"height", fmt(h)},
                      {"title", title}});
}

// Horizontal gridlines and y labels for counts 0..max_count.
std::string count_axis(const Plot& p, int64_t max_count, const std::string& label) {
  std::string out;
  int step = count_step(max_count);
  int64_t top = (max_count + step - 1) / step * step;
  for (int64_t c = 0; c <= top; c += step) {
    double y = p.top + p.plot_h() - static_cast<double>(c) / static_cast<double>(top) * p.plot_h();
    out += gridline(p, "grid", y);
    out += tick(p.left - 6, y + 4, "end", std::to_string(c));
  }
  out += part("y_label", {{"y", fmt(p.top + p.plot_h() / 2)}, {"label", label}});
  return out;
}

std::string speedup_label(int k) {
  if (k >= 0) return printf_str("%.0f×", std::ldexp(1.0, k));
  return "1/" + printf_str("%.0f", std::ldexp(1.0, -k)) + "×";
}

// Speedups on a log2 axis, bins of half a power of two, with the 1x (and 10x) line.
std::string speedup_svg(const std::vector<double>& speedups) {
  constexpr double kBin = 0.5, kClamp = 8;  // beyond 1/256x..256x: the edge bins
  const double suspicious_log = std::log2(kSuspiciousSpeedup);
  std::vector<double> logs;
  for (double s : speedups) logs.push_back(std::clamp(std::log2(s), -kClamp, kClamp - 1e-9));
  double lo = std::floor(std::min(*std::min_element(logs.begin(), logs.end()), -1.0) / kBin) * kBin;
  double max_log = std::max(*std::max_element(logs.begin(), logs.end()), 1.0 - 1e-9);
  auto bins = static_cast<size_t>(std::floor((max_log - lo) / kBin)) + 1;
  double hi = lo + static_cast<double>(bins) * kBin;
  std::vector<int64_t> counts(bins, 0), suspicious(bins, 0);  // suspicious: above the threshold
  for (double l : logs) {
    size_t i = std::min(bins - 1, static_cast<size_t>(std::floor((l - lo) / kBin)));
    ++counts[i];
    if (l > suspicious_log) ++suspicious[i];
  }
  int64_t max_count = std::max<int64_t>(1, *std::max_element(counts.begin(), counts.end()));
  int step = count_step(max_count);
  int64_t top = (max_count + step - 1) / step * step;

  Plot p;
  p.top = 30;  // room for the reference lines' labels
  auto x = [&](double l) { return p.left + (l - lo) / (hi - lo) * p.plot_w(); };
  auto y = [&](int64_t c) {
    return p.top + p.plot_h() - static_cast<double>(c) / static_cast<double>(top) * p.plot_h();
  };
  std::string out = svg_open(p, "Speedup distribution of correct profiled kernels (log2 axis)");
  out += count_axis(p, max_count, "kernels");
  for (size_t i = 0; i < bins; ++i) {
    if (counts[i] == 0) continue;
    double a = lo + static_cast<double>(i) * kBin, b = a + kBin;
    // A bin holding speedups above the threshold shows them in its top part, in orange.
    const char* cls = (a + b) / 2 < 0 ? "bar slow" : "bar fast";
    if (suspicious[i] == counts[i]) cls = "bar sus";
    out += bar(cls, x(a) + 1, y(counts[i]), x(b) - x(a) - 2, y(0) - y(counts[i]),
               printf_str("%.2f×", std::exp2(a)) + " – " + printf_str("%.2f×", std::exp2(b)) +
                   ": " + std::to_string(counts[i]) + (counts[i] == 1 ? " kernel" : " kernels"));
    if (suspicious[i] > 0 && suspicious[i] < counts[i]) {
      out += bar("bar sus", x(a) + 1, y(counts[i]), x(b) - x(a) - 2, y(0) - y(suspicious[i]),
                 std::to_string(suspicious[i]) + " above " + threshold_str(kSuspiciousSpeedup));
    }
  }
  for (int k = static_cast<int>(std::ceil(lo)); k <= static_cast<int>(std::floor(hi)); ++k)
    out += tick(x(k), p.top + p.plot_h() + 16, "middle", speedup_label(k));
  out += part("reference", {{"x", fmt(x(0))},
                            {"y1", fmt(p.top - 4)},
                            {"y2", fmt(y(0))},
                            {"label_x", fmt(x(0) + 4)},
                            {"label_y", fmt(p.top - 8)}});
  if (suspicious_log < hi) {
    out += part("suspicious_line", {{"x", fmt(x(suspicious_log))},
                                    {"y1", fmt(p.top - 4)},
                                    {"y2", fmt(y(0))},
                                    {"label_x", fmt(x(suspicious_log) - 4)},
                                    {"label_y", fmt(p.top - 8)},
                                    {"threshold", threshold_str(kSuspiciousSpeedup)}});
  }
  out += x_axis(p, y(0), "speedup over the reference (log2 scale)");
  return out;
}

// Passed tasks by the number of steps they used.
std::string steps_svg(const std::map<int64_t, int64_t>& histogram, int64_t limit) {
  int64_t first = std::min<int64_t>(1, histogram.begin()->first);
  int64_t last = std::max(histogram.rbegin()->first, limit);
  int64_t max_count = 1;
  for (const auto& [steps, count] : histogram) max_count = std::max(max_count, count);
  int step = count_step(max_count);
  int64_t top = (max_count + step - 1) / step * step;
  Plot p;
  const double slot = p.plot_w() / static_cast<double>(last - first + 1);
  auto y = [&](int64_t c) {
    return p.top + p.plot_h() - static_cast<double>(c) / static_cast<double>(top) * p.plot_h();
  };
  std::string out = svg_open(p, "Steps used by passed tasks");
  out += count_axis(p, max_count, "passed tasks");
  const int64_t label_every = (last - first + 1) > 30 ? (last - first + 1) / 15 : 1;
  for (int64_t k = first; k <= last; ++k) {
    double x0 = p.left + static_cast<double>(k - first) * slot;
    auto it = histogram.find(k);
    if (it != histogram.end() && it->second > 0) {
      out += bar("bar fast", x0 + slot * 0.15, y(it->second), slot * 0.7, y(0) - y(it->second),
                 std::to_string(k) + (k == 1 ? " step: " : " steps: ") +
                     std::to_string(it->second) + (it->second == 1 ? " task" : " tasks"));
    }
    if ((k - first) % label_every == 0)
      out += tick(x0 + slot / 2, p.top + p.plot_h() + 16, "middle", std::to_string(k));
  }
  out += x_axis(p, y(0), "counted steps used (the budget is limit_steps)");
  return out;
}

// Verifier steps by verdict, most frequent first.
std::string verdicts_svg(const std::vector<std::pair<std::string, int64_t>>& counts) {
  Plot p;
  p.left = 190;
  p.right = 56;
  p.top = 8;
  p.bottom = 8;
  const double row = 24;
  p.height = p.top + p.bottom + row * static_cast<double>(counts.size());
  int64_t max_count = 1;
  for (const auto& c : counts) max_count = std::max(max_count, c.second);
  std::string out = svg_open(p, "Verdicts of every verifier step");
  for (size_t i = 0; i < counts.size(); ++i) {
    const auto& [verdict, count] = counts[i];
    double y0 = p.top + row * static_cast<double>(i);
    double w = static_cast<double>(count) / static_cast<double>(max_count) * p.plot_w();
    const char* cls = verdict == "passed"        ? "bar fast"
                      : verdict == "infra_error" ? "bar infra"
                                                 : "bar fail";
    out += tick(p.left - 8, y0 + row / 2 + 4, "end", truncated(verdict, 40));
    out +=
        bar(cls, p.left, y0 + 3, std::max(w, 1.0), row - 6, verdict + ": " + std::to_string(count));
    out += part("bar_count", {{"x", fmt(p.left + std::max(w, 1.0) + 6)},
                              {"y", fmt(y0 + row / 2 + 4)},
                              {"text", std::to_string(count)}});
  }
  out += part("svg_close");
  return out;
}

// "fast_1.5" for p = 1.5, "fast_0" for 0.
std::string fast_name(std::optional<double> p) {
  return p ? printf_str("fast_%g", *p) : std::string(kNone);
}

// The fast_p rates over all tasks and over profiled tasks, then (a search of several chains)
// pass@k and fast_p@k.
std::string fast_p_html(const json& r) {
  const json& all = array_at(r, {"metrics", "fast_p"});
  if (all.empty()) return "";
  const json& profiled = array_at(r, {"metrics", "profiled", "fast_p"});
  std::string rows;
  for (size_t i = 0; i < all.size(); ++i) {
    const json& f = all[i];
    const json& pf = i < profiled.size() ? profiled[i] : json::object();
    rows += part("fast_p_row", {{"p", fast_name(num(f, {"p"}))},
                                {"all", pct_str(num(f, {"value"}))},
                                {"all_count", count_str(num(f, {"count"}))},
                                {"all_of", count_str(num(f, {"of"}))},
                                {"profiled", pct_str(num(pf, {"value"}))},
                                {"profiled_count", count_str(num(pf, {"count"}))},
                                {"profiled_of", count_str(num(pf, {"of"}))}});
  }
  const json& at = array_at(r, {"metrics", "at_k"});
  std::string at_k;
  if (!at.empty()) {
    std::string heads, at_rows;
    for (const json& p : array_at(at[0], {"fast_p"})) {
      std::optional<double> v = num(p, {"p"});
      heads += part("at_k_head", {{"name", v && *v == 0 ? "pass@k" : fast_name(v) + "@k"}});
    }
    for (const json& row : at) {
      std::string cells;
      for (const json& p : array_at(row, {"fast_p"}))
        cells += part("at_k_cell", {{"value", pct_str(num(p, {"value"}))}});
      at_rows += part("at_k_row", {{"k", count_str(num(row, {"k"}))}, {"cells", cells}});
    }
    at_k = part("at_k", {{"heads", heads}, {"rows", at_rows}});
  }
  return part("fast_p", {{"rows", rows}, {"at_k", at_k}});
}

// Per-task lines up to this many tasks with a measured kernel; beyond, the interquartile band.
constexpr size_t kGenerationTaskLines = 20;

// The best speedup so far against generation: the geomean over tasks (bold), each task's best
// (up to kGenerationTaskLines tasks) or the band from the 25th to the 75th percentile.
std::string generation_svg(const json& r, int64_t generations) {
  struct Series {
    std::string name;
    std::vector<std::pair<int64_t, double>> points;  // (generation, speedup), improving
  };
  std::vector<Series> tasks;
  for (const json& row : array_at(r, {"tasks"})) {
    Series s{str(row, {"op_name"}) + " " + str(row, {"task_id"}), {}};
    for (const json& b : array_at(row, {"best_by_generation"})) {
      std::optional<int64_t> g = small_count(b, {"generation"}, 1e6);
      std::optional<double> v = num(b, {"speedup"});
      if (g && v && *v > 0) s.points.emplace_back(*g, *v);
    }
    if (!s.points.empty()) tasks.push_back(std::move(s));
  }
  struct Point {
    int64_t g;
    double geo, p25, p75;
    int64_t n;
  };
  std::vector<Point> points;
  for (const json& p : array_at(r, {"by_generation", "points"})) {
    std::optional<int64_t> g = small_count(p, {"generation"}, 1e6), n = small_count(p, {"tasks"});
    std::optional<double> geo = num(p, {"geomean"}), p25 = num(p, {"p25"}), p75 = num(p, {"p75"});
    if (g && n && geo && *geo > 0)
      points.push_back({*g, *geo, p25.value_or(*geo), p75.value_or(*geo), *n});
  }
  const bool lines = tasks.size() <= kGenerationTaskLines;
  double lo = 0, hi = 0;  // log2 range, always holding 1x
  auto widen = [&](double v) {
    if (v <= 0) return;
    lo = std::min(lo, std::log2(v));
    hi = std::max(hi, std::log2(v));
  };
  for (const Point& p : points) {
    widen(p.geo);
    if (!lines) {
      widen(p.p25);
      widen(p.p75);
    }
  }
  if (lines) {
    for (const Series& s : tasks)
      for (const auto& [g, v] : s.points) widen(v);
  }
  lo = std::floor(std::max(lo, -12.0)) - (lo == std::floor(lo) ? 0.5 : 0);
  hi = std::ceil(std::min(hi, 12.0)) + (hi == std::ceil(hi) ? 0.5 : 0);
  Plot p;
  p.top = 20;
  const double g_lo = generations > 1 ? 1 : 0.5,
               g_hi = generations > 1 ? static_cast<double>(generations) : 1.5;
  auto x = [&](double g) { return p.left + (g - g_lo) / (g_hi - g_lo) * p.plot_w(); };
  auto y = [&](double v) {
    const double l = std::clamp(std::log2(v), lo, hi);
    return p.top + p.plot_h() - (l - lo) / (hi - lo) * p.plot_h();
  };
  std::string out = svg_open(p, "Best speedup so far by generation");
  for (int k = static_cast<int>(std::ceil(lo)); k <= static_cast<int>(std::floor(hi)); ++k) {
    const double yk = y(std::ldexp(1.0, k));
    out += gridline(p, k == 0 ? "ref" : "grid", yk) +
           tick(p.left - 6, yk + 4, "end", speedup_label(k));
  }
  const int64_t label_every = generations > 15 ? (generations + 14) / 15 : 1;
  for (int64_t g = 1; g <= std::max<int64_t>(generations, 1); g += label_every)
    out += tick(x(static_cast<double>(g)), p.top + p.plot_h() + 16, "middle", std::to_string(g));
  out += part("y_label", {{"y", fmt(p.top + p.plot_h() / 2)}, {"label", "best speedup so far"}});
  if (lines) {
    for (const Series& s : tasks) {
      std::string pts;  // a step function, held flat to the last generation
      for (size_t i = 0; i < s.points.size(); ++i) {
        const auto& [g, v] = s.points[i];
        if (i > 0)
          pts += fmt(x(static_cast<double>(g))) + "," + fmt(y(s.points[i - 1].second)) + " ";
        pts += fmt(x(static_cast<double>(g))) + "," + fmt(y(v)) + " ";
      }
      pts += fmt(x(std::max(g_hi, static_cast<double>(s.points.back().first)))) + "," +
             fmt(y(s.points.back().second));
      out += part("task_line",
                  {{"points", pts},
                   {"title", s.name + ": " + printf_str("%.2f×", s.points.back().second)}});
    }
  } else if (!points.empty()) {
    // Out along the 75th percentile, back along the 25th; one generation: a bar 12 wide.
    const double half = points.size() == 1 ? 6 : 0;
    std::string band;
    for (const Point& q : points) {
      band += fmt(x(static_cast<double>(q.g)) - half) + "," + fmt(y(q.p75)) + " ";
      if (half > 0) band += fmt(x(static_cast<double>(q.g)) + half) + "," + fmt(y(q.p75)) + " ";
    }
    for (auto it = points.rbegin(); it != points.rend(); ++it) {
      if (half > 0) band += fmt(x(static_cast<double>(it->g)) + half) + "," + fmt(y(it->p25)) + " ";
      band += fmt(x(static_cast<double>(it->g)) - half) + "," + fmt(y(it->p25)) + " ";
    }
    band.pop_back();
    out += part("band", {{"points", band}});
  }
  std::string geo;
  for (const Point& q : points)
    geo += (geo.empty() ? "" : " ") + fmt(x(static_cast<double>(q.g))) + "," + fmt(y(q.geo));
  if (!geo.empty()) out += part("geo_line", {{"points", geo}});
  for (const Point& q : points) {
    out += part(
        "geo_point",
        {{"x", fmt(x(static_cast<double>(q.g)))},
         {"y", fmt(y(q.geo))},
         {"title", "generation " + std::to_string(q.g) + ": geomean " + printf_str("%.2f×", q.geo) +
                       " over " + std::to_string(q.n) + (q.n == 1 ? " task" : " tasks")}});
  }
  out += x_axis(p, p.top + p.plot_h(), "generation");
  return out;
}

// Lineages shown on the page (the document holds every task's).
constexpr size_t kLineagesShown = 50;

// Each task's winner and its ancestors, first ancestor first.
std::string lineage_html(const json& r) {
  std::string rows;
  size_t shown = 0, with = 0;
  for (const json& row : array_at(r, {"tasks"})) {
    const json& lineage = array_at(row, {"lineage"});
    if (lineage.empty()) continue;
    if (++with > kLineagesShown) continue;
    ++shown;
    for (size_t i = 0; i < lineage.size(); ++i) {
      const json& c = lineage[i];
      std::string made;
      for (const json& s : array_at(c, {"steps"})) {
        if (!made.empty()) made += " · ";
        made += count_str(num(s, {"seq"})) + " " + str(s, {"role"});
      }
      const bool last = i + 1 == lineage.size();
      const std::string cells = part(
          "lineage_cells", {{"candidate", count_str(num(c, {"candidate"})) + (last ? " ★" : "")},
                            {"generation", count_str(num(c, {"generation"}))},
                            {"island", count_str(num(c, {"island"}))},
                            {"sample", count_str(num(c, {"sample"}))},
                            {"verdict", str(c, {"verdict"})},
                            {"speedup", speedup_str(num(c, {"speedup"}))},
                            {"made", made.empty() ? kNone : made}});
      rows += i > 0 ? part("lineage_next", {{"cells", cells}})
                    : part("lineage_first", {{"rows", std::to_string(lineage.size())},
                                             {"op", str(row, {"op_name"})},
                                             {"task_id", str(row, {"task_id"})},
                                             {"task", count_str(num(row, {"task"}))},
                                             {"cells", cells}});
    }
  }
  if (with == 0) {
    const std::optional<double> generations = num(r, {"by_generation", "generations"});
    return part("lineage_none",
                {{"text", generations && *generations == 0
                              ? "No candidate is recorded for this campaign (one run before "
                                "migration 0012 has none)."
                              : "No task has a passing candidate."}});
  }
  std::string more;
  if (with > shown) {
    more = " The first " + std::to_string(shown) + " of " + std::to_string(with) +
           " tasks; report.json holds every lineage.";
  }
  return part("lineage", {{"more", more}, {"rows", rows}});
}

std::string card(const std::string& key, const std::string& value, const std::string& detail) {
  return part("card", {{"key", key}, {"value", value}, {"detail", detail}});
}

// "62.5% · 5 of 8" for a {"count", "of", "value"} fraction.
std::string fraction_detail(const json& report, std::initializer_list<const char*> path) {
  const json* f = field(report, path);
  if (f == nullptr) return kNone;
  return count_str(num(*f, {"count"})) + " of " + count_str(num(*f, {"of"}));
}

std::optional<double> opt_value(const json& report, std::initializer_list<const char*> path) {
  const json* f = field(report, path);
  return f == nullptr ? std::nullopt : num(*f, {"value"});
}

}  // namespace

std::string report_html(const json& report) {
  const json& r = report;
  const std::string name = str(r, {"campaign", "name"});
  std::string out;  // the page's body; the page around it is report.html
  out.reserve(64 * 1024);

  // Header.
  out += part("header", {{"name", name.empty() ? std::string(kNone) : name},
                         {"state", str(r, {"campaign", "state"})},
                         {"id", count_str(num(r, {"campaign", "id"}))},
                         {"workflow", str(r, {"campaign", "workflow"})},
                         {"created", utc_str(num(r, {"campaign", "created_ms"}))},
                         {"updated", utc_str(num(r, {"campaign", "updated_ms"}))}});

  // Summary cards.
  std::string states;  // the lifecycle's order, then any other state
  if (const json* by_state = field(r, {"counts", "by_state"});
      by_state != nullptr && by_state->is_object()) {
    std::vector<std::string> order = {"passed", "failed", "running", "pending", "cancelled"};
    for (const auto& item : by_state->items()) {
      if (std::find(order.begin(), order.end(), item.key()) == order.end())
        order.push_back(item.key());
    }
    for (const std::string& state : order) {
      std::optional<double> count = num(*by_state, {state.c_str()});
      if (!count || *count == 0) continue;
      if (!states.empty()) states += " · ";
      states += count_str(count) + " " + state;  // card() escapes
    }
  }
  std::string cards;
  cards += card("Tasks", count_str(num(r, {"counts", "total"})), states.empty() ? "none" : states);
  cards += card("Correct (fast_0)", pct_str(opt_value(r, {"metrics", "fast_0"})),
                fraction_detail(r, {"metrics", "fast_0"}) + " tasks passed");
  cards += card("fast_1", pct_str(opt_value(r, {"metrics", "fast_1"})),
                fraction_detail(r, {"metrics", "fast_1"}) + " tasks; of profiled: " +
                    pct_str(opt_value(r, {"metrics", "profiled", "fast_1"})) + " (" +
                    fraction_detail(r, {"metrics", "profiled", "fast_1"}) + ")");
  cards += card("fast_2", pct_str(opt_value(r, {"metrics", "fast_2"})),
                fraction_detail(r, {"metrics", "fast_2"}) + " tasks; of profiled: " +
                    pct_str(opt_value(r, {"metrics", "profiled", "fast_2"})) + " (" +
                    fraction_detail(r, {"metrics", "profiled", "fast_2"}) + ")");
  cards += card("Geomean speedup", speedup_str(num(r, {"metrics", "speedup", "geomean"})),
                "over " + count_str(num(r, {"metrics", "speedup", "measured"})) +
                    " correct profiled kernels; " +
                    speedup_str(num(r, {"metrics", "speedup", "geomean_unflagged"})) +
                    " without the suspicious");
  const size_t n_suspicious = array_at(r, {"suspicious"}).size();
  cards += card("Suspicious", std::to_string(n_suspicious),
                "speedups above " + threshold_str(num(r, {"metrics", "suspicious_threshold"})) +
                    " or flagged by the harness");
  cards += card("LLM cost", usd_str(num(r, {"llm", "cost_usd"})),
                count_str(num(r, {"llm", "calls"})) + " calls · " +
                    usd_str(num(r, {"llm", "cost_per_passed_usd"})) + " per passed task");
  std::optional<double> prompt = num(r, {"llm", "prompt_tokens"}),
                        completion = num(r, {"llm", "completion_tokens"});
  cards += card("LLM tokens",
                prompt && completion ? count_str(*prompt + *completion) : std::string(kNone),
                count_str(prompt) + " prompt · " + count_str(completion) + " completion");
  std::optional<double> hours = num(r, {"device", "hours"});
  cards += card("Device time",
                !hours        ? std::string(kNone)
                : *hours >= 1 ? printf_str("%.2f h", *hours)
                              : duration_str(num(r, {"device", "seconds"})),
                count_str(num(r, {"device", "jobs"})) + " jobs · " +
                    (num(r, {"device", "mean_busy_devices"})
                         ? printf_str("%.2f", *num(r, {"device", "mean_busy_devices"}))
                         : std::string(kNone)) +
                    " devices busy on average");
  cards += card("Wall time", duration_str(num(r, {"wall", "seconds"})),
                "first task created to last task update");
  out += part("cards", {{"cards", cards}});
  out += fast_p_html(r);

  // Per-device use, beside the device-time card (a document without it shows nothing).
  if (const json* devices = field(r, {"device", "per_device"});
      devices != nullptr && devices->is_array()) {
    std::string table;
    if (devices->empty()) {
      table = part("no_devices");
    } else {
      std::string rows;
      for (const json& d : *devices) {
        const std::string host = str(d, {"host"});
        rows += part("device_row", {{"device", str(d, {"device"})},
                                    {"arch", str(d, {"arch"})},
                                    {"host", host.empty() ? std::string(kNone) : host},
                                    {"agent", str(d, {"agent"})},
                                    {"jobs", count_str(num(d, {"jobs"}))},
                                    {"busy", duration_str(num(d, {"busy_seconds"}))},
                                    {"utilisation", pct_str(num(d, {"utilisation"}))}});
      }
      table = part("device_table", {{"rows", rows}});
    }
    std::optional<double> per_minute = num(r, {"device", "jobs_per_minute"});
    std::optional<double> used = num(r, {"device", "devices_used"});
    out +=
        part("devices",
             {{"table", table},
              {"used", count_str(used) + (used && *used == 1 ? " device" : " devices")},
              {"window", duration_str(num(r, {"device", "window_seconds"}))},
              {"per_minute", per_minute ? printf_str("%.2f", *per_minute) : std::string(kNone)}});
  }

  // Plots.
  std::vector<double> speedups;
  for (const json& row : array_at(r, {"tasks"})) {
    std::optional<double> s = num(row, {"speedup"});
    if (s && *s > 0) speedups.push_back(*s);
  }
  std::map<int64_t, int64_t> steps;
  for (const json& h : array_at(r, {"steps_used", "histogram"})) {
    std::optional<int64_t> k = small_count(h, {"steps"}, 100'000), n = small_count(h, {"tasks"});
    if (k && n && *n > 0) steps[*k] += *n;
  }
  int64_t limit = 0;
  for (const json& row : array_at(r, {"tasks"})) {
    std::optional<int64_t> l = small_count(row, {"limit_steps"}, 10'000);
    if (l && str(row, {"state"}) == "passed") limit = std::max(limit, *l);
  }
  std::vector<std::pair<std::string, int64_t>> verdicts;
  for (const json& v : array_at(r, {"verdicts", "counts"})) {
    std::optional<int64_t> n = small_count(v, {"steps"});
    if (n && *n > 0) verdicts.emplace_back(str(v, {"verdict"}), *n);
  }
  auto no_plot = [](const char* text) { return part("no_plot", {{"text", text}}); };
  std::string figures;
  figures += part(
      "speedup_figure",
      {{"plot", speedups.empty() ? no_plot("No profiled kernel passed with a measured speedup.")
                                 : speedup_svg(speedups)},
       {"median", speedup_str(num(r, {"metrics", "speedup", "median"}))},
       {"min", speedup_str(num(r, {"metrics", "speedup", "min"}))},
       {"max", speedup_str(num(r, {"metrics", "speedup", "max"}))}});
  figures += part("steps_figure",
                  {{"plot", steps.empty() ? no_plot("No task passed.") : steps_svg(steps, limit)},
                   {"median", fixed_str(num(r, {"steps_used", "median"}))},
                   {"mean", fixed_str(num(r, {"steps_used", "mean"}))}});
  figures +=
      part("verdicts_figure",
           {{"plot", verdicts.empty() ? no_plot("No verifier step ran.") : verdicts_svg(verdicts)},
            {"steps", count_str(num(r, {"verdicts", "verifier_steps"}))}});
  if (std::optional<int64_t> generations = small_count(r, {"by_generation", "generations"}, 1e6)) {
    const std::optional<double> measured = num(r, {"by_generation", "tasks_measured"});
    figures +=
        part("generation_figure",
             {{"plot", *generations == 0 || !measured || *measured == 0
                           ? no_plot("No candidate passed with a measured speedup.")
                           : generation_svg(r, *generations)},
              {"measured", count_str(measured)},
              {"others", part(measured && *measured <= static_cast<double>(kGenerationTaskLines)
                                  ? "generation_lines"
                                  : "generation_band")}});
  }
  out += part("plots", {{"figures", figures}});

  // Suspicious speedups.
  const json& suspicious = array_at(r, {"suspicious"});
  if (!suspicious.empty()) {
    std::string rows;
    for (const json& s : suspicious) {
      std::string why;
      if (const json* a = field(s, {"above_threshold"});
          a != nullptr && a->is_boolean() && a->get<bool>()) {
        why = "above " + threshold_str(num(r, {"metrics", "suspicious_threshold"}));
      }
      if (const json* h = field(s, {"harness_flag"});
          h != nullptr && h->is_boolean() && h->get<bool>()) {
        why += std::string(why.empty() ? "" : "; ") + "flagged by the harness";
      }
      rows += part("suspicious_row", {{"op", str(s, {"op_name"})},
                                      {"task_id", str(s, {"task_id"})},
                                      {"task", count_str(num(s, {"task"}))},
                                      {"speedup", speedup_str(num(s, {"speedup"}))},
                                      {"why", why}});
    }
    out += part("suspicious", {{"rows", rows}});
  }

  out += lineage_html(r);

  // LLM usage per role.
  const json& roles = array_at(r, {"llm", "by_role"});
  std::string llm_table;
  if (roles.empty()) {
    llm_table = part("no_llm");
  } else {
    std::string rows;
    for (const json& role : roles) {
      rows += part("llm_row", {{"role", str(role, {"role"})},
                               {"calls", count_str(num(role, {"calls"}))},
                               {"errors", count_str(num(role, {"errors"}))},
                               {"prompt", count_str(num(role, {"prompt_tokens"}))},
                               {"completion", count_str(num(role, {"completion_tokens"}))},
                               {"cost", usd_str(num(role, {"cost_usd"}))}});
    }
    llm_table = part("llm_table", {{"rows", rows},
                                   {"calls", count_str(num(r, {"llm", "calls"}))},
                                   {"errors", count_str(num(r, {"llm", "errors"}))},
                                   {"prompt", count_str(prompt)},
                                   {"completion", count_str(completion)},
                                   {"cost", usd_str(num(r, {"llm", "cost_usd"}))}});
  }
  out += part("llm", {{"table", llm_table}});

  // Per-task table.
  const json& task_rows = array_at(r, {"tasks"});
  std::string task_table;
  if (task_rows.empty()) {
    task_table = part("no_tasks");
  } else {
    std::string rows;
    for (const json& row : task_rows) {
      const std::string verdict = str(row, {"verdict"});
      const std::string reason = str(row, {"reason"});
      const json* sus = field(row, {"suspicious"});
      const bool is_sus = sus != nullptr && sus->is_boolean() && sus->get<bool>();
      std::optional<double> p_tok = num(row, {"prompt_tokens"}),
                            c_tok = num(row, {"completion_tokens"});
      std::optional<double> device = num(row, {"device_seconds"});
      std::optional<double> cand_us = num(row, {"candidate_us"}),
                            ref_us = num(row, {"reference_us"});
      rows += part("task_row",
                   {{"state", str(row, {"state"})},
                    {"op", str(row, {"op_name"})},
                    {"task_id", str(row, {"task_id"})},
                    {"backend", str(row, {"backend"})},
                    {"arch", str(row, {"arch"})},
                    {"impl_type", str(row, {"impl_type"})},
                    {"task_type", str(row, {"task_type"})},
                    {"verdict", verdict},
                    {"reason", reason.empty() || reason == verdict
                                   ? std::string()
                                   : part("task_reason",
                                          {{"reason", reason}, {"short", truncated(reason, 160)}})},
                    {"steps", count_str(num(row, {"steps"}))},
                    {"limit_steps", count_str(num(row, {"limit_steps"}))},
                    {"best_step", count_str(num(row, {"best_step"}))},
                    {"sus", is_sus ? " sus" : ""},
                    {"speedup", speedup_str(num(row, {"speedup"})) + (is_sus ? " ⚠" : "")},
                    {"times", cand_us || ref_us ? us_str(cand_us) + " / " + us_str(ref_us) : kNone},
                    {"llm_calls", count_str(num(row, {"llm_calls"}))},
                    {"tokens", p_tok && c_tok ? count_str(*p_tok + *c_tok) : std::string(kNone)},
                    {"cost", usd_str(num(row, {"cost_usd"}))},
                    {"device", device ? duration_str(device) : std::string(kNone)}});
    }
    task_table = part("task_table", {{"rows", rows}});
  }
  out += part("tasks", {{"table", task_table}});

  return fill_template(
      kReportHtml,
      {{"name", name}, {"body", out}, {"report_version", count_str(num(r, {"report_version"}))}});
}

std::string report_text(const json& report) {
  const json& r = report;
  std::string out = "campaign " + count_str(num(r, {"campaign", "id"})) + " " +
                    str(r, {"campaign", "name"}) + " (" + str(r, {"campaign", "state"}) +
                    "): " + count_str(num(r, {"counts", "total"})) + " tasks\n";
  out += fmt::format("\n{:<13} {:<22} {}\n", "fast_p", "all tasks", "profiled tasks");
  const json& profiled = array_at(r, {"metrics", "profiled", "fast_p"});
  const json& all = array_at(r, {"metrics", "fast_p"});
  for (size_t i = 0; i < all.size(); ++i) {
    const json& f = all[i];
    const json& pf = i < profiled.size() ? profiled[i] : json::object();
    out += fmt::format(
        "{:<13} {:>7} {:<14} {:>7} {}\n", fast_name(num(f, {"p"})), pct_str(num(f, {"value"})),
        "(" + count_str(num(f, {"count"})) + " of " + count_str(num(f, {"of"})) + ")",
        pct_str(num(pf, {"value"})),
        "(" + count_str(num(pf, {"count"})) + " of " + count_str(num(pf, {"of"})) + ")");
  }
  const json& at = array_at(r, {"metrics", "at_k"});
  if (!at.empty()) {
    out += "\nk    ";
    for (const json& p : array_at(at[0], {"fast_p"})) {
      std::optional<double> v = num(p, {"p"});
      out += fmt::format(" {:>12}", v && *v == 0 ? std::string("pass@k") : fast_name(v) + "@k");
    }
    out += "\n";
    for (const json& row : at) {
      out += fmt::format("{:<5}", count_str(num(row, {"k"})));
      for (const json& p : array_at(row, {"fast_p"}))
        out += fmt::format(" {:>12}", pct_str(num(p, {"value"})));
      out += "\n";
    }
  }
  out += "\ngeomean speedup " + speedup_str(num(r, {"metrics", "speedup", "geomean"})) + " over " +
         count_str(num(r, {"metrics", "speedup", "measured"})) + " measured kernels (" +
         speedup_str(num(r, {"metrics", "speedup", "geomean_unflagged"})) + " without the " +
         std::to_string(array_at(r, {"suspicious"}).size()) + " suspicious)\n";
  const json& points = array_at(r, {"by_generation", "points"});
  if (!points.empty()) {
    out += "\ngeneration  tasks  geomean  median  best (the best speedup so far)\n";
    for (const json& p : points) {
      out += fmt::format("{:<11} {:>5} {:>8} {:>7} {:>6}\n", count_str(num(p, {"generation"})),
                         count_str(num(p, {"tasks"})), speedup_str(num(p, {"geomean"})),
                         speedup_str(num(p, {"median"})), speedup_str(num(p, {"max"})));
    }
  }
  std::string winners;
  for (const json& row : array_at(r, {"tasks"})) {
    const json& lineage = array_at(row, {"lineage"});
    if (lineage.empty()) continue;
    std::string path;
    for (const json& c : lineage) {
      if (!path.empty()) path += " -> ";
      path += "#" + count_str(num(c, {"candidate"})) + " g" + count_str(num(c, {"generation"})) +
              " " + str(c, {"verdict"});
      if (num(c, {"speedup"})) path += " " + speedup_str(num(c, {"speedup"}));
    }
    winners += "  " + str(row, {"op_name"}) + " " + str(row, {"task_id"}) + " (task " +
               count_str(num(row, {"task"})) + ", step " + count_str(num(row, {"best_step"})) +
               "): " + path + "\n";
  }
  if (!winners.empty()) out += "\nwinners and their lineage (first ancestor first)\n" + winners;
  return out;
}

}  // namespace kforge
