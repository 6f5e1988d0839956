#include "coordinator/generation/adaptive.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace kforge {

std::optional<std::string> spent_budget(const SearchPolicy& p, const Store::CampaignSpend& spend,
                                        int64_t in_flight_llm, bool asks) {
  const double device_s = static_cast<double>(spend.device_ms) / 1000.0;
  const double wall_s = static_cast<double>(spend.wall_ms) / 1000.0;
  if (p.campaign_max_wall_s > 0 && wall_s >= p.campaign_max_wall_s) {
    return fmt::format("campaign_max_wall_s ({:g}) spent: {:g} s since the campaign was submitted",
                       p.campaign_max_wall_s, wall_s);
  }
  if (p.campaign_max_device_s > 0 && device_s >= p.campaign_max_device_s) {
    return fmt::format("campaign_max_device_s ({:g}) spent: {:g} device-seconds of verify jobs",
                       p.campaign_max_device_s, device_s);
  }
  if (!asks) return std::nullopt;
  const int64_t calls = spend.llm_calls + in_flight_llm;
  if (p.campaign_max_llm_calls > 0 && calls >= p.campaign_max_llm_calls) {
    return fmt::format("campaign_max_llm_calls ({}) spent: {} LLM calls", p.campaign_max_llm_calls,
                       calls);
  }
  if (p.campaign_max_tokens > 0 && spend.tokens >= p.campaign_max_tokens) {
    return fmt::format("campaign_max_tokens ({}) spent: {} tokens", p.campaign_max_tokens,
                       spend.tokens);
  }
  if (p.campaign_max_cost_usd > 0 && spend.cost_usd >= p.campaign_max_cost_usd) {
    return fmt::format("campaign_max_cost_usd ({:g}) spent: {:.4f} USD", p.campaign_max_cost_usd,
                       spend.cost_usd);
  }
  return std::nullopt;
}

double progress(Verdict verdict, double score) {
  switch (verdict) {
    case Verdict::passed: return 1 + score;
    case Verdict::precision_mismatch: return 0.5;
    case Verdict::runtime_error:
    case Verdict::crashed:
    case Verdict::timeout:
    case Verdict::resource_exceeded: return 0.25;
    default: return 0;
  }
}

std::vector<AdaptiveTask> adaptive_tasks(const std::vector<Store::SearchStep>& steps) {
  std::vector<AdaptiveTask> out;
  for (const Store::SearchStep& s : steps) {
    if (out.empty() || out.back().task_id != s.task_id) out.push_back(AdaptiveTask{s.task_id});
    AdaptiveTask& t = out.back();
    if (s.llm) t.calls++;
    if (s.verdict) t.judged.emplace_back(t.calls, progress(*s.verdict, s.score));
  }
  return out;
}

double best_progress(const AdaptiveTask& t, int64_t calls) {
  double best = 0;
  for (const auto& [n, p] : t.judged) {
    if (n <= calls) best = std::max(best, p);
  }
  return best;
}

double adaptive_index(const AdaptiveTask& t, int64_t campaign_calls, const SearchPolicy& p) {
  const int64_t w = std::min(p.patience, t.calls);
  const double gain =
      w == 0 ? 0
             : (best_progress(t, t.calls) - best_progress(t, t.calls - w)) / static_cast<double>(w);
  return gain + p.exploration * std::sqrt(std::log(1.0 + static_cast<double>(campaign_calls)) /
                                          (1.0 + static_cast<double>(t.calls)));
}

std::optional<std::string> stagnant(const AdaptiveTask& t, const SearchPolicy& p) {
  if (t.calls < p.patience) return std::nullopt;
  const double best = best_progress(t, t.calls);
  if (best > best_progress(t, t.calls - p.patience)) return std::nullopt;
  return fmt::format(
      "adaptive: stagnant, no improvement in the last {} LLM calls (patience; best progress {:g})",
      p.patience, best);
}

std::vector<int64_t> adaptive_movers(const SearchPolicy& p, const std::vector<AdaptiveTask>& tasks,
                                     int64_t asking, int64_t slots) {
  int64_t campaign_calls = 0;
  for (const AdaptiveTask& t : tasks) campaign_calls += t.calls;
  struct Ranked {
    double index;
    int64_t task_id;
  };
  std::vector<int64_t> out;
  std::vector<Ranked> waiting;
  for (const AdaptiveTask& t : tasks) {
    if (t.busy) continue;
    if (stagnant(t, p)) {
      out.push_back(t.task_id);
    } else {
      waiting.push_back({adaptive_index(t, campaign_calls, p), t.task_id});
    }
  }
  std::sort(waiting.begin(), waiting.end(), [](const Ranked& a, const Ranked& b) {
    return a.index != b.index ? a.index > b.index : a.task_id < b.task_id;
  });
  for (int64_t i = 0; i < slots - asking && i < static_cast<int64_t>(waiting.size()); ++i) {
    out.push_back(waiting[static_cast<size_t>(i)].task_id);
  }
  return out;
}

Gate adaptive_turn(const SearchPolicy& p, std::vector<AdaptiveTask> tasks, int64_t asker,
                   int64_t asking, int64_t slots) {
  for (AdaptiveTask& t : tasks) {
    if (t.task_id != asker) continue;
    if (auto why = stagnant(t, p)) return Gate{Turn::stop, *why};
    t.busy = false;  // it is the one asking
  }
  const std::vector<int64_t> movers = adaptive_movers(p, tasks, asking, slots);
  if (std::find(movers.begin(), movers.end(), asker) != movers.end()) return Gate{};
  return Gate{Turn::wait, ""};
}

}  // namespace kforge
