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

const std::vector<std::string>& search_strategies() {
  static const std::vector<std::string> all = {"fix_loop", "best_of_n"};
  return all;
}

std::string search_text(const SearchPolicy& p) {
  const SearchPolicy d;
  if (p == d) return "";
  nlohmann::json j = nlohmann::json::object();
  if (p.strategy != d.strategy) j["strategy"] = p.strategy;
  if (p.samples != d.samples) j["samples"] = p.samples;
  if (p.sample_offset != d.sample_offset) j["sample_offset"] = p.sample_offset;
  if (p.target_speedup != d.target_speedup) j["target_speedup"] = p.target_speedup;
  if (p.max_llm_calls != d.max_llm_calls) j["max_llm_calls"] = p.max_llm_calls;
  return j.dump();
}

Result<SearchPolicy> parse_search_text(std::string_view text) {
  SearchPolicy p;
  if (text.empty()) return p;
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return invalid_argument("search: not a JSON object: " + std::string(text));
  for (const auto& [key, v] : j.items()) {
    if (key == "strategy" && v.is_string()) {
      p.strategy = v.get<std::string>();
    } else if (key == "samples" && v.is_number_integer()) {
      p.samples = v.get<int64_t>();
    } else if (key == "sample_offset" && v.is_number_integer()) {
      p.sample_offset = v.get<int64_t>();
    } else if (key == "target_speedup" && v.is_number()) {
      p.target_speedup = v.get<double>();
    } else if (key == "max_llm_calls" && v.is_number_integer()) {
      p.max_llm_calls = v.get<int64_t>();
    } else {
      return invalid_argument("search." + key + ": unknown field or wrong type: " + v.dump());
    }
  }
  return p;
}

Status validate_search(const SearchPolicy& p, Workflow workflow) {
  const auto& all = search_strategies();
  if (std::find(all.begin(), all.end(), p.strategy) == all.end()) {
    return invalid_argument("search.strategy: expected fix_loop or best_of_n, got '" + p.strategy + "'");
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
  if (workflow == Workflow::verify_only && p.strategy != "fix_loop") {
    return invalid_argument("search.strategy: workflow verify_only verifies one supplied candidate; only "
                            "fix_loop applies");
  }
  return Status();
}

}  // namespace kforge
