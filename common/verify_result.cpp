#include "common/verify_result.h"

#include <cmath>
#include <initializer_list>
#include <limits>
#include <utility>
#include <vector>

#include "common/text.h"

namespace kforge {
namespace {

using json = nlohmann::json;

// Parses JSON that came from another process (an agent, a judge); too deep is as invalid.
json parse_json(std::string_view text) {
  if (!check_json_depth(text).ok()) return json(json::value_t::discarded);
  return json::parse(text, nullptr, false);
}

// A number of the document: a JSON number, or the strings the harness writes for
// non-finite values. Anything else: `fallback`.
double number_of(const json& v, double fallback = 0) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
  }
  return fallback;
}

int64_t integer_of(const json& v) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_unsigned()) {
    auto u = v.get<uint64_t>();
    return u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
               ? std::numeric_limits<int64_t>::max()
               : static_cast<int64_t>(u);
  }
  if (v.is_number_float() && std::isfinite(v.get<double>()))
    return static_cast<int64_t>(v.get<double>());
  return 0;
}

json number_json(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  return d;
}

// The keys of `obj` other than `known`, as JSON object text ("" when there are none).
std::string rest_of(const json& obj, std::initializer_list<const char*> known) {
  json rest = obj;
  for (const char* k : known) rest.erase(k);
  return rest.empty() ? std::string() : rest.dump(-1, ' ', false, json::error_handler_t::replace);
}

// `text` (rest_of's output) as an object to add typed keys to.
json object_of(std::string_view text) {
  if (text.empty()) return json::object();
  json v = parse_json(text);
  return v.is_object() ? v : json::object();
}

std::string string_of(const json& doc, const char* key) {
  auto it = doc.find(key);
  return it != doc.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Checks checks_of(const json& c) {
  Checks out;
  if (auto it = c.find("mismatches"); it != c.end()) out.mismatches = integer_of(*it);
  if (auto it = c.find("total"); it != c.end()) out.total = integer_of(*it);
  if (auto it = c.find("max_abs_error"); it != c.end()) out.max_abs_error = number_of(*it);
  if (auto it = c.find("max_rel_error"); it != c.end()) out.max_rel_error = number_of(*it);
  out.more = rest_of(c, {"mismatches", "total", "max_abs_error", "max_rel_error"});
  return out;
}

TimingStats timing_of(const json& p, const char* side) {
  TimingStats t;
  auto it = p.find(side);
  if (it == p.end() || !it->is_object()) return t;
  const json& s = *it;
  t.median_us = number_of(s.value("median_us", json()));
  t.min_us = number_of(s.value("min_us", json()));
  t.max_us = number_of(s.value("max_us", json()));
  t.mean_us = number_of(s.value("mean_us", json()));
  t.runs = integer_of(s.value("runs", json()));
  return t;
}

Profile profile_of(const json& p) {
  Profile out;
  out.candidate = timing_of(p, "candidate");
  out.reference = timing_of(p, "reference");
  out.speedup = number_of(p.value("speedup", json()));
  auto s = p.find("suspicious");
  out.suspicious = s != p.end() && s->is_boolean() && s->get<bool>();
  out.method = string_of(p, "method");
  out.warmup = integer_of(p.value("warmup", json()));
  out.more = rest_of(p, {"candidate", "reference", "speedup", "suspicious", "method", "warmup"});
  return out;
}

json timing_json(const TimingStats& t) {
  return {{"median_us", number_json(t.median_us)},
          {"min_us", number_json(t.min_us)},
          {"max_us", number_json(t.max_us)},
          {"mean_us", number_json(t.mean_us)},
          {"runs", t.runs}};
}

}  // namespace

VerifyResult verify_failure(Verdict verdict, std::string message, std::string stage) {
  VerifyResult r;
  r.verdict = verdict;
  r.message = std::move(message);
  r.stage = std::move(stage);
  return r;
}

VerifyResult verify_result_from_json(const json& doc) {
  if (!doc.is_object() || !doc.contains("verdict")) {
    return verify_failure(Verdict::infra_error, "the job produced no verdict document");
  }
  VerifyResult r;
  const json& v = doc["verdict"];
  std::optional<Verdict> verdict =
      v.is_string() ? parse_enum<Verdict>(v.get<std::string>()) : std::nullopt;
  r.message = string_of(doc, "message");
  if (verdict) {
    r.verdict = *verdict;
  } else {
    r.verdict = Verdict::infra_error;
    r.message = "the verdict document has an unknown verdict " +
                v.dump(-1, ' ', false, json::error_handler_t::replace) +
                (r.message.empty() ? "" : ": " + r.message);
  }
  r.input_error = string_of(doc, "input_error");
  r.stage = string_of(doc, "stage");
  r.trials = integer_of(doc.value("trials", json()));
  std::vector<const char*> typed = {"verdict", "message", "input_error", "stage", "trials"};
  if (auto c = doc.find("checks"); c != doc.end() && c->is_object()) {
    r.checks = checks_of(*c);
    typed.push_back("checks");
  }
  if (auto p = doc.find("profile"); p != doc.end() && p->is_object()) {
    r.profile = profile_of(*p);
    typed.push_back("profile");
  }
  json rest = doc;
  for (const char* k : typed) rest.erase(k);
  if (!rest.empty()) r.details = rest.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

VerifyResult verify_result_from_text(std::string_view text) {
  json doc = parse_json(text);
  return verify_result_from_json(doc.is_discarded() ? json() : doc);
}

json to_json(const Checks& c) {
  json out = object_of(c.more);
  out["mismatches"] = c.mismatches;
  out["total"] = c.total;
  out["max_abs_error"] = number_json(c.max_abs_error);
  out["max_rel_error"] = number_json(c.max_rel_error);
  return out;
}

json to_json(const Profile& p) {
  json out = object_of(p.more);
  out["candidate"] = timing_json(p.candidate);
  out["reference"] = timing_json(p.reference);
  out["speedup"] = number_json(p.speedup);
  out["suspicious"] = p.suspicious;
  out["method"] = p.method;
  out["warmup"] = p.warmup;
  return out;
}

json to_json(const VerifyResult& r) {
  json out = object_of(r.details);
  out["verdict"] = std::string(to_string(r.verdict));
  out["message"] = r.message;
  out["input_error"] = r.input_error;
  out["stage"] = r.stage;
  out["trials"] = r.trials;
  if (r.checks) out["checks"] = to_json(*r.checks);
  if (r.profile) out["profile"] = to_json(*r.profile);
  return out;
}

std::optional<Checks> checks_from_text(std::string_view text) {
  if (text.empty()) return std::nullopt;
  json v = parse_json(text);
  if (!v.is_object()) return std::nullopt;
  return checks_of(v);
}

std::optional<Profile> profile_from_text(std::string_view text) {
  if (text.empty()) return std::nullopt;
  json v = parse_json(text);
  if (!v.is_object()) return std::nullopt;
  return profile_of(v);
}

}  // namespace kforge
