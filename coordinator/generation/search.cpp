#include "coordinator/generation/search.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

namespace kforge {
namespace {

// The policy's numeric fields by name: one list for storing, parsing and validating them.
struct IntField {
  const char* name;
  int64_t SearchPolicy::*member;
};
struct RealField {
  const char* name;
  double SearchPolicy::*member;
};
const IntField kIntFields[] = {
    {"samples", &SearchPolicy::samples},
    {"sample_offset", &SearchPolicy::sample_offset},
    {"max_llm_calls", &SearchPolicy::max_llm_calls},
    {"islands", &SearchPolicy::islands},
    {"island_size", &SearchPolicy::island_size},
    {"generations", &SearchPolicy::generations},
    {"inspirations", &SearchPolicy::inspirations},
    {"migrate_every", &SearchPolicy::migrate_every},
    {"migrants", &SearchPolicy::migrants},
    {"stagnation", &SearchPolicy::stagnation},
    {"max_tokens", &SearchPolicy::max_tokens},
    {"campaign_max_llm_calls", &SearchPolicy::campaign_max_llm_calls},
    {"campaign_max_tokens", &SearchPolicy::campaign_max_tokens},
    {"patience", &SearchPolicy::patience},
    {"parallel", &SearchPolicy::parallel},
};
const RealField kRealFields[] = {
    {"target_speedup", &SearchPolicy::target_speedup},
    {"max_cost_usd", &SearchPolicy::max_cost_usd},
    {"max_device_seconds", &SearchPolicy::max_device_seconds},
    {"max_wall_s", &SearchPolicy::max_wall_s},
    {"campaign_max_cost_usd", &SearchPolicy::campaign_max_cost_usd},
    {"campaign_max_device_s", &SearchPolicy::campaign_max_device_s},
    {"campaign_max_wall_s", &SearchPolicy::campaign_max_wall_s},
    {"exploration", &SearchPolicy::exploration},
};
// The fields only evolve reads.
const char* const kEvolveOnly[] = {"islands",       "island_size", "generations", "inspirations",
                                   "migrate_every", "migrants",    "stagnation"};

int64_t int_field(const SearchPolicy& p, std::string_view name) {
  for (const IntField& f : kIntFields) {
    if (name == f.name) return p.*f.member;
  }
  return 0;
}

std::string number(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

Status range(const char* name, int64_t v, int64_t lo, int64_t hi, const std::string& what = "") {
  if (v >= lo && v <= hi) return Status();
  return invalid_argument(std::string("search.") + name + ": expected " + std::to_string(lo) +
                          ".." + std::to_string(hi) + what + ", got " + std::to_string(v));
}

}  // namespace

std::vector<int64_t> SearchPolicy::chains() const {
  const int64_t n = strategy == "evolve" ? islands * island_size * generations : samples;
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(sample_offset + i);
  return out;
}

bool SearchPolicy::budgeted() const {
  return campaign_max_llm_calls > 0 || campaign_max_tokens > 0 || campaign_max_cost_usd > 0 ||
         campaign_max_device_s > 0 || campaign_max_wall_s > 0;
}

const std::vector<std::string>& search_strategies() {
  static const std::vector<std::string> all = {"fix_loop", "best_of_n", "evolve", "adaptive"};
  return all;
}

const std::vector<std::string>& search_keys() {
  static const std::vector<std::string> all = [] {
    std::vector<std::string> keys = {"strategy"};
    for (const IntField& f : kIntFields) keys.push_back(f.name);
    for (const RealField& f : kRealFields) keys.push_back(f.name);
    return keys;
  }();
  return all;
}

int64_t* search_int(SearchPolicy& p, std::string_view name) {
  for (const IntField& f : kIntFields) {
    if (name == f.name) return &(p.*f.member);
  }
  return nullptr;
}

double* search_real(SearchPolicy& p, std::string_view name) {
  for (const RealField& f : kRealFields) {
    if (name == f.name) return &(p.*f.member);
  }
  return nullptr;
}

nlohmann::json search_json(const SearchPolicy& p, bool defaults) {
  const SearchPolicy d;
  nlohmann::json j = nlohmann::json::object();
  if (defaults || p.strategy != d.strategy) j["strategy"] = p.strategy;
  for (const IntField& f : kIntFields) {
    if (defaults || p.*f.member != d.*f.member) j[f.name] = p.*f.member;
  }
  for (const RealField& f : kRealFields) {
    if (defaults || p.*f.member != d.*f.member) j[f.name] = p.*f.member;
  }
  return j;
}

bool campaign_only_search_key(std::string_view name) {
  return name.starts_with("campaign_max_") || name == "exploration" || name == "patience" ||
         name == "parallel";
}

SearchPolicy op_search_base(const SearchPolicy& campaign, std::string_view strategy) {
  SearchPolicy p = campaign;
  if (strategy == campaign.strategy) return p;
  const SearchPolicy d;
  p.strategy = strategy;
  p.samples = d.samples;
  for (const char* name : kEvolveOnly) *search_int(p, name) = int_field(d, name);
  return p;
}

std::string search_text(const SearchPolicy& p) {
  if (p == SearchPolicy{}) return "";
  return search_json(p, /*defaults=*/false).dump();
}

Result<SearchPolicy> parse_search_text(std::string_view text) {
  SearchPolicy p;
  if (text.empty()) return p;
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return invalid_argument("search: not a JSON object: " + std::string(text));
  for (const auto& [key, v] : j.items()) {
    if (key == "strategy" && v.is_string()) {
      p.strategy = v.get<std::string>();
    } else if (int64_t* i = search_int(p, key); i != nullptr && v.is_number_integer()) {
      *i = v.get<int64_t>();
    } else if (double* r = search_real(p, key); r != nullptr && v.is_number()) {
      *r = v.get<double>();
    } else {
      return invalid_argument("search." + key + ": unknown field or wrong type: " + v.dump());
    }
  }
  return p;
}

Status validate_search(const SearchPolicy& p, Workflow workflow) {
  const auto& all = search_strategies();
  if (std::find(all.begin(), all.end(), p.strategy) == all.end()) {
    return invalid_argument(
        "search.strategy: expected fix_loop, best_of_n, evolve or adaptive, got '" + p.strategy +
        "'");
  }
  KF_RETURN_IF_ERROR(range("samples", p.samples, 1, kMaxSamples));
  if (p.strategy == "fix_loop" && p.samples != 1) {
    return invalid_argument(
        "search.samples: fix_loop runs one chain; use strategy = \"best_of_n\" for " +
        std::to_string(p.samples));
  }
  if (p.strategy == "evolve" && p.samples != 1) {
    return invalid_argument(
        "search.samples: evolve sizes its population with islands, island_size and "
        "generations, not samples");
  }
  if (p.sample_offset < 0) {
    return invalid_argument("search.sample_offset: expected 0 or more, got " +
                            std::to_string(p.sample_offset));
  }
  for (const RealField& f : kRealFields) {
    const double v = p.*f.member;
    if (!std::isfinite(v) || v < 0) {
      return invalid_argument(std::string("search.") + f.name +
                              ": expected 0 (none) or a positive number, got " + number(v));
    }
  }
  for (const char* name : {"max_llm_calls", "max_tokens", "stagnation", "campaign_max_llm_calls",
                           "campaign_max_tokens"}) {
    const int64_t v = int_field(p, name);
    if (v < 0) {
      return invalid_argument(std::string("search.") + name +
                              ": expected 0 (no limit) or more, got " + std::to_string(v));
    }
  }
  const SearchPolicy d;
  if (p.strategy != "evolve") {
    for (const char* name : kEvolveOnly) {
      if (int_field(p, name) != int_field(d, name)) {
        return invalid_argument(std::string("search.") + name +
                                ": only strategy = \"evolve\" uses it");
      }
    }
  } else {
    KF_RETURN_IF_ERROR(range("islands", p.islands, 1, 64));
    KF_RETURN_IF_ERROR(range("island_size", p.island_size, 1, 64));
    KF_RETURN_IF_ERROR(range("generations", p.generations, 1, 1000));
    KF_RETURN_IF_ERROR(range("inspirations", p.inspirations, 0, 16));
    KF_RETURN_IF_ERROR(range("migrate_every", p.migrate_every, 0, p.generations,
                             " (0: never; at most generations)"));
    KF_RETURN_IF_ERROR(range("migrants", p.migrants, 1, 16));
    if (p.islands * p.island_size * p.generations > kMaxEvolveChildren) {
      return invalid_argument("search.generations: islands * island_size * generations is " +
                              std::to_string(p.islands * p.island_size * p.generations) +
                              " children, more than " + std::to_string(kMaxEvolveChildren));
    }
  }
  if (p.strategy != "adaptive") {
    if (p.exploration != d.exploration) {
      return invalid_argument("search.exploration: only strategy = \"adaptive\" uses it");
    }
    for (const char* name : {"patience", "parallel"}) {
      if (int_field(p, name) != int_field(d, name)) {
        return invalid_argument(std::string("search.") + name +
                                ": only strategy = \"adaptive\" uses it");
      }
    }
  }
  if (p.patience < 1) {
    return invalid_argument("search.patience: expected 1 or more, got " +
                            std::to_string(p.patience));
  }
  if (p.parallel < 0) {
    return invalid_argument("search.parallel: expected 0 (the live devices) or more, got " +
                            std::to_string(p.parallel));
  }
  if (workflow == Workflow::verify_only && p.strategy != "fix_loop") {
    return invalid_argument(
        "search.strategy: workflow verify_only verifies one supplied candidate; only "
        "fix_loop applies");
  }
  return Status();
}

bool needs_usage(const SearchPolicy& p) {
  return p.max_tokens > 0 || p.max_cost_usd > 0 || p.max_device_seconds > 0 || p.max_wall_s > 0;
}

std::string budget_used_up(const SearchPolicy& p, const SearchUsage& u, bool asks) {
  if (p.max_wall_s > 0 && u.wall_s >= p.max_wall_s) {
    return "max_wall_s (" + number(p.max_wall_s) + ") used up: " + number(std::floor(u.wall_s)) +
           " s since the first step";
  }
  if (!asks) {
    if (p.max_device_seconds > 0 && u.device_seconds >= p.max_device_seconds) {
      return "max_device_seconds (" + number(p.max_device_seconds) +
             ") used up: " + number(u.device_seconds) + " device-seconds";
    }
    return "";
  }
  if (p.max_llm_calls > 0 && u.llm_calls >= p.max_llm_calls) {
    return "max_llm_calls (" + std::to_string(p.max_llm_calls) + ") used up";
  }
  if (p.max_tokens > 0 && u.tokens >= p.max_tokens) {
    return "max_tokens (" + std::to_string(p.max_tokens) +
           ") used up: " + std::to_string(u.tokens) + " tokens";
  }
  if (p.max_cost_usd > 0 && u.cost_usd >= p.max_cost_usd) {
    return "max_cost_usd (" + number(p.max_cost_usd) + ") used up: " + number(u.cost_usd) + " USD";
  }
  return "";
}

}  // namespace kforge
