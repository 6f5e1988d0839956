#include "coordinator/intake/campaign.h"

#include <spdlog/spdlog.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>

#include "common/fs.h"
#include "common/targets.h"
#include "common/text.h"
#include "common/toml_report.h"
#include "common/verify_job.h"
#include "coordinator/generation/task.h"
#include "coordinator/intake/python_constants.h"
#include "coordinator/store/campaign_hash.h"

namespace kforge {
namespace {

using Reader = TomlProblems;

// Reports every key of `table` not in `known`, with a suggestion for a near miss (the same
// rule as the config file's).
void check_keys(Reader& r, const toml::table& table, const std::string& prefix,
                const std::vector<std::string_view>& known) {
  for (const auto& [k, v] : table) {
    if (std::find(known.begin(), known.end(), k.str()) == known.end())
      r.fail_unknown_key(k, prefix, known);
  }
}

// ---------------------------------------------------------------------------------------------
// Sweep values as Python source.

enum class Shape {
  string_literal,  // "float32", 'x', r"..." (prefixes r, u, b, f and pairs)
  dotted_name,     // torch.float32, np.float16, float32
  tuple,           // (16, 1024)
  other,           // numbers, lists, calls, expressions
};

Shape shape_of(std::string_view value) {
  size_t p = 0;
  while (p < value.size() && p < 2 &&
         std::string_view("rRuUbBfF").find(value[p]) != std::string_view::npos) {
    ++p;
  }
  if (p < value.size() && (value[p] == '"' || value[p] == '\'')) return Shape::string_literal;
  if (is_python_dotted_name(value) && !is_python_keyword(value)) return Shape::dotted_name;
  if (!value.empty() && value[0] == '(') return Shape::tuple;
  return Shape::other;
}

char quote_of(std::string_view value) {
  size_t q = value.find_first_of("\"'");
  return q == std::string_view::npos ? '"' : value[q];
}

// A scalar sweep value as Python; the string case depends on the constant's current value.
// nullopt with `why` set when a string cannot replace it.
std::optional<std::string> python_scalar(const toml::node& v, std::string_view original,
                                         std::string& why) {
  if (const auto* i = v.as_integer()) return std::to_string(i->get());
  if (const auto* f = v.as_floating_point()) return python_float(f->get());
  if (const auto* b = v.as_boolean()) return std::string(b->get() ? "True" : "False");
  if (const auto* s = v.as_string()) {
    const std::string& text = s->get();
    switch (shape_of(original)) {
      case Shape::string_literal: return python_string(text, quote_of(original));
      case Shape::dotted_name:
        if (!is_python_dotted_name(text)) {
          why = "the constant holds the name `" + std::string(original) +
                "`, so a string replacing it must be a name like float16 or torch.float16";
          return std::nullopt;
        }
        if (text.find('.') != std::string::npos) return text;  // a full name: as given
        {
          size_t dot = original.rfind('.');  // keep the module: torch.float32 -> torch.float16
          return dot == std::string_view::npos ? text
                                               : std::string(original.substr(0, dot + 1)) + text;
        }
      case Shape::tuple:
      case Shape::other: break;
    }
    why = "the constant holds `" + std::string(original) +
          "`, which is neither a string literal nor a name, so a string cannot replace it "
          "(give numbers and booleans as TOML numbers and booleans)";
    return std::nullopt;
  }
  why = "expected a string, number or boolean, got " + toml_describe(v);
  return std::nullopt;
}

// True when the constant holds a size: a positive integer literal (4096) or a tuple or list of
// them ((16, 1024)). A sweep replacing a size takes sizes.
bool holds_sizes(std::string_view original) {
  auto positive = [](std::string_view t) {
    while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
    while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
    if (t.empty() || t.front() == '0') return false;
    return std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (original.size() >= 2 && ((original.front() == '(' && original.back() == ')') ||
                               (original.front() == '[' && original.back() == ']'))) {
    std::string_view items = original.substr(1, original.size() - 2);
    if (!items.empty() && items.back() == ',') items.remove_suffix(1);  // (16,)
    if (items.empty()) return false;
    for (size_t start = 0;;) {
      size_t comma = items.find(',', start);
      if (!positive(items.substr(start, comma == std::string_view::npos ? comma : comma - start)))
        return false;
      if (comma == std::string_view::npos) return true;
      start = comma + 1;
    }
  }
  return positive(original);
}

// Empty when `v` (a swept value) is a size, as holds_sizes' constants take: a positive integer,
// or an array of them; else what is wrong.
std::string not_a_size(const toml::node& v) {
  auto positive = [](const toml::node& n) { return n.is_integer() && n.as_integer()->get() > 0; };
  if (const auto* a = v.as_array()) {
    for (size_t i = 0; i < a->size(); ++i) {
      if (!positive(*a->get(i))) {
        return "element " + std::to_string(i) + " is " + toml_describe(*a->get(i)) +
               ", not a positive integer";
      }
    }
    return "";
  }
  return positive(v) ? "" : toml_describe(v) + " is not a positive integer";
}

// A sweep value as Python: a scalar, or an array of numbers (a tuple when the constant holds
// one, else a list). nullopt with `why` set when it cannot be written.
std::optional<std::string> python_value(const toml::node& v, std::string_view original,
                                        std::string& why) {
  const auto* a = v.as_array();
  if (a == nullptr) return python_scalar(v, original, why);
  const bool tuple = shape_of(original) == Shape::tuple;
  std::string out = tuple ? "(" : "[";
  for (size_t i = 0; i < a->size(); ++i) {
    const toml::node& item = *a->get(i);
    if (!item.is_integer() && !item.is_floating_point() && !item.is_boolean()) {
      why = "an array value must hold numbers or booleans, element " + std::to_string(i) + " is " +
            toml_describe(item);
      return std::nullopt;
    }
    if (i > 0) out += ", ";
    std::string ignored;
    out += *python_scalar(item, original, ignored);
  }
  if (tuple && a->size() == 1) out += ",";
  return out + (tuple ? ")" : "]");
}

// How a sweep value appears in a task_id: strings as given, numbers as Python writes them,
// arrays joined by 'x' (16x1024).
std::string id_text(const toml::node& v) {
  if (const auto* s = v.as_string()) return s->get();
  if (const auto* a = v.as_array()) {
    std::string out;
    for (size_t i = 0; i < a->size(); ++i) out += (i ? "x" : "") + id_text(*a->get(i));
    return out;
  }
  std::string ignored;
  return python_scalar(v, "0", ignored).value_or("?");
}

// ---------------------------------------------------------------------------------------------
// The campaign file.

const std::vector<std::string_view> kTaskFields = {"backend",   "arch",      "impl_type",
                                                   "framework", "task_type", "limit_steps"};
const std::vector<std::string> kTaskTypes = {"precision_only", "profile"};

// One task field's value and where it was set (node null: the built-in default).
struct Setting {
  std::string text;
  int64_t number = 0;
  const toml::node* node = nullptr;
  std::string key;   // "defaults.backend", "ops[1].backend"
  bool bad = false;  // the value was rejected (and reported)
};
using Settings = std::map<std::string, Setting, std::less<>>;

// Reads the task fields present in `table` into `out`, checking each value's type and range.
void read_task_fields(Reader& r, const toml::table& table, const std::string& prefix,
                      Settings& out) {
  for (std::string_view name : kTaskFields) {
    const toml::node* node = table.get(name);
    if (node == nullptr) continue;
    std::string key = prefix + std::string(name);
    if (name == "limit_steps") {
      const auto* i = node->as_integer();
      if (i == nullptr || i->get() < 1 || i->get() > kMaxLimitSteps) {
        r.fail(node->source(), key + ": expected an integer between 1 and " +
                                   std::to_string(kMaxLimitSteps) + ", got " +
                                   toml_describe(*node));
        out[std::string(name)] = {"", 0, node, key, true};
        continue;
      }
      out[std::string(name)] = {"", i->get(), node, key};
      continue;
    }
    const auto* s = node->as_string();
    if (s == nullptr || s->get().empty()) {
      r.fail(node->source(), key + ": expected a non-empty string, got " + toml_describe(*node));
      out[std::string(name)] = {"", 0, node, key, true};
      continue;
    }
    if (name == "task_type" &&
        std::find(kTaskTypes.begin(), kTaskTypes.end(), s->get()) == kTaskTypes.end()) {
      r.fail(node->source(),
             key + ": expected one of " + join(kTaskTypes) + ", got " + toml_describe(*node));
      out[std::string(name)] = {"", 0, node, key, true};
      continue;
    }
    out[std::string(name)] = {s->get(), 0, node, key};
  }
}

struct SweepKey {
  std::string name;
  const toml::node* key_node = nullptr;  // for messages: where the key is written
  toml::source_region key_source;
  std::vector<const toml::node*> values;  // one per point
  std::vector<std::string> python;        // values as Python source, once checked
  size_t value_begin = 0, value_end = 0;  // the constant's value in the task file
};

struct Op {
  std::string key;  // "ops[2]"
  std::string op_name;
  toml::source_region where;      // the op_name value, else the op's table
  std::string task_desc_written;  // as written in the campaign file
  std::string task_text;
  std::string candidate_text;
  Settings settings;
  std::vector<SweepKey> sweep;  // sorted by name
  std::string search;           // its own search table over the campaign's (TaskSpec::search)
  bool ok = true;
};

// Reads the sweep table of an op. Values are arrays (one point each); a scalar is one point.
void read_sweep(Reader& r, const toml::node& node, Op& op) {
  const std::string prefix = op.key + ".sweep";
  const toml::table* table = node.as_table();
  if (table == nullptr) {
    r.fail(node.source(),
           prefix + ": expected a table of constant = [values], got " + toml_describe(node));
    op.ok = false;
    return;
  }
  for (const auto& [k, v] : *table) {
    SweepKey key;
    key.name = std::string(k.str());
    key.key_source = k.source();
    key.key_node = &v;
    const std::string full = prefix + "." + key.name;
    if (!is_python_identifier(key.name)) {
      r.fail(k.source(), full + ": a swept constant must be a Python identifier");
      op.ok = false;
      continue;
    }
    if (const auto* a = v.as_array()) {
      if (a->empty()) {
        r.fail(v.source(), full + ": expected at least one value, got an empty array");
        op.ok = false;
        continue;
      }
      for (size_t i = 0; i < a->size(); ++i) key.values.push_back(a->get(i));
    } else if (v.is_table()) {
      r.fail(v.source(), full + ": expected an array of values, got a table");
      op.ok = false;
      continue;
    } else {
      key.values.push_back(&v);
    }
    // Two equal values would make two tasks with one task_id.
    std::map<std::string, size_t> seen;
    for (size_t i = 0; i < key.values.size(); ++i) {
      auto [it, fresh] = seen.emplace(id_text(*key.values[i]), i);
      if (!fresh) {
        r.fail(key.values[i]->source(),
               full + "[" + std::to_string(i) + "]: value " + toml_describe(*key.values[i]) +
                   " is listed twice (also at [" + std::to_string(it->second) + "])");
        op.ok = false;
      }
    }
    op.sweep.push_back(std::move(key));
  }
  std::sort(op.sweep.begin(), op.sweep.end(),
            [](const SweepKey& a, const SweepKey& b) { return a.name < b.name; });
}

// Reads a file named in the campaign through `read`, keeping its text in `files`. Problems
// are reported at `node`.
std::optional<std::string> read_campaign_file(Reader& r, const toml::node& node,
                                              const std::string& key, const std::string& what,
                                              const CampaignFileReader& read,
                                              std::map<std::string, std::string>& files) {
  const auto* s = node.as_string();
  if (s == nullptr || s->get().empty()) {
    r.fail(node.source(),
           key + ": expected a path to the " + what + ", got " + toml_describe(node));
    return std::nullopt;
  }
  if (auto known = files.find(s->get()); known != files.end()) return known->second;
  Result<std::string> text = read(s->get());
  if (!text.ok()) {
    r.fail(node.source(),
           key + ": " + what + " " + toml_quote(s->get()) + " " + text.status().message());
    return std::nullopt;
  }
  files.emplace(s->get(), *text);
  return std::move(*text);
}

// The task field of validate_target's message ("impl_type 'swft' does not ..."), so that the
// problem is reported where that field was set.
std::string culprit_field(const std::string& message) {
  for (std::string_view f : {"backend", "arch", "impl_type", "framework"}) {
    if (message.starts_with(std::string(f) + " ")) return std::string(f);
  }
  return "";
}

// Checks every swept constant against the op's task file and renders its values as Python.
void check_sweep_against_task(Reader& r, Op& op) {
  if (op.sweep.empty()) return;
  const std::string label = op.op_name.empty() ? op.key : "op '" + op.op_name + "'";
  std::vector<PythonConstant> constants = module_constants(op.task_text);
  std::vector<std::string> names;
  for (const PythonConstant& c : constants) names.push_back(c.name);
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  for (SweepKey& key : op.sweep) {
    const std::string full = op.key + ".sweep." + key.name;
    std::vector<const PythonConstant*> found;
    for (const PythonConstant& c : constants) {
      if (c.name == key.name) found.push_back(&c);
    }
    if (found.empty()) {
      r.fail(key.key_source, full + ": " + label + ": task file " + op.task_desc_written +
                                 " has no module-level constant '" + key.name + "' (it has: " +
                                 (names.empty() ? std::string("none") : join(names)) + ")");
      op.ok = false;
      continue;
    }
    if (found.size() > 1) {
      std::vector<std::string> lines;
      for (const PythonConstant* c : found) lines.push_back(std::to_string(c->line));
      r.fail(key.key_source, full + ": " + label + ": task file " + op.task_desc_written +
                                 " assigns '" + key.name + "' " + std::to_string(found.size()) +
                                 " times at module level (lines " + join(lines) +
                                 "); a swept constant must be assigned once");
      op.ok = false;
      continue;
    }
    key.value_begin = found[0]->value_begin;
    key.value_end = found[0]->value_end;
    std::string_view original =
        std::string_view(op.task_text).substr(key.value_begin, key.value_end - key.value_begin);
    const bool sizes = holds_sizes(original);
    for (size_t i = 0; i < key.values.size(); ++i) {
      std::string why;
      std::optional<std::string> py;
      if (std::string bad = sizes ? not_a_size(*key.values[i]) : ""; !bad.empty()) {
        why = "the constant holds `" + std::string(original) + "`, a size (line " +
              std::to_string(found[0]->line) + " of " + op.task_desc_written +
              "), so a value replacing it must be a positive integer" +
              (shape_of(original) == Shape::other && original.front() != '['
                   ? ""
                   : " or an array of them") +
              "; " + bad;
      } else {
        py = python_value(*key.values[i], original, why);
      }
      if (!py) {
        std::string where = key.values.size() == 1 && !key.key_node->is_array()
                                ? full
                                : full + "[" + std::to_string(i) + "]";
        r.fail(key.values[i]->source(), where + ": " + label + ": " + why);
        op.ok = false;
        continue;
      }
      key.python.push_back(std::move(*py));
    }
  }
}

// The task file's text with each swept constant set to point[k] (an index into its values).
std::string rewrite(const Op& op, const std::vector<size_t>& point) {
  std::vector<size_t> order(op.sweep.size());  // the keys by their place in the file
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return op.sweep[a].value_begin < op.sweep[b].value_begin; });
  size_t size = op.task_text.size();
  for (size_t k : order) {
    size += op.sweep[k].python[point[k]].size() - (op.sweep[k].value_end - op.sweep[k].value_begin);
  }
  std::string out;
  out.reserve(size);
  size_t at = 0;
  for (size_t k : order) {
    out.append(op.task_text, at, op.sweep[k].value_begin - at);
    out += op.sweep[k].python[point[k]];
    at = op.sweep[k].value_end;
  }
  out.append(op.task_text, at);
  return out;
}

std::string task_id_of(const Op& op, const std::vector<size_t>& point) {
  if (op.sweep.empty()) return "default";
  std::string id;
  for (size_t k = 0; k < op.sweep.size(); ++k) {
    if (k > 0) id += ',';
    id += op.sweep[k].name + "=" + id_text(*op.sweep[k].values[point[k]]);
  }
  return id;
}

// Types each key of a search table into `out`; `prefix` names the table ("search.",
// "ops[2].search."). False when a value has the wrong type (reported); check_keys reports
// unknown keys.
bool read_search_fields(Reader& r, const toml::table& t, const std::string& prefix,
                        SearchPolicy& out) {
  bool typed = true;
  for (const auto& [k, v] : t) {
    const std::string key = prefix + std::string(k.str());
    if (k.str() == "strategy") {
      if (const auto* s = v.as_string()) {
        out.strategy = s->get();
      } else {
        r.fail(v.source(), key + ": expected one of " + join(search_strategies()) + ", got " +
                               toml_describe(v));
        typed = false;
      }
    } else if (double* real = search_real(out, k.str())) {
      if (v.is_number()) {
        *real = v.is_integer() ? static_cast<double>(v.as_integer()->get())
                               : v.as_floating_point()->get();
      } else {
        r.fail(v.source(), key + ": expected a number, got " + toml_describe(v));
        typed = false;
      }
    } else if (int64_t* field = search_int(out, k.str())) {
      if (const auto* i = v.as_integer()) {
        *field = i->get();
      } else {
        r.fail(v.source(), key + ": expected an integer, got " + toml_describe(v));
        typed = false;
      }
    }
  }
  return typed;
}

std::vector<std::string_view> search_key_names() {
  return std::vector<std::string_view>(search_keys().begin(), search_keys().end());
}

// The campaign's [search] table (search.h): each field's type here, the rules in
// validate_search. False when refused (reported).
bool read_search(Reader& r, const toml::node& node, Workflow workflow, SearchPolicy& out) {
  const toml::table* t = node.as_table();
  if (t == nullptr) {
    r.fail(node.source(), "search: expected a table ([search]), got " + toml_describe(node));
    return false;
  }
  const size_t problems_before = r.count();
  check_keys(r, *t, "search.", search_key_names());
  if (!read_search_fields(r, *t, "search.", out)) return false;
  if (Status st = validate_search(out, workflow); !st.ok()) r.fail(node.source(), st.message());
  return r.count() == problems_before;
}

// An op's own search table (docs/campaigns.md "Per-op search"): the campaign's policy
// (`campaign`; null when it was refused) with the op's fields over it, as its tasks store it
// (TaskSpec::search).
void read_op_search(Reader& r, const toml::node& node, Workflow workflow,
                    const SearchPolicy* campaign, Op& op) {
  const std::string key = op.key + ".search";
  const toml::table* t = node.as_table();
  if (t == nullptr) {
    r.fail(node.source(), key + ": expected a table ([ops.search] or search = { ... }), got " +
                              toml_describe(node));
    return;
  }
  if (campaign != nullptr && campaign->strategy == "adaptive") {
    r.fail(node.source(),
           key +
               ": the campaign's strategy is adaptive, a rule over all its tasks together; "
               "its ops cannot have a search of their own");
    return;
  }
  const size_t problems_before = r.count();
  check_keys(r, *t, key + ".", search_key_names());
  for (const auto& [k, v] : *t) {
    if (campaign_only_search_key(k.str())) {
      r.fail(v.source(),
             key + "." + std::string(k.str()) +
                 ": a campaign-wide field; set it in the campaign's [search], not per op");
    }
  }
  std::string strategy = campaign != nullptr ? campaign->strategy : "fix_loop";
  if (const toml::node* n = t->get("strategy"); n != nullptr && n->is_string()) {
    strategy = n->as_string()->get();
    if (strategy == "adaptive") {
      r.fail(
          n->source(),
          key + ".strategy: adaptive is a campaign-wide rule; set it in the campaign's [search]");
    }
  }
  SearchPolicy policy = op_search_base(campaign != nullptr ? *campaign : SearchPolicy{}, strategy);
  if (!read_search_fields(r, *t, key + ".", policy) || campaign == nullptr ||
      r.count() != problems_before)
    return;
  if (Status st = validate_search(policy, workflow); !st.ok()) {
    r.fail(node.source(), op.key + "." + st.message());  // "ops[2].search.samples: ..."
    return;
  }
  // Never "" (the campaign's), even when the op's policy is the default one.
  op.search = search_json(policy, /*defaults=*/false).dump();
}

// Reads one [[ops]] table. Returns the op; op.ok is false when it cannot be expanded.
Op read_op(Reader& r, const toml::table& table, size_t index, const Settings& defaults,
           Workflow workflow, const SearchPolicy* search, const CampaignFileReader& read,
           std::map<std::string, std::string>& files) {
  Op op;
  op.key = "ops[" + std::to_string(index) + "]";
  op.where = table.source();
  const size_t problems_before = r.count();
  std::vector<std::string_view> known = {"op_name", "task_desc", "candidate", "sweep", "search"};
  known.insert(known.end(), kTaskFields.begin(), kTaskFields.end());
  check_keys(r, table, op.key + ".", known);

  if (const toml::node* n = table.get("op_name")) {
    op.where = n->source();
    const auto* s = n->as_string();
    if (s == nullptr || !valid_op_name(s->get())) {
      r.fail(n->source(), op.key + ".op_name: expected a name of 1 to " +
                              std::to_string(kMaxOpName) +
                              " letters, digits, '_', '-' or '.', got " + toml_describe(*n));
    } else {
      op.op_name = s->get();
    }
  } else {
    r.fail(op.where, op.key + ": op_name is missing; every op needs one");
  }
  const std::string label = op.op_name.empty() ? op.key : "op '" + op.op_name + "'";

  if (const toml::node* n = table.get("task_desc")) {
    if (const auto* s = n->as_string()) op.task_desc_written = s->get();
    std::optional<std::string> text =
        read_campaign_file(r, *n, op.key + ".task_desc", "task file", read, files);
    Status desc = text ? check_task_desc(*text) : Status();
    if (!desc.ok()) {
      // Caught here, with the file's name and line, rather than in every one of the op's tasks.
      r.fail(n->source(), op.key + ".task_desc: task file " + toml_quote(op.task_desc_written) +
                              " " + desc.message());
    } else if (text) {
      op.task_text = std::move(*text);
    }
  } else {
    r.fail(op.where, op.key + ": task_desc is missing; " + label +
                         " needs the path of its task file (the reference)");
  }

  if (const toml::node* n = table.get("candidate")) {
    if (workflow != Workflow::verify_only) {
      r.fail(n->source(), op.key +
                              ".candidate: a candidate is used only by workflow "
                              "verify_only (this campaign's workflow is '" +
                              std::string(to_string(workflow)) + "')");
    } else {
      std::optional<std::string> text =
          read_campaign_file(r, *n, op.key + ".candidate", "candidate file", read, files);
      if (text) {
        op.candidate_text = std::move(*text);
      }
    }
  } else if (workflow == Workflow::verify_only) {
    r.fail(op.where, op.key + ": " + label +
                         " has no candidate; workflow verify_only verifies a supplied candidate "
                         "file (candidate = \"path/to/candidate.py\")");
  }

  if (const toml::node* n = table.get("sweep")) read_sweep(r, *n, op);
  if (const toml::node* n = table.get("search")) read_op_search(r, *n, workflow, search, op);

  // Task fields: the op's own, over [defaults], over the built-in defaults.
  op.settings = defaults;
  Settings own;
  read_task_fields(r, table, op.key + ".", own);
  for (auto& [k, v] : own) op.settings[k] = std::move(v);
  bool settings_ok = true;
  for (const auto& [k, v] : op.settings) settings_ok = settings_ok && !v.bad;
  for (std::string_view required : {"backend", "arch", "impl_type"}) {
    if (op.settings.find(required) == op.settings.end()) {
      r.fail(op.where, op.key + ": " + label + ": " + std::string(required) +
                           " is not set (set it in [defaults] or in the op)");
      settings_ok = false;
    }
  }
  if (settings_ok) {
    auto text = [&](std::string_view f) {
      auto it = op.settings.find(f);
      return it == op.settings.end() ? std::string() : it->second.text;
    };
    Target target{text("backend"), text("arch"), text("impl_type"), text("framework")};
    if (target.framework.empty()) target.framework = "torch";
    Status valid = validate_target(target);
    if (!valid.ok()) {
      op.ok = false;
      // Where the culprit was set. When [defaults] set every target field, the problem is
      // the same for every op that inherits them: one message, without the op's name.
      bool all_from_defaults = true;
      for (std::string_view f : {"backend", "arch", "impl_type", "framework"}) {
        auto it = op.settings.find(f);
        if (it != op.settings.end() && !it->second.key.starts_with("defaults.")) {
          all_from_defaults = false;
        }
      }
      auto it = op.settings.find(culprit_field(valid.message()));
      if (it != op.settings.end() && it->second.node != nullptr) {
        r.fail(it->second.node->source(),
               it->second.key + ": " + (all_from_defaults ? "" : label + ": ") + valid.message());
      } else {
        r.fail(op.where, op.key + ": " + label + ": " + valid.message());
      }
    }
  }
  // The sweep against the task file, whatever else is wrong with the op: a bad target must
  // not hide a bad sweep until the next try.
  if (!op.task_text.empty()) check_sweep_against_task(r, op);
  op.ok = op.ok && r.count() == problems_before;
  return op;
}

TaskSpec base_spec(const Op& op) {
  TaskSpec spec;
  spec.op_name = op.op_name;
  spec.framework = "torch";
  auto get = [&](std::string_view f) -> const Setting* {
    auto it = op.settings.find(f);
    return it == op.settings.end() ? nullptr : &it->second;
  };
  if (const Setting* s = get("backend")) spec.backend = s->text;
  if (const Setting* s = get("arch")) spec.arch = s->text;
  if (const Setting* s = get("impl_type")) spec.impl_type = s->text;
  if (const Setting* s = get("framework")) spec.framework = s->text;
  if (const Setting* s = get("task_type")) spec.task_type = s->text;
  if (const Setting* s = get("limit_steps")) spec.limit_steps = static_cast<int>(s->number);
  spec.search = op.search;
  return spec;
}

}  // namespace

