#include "coordinator/intake/kernelbench.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <map>
#include <set>

#include "common/fs.h"
#include "common/text.h"
#include "common/verify_job.h"
#include "coordinator/intake/campaign.h"

namespace kforge {
namespace {

namespace fs = std::filesystem;

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// A whole number of digits only; -1 when `s` is not one or is above kMaxProblemNumber.
int problem_number(std::string_view s) {
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return -1;
  }
  long long n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || end != s.data() + s.size() || n > kMaxProblemNumber) return -1;
  return static_cast<int>(n);
}

// A string as a TOML basic string: quotes, backslashes and every control character escaped.
std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// "level3" -> 3; 0 when the name is not level<N>.
int level_of_name(const std::string& name) {
  if (name.rfind("level", 0) != 0) return 0;
  int n = problem_number(std::string_view(name).substr(5));
  return n > 0 ? n : 0;
}

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

// A problem file of a level directory: NUMBER_Title.py.
struct ProblemFile {
  int number = 0;
  std::string file_name;
  fs::path path;
};

// The NUMBER_*.py files of `dir`, by number (then name). Other files are not problems.
Result<std::vector<ProblemFile>> problem_files(const fs::path& dir) {
  std::vector<ProblemFile> out;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return io_error("cannot list " + dir.string() + ": " + ec.message());
  for (const fs::directory_entry& e : it) {
    std::string name = e.path().filename().string();
    size_t underscore = name.find('_');
    if (underscore == std::string::npos || name.size() < 3 || name.substr(name.size() - 3) != ".py")
      continue;
    int number = problem_number(std::string_view(name).substr(0, underscore));
    if (number < 1) continue;
    std::error_code type_ec;
    if (!e.is_regular_file(type_ec)) continue;  // follows symlinks
    out.push_back({number, name, e.path()});
  }
  std::sort(out.begin(), out.end(), [](const ProblemFile& a, const ProblemFile& b) {
    return std::tie(a.number, a.file_name) < std::tie(b.number, b.file_name);
  });
  return out;
}

struct LevelDir {
  fs::path path;
  std::string described;
};

// Which directory holds the level's problems: DIR/level<N>, DIR/KernelBench/level<N> (a clone
// of the repository) or DIR itself (named level<N>, or holding NUMBER_*.py files).
Result<LevelDir> find_level_dir(const fs::path& dir, int level) {
  std::error_code ec;
  if (!fs::exists(dir, ec))
    return not_found("KernelBench directory " + dir.string() + " does not exist");
  if (!is_dir(dir))
    return invalid_argument("KernelBench directory " + dir.string() + " is not a directory");
  const std::string level_name = "level" + std::to_string(level);
  fs::path named = fs::weakly_canonical(fs::absolute(dir));
  int own_level = level_of_name(named.filename().string());
  if (own_level == level) return LevelDir{named, dir.string() + " (a level directory)"};
  if (own_level > 0) {
    return invalid_argument(dir.string() + " is the level " + std::to_string(own_level) +
                            " directory, but level " + std::to_string(level) +
                            " was asked for; give --level " + std::to_string(own_level) +
                            ", or the problem root that holds " + level_name + "/");
  }
  if (is_dir(named / level_name)) {
    return LevelDir{named / level_name, (fs::path(dir) / level_name).string() + " (" + level_name +
                                            "/ of the problem root " + dir.string() + ")"};
  }
  if (is_dir(named / "KernelBench" / level_name)) {
    return LevelDir{named / "KernelBench" / level_name,
                    (fs::path(dir) / "KernelBench" / level_name).string() + " (" + level_name +
                        "/ of the KernelBench clone " + dir.string() + ")"};
  }
  std::vector<std::string> levels;
  for (const fs::path& root : {named, named / "KernelBench"}) {
    if (!is_dir(root)) continue;
    for (const fs::directory_entry& e : fs::directory_iterator(root, ec)) {
      if (level_of_name(e.path().filename().string()) > 0 && is_dir(e.path())) {
        levels.push_back(e.path().lexically_relative(named).string() + "/");
      }
    }
  }
  std::sort(levels.begin(), levels.end());
  if (levels.empty()) {
    auto files = problem_files(named);
    if (files.ok() && !files->empty())
      return LevelDir{named, dir.string() + " (a level directory)"};
  }
  return not_found(
      dir.string() + " has no " + level_name + "/ directory" +
      (levels.empty() ? " and no problem files (NUMBER_Name.py)"
                      : " (it has " + join(levels) + ")") +
      "; give KernelBench's problem root (the directory holding level1/, level2/, ...) or a "
      "level directory");
}

