#include "coordinator/generation/prompts.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>

#include "common/fs.h"
#include "common/text.h"

namespace kforge {
namespace {

const std::vector<std::string>& impl_types() {
  static const std::vector<std::string> all = {"triton", "cuda_c", "cpp", "swft"};
  return all;
}

bool is_placeholder_name(std::string_view s) {
  if (s.empty() || !(std::islower(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::islower(static_cast<unsigned char>(c)) ||
           std::isdigit(static_cast<unsigned char>(c)) || c == '_';
  });
}

std::string_view trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Answers: normalisation and fenced blocks.

// LF line ends, no byte-order mark, no <think>...</think> reasoning. An unclosed <think>
// swallows the rest (a model cut off while reasoning gave no answer); a </think> without an
// opening tag ends reasoning that started with the answer.
std::string normalize(std::string_view in) {
  std::string s;
  s.reserve(in.size());
  if (in.starts_with("\xEF\xBB\xBF")) in.remove_prefix(3);
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\r') {
      s += '\n';
      if (i + 1 < in.size() && in[i + 1] == '\n') ++i;
    } else {
      s += in[i];
    }
  }
  // Some servers strip the opening tag and leave "reasoning...</think>answer".
  if (size_t close = s.find("</think>");
      close != std::string::npos && s.rfind("<think>", close) == std::string::npos) {
    s.erase(0, close + 8);
  }
  for (size_t open = s.find("<think>"); open != std::string::npos; open = s.find("<think>", open)) {
    size_t close = s.find("</think>", open);
    s.erase(open, close == std::string::npos ? std::string::npos : close + 8 - open);
  }
  return s;
}

struct Block {
  std::string tag;   // the info string's first word, lower-cased, without a leading '{' or '.'
  std::string body;  // the lines between the fences
  bool closed = true;
};

std::vector<std::string_view> split_lines(std::string_view s) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start <= s.size()) {
    size_t nl = s.find('\n', start);
    if (nl == std::string_view::npos) {
      lines.push_back(s.substr(start));
      break;
    }
    lines.push_back(s.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

// A fence line: optional indentation, then 3+ backticks or tildes. Sets the run and the rest.
bool fence(std::string_view line, std::string& run, std::string_view& rest) {
  std::string_view t = line;
  while (!t.empty() && (t[0] == ' ' || t[0] == '\t')) t.remove_prefix(1);
  if (t.empty() || (t[0] != '`' && t[0] != '~')) return false;
  size_t n = 0;
  while (n < t.size() && t[n] == t[0]) ++n;
  if (n < 3) return false;
  run = std::string(t.substr(0, n));
  rest = t.substr(n);
  return true;
}

// Markdown fenced blocks (CommonMark-like, forgiving): a closing fence is a line of at least
// as many of the same character; a line of code that ends with the fence also closes it (a
// common model slip); a block without a closing fence runs to the end.
std::vector<Block> fenced_blocks(std::string_view text) {
  std::vector<Block> blocks;
  std::vector<std::string_view> lines = split_lines(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string run;
    std::string_view rest;
    if (!fence(lines[i], run, rest)) continue;
    if (run[0] == '`' && rest.find('`') != std::string_view::npos) continue;  // inline code
    Block block;
    std::string_view info = trim(rest);
    while (!info.empty() && (info[0] == '{' || info[0] == '.')) info.remove_prefix(1);
    size_t end = 0;
    while (end < info.size() && !std::isspace(static_cast<unsigned char>(info[end])) &&
           info[end] != '}') {
      ++end;
    }
    block.tag = lower(info.substr(0, end));
    block.closed = false;
    size_t j = i + 1;
    for (; j < lines.size(); ++j) {
      std::string close_run;
      std::string_view close_rest;
      if (fence(lines[j], close_run, close_rest) && close_run[0] == run[0] &&
          close_run.size() >= run.size() && trim(close_rest).empty()) {
        block.closed = true;
        break;
      }
      std::string_view line = lines[j];
      std::string_view right = line;
      while (!right.empty() && std::isspace(static_cast<unsigned char>(right.back()))) {
        right.remove_suffix(1);
      }
      if (right.size() > run.size() && right.ends_with(run)) {
        block.body += std::string(right.substr(0, right.size() - run.size())) + "\n";
        block.closed = true;
        break;
      }
      block.body += std::string(line) + "\n";
    }
    if (!block.closed) {  // cut off: drop the blank tail the cut left
      while (!block.body.empty() && std::isspace(static_cast<unsigned char>(block.body.back()))) {
        block.body.pop_back();
      }
      if (!block.body.empty()) block.body += '\n';
    }
    blocks.push_back(std::move(block));
    i = j;  // past the closing fence (or the end)
  }
  return blocks;
}

bool is_python_tag(const std::string& tag) {
  return tag == "python" || tag == "py" || tag == "python3" || tag == "py3";
}

// Whether the code defines the candidate's entry point at module level: class ModelNew, or
// the function form def <op>_<impl_type>_<framework>(.
bool defines_entry(std::string_view code, const std::string& impl_type) {
  for (std::string_view line : split_lines(code)) {
    if (line.starts_with("class ModelNew")) {
      std::string_view after = line.substr(14);
      if (after.empty() || after[0] == '(' || after[0] == ':' || after[0] == ' ') return true;
    }
    if (line.starts_with("def ") || line.starts_with("async def ")) {
      std::string_view name = line.substr(line.find("def ") + 4);
      size_t paren = name.find('(');
      if (paren == std::string_view::npos) continue;
      name = trim(name.substr(0, paren));
      for (std::string_view fw : {"torch", "numpy", "mindspore"}) {
        std::string suffix = "_" + impl_type + "_" + std::string(fw);
        if (name.size() > suffix.size() && name.ends_with(suffix)) return true;
      }
    }
  }
  return false;
}

// The whole answer from its first line that starts Python code.
std::string from_first_python_line(std::string_view text) {
  size_t pos = 0;
  for (std::string_view line : split_lines(text)) {
    // Not '#': a Markdown heading in the prose looks like a Python comment.
    for (std::string_view start : {"import ", "from ", "class ", "def ", "@", "\"\"\"", "'''"}) {
      if (line.starts_with(start)) return std::string(trim(text.substr(pos))) + "\n";
    }
    pos += line.size() + 1;
  }
  return std::string(trim(text)) + "\n";
}

// ---------------------------------------------------------------------------------------------
// Templates.

Status parse_template(const std::string& file, std::string_view text,
                      std::vector<std::pair<bool, std::string>>& pieces) {
  static const std::set<std::string> known(prompt_placeholders().begin(),
                                           prompt_placeholders().end());
  size_t pos = 0;
  while (pos < text.size()) {
    size_t open = text.find("{{", pos);
    if (open == std::string_view::npos) {
      pieces.emplace_back(false, std::string(text.substr(pos)));
      break;
    }
    if (open > pos) pieces.emplace_back(false, std::string(text.substr(pos, open - pos)));
    const size_t line =
        static_cast<size_t>(std::count(text.begin(), text.begin() + open, '\n')) + 1;
    const std::string where = file + ":" + std::to_string(line) + ": ";
    size_t close = text.find("}}", open + 2);
    size_t newline = text.find('\n', open);
    if (close == std::string_view::npos || (newline != std::string_view::npos && newline < close)) {
      return invalid_argument(where +
                              "'{{' without a closing '}}' on the same line (templates "
                              "cannot hold a literal '{{')");
    }
    std::string name(trim(text.substr(open + 2, close - open - 2)));
    if (!is_placeholder_name(name)) {
      return invalid_argument(where + "'{{" + name +
                              "}}' is not a placeholder name (lower-case "
                              "letters, digits and '_')");
    }
    if (known.count(name) == 0) {
      return invalid_argument(where + "unknown placeholder {{" + name +
                              "}}; known: " + join(prompt_placeholders()));
    }
    pieces.emplace_back(true, std::move(name));
    pos = close + 2;
  }
  return Status();
}

std::filesystem::path self_exe() {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::path() : p;
}

}  // namespace

const std::vector<std::string>& prompt_placeholders() {
  static const std::vector<std::string> all = {"op_name",       "task_id",
                                               "backend",       "arch",
                                               "impl_type",     "framework",
                                               "task_desc",     "design",
                                               "previous_code", "verifier_message",
                                               "suggestions",   "impl_notes",
                                               "aul_reference", "candidate_contract",
                                               "inspirations"};
  return all;
}

const std::vector<std::string>& required_prompt_templates() {
  static const std::vector<std::string> all = [] {
    std::vector<std::string> names = {"designer",  "designer_fix", "coder",        "coder_fix",
                                      "conductor", "aul",          "coder_improve"};
    for (const std::string& impl : impl_types()) {
      names.push_back("notes/" + impl);
      names.push_back("contracts/" + impl);
    }
    return names;
  }();
  return all;
}

Result<PromptLibrary> PromptLibrary::load(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return not_found("prompt directory " + dir.string() + " does not exist");
  }
  PromptLibrary lib;
  lib.dir_ = dir;
  std::filesystem::recursive_directory_iterator it(dir, ec), end;
  if (ec) return io_error("cannot list prompt directory " + dir.string() + ": " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) return io_error("cannot list prompt directory " + dir.string() + ": " + ec.message());
    if (!it->is_regular_file(ec) || it->path().extension() != ".md") continue;
    std::filesystem::path rel = it->path().lexically_relative(dir);
    std::string name = rel.replace_extension().generic_string();
    Result<std::string> text = read_file(it->path());
    if (!text.ok()) return text.status();
    std::vector<std::pair<bool, std::string>> pieces;
    KF_RETURN_IF_ERROR(parse_template(it->path().string(), *text, pieces));
    Template t;
    for (auto& [is_placeholder, s] : pieces) t.pieces.push_back({is_placeholder, std::move(s)});
    lib.templates_[name] = std::move(t);
  }
  std::vector<std::string> missing;
  for (const std::string& name : required_prompt_templates()) {
    if (lib.templates_.count(name) == 0) missing.push_back(name + ".md");
  }
  if (!missing.empty()) {
    return not_found("prompt directory " + dir.string() + " lacks " + join(missing));
  }
  return lib;
}