struct CampaignPlan::Impl {
  toml::table root;  // the parsed file: the ops' sweep values point into it
  std::string name;
  Workflow workflow = Workflow::default_;
  std::string timing = "kforge";
  SearchPolicy search;
  std::vector<Op> ops;
  std::vector<TaskSpec> base;  // per op: its task fields (base_spec)
  std::vector<size_t> first;   // per op: the index of its first task
  size_t total = 0;
  std::string content_hash;
  std::map<std::string, std::string> files;
};

Result<CampaignPlan> plan_campaign(std::string_view toml_text, const CampaignFileReader& read,
                                   const std::string& source_name, bool walk_tasks) {
  auto parsed = parse_toml(toml_text, source_name);
  if (!parsed.ok()) return parsed.status();
  auto plan = std::make_shared<CampaignPlan::Impl>();
  plan->root = std::move(*parsed);
  const toml::table& root = plan->root;
  Reader r(source_name);
  CampaignPlan::Impl& campaign = *plan;
  check_keys(r, root, "", {"name", "workflow", "timing", "search", "defaults", "ops"});

  if (const toml::node* n = root.get("name")) {
    const auto* s = n->as_string();
    if (s == nullptr || s->get().empty()) {
      r.fail(n->source(), "name: expected a non-empty string, got " + toml_describe(*n));
    } else {
      campaign.name = s->get();
    }
  } else {
    r.fail_at(1, 1, "name: missing; a campaign needs a name (name = \"...\")");
  }

  bool workflow_ok = true;
  if (const toml::node* n = root.get("workflow")) {
    const auto* s = n->as_string();
    std::optional<Workflow> w = s ? parse_enum<Workflow>(s->get()) : std::nullopt;
    if (!w) {
      r.fail(n->source(),
             "workflow: expected one of " + names_of<Workflow>() + ", got " + toml_describe(*n));
      workflow_ok = false;
    } else {
      campaign.workflow = *w;
    }
  }

  if (const toml::node* n = root.get("timing")) {
    const auto* s = n->as_string();
    std::vector<std::string> valid;
    for (const auto& [profile, keys] : timing_profiles()) valid.push_back(profile);
    if (s == nullptr || !timing_profiles().contains(s->get())) {
      r.fail(n->source(), "timing: expected one of " + join(valid) + ", got " + toml_describe(*n));
    } else {
      campaign.timing = s->get();
    }
  }

  bool search_ok = true;
  if (const toml::node* n = root.get("search"))
    search_ok =
        read_search(r, *n, workflow_ok ? campaign.workflow : Workflow::default_, campaign.search);

  Settings defaults;
  if (const toml::node* n = root.get("defaults")) {
    if (const toml::table* t = n->as_table()) {
      std::vector<std::string_view> known(kTaskFields.begin(), kTaskFields.end());
      check_keys(r, *t, "defaults.", known);
      read_task_fields(r, *t, "defaults.", defaults);
    } else {
      r.fail(n->source(), "defaults: expected a table, got " + toml_describe(*n));
    }
  }

  std::vector<Op>& ops = plan->ops;
  if (const toml::node* n = root.get("ops")) {
    const toml::array* a = n->as_array();
    if (a == nullptr || !a->is_array_of_tables()) {
      r.fail(n->source(), "ops: expected an array of tables ([[ops]]), got " + toml_describe(*n));
    } else if (a->empty()) {
      r.fail(n->source(), "ops: expected at least one op");
    } else {
      for (size_t i = 0; i < a->size(); ++i) {
        // An unknown workflow was reported; read the ops as "default" to find more problems.
        ops.push_back(read_op(r, *a->get(i)->as_table(), i, defaults,
                              workflow_ok ? campaign.workflow : Workflow::default_,
                              search_ok ? &campaign.search : nullptr, read, plan->files));
      }
    }
  } else {
    r.fail_at(1, 1, "ops: missing; a campaign needs at least one [[ops]] table");
  }

  // The size, before anything is expanded.
  size_t total = 0;
  for (const Op& op : ops) {
    plan->first.push_back(total);
    if (!op.ok) continue;
    size_t points = 1;
    for (const SweepKey& k : op.sweep) {
      points = std::min(points * k.values.size(), kMaxCampaignTasks + 1);
    }
    total = std::min(total + points, kMaxCampaignTasks + 1);
  }
  if (total > kMaxCampaignTasks) {
    r.fail_at(1, 1,
              "ops: the campaign expands to more than " + std::to_string(kMaxCampaignTasks) +
                  " tasks; split it or shrink its sweeps");
  }
  if (total > kMaxCampaignTasks || (!walk_tasks && r.failed())) return r.status();
  plan->total = total;
  for (const Op& op : ops) plan->base.push_back(base_spec(op));
  if (!walk_tasks) return CampaignPlan(plan);
  // The tasks of the ops found sound are walked also when other ops were not (theirs expand
  // to none), so that their problems come in the same pass.

  // Every task once: checked, and hashed. Two tasks can be the same (op_name, task_id) only
  // when ops share an op_name or a sweep repeats a value: only those ops' ids are kept.
  std::map<std::string, int> ops_named;
  for (const Op& op : ops) ops_named[op.op_name]++;
  auto may_repeat = [&](const Op& op) {
    if (ops_named[op.op_name] > 1) return true;
    for (const SweepKey& k : op.sweep) {
      std::set<std::string> ids;
      for (const toml::node* v : k.values) {
        if (!ids.insert(id_text(*v)).second) return true;
      }
    }
    return false;
  };
  std::map<std::pair<std::string, std::string>, const Op*> seen;
  CampaignHash hash(to_string(campaign.workflow), campaign.timing, search_text(campaign.search));
  const CampaignPlan view(plan);
  for (size_t o = 0; o < ops.size(); ++o) {
    const Op& op = ops[o];
    const bool check_repeats = may_repeat(op);
    const size_t end = o + 1 < ops.size() ? plan->first[o + 1] : total;
    Status walked = view.expand(plan->first[o], end, [&](CampaignTask&& task) {
      // The checks above name the line of each problem; this is the one rule every way of
      // creating a task goes through (the API's too), so nothing they miss is stored.
      task.spec.candidate.swap(task.candidate);
      Status valid = validate_task_spec(task.spec, campaign.workflow);
      task.spec.candidate.swap(task.candidate);
      if (!valid.ok()) {
        r.fail(op.where,
               op.key + ": " + op.op_name + " [" + task.spec.task_id + "]: " + valid.message());
        return Status();
      }
      if (check_repeats) {
        auto [it, fresh] = seen.emplace(std::make_pair(op.op_name, task.spec.task_id), &op);
        if (!fresh) {
          r.fail(op.where, op.key + ".op_name: task " + op.op_name + " [" + task.spec.task_id +
                               "] is defined twice (also by " + it->second->key + " at line " +
                               std::to_string(it->second->where.begin.line) +
                               "); give the ops different op_name or sweeps");
          return Status();
        }
      }
      hash.add(task.spec, task.candidate);
      return Status();
    });
    KF_RETURN_IF_ERROR(walked);
  }
  KF_RETURN_IF_ERROR(r.status());
  plan->content_hash = hash.hex();
  return view;
}

