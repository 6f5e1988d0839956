#include "common/toml_report.h"

#include <algorithm>
#include <limits>
#include <set>
#include <sstream>
#include <tuple>

namespace kforge {

void TomlProblems::fail_value(const toml::node& node, const std::string& key,
                              std::string_view expected) {
  fail(node.source(), key + ": expected " + std::string(expected) + ", got " + toml_describe(node));
}

void TomlProblems::fail_unknown_key(const toml::key& key, const std::string& prefix,
                                    const std::vector<std::string_view>& known) {
  std::string text = "unknown key '" + prefix + std::string(key.str()) + "'";
  std::string_view closest;
  size_t best = std::numeric_limits<size_t>::max();
  for (std::string_view name : known) {
    size_t d = edit_distance(key.str(), name);
    if (d < best) {
      best = d;
      closest = name;
    }
  }
  if (!closest.empty() && best <= std::max<size_t>(2, closest.size() / 3)) {
    text += " (did you mean '" + std::string(closest) + "'?)";
  }
  fail(key.source(), std::move(text));
}

Status TomlProblems::status() const {
  if (problems_.empty()) return Status();
  std::vector<Problem> sorted = problems_;
  std::stable_sort(sorted.begin(), sorted.end(), [](const Problem& a, const Problem& b) {
    return a.line != b.line ? a.line < b.line : a.column < b.column;
  });
  std::string message;
  std::set<std::tuple<uint32_t, uint32_t, std::string>> seen;
  for (const Problem& p : sorted) {
    if (!seen.insert({p.line, p.column, p.text}).second) continue;  // one report per problem
    if (!message.empty()) message += '\n';
    message +=
        source_ + ":" + std::to_string(p.line) + ":" + std::to_string(p.column) + ": " + p.text;
  }
  return invalid_argument(std::move(message));
}

Result<toml::table> parse_toml(std::string_view text, const std::string& source) {
  try {
    return toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return invalid_argument(source + ":" + std::to_string(e.source().begin.line) + ":" +
                            std::to_string(e.source().begin.column) +
                            ": invalid TOML: " + std::string(e.description()));
  }
}

std::string toml_quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default: out += c;
    }
  }
  return out + "\"";
}

std::string toml_describe(const toml::node& node) {
  std::ostringstream os;
  switch (node.type()) {
    case toml::node_type::string: return "string " + toml_quote(node.as_string()->get());
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::integer: os << "integer " << node.as_integer()->get(); break;
    case toml::node_type::floating_point: os << "float " << *node.as_floating_point(); break;
    case toml::node_type::boolean: os << "boolean " << *node.as_boolean(); break;
    case toml::node_type::date: os << "date " << *node.as_date(); break;
    case toml::node_type::time: os << "time " << *node.as_time(); break;
    case toml::node_type::date_time: os << "date-time " << *node.as_date_time(); break;
    case toml::node_type::none: return "nothing";
  }
  return os.str();
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

}  // namespace kforge
