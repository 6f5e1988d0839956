// Reporting problems found in a TOML file (configuration, campaigns) the same way everywhere:
// "file:line:column: key: what was expected, got what", every problem in file order, and a
// "did you mean" for a misspelt key.
#pragma once

#include <toml++/toml.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace kforge {

class TomlProblems {
 public:
  explicit TomlProblems(std::string source) : source_(std::move(source)) {}

  void fail(const toml::source_region& where, std::string text) {
    fail_at(where.begin.line, where.begin.column, std::move(text));
  }
  void fail_at(uint32_t line, uint32_t column, std::string text) {
    problems_.push_back({line, column, std::move(text)});
  }
  // "<key>: expected <expected>, got <what the node holds>"
  void fail_value(const toml::node& node, const std::string& key, std::string_view expected);
  // "unknown key '<prefix><key>'", with a suggestion among `known` for a near miss.
  void fail_unknown_key(const toml::key& key, const std::string& prefix,
                        const std::vector<std::string_view>& known);
  bool failed() const { return !problems_.empty(); }
  size_t count() const { return problems_.size(); }
  // ok, or invalid_argument listing every problem once, in file order.
  Status status() const;

 private:
  struct Problem {
    uint32_t line;
    uint32_t column;
    std::string text;
  };
  std::string source_;
  std::vector<Problem> problems_;
};

// Parses `text` (named `source` in messages): the table, or invalid_argument
// "source:line:column: invalid TOML: ..." for a syntax error (toml++ reports those by
// throwing; this is the edge where that becomes a Status).
Result<toml::table> parse_toml(std::string_view text, const std::string& source);

// A string as TOML would write it: "a \"b\"".
std::string toml_quote(std::string_view s);
// What a node holds, for "got ..." in messages: string "fast", integer -1, a table.
std::string toml_describe(const toml::node& node);
size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace kforge