Result<std::string> PromptLibrary::render(const std::string& name,
                                          const std::map<std::string, std::string>& values) const {
  std::string key = name.ends_with(".md") ? name.substr(0, name.size() - 3) : name;
  auto it = templates_.find(key);
  if (it == templates_.end()) {
    return not_found("no prompt template '" + name + "' in " + dir_.string() +
                     " (have: " + join(names()) + ")");
  }
  std::string out;
  std::vector<std::string> missing;
  for (const Piece& p : it->second.pieces) {
    if (!p.placeholder) {
      out += p.text;
      continue;
    }
    auto v = values.find(p.text);
    if (v == values.end()) {
      if (std::find(missing.begin(), missing.end(), p.text) == missing.end()) {
        missing.push_back(p.text);
      }
      continue;
    }
    out += v->second;
  }
  if (!missing.empty()) {
    std::vector<std::string> quoted;
    for (const std::string& m : missing) quoted.push_back("{{" + m + "}}");
    return invalid_argument("prompt template '" + key + "': no value for placeholder" +
                            (missing.size() > 1 ? "s " : " ") + join(quoted));
  }
  return out;
}

Result<std::map<std::string, std::string>> PromptLibrary::task_values(const TaskSpec& spec) const {
  std::map<std::string, std::string> values = {
      {"op_name", spec.op_name},     {"task_id", spec.task_id},     {"backend", spec.backend},
      {"arch", spec.arch},           {"impl_type", spec.impl_type}, {"framework", spec.framework},
      {"task_desc", spec.task_desc},
  };
  if (!has("notes/" + spec.impl_type) || !has("contracts/" + spec.impl_type)) {
    return not_found("no prompt notes for impl_type '" + spec.impl_type + "' in " + dir_.string() +
                     " (expected notes/" + spec.impl_type + ".md and contracts/" + spec.impl_type +
                     ".md)");
  }
  // Notes and contracts may use the task's placeholders; the AUL reference none.
  Result<std::string> notes = render("notes/" + spec.impl_type, values);
  if (!notes.ok()) return notes.status();
  Result<std::string> contract = render("contracts/" + spec.impl_type, values);
  if (!contract.ok()) return contract.status();
  Result<std::string> aul = render("aul", values);
  if (!aul.ok()) return aul.status();
  // Inserted into the middle of other templates: no trailing blank lines of their own.
  auto body = [](const std::string& s) {
    size_t end = s.find_last_not_of(" \t\r\n");
    return end == std::string::npos ? std::string() : s.substr(0, end + 1);
  };
  values["task_desc"] = body(spec.task_desc);
  values["impl_notes"] = body(*notes);
  values["candidate_contract"] = body(*contract);
  values["aul_reference"] = body(*aul);
  return values;
}