const std::string& CampaignPlan::name() const {
  return impl_->name;
}
Workflow CampaignPlan::workflow() const {
  return impl_->workflow;
}
const std::string& CampaignPlan::timing() const {
  return impl_->timing;
}
const SearchPolicy& CampaignPlan::search() const {
  return impl_->search;
}
const std::string& CampaignPlan::content_hash() const {
  return impl_->content_hash;
}
size_t CampaignPlan::size() const {
  return impl_->total;
}
const std::map<std::string, std::string>& CampaignPlan::files() const {
  return impl_->files;
}

Status CampaignPlan::expand(size_t begin, size_t end,
                            const std::function<Status(CampaignTask&&)>& each) const {
  const Impl& plan = *impl_;
  // The op of task `begin`: the last whose first task is at or before it.
  size_t o = static_cast<size_t>(std::upper_bound(plan.first.begin(), plan.first.end(), begin) -
                                 plan.first.begin()) -
             1;
  for (size_t i = begin; i < end; ++i) {
    while (o + 1 < plan.ops.size() && plan.first[o + 1] <= i) ++o;
    const Op& op = plan.ops[o];
    // The point: task i - first[o] of the op's odometer, the last key fastest.
    std::vector<size_t> point(op.sweep.size(), 0);
    for (size_t k = op.sweep.size(), rest = i - plan.first[o]; k-- > 0;) {
      point[k] = rest % op.sweep[k].values.size();
      rest /= op.sweep[k].values.size();
    }
    CampaignTask task;
    task.spec = plan.base[o];
    task.spec.task_id = task_id_of(op, point);
    task.spec.task_desc = op.sweep.empty() ? op.task_text : rewrite(op, point);
    task.candidate = op.candidate_text;
    KF_RETURN_IF_ERROR(each(std::move(task)));
  }
  return Status();
}

