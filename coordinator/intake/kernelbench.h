// Importing KernelBench problems as a campaign (`kforge import kernelbench`).
//
// KernelBench (github.com/ScalingIntelligence/KernelBench) keeps its problems as Python files
// under level1/, level2/, ... of its problem root, one problem per file, named by a number and
// a title: `19_ReLU.py`, `12_Gemm_Multiply_LeakyReLU.py`. Each defines `class Model`,
// `get_inputs()` and `get_init_inputs()` with its shapes as module constants: the harness's
// task format (docs/harness.md), so a problem file is a task file as it is.
//
// kernelbench_campaign() picks problems of one level by number and writes the campaign TOML
// (docs/campaigns.md): one [[ops]] entry per problem, task_desc pointing at the problem file.
// The text is deterministic (no dates), so the same import gives the same file and the same
// campaign content_hash.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/targets.h"

namespace kforge {

// The largest problem number a range may name (KernelBench levels have at most 100).
inline constexpr int kMaxProblemNumber = 99999;

struct KernelBenchImport {
  // KernelBench's problem root (holding level1/, level2/, ...), a clone of the repository
  // (holding KernelBench/level1/, ...), or a level directory itself.
  std::filesystem::path dir;
  int level = 0;              // 1, 2, 3, ...
  std::vector<int> problems;  // problem numbers, sorted; empty: every problem of the level
  Target target = {"cuda", "h100", "triton", "torch"};
  std::string task_type = "profile";  // precision_only | profile
  int limit_steps = 10;               // Conductor steps per task, 1 to 100
  std::string timing =
      "kernelbench";  // the campaign's timing (docs/campaigns.md): kernelbench | kforge
  std::string name;   // the campaign's name; empty: "kernelbench-level<N>"
  // The campaign file that will be written: task paths are made relative to its directory.
  // Empty: kernelbench-level<N>.toml in the current directory.
  std::filesystem::path out;
};

struct KernelBenchProblem {
  int number = 0;
  std::filesystem::path path;  // the problem file (absolute, symlinks resolved)
  std::string op_name;         // unique within the level
  std::string task_desc;       // as written: relative to the campaign file's directory, or absolute
  // The calls of the problem file that download at run time (kernelbench_downloads): such a
  // problem fails verification, since jobs have no network. `kforge import` warns about it.
  std::vector<std::string> downloads;
};

struct KernelBenchCampaign {
  std::filesystem::path level_dir;  // the level directory the problems came from (absolute)
  std::string dir_used;             // which reading of `dir` was used, for the user
  std::vector<KernelBenchProblem> problems;  // by number
  std::string toml;                          // the campaign file's text
};

// "1-20,23,40-42" -> the numbers, sorted, without repeats. Spaces around items are allowed;
// an empty item, a non-number, 0, a number above kMaxProblemNumber or a backwards range is
// invalid_argument naming the culprit (every culprit, in order).
Result<std::vector<int>> parse_problem_ranges(std::string_view text);

// Sorted numbers -> "1-3,5,7-8" (what parse_problem_ranges reads).
std::string format_problem_ranges(const std::vector<int>& numbers);

// "cuda/h100/triton" + framework -> a Target, checked with validate_target.
Result<Target> parse_target(std::string_view text, const std::string& framework);

// The op name a problem file's stem gives: its number, '_' and its title in lower case, every
// run of other characters than letters and digits one '_', so that a result maps back to its
// problem: "19_ReLU" -> "19_relu", "1_Square_matrix_multiplication_" ->
// "1_square_matrix_multiplication". "problem_<number>" when the title has no letter or digit.
// Problem numbers are unique in a level, so the names are too.
std::string kernelbench_op_name(std::string_view stem);

// The calls in a problem file's text that download at run time: from_pretrained (KernelBench
// level 4 loads Hugging Face models so), hf_hub_download, snapshot_download, torch.hub.load.
// Empty when there are none.
std::vector<std::string> kernelbench_downloads(std::string_view text);

// What a problem file lacks of "class Model", "def get_inputs()", "def get_init_inputs()"
// (each must start a line: module level); empty when it has all three.
std::vector<std::string> kernelbench_missing_definitions(std::string_view text);

// Checks the values of `options` that do not depend on files: level, target, task_type,
// limit_steps, name, problem numbers. invalid_argument saying which and what is valid.
Status check_kernelbench_import(const KernelBenchImport& options);

// Finds the level directory, picks the problems, checks each is a usable task and writes the
// campaign text, which is parsed back (parse_campaign) before it is returned.
// not_found: `dir` or the level directory does not exist, a requested problem number has no
// file (all missing numbers listed). invalid_argument: a bad option, problem files that are
// not usable tasks (every file and what it lacks), two files with the same number.
Result<KernelBenchCampaign> kernelbench_campaign(const KernelBenchImport& options);

}  // namespace kforge