std::vector<std::string> PromptLibrary::names() const {
  std::vector<std::string> out;
  for (const auto& [name, t] : templates_) out.push_back(name);
  return out;
}

std::vector<std::string> PromptLibrary::placeholders_of(const std::string& name) const {
  std::set<std::string> used;
  auto it = templates_.find(name);
  if (it != templates_.end()) {
    for (const Piece& p : it->second.pieces) {
      if (p.placeholder) used.insert(p.text);
    }
  }
  return {used.begin(), used.end()};
}

Result<std::filesystem::path> find_prompt_dir(const std::filesystem::path& configured) {
  std::error_code ec;
  auto usable = [&](const std::filesystem::path& p) {
    return std::filesystem::is_regular_file(p / "designer.md", ec);
  };
  if (!configured.empty()) {
    if (usable(configured)) return configured;
    return not_found("prompt directory " + configured.string() +
                     " (configured) has no designer.md");
  }
  if (const char* env = std::getenv("KFORGE_PROMPT_DIR"); env != nullptr && *env != '\0') {
    if (usable(env)) return std::filesystem::path(env);
    return not_found(std::string("prompt directory ") + env +
                     " ($KFORGE_PROMPT_DIR) has no designer.md");
  }
  std::vector<std::filesystem::path> looked;
  if (std::filesystem::path exe = self_exe(); !exe.empty()) {
    looked.push_back(
        (exe.parent_path() / ".." / "share" / "kforge" / "prompts").lexically_normal());
  }
#ifdef KFORGE_SOURCE_DIR
  looked.push_back(std::filesystem::path(KFORGE_SOURCE_DIR) / "prompts");
#endif
  for (const auto& p : looked) {
    if (usable(p)) return p;
  }
  std::vector<std::string> names;
  for (const auto& p : looked) names.push_back(p.string());
  return not_found(
      "no prompt directory found; set one in the configuration or "
      "$KFORGE_PROMPT_DIR (looked in: " +
      (names.empty() ? std::string("nothing else") : join(names)) + ")");
}