CampaignFileReader files_under(const std::filesystem::path& base_dir) {
  return [base_dir](const std::string& written) -> Result<std::string> {
    std::filesystem::path path(written);
    std::filesystem::path resolved = path.is_absolute() ? path : base_dir / path;
    std::error_code ec;
    if (!std::filesystem::exists(resolved, ec)) {
      return not_found("does not exist (looked for " + resolved.lexically_normal().string() + ")");
    }
    if (std::string why = not_a_file(resolved); !why.empty()) return invalid_argument(why);
    Result<std::string> text = read_file(resolved);
    if (!text.ok()) return io_error("cannot be read: " + text.status().message());
    return text;
  };
}

Result<Campaign> parse_campaign(std::string_view toml_text, const std::filesystem::path& base_dir,
                                const std::string& source_name) {
  auto plan = plan_campaign(toml_text, files_under(base_dir), source_name);
  if (!plan.ok()) return plan.status();
  Campaign campaign;
  campaign.name = plan->name();
  campaign.workflow = plan->workflow();
  campaign.timing = plan->timing();
  campaign.search = plan->search();
  campaign.content_hash = plan->content_hash();
  campaign.source = source_name;
  campaign.tasks.reserve(plan->size());
  KF_RETURN_IF_ERROR(plan->expand(0, plan->size(), [&](CampaignTask&& t) {
    campaign.tasks.push_back(std::move(t));
    return Status();
  }));
  return campaign;
}

