// `kforge import kernelbench`: problem ranges, picking problems, op names, broken and
// missing problems, targets, and the written campaign loading with the right tasks; the real
// command line (exit codes, --force); the fixture problems running in Python and through
// the harness.
#include "coordinator/intake/kernelbench.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/fs.h"
#include "common/process.h"
#include "coordinator/generation/task.h"
#include "coordinator/intake/campaign.h"
#include "tests/support/support.h"

using namespace kforge;
using namespace kforge::test;
namespace fs = std::filesystem;

namespace {

fs::path fixtures() {
  return source_dir() / "tests" / "fixtures";
}
fs::path kernelbench_root() {
  return fixtures() / "kernelbench";
}
fs::path kforge_bin() {
  return binary_dir() / "cli" / "kforge";
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string error_of_ranges(const std::string& text) {
  auto r = parse_problem_ranges(text);
  REQUIRE_MESSAGE(!r.ok(), "'" << text << "' parsed");
  CHECK(r.status().code() == Code::invalid_argument);
  return r.status().message();
}

// A usable problem file in KernelBench's format.
std::string problem_text(const std::string& body = "return torch.relu(x)") {
  return "import torch\nimport torch.nn as nn\n\nN = 64\n\n\nclass Model(nn.Module):\n"
         "    def __init__(self):\n        super().__init__()\n\n"
         "    def forward(self, x):\n        " +
         body +
         "\n\n\n"
         "def get_inputs():\n    return [torch.randn(N)]\n\n\n"
         "def get_init_inputs():\n    return []\n";
}

KernelBenchImport import_of(const fs::path& dir, int level, const fs::path& out,
                            std::vector<int> problems = {}) {
  KernelBenchImport o;
  o.dir = dir;
  o.level = level;
  o.out = out;
  o.problems = std::move(problems);
  return o;
}

std::vector<int> numbers_of(const KernelBenchCampaign& c) {
  std::vector<int> out;
  for (const auto& p : c.problems) out.push_back(p.number);
  return out;
}

std::vector<std::string> ops_of(const Campaign& c) {
  std::vector<std::string> out;
  for (const auto& t : c.tasks) out.push_back(t.spec.op_name + "/" + t.spec.task_id);
  return out;
}

ProcessResult run_kforge(const fs::path& cwd, std::vector<std::string> args) {
  ProcessSpec spec;
  spec.argv = {kforge_bin().string()};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.cwd = cwd;
  spec.env_allow = {"PATH", "TMPDIR"};
  spec.timeout = std::chrono::seconds(60);
  auto r = run_process(spec);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return *r;
}

}  // namespace

TEST_CASE("problem ranges: numbers, ranges and lists, sorted without repeats") {
  auto r = parse_problem_ranges("1-20,23,40-42");
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  std::vector<int> expected;
  for (int i = 1; i <= 20; ++i) expected.push_back(i);
  expected.insert(expected.end(), {23, 40, 41, 42});
  CHECK(*r == expected);
  CHECK(parse_problem_ranges("7").value() == std::vector<int>{7});
  CHECK(parse_problem_ranges(" 23 , 1 - 3 ").value() == std::vector<int>{1, 2, 3, 23});
  CHECK(parse_problem_ranges("3-5,1-4,4").value() == std::vector<int>{1, 2, 3, 4, 5});
  CHECK(parse_problem_ranges("99999").value() == std::vector<int>{kMaxProblemNumber});
  CHECK(format_problem_ranges({1, 2, 3, 5, 7, 8}) == "1-3,5,7-8");
  CHECK(format_problem_ranges({}) == "");
  CHECK(parse_problem_ranges(format_problem_ranges(expected)).value() == expected);
}

TEST_CASE("problem ranges: bad input names the culprit and says what is expected") {
  CHECK(contains(error_of_ranges(""),
                 "expected problem numbers and ranges like 1-20,23,40-42, got nothing"));
  CHECK(contains(error_of_ranges("  "), "got nothing"));
  CHECK(contains(error_of_ranges("1,,2"), "item 2 is empty"));
  CHECK(contains(error_of_ranges("1,"), "item 2 is empty"));
  CHECK(contains(error_of_ranges("relu"),
                 "'relu' is not a problem number (a whole number from 1 to 99999)"));
  CHECK(contains(error_of_ranges("0"), "'0' is not a problem number"));
  CHECK(contains(error_of_ranges("100000"), "'100000' is not a problem number"));
  CHECK(contains(error_of_ranges("1.5"), "'1.5' is not a problem number"));
  CHECK(contains(error_of_ranges("-3"), "'-3' is not a number or range"));
  CHECK(contains(error_of_ranges("4-"), "'4-' is not a number or range"));
  CHECK(contains(error_of_ranges("1-2-3"), "'2-3' is not a problem number"));
  CHECK(contains(error_of_ranges("20-10"), "range 20-10 goes backwards (write 10-20)"));
  // Every culprit, in order, and the text as given.
  std::string all = error_of_ranges("1-x,5-3,7");
  CHECK(contains(all, "problems '1-x,5-3,7': 'x' is not a problem number"));
  CHECK(contains(all, "; range 5-3 goes backwards"));
  CHECK(all.find("'x'") < all.find("5-3 goes"));
}

TEST_CASE("op names come from the file name: the problem number kept, lower case, a valid name") {
  CHECK(kernelbench_op_name("1_Square_matrix_multiplication_") == "1_square_matrix_multiplication");
  CHECK(kernelbench_op_name("19_ReLU") == "19_relu");
  CHECK(kernelbench_op_name("12_Gemm_Multiply_LeakyReLU") == "12_gemm_multiply_leakyrelu");
  CHECK(kernelbench_op_name("54_conv_standard_3D__square_input__square_kernel") ==
        "54_conv_standard_3d_square_input_square_kernel");
  CHECK(kernelbench_op_name("10_3D_tensor_matrix_multiplication") ==
        "10_3d_tensor_matrix_multiplication");
  CHECK(kernelbench_op_name("7_Conv-Transpose.2d (fast)") == "7_conv_transpose_2d_fast");
  CHECK(kernelbench_op_name("5_") == "problem_5");
  CHECK(kernelbench_op_name("5___") == "problem_5");
  for (const char* stem : {"19_ReLU", "7_Conv-Transpose.2d (fast)", "5_"}) {
    CAPTURE(stem);
    CHECK(valid_op_name(kernelbench_op_name(stem)));
  }
}

TEST_CASE(
    "problems that download at run time (level 4's from_pretrained) are named, and warned about") {
  CHECK(kernelbench_downloads(problem_text()).empty());
  CHECK(kernelbench_downloads("model = AutoModelForCausalLM.from_pretrained(model_name)\n") ==
        std::vector<std::string>{"from_pretrained"});
  CHECK(kernelbench_downloads("torch.hub.load('x', 'y')\nhf_hub_download(repo)\n") ==
        std::vector<std::string>{"hf_hub_download", "torch.hub.load"});

  TempDir dir;
  fs::path level = dir / "kb" / "level4";
  write_file(level / "1_gpt2_bs1.py", problem_text("return AutoModel.from_pretrained('gpt2')(x)"));
  write_file(level / "2_Plain.py", problem_text());
  auto c = kernelbench_campaign(import_of(dir / "kb", 4, dir / "a.toml"));
  REQUIRE_MESSAGE(c.ok(), c.status().to_string());
  CHECK(c->problems.at(0).downloads == std::vector<std::string>{"from_pretrained"});
  CHECK(c->problems.at(1).downloads.empty());
  CHECK(contains(
      c->toml,
      "[[ops]]  # problem 1; calls from_pretrained: a download, and jobs have no network\n"));
  CHECK(contains(c->toml, "[[ops]]  # problem 2\n"));

  ProcessResult r =
      run_kforge(dir.path(), {"import", "kernelbench", (dir / "kb").string(), "--level", "4"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.stderr_data);
  CHECK(
      contains(r.stderr_data,
               "kforge: warning: problem 1 (1_gpt2_bs1.py) calls from_pretrained: it downloads at "
               "verification, and jobs run without network access"));
  CHECK_FALSE(contains(r.stderr_data, "problem 2"));
  CHECK(fs::exists(dir / "kernelbench-level4.toml"));  // a warning, not a refusal
}

TEST_CASE(
    "a problem file must define class Model, get_inputs and get_init_inputs at module level") {
  CHECK(kernelbench_missing_definitions(problem_text()).empty());
  CHECK(kernelbench_missing_definitions("class Model:\n  pass\ndef get_inputs ():\n  pass\n"
                                        "def get_init_inputs():\n  return []\n")
            .empty());
  CHECK(kernelbench_missing_definitions("") ==
        std::vector<std::string>{"class Model", "def get_inputs()", "def get_init_inputs()"});
  // ModelNew is a candidate's class, not a reference; a def inside a class is not module level.
  CHECK(kernelbench_missing_definitions(
            "class ModelNew(nn.Module):\n    def get_inputs(self):\n        pass\n"
            "def get_init_inputs():\n    return []\n") ==
        std::vector<std::string>{"class Model", "def get_inputs()"});
  // get_inputs_v2 is another function.
  CHECK(kernelbench_missing_definitions(
            "class Model(nn.Module):\n    pass\ndef get_inputs_v2():\n    pass\n"
            "def get_init_inputs():\n    pass\n") == std::vector<std::string>{"def get_inputs()"});
}

TEST_CASE("every problem of the level by default, in number order, each one task that loads") {
  TempDir dir;
  auto c = kernelbench_campaign(import_of(kernelbench_root(), 1, dir / "kb.toml"));
  REQUIRE_MESSAGE(c.ok(), c.status().to_string());
  CHECK(numbers_of(*c) == std::vector<int>{1, 19, 23, 40});  // not 1, 19 by file name order
  CHECK(c->level_dir == fs::canonical(kernelbench_root() / "level1"));
  CHECK(contains(c->dir_used, "level1/ of the problem root"));
  CHECK(c->problems[0].path ==
        fs::canonical(kernelbench_root() / "level1" / "1_Square_matrix_multiplication_.py"));
  // The fixtures are not below the campaign file's directory: absolute paths.
  CHECK(c->problems[1].task_desc ==
        fs::canonical(kernelbench_root() / "level1" / "19_ReLU.py").string());
  CHECK(contains(c->toml, "# KernelBench level 1, problems 1,19,23,40 (4 in all)"));
  CHECK(contains(c->toml, "name = \"kernelbench-level1\"\n"));

  REQUIRE(atomic_write_file(dir / "kb.toml", c->toml).ok());
  auto loaded = load_campaign(dir / "kb.toml");
  REQUIRE_MESSAGE(loaded.ok(), loaded.status().to_string());
  CHECK(loaded->name == "kernelbench-level1");
  CHECK(loaded->workflow == Workflow::default_);
  CHECK(loaded->timing == "kernelbench");  // KernelBench's trials and runs unless --timing kforge
  CHECK(ops_of(*loaded) == std::vector<std::string>{"1_square_matrix_multiplication/default",
                                                    "19_relu/default", "23_softmax/default",
                                                    "40_layernorm/default"});
  for (size_t i = 0; i < loaded->tasks.size(); ++i) {
    const TaskSpec& s = loaded->tasks[i].spec;
    CAPTURE(s.op_name);
    CHECK(s.backend == "cuda");
    CHECK(s.arch == "h100");
    CHECK(s.impl_type == "triton");
    CHECK(s.framework == "torch");
    CHECK(s.task_type == "profile");
    CHECK(s.limit_steps == 10);
    CHECK(s.task_desc == test::read_file(c->problems[i].path));
  }
}

TEST_CASE("--problems picks by number; options reach every task") {
  TempDir dir;
  KernelBenchImport o = import_of(kernelbench_root(), 1, dir / "kb.toml", {19, 23});
  o.target = {"cpu", "x86_64", "cpp", "torch"};
  o.task_type = "precision_only";
  o.limit_steps = 4;
  o.name = "night \"one\"";
  auto c = kernelbench_campaign(o);
  REQUIRE_MESSAGE(c.ok(), c.status().to_string());
  CHECK(numbers_of(*c) == std::vector<int>{19, 23});
  auto loaded = parse_campaign(c->toml, dir.path(), "kb.toml");
  REQUIRE_MESSAGE(loaded.ok(), loaded.status().to_string());
  CHECK(loaded->name == "night \"one\"");
  CHECK(ops_of(*loaded) == std::vector<std::string>{"19_relu/default", "23_softmax/default"});
  for (const auto& t : loaded->tasks) {
    CHECK(t.spec.backend == "cpu");
    CHECK(t.spec.arch == "x86_64");
    CHECK(t.spec.impl_type == "cpp");
    CHECK(t.spec.task_type == "precision_only");
    CHECK(t.spec.limit_steps == 4);
  }
  CHECK(contains(c->toml, "# KernelBench level 1, problems 19,23 (2 in all)"));
}

TEST_CASE("DIR may be the problem root, a level directory, or a clone of the repository") {
  TempDir dir;
  auto root = kernelbench_campaign(import_of(kernelbench_root(), 2, dir / "a.toml"));
  REQUIRE_MESSAGE(root.ok(), root.status().to_string());
  auto level = kernelbench_campaign(import_of(kernelbench_root() / "level2", 2, dir / "a.toml"));
  REQUIRE_MESSAGE(level.ok(), level.status().to_string());
  CHECK(contains(level->dir_used, "(a level directory)"));
  CHECK(level->toml == root->toml);
  REQUIRE(level->problems.size() == 1);
  CHECK(level->problems[0].op_name == "12_gemm_multiply_leakyrelu");

  // A clone: the problems are in KernelBench/level<N> of the repository.
  write_file(dir / "repo" / "KernelBench" / "level3" / "1_MLP.py", problem_text());
  auto clone = kernelbench_campaign(import_of(dir / "repo", 3, dir / "a.toml"));
  REQUIRE_MESSAGE(clone.ok(), clone.status().to_string());
  CHECK(contains(clone->dir_used, "KernelBench clone"));
  CHECK(clone->problems.at(0).op_name == "1_mlp");

  // A level directory not named level<N>: it holds problem files.
  write_file(dir / "mine" / "3_Tanh.py", problem_text("return torch.tanh(x)"));
  auto mine = kernelbench_campaign(import_of(dir / "mine", 1, dir / "a.toml"));
  REQUIRE_MESSAGE(mine.ok(), mine.status().to_string());
  CHECK(mine->problems.at(0).op_name == "3_tanh");
}

TEST_CASE(
    "a directory that is not KernelBench's, or the wrong level, is refused saying what was "
    "expected") {
  TempDir dir;
  auto none = kernelbench_campaign(import_of(dir / "nope", 1, dir / "a.toml"));
  CHECK(none.status().code() == Code::not_found);
  CHECK(contains(none.status().message(),
                 "KernelBench directory " + (dir / "nope").string() + " does not exist"));

  auto level3 = kernelbench_campaign(import_of(kernelbench_root(), 3, dir / "a.toml"));
  CHECK(level3.status().code() == Code::not_found);
  CHECK(contains(level3.status().message(), "has no level3/ directory (it has level1/, level2/)"));

  auto mismatch = kernelbench_campaign(import_of(kernelbench_root() / "level1", 2, dir / "a.toml"));
  CHECK(mismatch.status().code() == Code::invalid_argument);
  CHECK(contains(mismatch.status().message(),
                 "is the level 1 directory, but level 2 was asked for; give --level 1"));

  fs::create_directories(dir / "empty" / "level1");
  write_file(dir / "empty" / "level1" / "README.md", "not a problem\n");
  auto empty = kernelbench_campaign(import_of(dir / "empty", 1, dir / "a.toml"));
  CHECK(empty.status().code() == Code::not_found);
  CHECK(contains(empty.status().message(), "holds no problem files (NUMBER_Name.py"));
}

TEST_CASE("requested problems that do not exist are an error listing every missing number") {
  TempDir dir;
  auto c =
      kernelbench_campaign(import_of(kernelbench_root(), 1, dir / "a.toml", {1, 2, 3, 19, 50}));
  REQUIRE_FALSE(c.ok());
  CHECK(c.status().code() == Code::not_found);
  CHECK(contains(c.status().message(), "level 1 (" +
                                           fs::canonical(kernelbench_root() / "level1").string() +
                                           ") has no problem 2-3,50 (it has 1,19,23,40)"));
}

TEST_CASE("problem files that are not usable tasks are all reported, with what each lacks") {
  TempDir dir;
  fs::path level1 = fs::canonical(fixtures() / "kernelbench-broken" / "level1");
  auto c = kernelbench_campaign(import_of(fixtures() / "kernelbench-broken", 1, dir / "a.toml"));
  REQUIRE_FALSE(c.ok());
  CHECK(c.status().code() == Code::invalid_argument);
  const std::string m = c.status().message();
  CHECK(contains(m, "2 problem files are not usable as tasks"));
  CHECK(contains(m, "\n  " + (level1 / "5_Broken.py").string() + ": no def get_inputs()\n"));
  CHECK(contains(m, "\n  " + (level1 / "6_Not_a_task.py").string() +
                        ": no class Model, no def get_inputs(), no def get_init_inputs()"));
  CHECK_FALSE(contains(m, "7_Scale"));
  // Only the picked problems are checked.
  auto good =
      kernelbench_campaign(import_of(fixtures() / "kernelbench-broken", 1, dir / "a.toml", {7}));
  REQUIRE_MESSAGE(good.ok(), good.status().to_string());
  CHECK(good->problems.at(0).op_name == "7_scale");
}

TEST_CASE("op names keep the problem number, so they are unique, whichever problems are picked") {
  TempDir dir;
  fs::path level = dir / "kb" / "level1";
  write_file(level / "1_ReLU.py", problem_text());
  write_file(level / "2_relu_.py", problem_text());
  write_file(level / "3_3D_conv.py", problem_text());
  write_file(level / "4_GELU.py", problem_text("return torch.nn.functional.gelu(x)"));
  write_file(level / "__init__.py", "");
  write_file(level / "notes_1.txt", "");
  auto all = kernelbench_campaign(import_of(dir / "kb", 1, dir / "a.toml"));
  REQUIRE_MESSAGE(all.ok(), all.status().to_string());
  std::vector<std::string> names;
  for (const auto& p : all->problems) names.push_back(p.op_name);
  CHECK(names == std::vector<std::string>{"1_relu", "2_relu", "3_3d_conv", "4_gelu"});
  auto one = kernelbench_campaign(import_of(dir / "kb", 1, dir / "a.toml", {2}));
  REQUIRE_MESSAGE(one.ok(), one.status().to_string());
  CHECK(one->problems.at(0).op_name == "2_relu");

  // Two files with one number: which one is meant is not obvious.
  write_file(level / "4_GELU_tanh.py", problem_text());
  auto twice = kernelbench_campaign(import_of(dir / "kb", 1, dir / "a.toml", {4}));
  REQUIRE_FALSE(twice.ok());
  CHECK(contains(twice.status().message(),
                 "4_GELU_tanh.py: problem 4 has two files (also 4_GELU.py)"));
}

TEST_CASE(
    "task paths are relative to the campaign file when below it: the pair can move together") {
  TempDir dir;
  fs::path level = dir / "night" / "kb" / "level1";
  write_file(level / "19_ReLU.py", test::read_file(kernelbench_root() / "level1" / "19_ReLU.py"));
  auto c = kernelbench_campaign(import_of(dir / "night" / "kb", 1, dir / "night" / "kb.toml"));
  REQUIRE_MESSAGE(c.ok(), c.status().to_string());
  CHECK(c->problems.at(0).task_desc == "kb/level1/19_ReLU.py");
  CHECK(contains(c->toml, "task_desc = \"kb/level1/19_ReLU.py\"\n"));
  REQUIRE(atomic_write_file(dir / "night" / "kb.toml", c->toml).ok());
  fs::rename(dir / "night", dir / "moved");
  auto loaded = load_campaign(dir / "moved" / "kb.toml");
  REQUIRE_MESSAGE(loaded.ok(), loaded.status().to_string());
  CHECK(ops_of(*loaded) == std::vector<std::string>{"19_relu/default"});

  // The same import written where the problems are not below it (absolute paths) is the
  // same campaign.
  fs::create_directories(dir / "elsewhere");
  auto elsewhere =
      kernelbench_campaign(import_of(dir / "moved" / "kb", 1, dir / "elsewhere" / "kb.toml"));
  REQUIRE_MESSAGE(elsewhere.ok(), elsewhere.status().to_string());
  CHECK(elsewhere->problems.at(0).task_desc ==
        fs::canonical(dir / "moved" / "kb" / "level1" / "19_ReLU.py").string());
  auto again = parse_campaign(elsewhere->toml, dir / "elsewhere", "kb.toml");
  REQUIRE_MESSAGE(again.ok(), again.status().to_string());
  CHECK(again->content_hash == loaded->content_hash);
}

TEST_CASE("the written text is deterministic, so the campaign's content hash is stable") {
  TempDir dir;
  auto a = kernelbench_campaign(import_of(kernelbench_root(), 1, dir / "a.toml"));
  auto b = kernelbench_campaign(import_of(kernelbench_root(), 1, dir / "a.toml"));
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(a->toml == b->toml);
}

TEST_CASE("an invalid target, task type or step limit is refused with what is valid") {
  Result<Target> t = parse_target("cuda/h100/triton", "torch");
  REQUIRE(t.ok());
  CHECK(t->backend == "cuda");
  CHECK(t->arch == "h100");
  CHECK(t->impl_type == "triton");
  CHECK(t->framework == "torch");
  CHECK(contains(parse_target("cuda/h100", "torch").status().message(),
                 "target 'cuda/h100': expected backend/arch/impl_type, e.g. cuda/h100/triton"));
  CHECK(contains(parse_target("cuda//triton", "torch").status().message(),
                 "expected backend/arch/impl_type"));
  CHECK(contains(parse_target("cuda/h100/swft", "torch").status().message(),
                 "impl_type 'swft' does not run on backend 'cuda'; valid on cuda: triton, cuda_c"));
  CHECK(contains(parse_target("cpu/h100/cpp", "torch").status().message(),
                 "arch 'h100' does not belong to backend 'cpu'"));
  CHECK(contains(parse_target("cuda/h100/triton", "jax").status().message(),
                 "framework 'jax' is not one of"));

  TempDir dir;
  KernelBenchImport o = import_of(kernelbench_root(), 1, dir / "a.toml");
  o.target = {"cuda", "h100", "swft", "torch"};
  o.task_type = "fast";
  o.limit_steps = 0;
  auto c = kernelbench_campaign(o);
  REQUIRE_FALSE(c.ok());
  CHECK(c.status().code() == Code::invalid_argument);
  CHECK(contains(c.status().message(),
                 "target cuda/h100/swft (framework torch): impl_type 'swft' does not run"));
  CHECK(contains(c.status().message(), "task type 'fast': expected profile or precision_only"));
  CHECK(contains(c.status().message(), "limit_steps 0: expected 1 to 100"));
}

TEST_CASE(
    "kforge import kernelbench writes the campaign file; exit codes 0, 1, 2; --force to "
    "overwrite") {
  TempDir dir;
  const std::string root = kernelbench_root().string();
  ProcessResult ok = run_kforge(
      dir.path(), {"import", "kernelbench", root, "--level", "1", "--problems", "19,23"});
  REQUIRE_MESSAGE(ok.exit_code == 0, ok.stderr_data);
  CHECK(contains(ok.stdout_data,
                 "kernelbench: problems from " + root + "/level1 (level1/ of the problem root"));
  CHECK(contains(ok.stdout_data,
                 "wrote kernelbench-level1.toml: 2 problems of level 1 (19,23), target "
                 "cuda/h100/triton/torch, profile\n"));
  auto loaded = load_campaign(dir / "kernelbench-level1.toml");
  REQUIRE_MESSAGE(loaded.ok(), loaded.status().to_string());
  CHECK(ops_of(*loaded) == std::vector<std::string>{"19_relu/default", "23_softmax/default"});
  CHECK(loaded->tasks.at(0).spec.task_type == "profile");

  // An existing file is kept unless --force.
  const std::string first = test::read_file(dir / "kernelbench-level1.toml");
  ProcessResult again =
      run_kforge(dir.path(), {"import", "kernelbench", root, "--level", "1", "--name", "other"});
  CHECK(again.exit_code == 1);
  CHECK(
      contains(again.stderr_data, "kernelbench-level1.toml exists; pass --force to overwrite it"));
  CHECK(test::read_file(dir / "kernelbench-level1.toml") == first);
  ProcessResult forced = run_kforge(
      dir.path(), {"import", "kernelbench", root, "--level", "1", "--name", "other", "--force"});
  REQUIRE_MESSAGE(forced.exit_code == 0, forced.stderr_data);
  auto replaced = load_campaign(dir / "kernelbench-level1.toml");
  REQUIRE_MESSAGE(replaced.ok(), replaced.status().to_string());
  CHECK(replaced->name == "other");
  CHECK(replaced->tasks.size() == 4);

  // --out, a level directory, every option.
  ProcessResult out =
      run_kforge(dir.path(), {"import", "kernelbench", root + "/level2", "--level", "2", "--target",
                              "cpu/x86_64/cpp", "--task-type", "precision_only", "--limit-steps",
                              "3", "--out", "fusions.toml"});
  REQUIRE_MESSAGE(out.exit_code == 0, out.stderr_data);
  CHECK(contains(out.stdout_data, "(a level directory)"));
  auto fusions = load_campaign(dir / "fusions.toml");
  REQUIRE_MESSAGE(fusions.ok(), fusions.status().to_string());
  REQUIRE(fusions->tasks.size() == 1);
  CHECK(fusions->tasks[0].spec.op_name == "12_gemm_multiply_leakyrelu");
  CHECK(fusions->tasks[0].spec.backend == "cpu");
  CHECK(fusions->tasks[0].spec.task_type == "precision_only");
  CHECK(fusions->tasks[0].spec.limit_steps == 3);

  // Unusable inputs: 1, and nothing written.
  ProcessResult missing = run_kforge(dir.path(), {"import", "kernelbench", root, "--level", "1",
                                                  "--problems", "1-3", "--out", "m.toml"});
  CHECK(missing.exit_code == 1);
  CHECK(contains(missing.stderr_data, "has no problem 2-3 (it has 1,19,23,40)"));
  ProcessResult broken =
      run_kforge(dir.path(), {"import", "kernelbench", (fixtures() / "kernelbench-broken").string(),
                              "--level", "1", "--out", "m.toml"});
  CHECK(broken.exit_code == 1);
  CHECK(contains(broken.stderr_data, "5_Broken.py: no def get_inputs()"));
  CHECK(contains(broken.stderr_data, "6_Not_a_task.py: no class Model"));
  CHECK_FALSE(fs::exists(dir / "m.toml"));

  // Usage errors: 2.
  struct Usage {
    std::vector<std::string> args;
    std::string message;
  };
  for (const Usage& u : std::vector<Usage>{
           {{"import", "kernelbnch", root},
            "import: unknown kind 'kernelbnch'; known kinds: kernelbench"},
           {{"import"}, "known kinds: kernelbench"},
           {{"import", "kernelbench", "--level", "1"}, "give one directory"},
           {{"import", "kernelbench", root}, "--level is required"},
           {{"import", "kernelbench", root, "--level", "0"},
            "--level: expected a level number from 1"},
           {{"import", "kernelbench", root, "--level", "1", "--problems", "5-3"},
            "--problems '5-3': range 5-3 goes backwards"},
           {{"import", "kernelbench", root, "--level", "1", "--target", "cuda/h100/swft"},
            "--target 'cuda/h100/swft' (framework torch): impl_type 'swft' does not run on backend "
            "'cuda'"},
           {{"import", "kernelbench", root, "--level", "1", "--task-type", "fast"},
            "task type 'fast'"},
           {{"import", "kernelbench", root, "--level", "1", "--limit-steps", "500"},
            "--limit-steps: expected 1 to 100"},
           {{"import", "kernelbench", root, "--level", "1", "--bogus"}, "bogus"},
       }) {
    CAPTURE(u.message);
    ProcessResult r = run_kforge(dir.path(), u.args);
    CHECK(r.exit_code == 2);
    CHECK(contains(r.stderr_data, u.message));
  }
  CHECK_FALSE(fs::exists(dir / "m.toml"));
}

TEST_CASE(
    "every fixture problem runs: Model(*get_init_inputs())(*get_inputs()) gives a finite tensor") {
  const char* script = R"(import importlib.util, sys, torch
for path in sys.argv[1:]:
    spec = importlib.util.spec_from_file_location("problem", path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    try:
        out = m.Model(*m.get_init_inputs())(*m.get_inputs())
        print("ok" if torch.is_tensor(out) and bool(torch.isfinite(out).all()) else "bad", path)
    except Exception as e:
        print("error", path, type(e).__name__)
)";
  std::vector<fs::path> usable = {
      kernelbench_root() / "level1" / "1_Square_matrix_multiplication_.py",
      kernelbench_root() / "level1" / "19_ReLU.py",
      kernelbench_root() / "level1" / "23_Softmax.py",
      kernelbench_root() / "level1" / "40_LayerNorm.py",
      kernelbench_root() / "level2" / "12_Gemm_Multiply_LeakyReLU.py",
      fixtures() / "kernelbench-broken" / "level1" / "7_Scale.py"};
  fs::path broken = fixtures() / "kernelbench-broken" / "level1" / "5_Broken.py";
  ProcessSpec spec;
  spec.argv = {"/usr/bin/python3", "-c", script};
  for (const auto& p : usable) spec.argv.push_back(p.string());
  spec.argv.push_back(broken.string());
  spec.env_allow = {"PATH", "HOME", "TMPDIR"};
  spec.env = {{"PYTHONDONTWRITEBYTECODE", "1"}};  // no __pycache__ in the source tree
  spec.timeout = std::chrono::seconds(120);
  auto r = run_process(spec);
  REQUIRE(r.ok());
  REQUIRE_MESSAGE(r->exit_code == 0, r->stderr_data);
  for (const auto& p : usable)
    CHECK_MESSAGE(contains(r->stdout_data, "ok " + p.string() + "\n"), r->stdout_data);
  // The file the import refuses really is unusable.
  CHECK(contains(r->stdout_data, "error " + broken.string() + " AttributeError\n"));
}

TEST_CASE(
    "a fixture problem is a task the harness accepts: kforge verify passes a correct candidate") {
  ProcessSpec spec;
  spec.argv = {kforge_bin().string(),
               "verify",
               "--json",
               "--task",
               (kernelbench_root() / "level1" / "19_ReLU.py").string(),
               "--candidate",
               (fixtures() / "kernelbench-candidates" / "relu_cpp.py").string(),
               "--impl-type",
               "cpp",
               "--framework",
               "torch",
               "--op-name",
               "relu",
               "--timeout",
               "120"};
  spec.env_allow = {"PATH", "TMPDIR"};
  spec.timeout = std::chrono::seconds(180);
  auto r = run_process(spec);
  REQUIRE(r.ok());
  REQUIRE_MESSAGE(r->exit_code == 0, r->stderr_data);
  auto doc = nlohmann::json::parse(r->stdout_data, nullptr, false);
  REQUIRE_MESSAGE(doc.is_object(), r->stdout_data);
  CHECK_MESSAGE(doc.value("verdict", "") == "passed", doc.value("message", ""));
  CHECK(doc["checks"]["shape"] ==
        nlohmann::json::array({16, 4096}));  // batch_size x dim of the file
}

TEST_CASE("--timing picks the campaign's timing; an unknown one is refused saying what is valid") {
  TempDir dir;
  KernelBenchImport o = import_of(kernelbench_root(), 1, dir / "kb.toml", {19});
  o.timing = "kforge";
  auto c = kernelbench_campaign(o);
  REQUIRE_MESSAGE(c.ok(), c.status().to_string());
  CHECK(contains(c->toml, "\ntiming = \"kforge\""));
  o.timing = "fast";
  Status st = check_kernelbench_import(o);
  CHECK_FALSE(st.ok());
  CHECK_MESSAGE(contains(st.message(), "timing 'fast': expected kernelbench or kforge"),
                st.message());
}