Result<std::string> extract_code(std::string_view response, const std::string& impl_type) {
  const std::string text = normalize(response);
  const std::string expected =
      "expected the complete candidate file in one ```python fenced block, defining class "
      "ModelNew (same constructor arguments and forward inputs as Model) or a function "
      "<op_name>_" +
      impl_type + "_<framework>";
  if (trim(text).empty()) {
    return invalid_argument("the answer is empty" +
                            std::string(response.find("<think>") != std::string_view::npos
                                            ? " apart from reasoning (cut off while thinking?)"
                                            : "") +
                            "; " + expected);
  }
  std::vector<Block> blocks = fenced_blocks(text);
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) {
    if (is_python_tag(it->tag) && defines_entry(it->body, impl_type)) return it->body;
  }
  const Block* largest = nullptr;
  for (const Block& b : blocks) {
    if (is_python_tag(b.tag) || !defines_entry(b.body, impl_type)) continue;
    if (largest == nullptr || b.body.size() > largest->body.size()) largest = &b;
  }
  if (largest != nullptr) return largest->body;
  if (blocks.empty()) {
    if (defines_entry(text, impl_type)) return from_first_python_line(text);
    return invalid_argument(
        "no code found: the answer has no fenced block and defines no "
        "class ModelNew; " +
        expected);
  }
  std::vector<std::string> tags;
  for (const Block& b : blocks) tags.push_back(b.tag.empty() ? "(untagged)" : b.tag);
  return invalid_argument("no candidate found: the answer has " + std::to_string(blocks.size()) +
                          " fenced block(s) (" + join(tags) +
                          ") and none defines class ModelNew; " + expected);
}

