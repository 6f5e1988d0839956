#include "coordinator/generation/search.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

namespace kforge {

std::vector<int64_t> SearchPolicy::chains() const {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < samples; ++i) out.push_back(sample_offset + i);
  return out;
}

bool SearchPolicy::budgeted() const {
  return campaign_max_llm_calls > 0 || campaign_max_tokens > 0 || campaign_max_cost_usd > 0 ||
         campaign_max_device_s > 0 || campaign_max_wall_s > 0;
}

const std::vector<std::string>& search_strategies() {
  static const std::vector<std::string> all = {"fix_loop", "best_of_n", "adaptive"};
  return all;
}

const std::vector<std::pair<std::string, int64_t SearchPolicy::*>>& search_integers() {
  static const std::vector<std::pair<std::string, int64_t SearchPolicy::*>> all = {
      {"samples", &SearchPolicy::samples},
      {"sample_offset", &SearchPolicy::sample_offset},
      {"max_llm_calls", &SearchPolicy::max_llm_calls},
      {"campaign_max_llm_calls", &SearchPolicy::campaign_max_llm_calls},
      {"campaign_max_tokens", &SearchPolicy::campaign_max_tokens},
      {"patience", &SearchPolicy::patience},
      {"parallel", &SearchPolicy::parallel},
  };
  return all;
}

const std::vector<std::pair<std::string, double SearchPolicy::*>>& search_numbers() {
  static const std::vector<std::pair<std::string, double SearchPolicy::*>> all = {
      {"target_speedup", &SearchPolicy::target_speedup},
      {"campaign_max_cost_usd", &SearchPolicy::campaign_max_cost_usd},
      {"campaign_max_device_s", &SearchPolicy::campaign_max_device_s},
      {"campaign_max_wall_s", &SearchPolicy::campaign_max_wall_s},
      {"exploration", &SearchPolicy::exploration},
  };
  return all;
}

std::string search_text(const SearchPolicy& p) {
  const SearchPolicy d;
  if (p == d) return "";
  nlohmann::json j = nlohmann::json::object();
  if (p.strategy != d.strategy) j["strategy"] = p.strategy;
  for (const auto& [key, field] : search_integers()) {
    if (p.*field != d.*field) j[key] = p.*field;
  }
  for (const auto& [key, field] : search_numbers()) {
    if (p.*field != d.*field) j[key] = p.*field;
  }
  return j.dump();
}

namespace {

template <class T>
T SearchPolicy::* field_of(const std::vector<std::pair<std::string, T SearchPolicy::*>>& fields, const std::string& key) {
  for (const auto& [k, field] : fields) {
    if (k == key) return field;
  }
  return nullptr;
}

}  // namespace

int64_t SearchPolicy::* search_integer(const std::string& key) { return field_of(search_integers(), key); }
double SearchPolicy::* search_number(const std::string& key) { return field_of(search_numbers(), key); }

Result<SearchPolicy> parse_search_text(std::string_view text) {
  SearchPolicy p;
  if (text.empty()) return p;
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return invalid_argument("search: not a JSON object: " + std::string(text));
  for (const auto& [key, v] : j.items()) {
    if (key == "strategy" && v.is_string()) {
      p.strategy = v.get<std::string>();
    } else if (auto i = search_integer(key); i && v.is_number_integer()) {
      p.*i = v.get<int64_t>();
    } else if (auto n = search_number(key); n && v.is_number()) {
      p.*n = v.get<double>();
    } else {
      return invalid_argument("search." + key + ": unknown field or wrong type: " + v.dump());
    }
  }
  return p;
}

Status validate_search(const SearchPolicy& p, std::string_view workflow) {
  const auto& all = search_strategies();
  if (std::find(all.begin(), all.end(), p.strategy) == all.end()) {
    return invalid_argument("search.strategy: expected fix_loop, best_of_n or adaptive, got '" + p.strategy + "'");
  }
  if (p.samples < 1 || p.samples > kMaxSamples) {
    return invalid_argument("search.samples: expected 1.." + std::to_string(kMaxSamples) + ", got " +
                            std::to_string(p.samples));
  }
  if (p.strategy == "fix_loop" && p.samples != 1) {
    return invalid_argument("search.samples: fix_loop runs one chain; use strategy = \"best_of_n\" for " +
                            std::to_string(p.samples));
  }
  if (p.sample_offset < 0) {
    return invalid_argument("search.sample_offset: expected 0 or more, got " + std::to_string(p.sample_offset));
  }
  if (!std::isfinite(p.target_speedup) || p.target_speedup < 0) {
    return invalid_argument("search.target_speedup: expected 0 (none) or a positive number");
  }
  if (p.max_llm_calls < 0) {
    return invalid_argument("search.max_llm_calls: expected 0 (no limit) or more, got " +
                            std::to_string(p.max_llm_calls));
  }
  for (const auto& [key, field] : search_integers()) {
    if (key.starts_with("campaign_max_") && p.*field < 0) {
      return invalid_argument("search." + key + ": expected 0 (no limit) or more, got " + std::to_string(p.*field));
    }
  }
  for (const auto& [key, field] : search_numbers()) {
    if (key.starts_with("campaign_max_") && (!std::isfinite(p.*field) || p.*field < 0)) {
      return invalid_argument("search." + key + ": expected 0 (no limit) or a positive number");
    }
  }
  const SearchPolicy d;
  if (p.strategy != "adaptive") {
    for (const char* key : {"exploration", "patience", "parallel"}) {
      const bool set = search_integer(key) ? p.*search_integer(key) != d.*search_integer(key)
                                           : p.*search_number(key) != d.*search_number(key);
      if (set) return invalid_argument(std::string("search.") + key + ": only strategy = \"adaptive\" uses it");
    }
  }
  if (!std::isfinite(p.exploration) || p.exploration < 0) {
    return invalid_argument("search.exploration: expected 0 or a positive number");
  }
  if (p.patience < 1) {
    return invalid_argument("search.patience: expected 1 or more, got " + std::to_string(p.patience));
  }
  if (p.parallel < 0) {
    return invalid_argument("search.parallel: expected 0 (the live devices) or more, got " + std::to_string(p.parallel));
  }
  if (workflow == "verify_only" && p.strategy != "fix_loop") {
    return invalid_argument("search.strategy: workflow verify_only verifies one supplied candidate; only "
                            "fix_loop applies");
  }
  return Status();
}

}  // namespace kforge