// The problem's path as the campaign writes it: relative to the campaign file's directory
// when the problem lies below it, else absolute.
std::string task_desc_of(const fs::path& problem, const fs::path& out_dir) {
  fs::path rel = problem.lexically_relative(out_dir);
  if (!rel.empty() && *rel.begin() != "..") return rel.generic_string();
  return problem.generic_string();
}

bool starts_definition(std::string_view line, std::string_view keyword_and_name) {
  if (line.rfind(keyword_and_name, 0) != 0) return false;
  std::string_view rest = line.substr(keyword_and_name.size());
  while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
  return !rest.empty() && (rest.front() == '(' || rest.front() == ':');
}

}  // namespace

Result<std::vector<int>> parse_problem_ranges(std::string_view text) {
  const std::string expected = "expected problem numbers and ranges like 1-20,23,40-42";
  if (trim(text).empty()) return invalid_argument("problems: " + expected + ", got nothing");
  std::set<int> numbers;
  std::vector<std::string> problems;
  const std::string quoted = "problems '" + std::string(text) + "': ";
  size_t start = 0;
  int index = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string_view item =
        trim(text.substr(start, comma == std::string_view::npos ? comma : comma - start));
    ++index;
    start = comma == std::string_view::npos ? text.size() + 1 : comma + 1;
    if (item.empty()) {
      problems.push_back("item " + std::to_string(index) + " is empty");
      continue;
    }
    size_t dash = item.find('-');
    std::string_view first = trim(item.substr(0, dash));
    std::string_view last = dash == std::string_view::npos ? first : trim(item.substr(dash + 1));
    int a = problem_number(first);
    int b = problem_number(last);
    if (a < 1 || b < 1) {
      std::string bad(a < 1 ? first : last);
      problems.push_back((bad.empty() ? "'" + std::string(item) + "' is not a number or range"
                                      : "'" + bad + "' is not a problem number") +
                         " (a whole number from 1 to " + std::to_string(kMaxProblemNumber) + ")");
      continue;
    }
    if (a > b) {
      problems.push_back("range " + std::string(item) + " goes backwards (write " +
                         std::to_string(b) + "-" + std::to_string(a) + ")");
      continue;
    }
    for (int n = a; n <= b; ++n) numbers.insert(n);
  }
  if (!problems.empty()) return invalid_argument(quoted + join(problems, "; ") + "; " + expected);
  return std::vector<int>(numbers.begin(), numbers.end());
}