Result<std::string> extract_design(std::string_view response) {
  const std::string text = normalize(response);
  std::vector<Block> blocks = fenced_blocks(text);
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) {
    if (it->tag == "aul" && !trim(it->body).empty()) return std::string(trim(it->body)) + "\n";
  }
  std::string_view whole = trim(text);
  if (whole.empty()) {
    return invalid_argument(
        "the design answer is empty; expected the algorithm sketch in an "
        "```aul fenced block");
  }
  return std::string(whole) + "\n";
}

Result<ConductorDecision> parse_conductor(std::string_view response) {
  static const std::vector<std::string> actions = {"fix_code", "fix_design", "finish"};
  const std::string text = normalize(response);
  const std::string expected =
      "expected a JSON object {\"action\": \"fix_code\" | \"fix_design\" | \"finish\", "
      "\"suggestions\": \"...\"}";
  // The first balanced {...} that parses as a JSON object with an "action" key. The number
  // of tries and the length of one object are bounded, so that an answer full of braces
  // (code, say) stays cheap.
  constexpr int kMaxTries = 1024;
  constexpr size_t kMaxObject = 64 * 1024;
  int tries = 0;
  for (size_t open = text.find('{'); open != std::string::npos && tries < kMaxTries;
       open = text.find('{', open + 1), ++tries) {
    int depth = 0;
    bool in_string = false;
    size_t close = std::string::npos;
    const size_t limit = std::min(text.size(), open + kMaxObject);
    for (size_t i = open; i < limit && close == std::string::npos; ++i) {
      char c = text[i];
      if (in_string) {
        if (c == '\\') {
          ++i;
        } else if (c == '"') {
          in_string = false;
        }
      } else if (c == '"') {
        in_string = true;
      } else if (c == '{') {
        ++depth;
      } else if (c == '}' && --depth == 0) {
        close = i;
      }
    }
    if (close == std::string::npos) continue;
    if (!check_json_depth(std::string_view(text).substr(open, close + 1 - open)).ok())
      continue;  // model output
    nlohmann::json j = nlohmann::json::parse(text.begin() + static_cast<std::ptrdiff_t>(open),
                                             text.begin() + static_cast<std::ptrdiff_t>(close) + 1,
                                             nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("action")) continue;
    ConductorDecision d;
    const nlohmann::json& a = j["action"];
    if (!a.is_string()) {
      return invalid_argument("the conductor's \"action\" is " + a.dump() + ", not a string; " +
                              expected);
    }
    d.action = lower(trim(a.get<std::string>()));
    if (std::find(actions.begin(), actions.end(), d.action) == actions.end()) {
      return invalid_argument("the conductor's action \"" + a.get<std::string>() +
                              "\" is not one of " + join(actions) + "; " + expected);
    }
    if (j.contains("suggestions")) {
      const nlohmann::json& s = j["suggestions"];
      if (s.is_string()) {
        d.suggestions = s.get<std::string>();
      } else if (s.is_array()) {
        std::vector<std::string> items;
        for (const auto& item : s)
          items.push_back(item.is_string() ? item.get<std::string>() : item.dump());
        d.suggestions = join(items, "\n");
      } else if (!s.is_null()) {
        d.suggestions = s.dump();
      }
    }
    return d;
  }
  return invalid_argument("no decision found in the conductor's answer; " + expected);
}

}  // namespace kforge
