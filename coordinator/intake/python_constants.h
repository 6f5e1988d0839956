// Python source as a campaign's sweeps need it (coordinator/intake/campaign.cpp): the
// module-level constants of a task file, found by a small lexer without running Python, and
// values written as Python literals.
//
// The lexer splits the file into statements (brackets, strings including triple-quoted ones,
// comments, backslash continuations and ';' are understood). A module-level constant is a
// statement at module level (column 0, or after a ';' on a line that starts there) of the form
// `NAME = value` or `NAME: annotation = value`. Its value is the statement's code up to a ';'
// or a trailing comment, so rewriting keeps the comment and whatever follows a ';'.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace kforge {

// A Python identifier (ASCII letters, digits, '_'; not starting with a digit).
bool is_python_identifier(std::string_view s);
// a.b.c: identifiers joined by dots.
bool is_python_dotted_name(std::string_view s);
// One of Python's keywords, soft keywords (match, case, type) included.
bool is_python_keyword(std::string_view s);

// A module-level constant: `name` set on 1-based `line`; its value is the source's bytes
// [value_begin, value_end).
struct PythonConstant {
  std::string name;
  int line = 0;
  size_t value_begin = 0;
  size_t value_end = 0;
};

// The module-level constants of `source`, in file order (a name set twice appears twice).
std::vector<PythonConstant> module_constants(std::string_view source);

// A float as Python writes it: shortest round trip, always a float literal.
std::string python_float(double v);
// A Python string literal using `q` as its quote.
std::string python_string(std::string_view v, char q);

}  // namespace kforge
