#include "coordinator/intake/python_constants.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <set>

namespace kforge {
namespace {

struct Statement {
  size_t begin = 0;      // first byte
  size_t code_end = 0;   // one past the last byte of code (no trailing comment or blanks)
  int line = 0;          // 1-based line of `begin`
  bool column0 = false;  // module level: at column 0, or after a ';' on such a line
};

std::vector<Statement> split_statements(std::string_view s) {
  std::vector<Statement> out;
  const size_t n = s.size();
  size_t i = 0;
  int line = 1;
  int depth = 0;
  Statement current;
  bool open = false;             // a statement has started (it holds code)
  bool after_semicolon = false;  // the next statement follows a ';' on the same line
  bool inherited = false;        // ... and the line's first statement was at column 0
  auto finish = [&] {
    if (open) out.push_back(current);
    open = false;
  };
  auto code = [&](size_t start, size_t end, int start_line) {
    if (!open) {
      const bool at_line_start = start == 0 || s[start - 1] == '\n';
      current = Statement{start, end, start_line, after_semicolon ? inherited : at_line_start};
      open = true;
    }
    current.code_end = end;
  };
  while (i < n) {
    char c = s[i];
    if (c == '#') {
      while (i < n && s[i] != '\n') ++i;
      continue;
    }
    if (c == '\'' || c == '"') {
      const int start_line = line;
      const bool triple = i + 2 < n && s[i + 1] == c && s[i + 2] == c;
      size_t j = i + (triple ? 3 : 1);
      while (j < n) {
        if (s[j] == '\\') {
          if (j + 1 < n && s[j + 1] == '\n') ++line;
          j += 2;
          continue;
        }
        if (triple && s[j] == c && j + 2 < n && s[j + 1] == c && s[j + 2] == c) {
          j += 3;
          break;
        }
        if (!triple && s[j] == c) {
          ++j;
          break;
        }
        if (s[j] == '\n') {
          if (!triple) break;  // unterminated: the statement ends with the line
          ++line;
        }
        ++j;
      }
      j = std::min(j, n);
      code(i, j, start_line);
      i = j;
      continue;
    }
    if (c == '\\' && i + 1 < n && (s[i + 1] == '\n' || s[i + 1] == '\r')) {
      i += s[i + 1] == '\r' && i + 2 < n && s[i + 2] == '\n' ? 3 : 2;
      ++line;
      continue;
    }
    if (c == '\n') {
      ++line;
      ++i;
      if (depth == 0) {
        finish();
        after_semicolon = false;
      }
      continue;
    }
    if (c == ';' && depth == 0) {
      if (open) inherited = current.column0;
      finish();
      after_semicolon = true;
      ++i;
      continue;
    }
    if (c == '(' || c == '[' || c == '{') ++depth;
    if ((c == ')' || c == ']' || c == '}') && depth > 0) --depth;
    if (c != ' ' && c != '\t' && c != '\r' && c != '\f') code(i, i + 1, line);
    ++i;
  }
  finish();
  return out;
}

}  // namespace

bool is_python_identifier(std::string_view s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

bool is_python_dotted_name(std::string_view s) {
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    if (!is_python_identifier(s.substr(start, dot == std::string_view::npos ? dot : dot - start))) {
      return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

bool is_python_keyword(std::string_view s) {
  static const std::set<std::string_view> keywords = {
      "False",   "None",     "True",     "and",    "as",   "assert", "async",  "await",
      "break",   "class",    "continue", "def",    "del",  "elif",   "else",   "except",
      "finally", "for",      "from",     "global", "if",   "import", "in",     "is",
      "lambda",  "nonlocal", "not",      "or",     "pass", "raise",  "return", "try",
      "while",   "with",     "yield",    "match",  "case", "type"};
  return keywords.count(s) > 0;
}

std::vector<PythonConstant> module_constants(std::string_view s) {
  std::vector<PythonConstant> out;
  for (const Statement& st : split_statements(s)) {
    if (!st.column0) continue;
    std::string_view text = s.substr(st.begin, st.code_end - st.begin);
    size_t p = 0;
    while (p < text.size() &&
           (std::isalnum(static_cast<unsigned char>(text[p])) || text[p] == '_')) {
      ++p;
    }
    std::string_view name = text.substr(0, p);
    if (!is_python_identifier(name) || is_python_keyword(name)) continue;
    while (p < text.size() && (text[p] == ' ' || text[p] == '\t')) ++p;
    if (p < text.size() && text[p] == ':') {  // NAME: annotation = value
      size_t eq = p + 1;
      while (eq < text.size()) {
        if (text[eq] == '=' && (eq + 1 >= text.size() || text[eq + 1] != '=') &&
            text[eq - 1] != '=' && text[eq - 1] != '!' && text[eq - 1] != '<' &&
            text[eq - 1] != '>') {
          break;
        }
        ++eq;
      }
      if (eq >= text.size()) continue;  // a bare annotation: no value
      p = eq;
    }
    if (p >= text.size() || text[p] != '=' || (p + 1 < text.size() && text[p + 1] == '=')) {
      continue;
    }
    ++p;
    while (p < text.size() && (text[p] == ' ' || text[p] == '\t')) ++p;
    if (p >= text.size()) continue;
    out.push_back({std::string(name), st.line, st.begin + p, st.code_end});
  }
  return out;
}

std::string python_float(double v) {
  if (std::isnan(v)) return "float(\"nan\")";
  if (std::isinf(v)) return v > 0 ? "float(\"inf\")" : "-float(\"inf\")";
  std::array<char, 64> buf{};
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  std::string s(buf.data(), ec == std::errc() ? end : buf.data());
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

std::string python_string(std::string_view v, char q) {
  std::string out(1, q);
  for (unsigned char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == static_cast<unsigned char>(q)) {
      out += '\\';
      out += q;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + q;
}

}  // namespace kforge