Result<Campaign> load_campaign(const std::filesystem::path& path) {
  Result<std::string> text = read_named_file(path, "campaign file");
  if (!text.ok()) return text.status();
  Result<Campaign> campaign = parse_campaign(*text, path.parent_path(), path.string());
  if (campaign.ok()) campaign->source = path;
  return campaign;
}

std::string hash_campaign(const Campaign& c) {
  CampaignHash hash(to_string(c.workflow), c.timing, search_text(c.search));
  for (const CampaignTask& t : c.tasks) hash.add(t.spec, t.candidate);
  return hash.hex();
}

namespace {

// What store_campaign stores: a plan's tasks or those of a Campaign in memory.
struct CampaignSource {
  std::string name;
  Workflow workflow = Workflow::default_;
  std::string timing, search, content_hash;
  size_t total = 0;
  std::function<Status(size_t begin, size_t end, const std::function<Status(CampaignTask&&)>&)>
      expand;
};

Result<std::pair<int64_t, bool>> store_tasks(const CampaignWriter& write,
                                             const CampaignSource& campaign,
                                             const std::string& source) {
  const size_t total = campaign.total;
  int64_t id = 0;
  size_t stored = 0;   // tasks committed so far
  bool fresh = false;  // created now
  // Tasks [stored, min(stored + kCampaignBatch, total)); the last batch sets it running.
  auto add_batch = [&](Store& store) -> Status {
    const size_t end = std::min(total, stored + kCampaignBatch);
    KF_RETURN_IF_ERROR(store.create_tasks(id, [&](const auto& add) {
      return campaign.expand(stored, end, [&](CampaignTask&& t) -> Status {
        t.spec.candidate = std::move(t.candidate);
        return add(t.spec);
      });
    }));
    if (end == total) return store.set_campaign_state(id, CampaignState::running);
    return store.set_campaign_state(
        id, CampaignState::submitting);  // also claims a resumed one (Store)
  };
  // The first transaction: a new campaign, or one left submitting (resumed after its
  // stored tasks), or one stored already (nothing to do).
  bool resumed = false;
  Status st = write([&](Store& store) -> Status {
    auto existing = store.campaign_by_hash(campaign.content_hash);
    if (!existing.ok()) return existing.status();
    if (existing->has_value()) {
      id = (*existing)->id;
      const CampaignState state = (*existing)->state;
      if ((state != CampaignState::submitting && state != CampaignState::cancelled) ||
          store.submitting_here(id)) {
        return Status();
      }
      auto ids = store.task_ids(TaskQuery{.campaign_id = id});
      if (!ids.ok()) return ids.status();
      stored = ids->size();
      if (state == CampaignState::cancelled) {
        if (stored >= total) return Status();  // cancelled once whole: `kforge resume` runs it on
        return failed_precondition(
            "campaign " + std::to_string(id) + " (" + (*existing)->name +
            ") was cancelled while its tasks were being stored (" + std::to_string(stored) +
            " of " + std::to_string(total) +
            "); a cancelled submission stays cancelled: it is not stored again and its stored part "
            "does not run. "
            "A campaign whose tasks differ (another sweep value, another task file) is a new one");
      }
      if (stored > total) {
        return internal_error("campaign " + std::to_string(id) + " holds " +
                              std::to_string(stored) + " tasks; its content expands to " +
                              std::to_string(total));
      }
      resumed = true;
    } else {
      auto made = store.create_campaign(campaign.name, source, campaign.content_hash,
                                        campaign.workflow, campaign.timing, campaign.search);
      if (!made.ok()) return made.status();
      id = *made;
      fresh = true;
    }
    return add_batch(store);
  });
  // A failed batch left the campaign claimed (Store::submitting_here): release it, so that a
  // submission of the same campaign resumes it.
  auto stop = [&](const Status& why) {
    if (id != 0) {
      Status released = write([&](Store& store) {
        store.release_submission(id);
        return Status();
      });
      if (!released.ok()) spdlog::warn("campaign {}: {}", id, released.to_string());
    }
    return why;
  };
  if (!st.ok()) return stop(st);
  if (!fresh && !resumed) return std::pair<int64_t, bool>{id, false};
  if (resumed)
    spdlog::info("campaign {} ({}): resuming its submission after {} of {} tasks", id,
                 campaign.name, stored, total);
  stored = std::min(total, stored + kCampaignBatch);
  while (stored < total) {
    spdlog::info("campaign {} ({}): stored {} of {} tasks", id, campaign.name, stored, total);
    st = write([&](Store& store) -> Status {
      auto c = store.get_campaign(id);  // cancelled meanwhile: stop
      if (!c.ok()) return c.status();
      if (c->state != CampaignState::submitting) {
        return failed_precondition("campaign " + std::to_string(id) + " became " +
                                   std::string(to_string(c->state)) +
                                   " while its tasks were being stored (" + std::to_string(stored) +
                                   " of " + std::to_string(total) + ")");
      }
      return add_batch(store);
    });
    if (!st.ok()) {
      // Left submitting: the same campaign submitted again resumes after `stored`.
      spdlog::warn("campaign {} ({}): storing stopped after {} of {} tasks: {}", id, campaign.name,
                   stored, total, st.to_string());
      return stop(st);
    }
    stored = std::min(total, stored + kCampaignBatch);
  }
  if (total > kCampaignBatch)
    spdlog::info("campaign {} ({}): stored all {} tasks; it runs", id, campaign.name, total);
  return std::pair<int64_t, bool>{id, true};
}

}  // namespace

Result<std::pair<int64_t, bool>> store_campaign(const CampaignWriter& write,
                                                const CampaignPlan& plan,
                                                const std::string& source) {
  CampaignSource from{
      plan.name(),
      plan.workflow(),
      plan.timing(),
      search_text(plan.search()),
      plan.content_hash(),
      plan.size(),
      [&plan](size_t b, size_t e, const std::function<Status(CampaignTask &&)>& each) {
        return plan.expand(b, e, each);
      }};
  return store_tasks(write, from, source);
}

Result<std::pair<int64_t, bool>> store_campaign(const CampaignWriter& write,
                                                const Campaign& campaign,
                                                const std::string& source) {
  CampaignSource from{
      campaign.name,
      campaign.workflow,
      campaign.timing,
      search_text(campaign.search),
      campaign.content_hash,
      campaign.tasks.size(),
      [&campaign](size_t b, size_t e, const std::function<Status(CampaignTask &&)>& each) {
        for (size_t i = b; i < e; ++i) KF_RETURN_IF_ERROR(each(CampaignTask(campaign.tasks[i])));
        return Status();
      }};
  return store_tasks(write, from, source);
}

}  // namespace kforge