std::string format_problem_ranges(const std::vector<int>& numbers) {
  std::string out;
  for (size_t i = 0; i < numbers.size();) {
    size_t j = i;
    while (j + 1 < numbers.size() && numbers[j + 1] == numbers[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(numbers[i]);
    if (j > i) out += "-" + std::to_string(numbers[j]);
    i = j + 1;
  }
  return out;
}

Result<Target> parse_target(std::string_view text, const std::string& framework) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t slash = text.find('/', start);
    parts.emplace_back(text.substr(start, slash == std::string_view::npos ? slash : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (parts.size() != 3 ||
      std::any_of(parts.begin(), parts.end(), [](const auto& p) { return p.empty(); })) {
    return invalid_argument(
        "target '" + std::string(text) +
        "': expected backend/arch/impl_type, e.g. cuda/h100/triton or cpu/x86_64/cpp");
  }
  Target t{parts[0], parts[1], parts[2], framework};
  if (Status st = validate_target(t); !st.ok()) {
    return invalid_argument("target '" + std::string(text) + "' (framework " + framework +
                            "): " + st.message());
  }
  return t;
}

std::string kernelbench_op_name(std::string_view stem) {
  size_t p = 0;
  while (p < stem.size() && std::isdigit(static_cast<unsigned char>(stem[p]))) ++p;
  const std::string number(stem.substr(0, p));
  if (p > 0 && p < stem.size() && stem[p] == '_') ++p;
  std::string title;
  bool gap = false;
  for (char c : stem.substr(p)) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      if (gap && !title.empty()) title += '_';
      title += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      gap = false;
    } else {
      gap = true;
    }
  }
  if (number.empty()) return title.empty() ? "problem" : title;
  return title.empty() ? "problem_" + number : number + "_" + title;
}

std::vector<std::string> kernelbench_downloads(std::string_view text) {
  std::vector<std::string> out;
  for (std::string_view call :
       {"from_pretrained", "hf_hub_download", "snapshot_download", "torch.hub.load"}) {
    if (text.find(call) != std::string_view::npos) out.emplace_back(call);
  }
  return out;
}

std::vector<std::string> kernelbench_missing_definitions(std::string_view text) {
  bool model = false, inputs = false, init_inputs = false;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    std::string_view line = text.substr(start, nl == std::string_view::npos ? nl : nl - start);
    model = model || starts_definition(line, "class Model");
    inputs = inputs || starts_definition(line, "def get_inputs");
    init_inputs = init_inputs || starts_definition(line, "def get_init_inputs");
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  std::vector<std::string> missing;
  if (!model) missing.push_back("class Model");
  if (!inputs) missing.push_back("def get_inputs()");
  if (!init_inputs) missing.push_back("def get_init_inputs()");
  return missing;
}

Status check_kernelbench_import(const KernelBenchImport& o) {
  std::vector<std::string> problems;
  if (o.level < 1)
    problems.push_back("level " + std::to_string(o.level) +
                       ": expected a level number from 1 (level1/)");
  if (Status st = validate_target(o.target); !st.ok()) {
    problems.push_back("target " + o.target.backend + "/" + o.target.arch + "/" +
                       o.target.impl_type + " (framework " + o.target.framework +
                       "): " + st.message());
  }
  if (!timing_profiles().contains(o.timing)) {
    problems.push_back("timing '" + o.timing + "': expected kernelbench or kforge");
  }
  if (o.task_type != "profile" && o.task_type != "precision_only") {
    problems.push_back("task type '" + o.task_type + "': expected profile or precision_only");
  }
  if (o.limit_steps < 1 || o.limit_steps > 100) {
    problems.push_back("limit_steps " + std::to_string(o.limit_steps) + ": expected 1 to 100");
  }
  for (int n : o.problems) {
    if (n < 1 || n > kMaxProblemNumber) {
      problems.push_back("problem " + std::to_string(n) + ": expected 1 to " +
                         std::to_string(kMaxProblemNumber));
      break;
    }
  }
  if (problems.empty()) return Status();
  return invalid_argument(join(problems, "; "));
}

Result<KernelBenchCampaign> kernelbench_campaign(const KernelBenchImport& o) {
  KF_RETURN_IF_ERROR(check_kernelbench_import(o));
  auto level_dir = find_level_dir(o.dir, o.level);
  if (!level_dir.ok()) return level_dir.status();
  auto files = problem_files(level_dir->path);
  if (!files.ok()) return files.status();
  const std::string where =
      "level " + std::to_string(o.level) + " (" + level_dir->path.string() + ")";
  if (files->empty())
    return not_found(where + " holds no problem files (NUMBER_Name.py, e.g. 19_ReLU.py)");

  // Pick, and refuse a number without a file (a typo must not silently shrink the night's run).
  std::set<int> wanted(o.problems.begin(), o.problems.end());
  std::vector<int> available, missing;
  for (const ProblemFile& f : *files) {
    if (available.empty() || available.back() != f.number) available.push_back(f.number);
  }
  for (int n : wanted) {
    if (!std::binary_search(available.begin(), available.end(), n)) missing.push_back(n);
  }
  if (!missing.empty()) {
    return not_found(where + " has no problem " + format_problem_ranges(missing) + " (it has " +
                     format_problem_ranges(available) + ")");
  }
  std::vector<const ProblemFile*> picked;
  std::vector<std::string> problems;                  // what is wrong, one line per file
  std::map<int, std::vector<std::string>> downloads;  // problem number -> its download calls
  for (const ProblemFile& f : *files) {
    if (!wanted.empty() && !wanted.count(f.number)) continue;
    if (!picked.empty() && picked.back()->number == f.number) {
      problems.push_back(f.path.string() + ": problem " + std::to_string(f.number) +
                         " has two files (also " + picked.back()->file_name + "); keep one");
      continue;
    }
    picked.push_back(&f);
    auto text = read_file(f.path);
    if (!text.ok()) {
      problems.push_back(f.path.string() + ": cannot be read: " + text.status().message());
      continue;
    }
    std::vector<std::string> lacks = kernelbench_missing_definitions(*text);
    if (!lacks.empty()) problems.push_back(f.path.string() + ": no " + join(lacks, ", no "));
    downloads[f.number] = kernelbench_downloads(*text);
  }
  if (!problems.empty()) {
    return invalid_argument(
        std::to_string(problems.size()) + " problem file" +
        (problems.size() == 1 ? " is" : "s are") +
        " not usable as tasks (a task defines class Model, def get_inputs() and def "
        "get_init_inputs() at module level):\n  " +
        join(problems, "\n  "));
  }
  const fs::path out =
      o.out.empty() ? fs::path("kernelbench-level" + std::to_string(o.level) + ".toml") : o.out;
  const fs::path out_dir = fs::weakly_canonical(fs::absolute(out).parent_path());
  KernelBenchCampaign c;
  c.level_dir = level_dir->path;
  c.dir_used = level_dir->described;
  std::vector<int> numbers;
  for (const ProblemFile* f : picked) {
    KernelBenchProblem p;
    p.number = f->number;
    p.path = fs::weakly_canonical(fs::absolute(f->path));
    p.op_name = kernelbench_op_name(fs::path(f->file_name).stem().string());
    p.task_desc = task_desc_of(p.path, out_dir);
    p.downloads = downloads[f->number];
    c.problems.push_back(std::move(p));
    numbers.push_back(f->number);
  }

  const std::string name = o.name.empty() ? "kernelbench-level" + std::to_string(o.level) : o.name;
  std::string t;
  t += "# KernelBench level " + std::to_string(o.level) +
       (numbers.size() == 1 ? ", problem " : ", problems ") + format_problem_ranges(numbers) +
       " (" + std::to_string(numbers.size()) + " in all), written by `kforge import " +
       "kernelbench`\n";
  t += "# from " + c.level_dir.generic_string() + "\n";
  t += "# One op per problem file (the reference). The format, sweeps of a problem's module\n";
  t += "# constants and per-op overrides: docs/campaigns.md.\n\n";
  t += "name = " + toml_string(name) + "\n";
  t += "workflow = \"default\"\n";
  t += "timing = " + toml_string(o.timing) +
       (o.timing == "kernelbench" ? "  # KernelBench's trials and timed runs"
                                  : "  # kforge's trials and timed runs") +
       " (docs/campaigns.md)\n\n";
  t += "[defaults]\n";
  t += "backend = " + toml_string(o.target.backend) + "\n";
  t += "arch = " + toml_string(o.target.arch) + "\n";
  t += "impl_type = " + toml_string(o.target.impl_type) + "\n";
  t += "framework = " + toml_string(o.target.framework) + "\n";
  t += "task_type = " + toml_string(o.task_type) + "\n";
  t += "limit_steps = " + std::to_string(o.limit_steps) + "\n";
  for (const KernelBenchProblem& p : c.problems) {
    t += "\n[[ops]]  # problem " + std::to_string(p.number) +
         (p.downloads.empty()
              ? ""
              : "; calls " + join(p.downloads) + ": a download, and jobs have no network") +
         "\n";
    t += "op_name = " + toml_string(p.op_name) + "\n";
    t += "task_desc = " + toml_string(p.task_desc) + "\n";
  }
  c.toml = std::move(t);

  // What is written must load: parse it back as the campaign file would be read.
  auto parsed = parse_campaign(c.toml, out_dir, out.filename().string());
  if (!parsed.ok()) {
    return internal_error("the campaign written for " + where + " does not load (a kforge bug):\n" +
                          parsed.status().message());
  }
  if (parsed->tasks.size() != c.problems.size()) {
    return internal_error("the campaign written for " + where + " expands to " +
                          std::to_string(parsed->tasks.size()) + " tasks, not " +
                          std::to_string(c.problems.size()) + " (a kforge bug)");
  }
  return c;
}

}  // namespace kforge
