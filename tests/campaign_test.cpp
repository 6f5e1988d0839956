#include "coordinator/intake/campaign.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "coordinator/intake/python_constants.h"
#include "tests/support/support.h"

using namespace kforge;

namespace {

std::filesystem::path fixtures() {
  return test::source_dir() / "tests/fixtures/campaigns";
}

// A campaign given as text, resolved against the fixture directory.
Result<Campaign> parse(const std::string& text) {
  return parse_campaign(text, fixtures(), "c.toml");
}

// The error message of a campaign that must fail to parse.
std::string error_of(const std::string& text) {
  Result<Campaign> c = parse(text);
  REQUIRE_FALSE(c.ok());
  CHECK(c.status().code() == Code::invalid_argument);
  return c.status().message();
}

const char* kHeader = R"(name = "t"
[defaults]
backend = "cpu"
arch = "x86_64"
impl_type = "cpp"
)";

// A one-op campaign of the softmax fixture with `extra` appended to the op's table.
std::string softmax_campaign(const std::string& extra = "") {
  return std::string(kHeader) +
         "[[ops]]\nop_name = \"softmax\"\ntask_desc = \"tasks/softmax.py\"\n" + extra;
}

std::vector<std::string> ids_of(const Campaign& c) {
  std::vector<std::string> ids;
  for (const auto& t : c.tasks) ids.push_back(t.spec.op_name + "/" + t.spec.task_id);
  return ids;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("a 2x2 sweep expands to four tasks named by their sorted points") {
  Result<Campaign> c = load_campaign(fixtures() / "sweep.toml");
  REQUIRE_MESSAGE(c.ok(), c.status().to_string());
  CHECK(c->name == "softmax-sweep");
  CHECK(c->workflow == Workflow::default_);
  CHECK(c->source == fixtures() / "sweep.toml");
  CHECK(ids_of(*c) == std::vector<std::string>{"softmax/N=1024,dtype=float32",
                                               "softmax/N=1024,dtype=float16",
                                               "softmax/N=4096,dtype=float32",
                                               "softmax/N=4096,dtype=float16", "relu/default"});
  const TaskSpec& s = c->tasks[0].spec;
  CHECK(s.backend == "cpu");
  CHECK(s.arch == "x86_64");
  CHECK(s.impl_type == "cpp");
  CHECK(s.framework == "torch");
  CHECK(s.task_type == "precision_only");
  CHECK(s.limit_steps == 10);
  CHECK(c->tasks[0].candidate.empty());
}

TEST_CASE("an op overrides the defaults it names") {
  Result<Campaign> c = load_campaign(fixtures() / "sweep.toml");
  REQUIRE(c.ok());
  const TaskSpec& relu = c->tasks.back().spec;
  CHECK(relu.task_type == "profile");
  CHECK(relu.limit_steps == 3);
  CHECK(relu.backend == "cpu");
  CHECK(relu.task_desc == test::read_file(fixtures() / "tasks/relu.py"));
}

TEST_CASE("swept constants are rewritten in the task text, the rest is kept") {
  Result<Campaign> c = load_campaign(fixtures() / "sweep.toml");
  REQUIRE(c.ok());
  const std::string& desc = c->tasks[3].spec.task_desc;  // N=4096,dtype=float16
  CHECK(contains(desc, "\nN = 4096  # row length\n"));
  CHECK(contains(desc, "\ndtype = torch.float16\n"));
  CHECK(contains(desc, "\nbatch_size = 16\n"));
  CHECK(contains(desc, "\nN = 5\n"));  // inside the docstring
  CHECK(contains(desc, "        N = x.shape[-1]  # an indented"));
  CHECK_FALSE(contains(desc, "N = 1024"));
  CHECK_FALSE(contains(desc, "torch.float32"));
  // Nothing but the two values changed.
  std::string original = test::read_file(fixtures() / "tasks/softmax.py");
  CHECK(desc.size() == original.size());  // "4096" for "1024", "float16" for "float32"
}

TEST_CASE("a string constant stays a quoted string; tuples, annotations and ';' are handled") {
  Result<Campaign> c = parse(std::string(kHeader) + R"([[ops]]
op_name = "relu"
task_desc = "tasks/relu.py"
[ops.sweep]
dtype = ["float16", "it's \"odd\""]
shape = [[32, 2048]]
bias = [0.5]
)");
  REQUIRE_MESSAGE(c.ok(), c.status().to_string());
  REQUIRE(c->tasks.size() == 2);
  CHECK(c->tasks[0].spec.task_id == "bias=0.5,dtype=float16,shape=32x2048");
  const std::string& desc = c->tasks[0].spec.task_desc;
  CHECK(contains(desc, "\ndtype = \"float16\"\n"));
  CHECK(contains(desc, "\nshape: tuple = (32, 2048)\n"));
  CHECK(contains(desc, "\nscale = 1.0; bias = 0.5\n"));
  CHECK(contains(c->tasks[1].spec.task_desc, R"(dtype = "it's \"odd\"")"));
}

TEST_CASE(
    "python_constants: only module-level assignments are constants, values end at ';' or '#'") {
  const std::string source = R"(N = 4096  # rows
doc = """
M = 1
"""
shape: tuple = (16,
                1024)
scale = 1.0; bias = 0.5
if N == 4096:
    K = 2
x == 3
class Model: ...
a.b = 1
)";
  std::vector<PythonConstant> got = module_constants(source);
  std::vector<std::string> names, values;
  std::vector<int> lines;
  for (const PythonConstant& c : got) {
    names.push_back(c.name);
    values.push_back(source.substr(c.value_begin, c.value_end - c.value_begin));
    lines.push_back(c.line);
  }
  CHECK(names == std::vector<std::string>{"N", "doc", "shape", "scale", "bias"});
  CHECK(values == std::vector<std::string>{"4096", "\"\"\"\nM = 1\n\"\"\"",
                                           "(16,\n                1024)", "1.0", "0.5"});
  CHECK(lines == std::vector<int>{1, 2, 5, 7, 7});
}

TEST_CASE("python_constants: names and literals as Python writes them") {
  CHECK(is_python_identifier("_x1"));
  CHECK_FALSE(is_python_identifier("1x"));
  CHECK(is_python_dotted_name("torch.float16"));
  CHECK_FALSE(is_python_dotted_name("torch..float16"));
  CHECK(is_python_keyword("match"));
  CHECK(python_float(2) == "2.0");
  CHECK(python_float(0.1) == "0.1");
  CHECK(python_string("it's\n", '\'') == R"('it\'s\n')");
}

TEST_CASE("a full dotted name replaces a dotted constant as given") {
  Result<Campaign> c = parse(softmax_campaign("[ops.sweep]\ndtype = [\"torch.bfloat16\"]\n"));
  REQUIRE_MESSAGE(c.ok(), c.status().to_string());
  CHECK(contains(c->tasks[0].spec.task_desc, "\ndtype = torch.bfloat16\n"));
  CHECK(c->tasks[0].spec.task_id == "dtype=torch.bfloat16");
}

TEST_CASE("content_hash is stable across loads and follows the content") {
  Result<Campaign> a = load_campaign(fixtures() / "sweep.toml");
  Result<Campaign> b = load_campaign(fixtures() / "sweep.toml");
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(a->content_hash.size() == 64);
  CHECK(a->content_hash == b->content_hash);

  std::string text = test::read_file(fixtures() / "sweep.toml");
  Result<Campaign> same = parse("# reformatted\n" + text);
  REQUIRE(same.ok());
  CHECK(same->content_hash == a->content_hash);

  std::string changed = text;
  changed.replace(changed.find("4096"), 4, "8192");
  Result<Campaign> c = parse(changed);
  REQUIRE(c.ok());
  CHECK(c->content_hash != a->content_hash);

  std::string steps = text;
  steps.replace(steps.find("limit_steps = 3"), 15, "limit_steps = 4");
  Result<Campaign> d = parse(steps);
  REQUIRE(d.ok());
  CHECK(d->content_hash != a->content_hash);
}

TEST_CASE(
    "timing picks KernelBench's trials and runs; it is part of the identity, kforge's keeps the "
    "hash") {
  Result<Campaign> own = parse(softmax_campaign());
  Result<Campaign> named = parse("timing = \"kforge\"\n" + softmax_campaign());
  Result<Campaign> kb = parse("timing = \"kernelbench\"\n" + softmax_campaign());
  REQUIRE(own.ok());
  REQUIRE(named.ok());
  REQUIRE(kb.ok());
  CHECK(own->timing == "kforge");
  CHECK(kb->timing == "kernelbench");
  CHECK(named->content_hash == own->content_hash);  // the default, written or not: one campaign
  CHECK(kb->content_hash != own->content_hash);     // other timings, another campaign
  CHECK(hash_campaign(*kb) == kb->content_hash);
  CHECK(error_of("timing = \"fast\"\n" + softmax_campaign()) ==
        "c.toml:1:10: timing: expected one of kernelbench, kforge, got string \"fast\"");
}

TEST_CASE("a file that is not a task is refused") {
  std::string e = error_of(std::string(kHeader) +
                           "[[ops]]\nop_name = \"x\"\ntask_desc = \"cands/softmax.py\"\n");
  CHECK(contains(e,
                 "c.toml:8:13: ops[0].task_desc: task file \"cands/softmax.py\" defines no Model"));
}

TEST_CASE("a missing task file is named") {
  std::string e = error_of(std::string(kHeader) +
                           "[[ops]]\nop_name = \"gelu\"\ntask_desc = \"tasks/gelu.py\"\n");
  CHECK(contains(e, "c.toml:8:13: ops[0].task_desc: task file \"tasks/gelu.py\" does not exist"));
  CHECK(contains(e, (fixtures() / "tasks/gelu.py").string()));
}

TEST_CASE("a task or candidate path naming a device or a directory is refused, not read") {
  // /dev/zero would be read until memory ran out (found by tests/fuzz's campaign target).
  std::string e =
      error_of(std::string(kHeader) + "[[ops]]\nop_name = \"z\"\ntask_desc = \"/dev/zero\"\n");
  CHECK(
      contains(e, "c.toml:8:13: ops[0].task_desc: task file \"/dev/zero\" is not a regular file"));
  e = error_of(std::string(kHeader) + "[[ops]]\nop_name = \"z\"\ntask_desc = \"tasks\"\n");
  CHECK(contains(e, "task file \"tasks\" is a directory"));
}

TEST_CASE("an unknown key names its line and suggests the near miss") {
  std::string e = error_of(softmax_campaign("limit_step = 5\n"));
  CHECK(e == "c.toml:9:1: unknown key 'ops[0].limit_step' (did you mean 'limit_steps'?)");
  std::string top = error_of("nmae = \"x\"\n" + softmax_campaign());
  CHECK(contains(top, "c.toml:1:1: unknown key 'nmae' (did you mean 'name'?)"));
}

TEST_CASE("an invalid target lists what is valid") {
  std::string e =
      error_of(softmax_campaign("backend = \"cuda\"\narch = \"h100\"\nimpl_type = \"swft\"\n"));
  CHECK(e ==
        "c.toml:11:13: ops[0].impl_type: op 'softmax': impl_type 'swft' does not run on backend "
        "'cuda'; valid on cuda: triton, cuda_c");
}

TEST_CASE("an invalid target set in [defaults] is reported once, there") {
  std::string text = R"(name = "t"
[defaults]
backend = "cuda"
arch = "h100"
impl_type = "swft"
[[ops]]
op_name = "a"
task_desc = "tasks/softmax.py"
[[ops]]
op_name = "b"
task_desc = "tasks/softmax.py"
)";
  CHECK(error_of(text) ==
        "c.toml:5:13: defaults.impl_type: impl_type 'swft' does not run on backend 'cuda'; "
        "valid on cuda: triton, cuda_c");
}

TEST_CASE("sweeping a constant the task file lacks names the op, the constant and the file") {
  std::string e = error_of(softmax_campaign("[ops.sweep]\nM = [1, 2]\n"));
  CHECK(e ==
        "c.toml:10:1: ops[0].sweep.M: op 'softmax': task file tasks/softmax.py has no "
        "module-level constant 'M' (it has: N, batch_size, dtype)");
}

TEST_CASE("a string cannot replace a number") {
  std::string e = error_of(softmax_campaign("[ops.sweep]\nN = [\"big\"]\n"));
  CHECK(contains(e, "c.toml:10:6: ops[0].sweep.N[0]: op 'softmax': the constant holds `1024`"));
}

TEST_CASE(
    "a constant that holds a size takes positive integers; every bad value is named in one pass") {
  // N = 1024 in tasks/softmax.py: 1.5 and -3 are no sizes, and neither is 0.
  std::string e = error_of(softmax_campaign("[ops.sweep]\nN = [1.5, -3, 0, 2048]\n"));
  CHECK_MESSAGE(
      contains(
          e,
          "c.toml:10:6: ops[0].sweep.N[0]: op 'softmax': the constant holds `1024`, a size (line "),
      e);
  CHECK_MESSAGE(contains(e,
                         "of tasks/softmax.py), so a value replacing it must be a positive "
                         "integer; float 1.5 is not a positive integer"),
                e);
  CHECK_MESSAGE(contains(e, "c.toml:10:11: ops[0].sweep.N[1]: op 'softmax'"), e);
  CHECK_MESSAGE(contains(e, "c.toml:10:15: ops[0].sweep.N[2]: op 'softmax'"), e);
  CHECK_MESSAGE(!contains(e, "sweep.N[3]"), e);
  // A tuple of sizes takes arrays of them; a constant that is not a size keeps taking any number.
  std::string t = error_of(std::string(kHeader) +
                           "[[ops]]\nop_name = \"relu\"\ntask_desc = \"tasks/relu.py\"\n"
                           "[ops.sweep]\nshape = [[32, -1]]\n");
  CHECK_MESSAGE(
      contains(t, "ops[0].sweep.shape[0]: op 'relu': the constant holds `(16, 1024)`, a size"), t);
  CHECK_MESSAGE(contains(t, "or an array of them; element 1 is integer -1, not a positive integer"),
                t);
  Result<Campaign> ok = parse(std::string(kHeader) +
                              "[[ops]]\nop_name = \"relu\"\ntask_desc = \"tasks/relu.py\"\n"
                              "[ops.sweep]\nbias = [-0.5, 2]\nshape = [[8, 8]]\n");
  CHECK_MESSAGE(ok.ok(), ok.status().to_string());
}

TEST_CASE("a value listed twice in a sweep is an error") {
  std::string e = error_of(softmax_campaign("[ops.sweep]\nN = [1024, 1024]\n"));
  CHECK(contains(e, "ops[0].sweep.N[1]: value integer 1024 is listed twice"));
}

TEST_CASE("an unknown workflow lists the valid ones") {
  std::string e = error_of("workflow = \"fancy\"\n" + softmax_campaign());
  CHECK(e ==
        "c.toml:1:12: workflow: expected one of default, coder_only, verify_only, got string "
        "\"fancy\"");
}

TEST_CASE("the same op and task_id twice is an error") {
  std::string text =
      softmax_campaign() + "[[ops]]\nop_name = \"softmax\"\ntask_desc = \"tasks/softmax.py\"\n";
  std::string e = error_of(text);
  CHECK(contains(e,
                 "c.toml:10:11: ops[1].op_name: task softmax [default] is defined twice "
                 "(also by ops[0] at line 7)"));
}

TEST_CASE("verify_only needs a candidate for every op, and reads it") {
  std::string e = error_of("workflow = \"verify_only\"\n" + softmax_campaign());
  CHECK(contains(e, "ops[0]: op 'softmax' has no candidate; workflow verify_only"));

  Result<Campaign> c = load_campaign(fixtures() / "verify.toml");
  REQUIRE_MESSAGE(c.ok(), c.status().to_string());
  REQUIRE(c->tasks.size() == 1);
  CHECK(c->tasks[0].candidate == test::read_file(fixtures() / "cands/softmax.py"));

  std::string missing = error_of("workflow = \"verify_only\"\n" +
                                 softmax_campaign("candidate = \"cands/nope.py\"\n"));
  CHECK(contains(missing, "ops[0].candidate: candidate file \"cands/nope.py\" does not exist"));
}

TEST_CASE("a candidate outside verify_only is an error, not ignored") {
  std::string e = error_of(softmax_campaign("candidate = \"cands/softmax.py\"\n"));
  CHECK(contains(e, "ops[0].candidate: a candidate is used only by workflow verify_only"));
}

TEST_CASE("task_type and limit_steps are checked") {
  std::string e = error_of(softmax_campaign("task_type = \"fast\"\nlimit_steps = 0\n"));
  CHECK(contains(e, "c.toml:9:13: ops[0].task_type: expected one of precision_only, profile"));
  CHECK(contains(e,
                 "c.toml:10:15: ops[0].limit_steps: expected an integer between 1 and 100, "
                 "got integer 0"));
}

TEST_CASE("name, ops and target fields are required") {
  std::string e = error_of("[[ops]]\nop_name = \"softmax\"\ntask_desc = \"tasks/softmax.py\"\n");
  CHECK(contains(e, "c.toml:1:1: name: missing"));
  CHECK(contains(e, "ops[0]: op 'softmax': backend is not set"));
  CHECK(contains(e, "ops[0]: op 'softmax': arch is not set"));
  CHECK(contains(error_of("name = \"x\"\n"), "ops: missing"));
}

TEST_CASE("every problem is reported, in file order") {
  std::string e = error_of("workflow = \"x\"\n" + softmax_campaign("sweeps = 1\n"));
  CHECK(e.find("workflow") < e.find("sweeps"));
  CHECK(std::count(e.begin(), e.end(), '\n') == 1);
}

TEST_CASE("TOML syntax errors name line and column") {
  std::string e = error_of("name = \n");
  CHECK(e.starts_with("c.toml:1:"));
  CHECK(contains(e, "invalid TOML"));
}

TEST_CASE("a campaign file that does not exist is not_found") {
  Result<Campaign> c = load_campaign(fixtures() / "nope.toml");
  REQUIRE_FALSE(c.ok());
  CHECK(c.status().code() == Code::not_found);
  CHECK(contains(c.status().message(), "nope.toml"));
}

TEST_CASE("a runaway sweep is refused before it is expanded") {
  std::string values = "[";
  for (int i = 0; i < 1001; ++i) values += (i ? ", " : "") + std::to_string(i + 1);
  values += "]";
  std::string e =
      error_of(softmax_campaign("[ops.sweep]\nN = " + values + "\nbatch_size = " + values + "\n"));
  CHECK(contains(e, "expands to more than 1000000 tasks"));
}

TEST_CASE("rewriting survives odd task files") {
  // Deterministic soup of the tokens the Python scanner cares about. Whatever the file, the
  // result is an error or a task whose text differs from the file only where N was.
  const std::vector<std::string> tokens = {
      "N = 1", "\n", "\"", "'''", "#", ";", "(", ")", "\\", " ", "x", "\r\n", "N: int = (2,\n 3)"};
  test::TempDir dir;
  uint64_t state = 7;
  for (int round = 0; round < 400; ++round) {
    std::string text;
    for (int i = 0; i < round % 40; ++i) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      text += tokens[(state >> 33) % tokens.size()];
    }
    test::write_file(dir / "t.py", "class Model: pass\ndef get_inputs(): pass\n" + text);
    Result<Campaign> c = parse_campaign(std::string(kHeader) +
                                            "[[ops]]\nop_name = \"t\"\ntask_desc = \"t.py\"\n"
                                            "[ops.sweep]\nN = [77777]\n",
                                        dir.path(), "c.toml");
    if (c.ok()) {
      REQUIRE(c->tasks.size() == 1);
      CHECK(c->tasks[0].spec.task_desc.find("77777") != std::string::npos);
    }
  }
}

// ---- Storing a campaign in batches ----

namespace {

// A campaign of `n` small tasks (one op, task_id 0, 1, ...), as parse_campaign would give it.
Campaign many_tasks(size_t n) {
  Campaign c;
  c.name = "big";
  c.workflow = Workflow::default_;
  for (size_t i = 0; i < n; ++i) {
    CampaignTask t;
    t.spec.op_name = "softmax";
    t.spec.task_id = std::to_string(i);
    t.spec.task_desc = "N = " + std::to_string(i) + "\nclass Model: ...\ndef get_inputs(): ...\n";
    t.spec.backend = "cpu";
    t.spec.arch = "x86_64";
    t.spec.impl_type = "cpp";
    c.tasks.push_back(std::move(t));
  }
  c.content_hash = hash_campaign(c);
  return c;
}

struct StoreFixture {
  test::TempDir dir;
  ManualClock clock;
  std::unique_ptr<Store> store = Store::open(dir / "kforge.db", clock).value();
  int writes = 0;
  int fail_at = -1;                      // the write that fails (0: the first)
  std::vector<std::string> states_seen;  // the campaign's state before each write after the first

  // One transaction per write, as a coordinator turn or `kforge run` gives.
  CampaignWriter writer() {
    return [this](const std::function<Status(Store&)>& fn) -> Status {
      if (writes > 0) {
        auto c = store->campaigns().value();
        states_seen.push_back(c.empty() ? std::string("none")
                                        : std::string(to_string(c.back().state)));
      }
      if (writes++ == fail_at) return io_error("disk on fire");
      return store->atomically([&] { return fn(*store); });
    };
  }
};

}  // namespace

TEST_CASE_FIXTURE(StoreFixture,
                  "a campaign larger than a batch is stored in batches and runs only once whole") {
  Campaign c = many_tasks(kCampaignBatch * 2 + 1);
  auto stored = store_campaign(writer(), c, "source");
  REQUIRE_MESSAGE(stored.ok(), stored.status().to_string());
  CHECK(stored->second);
  CHECK(writes == 3);
  // Between the batches it was submitting: the Conductor resumes none of its tasks then.
  CHECK(states_seen == std::vector<std::string>{"submitting", "submitting"});
  CHECK(store->get_campaign(stored->first).value().state == CampaignState::running);
  auto ids = store->task_ids_of_campaign(stored->first).value();
  REQUIRE(ids.size() == c.tasks.size());
  CHECK(store->get_task(ids.back()).value().spec.task_desc == c.tasks.back().spec.task_desc);
  CHECK(store->unfinished_tasks().value().size() == c.tasks.size());
  // The same campaign again is not stored twice.
  auto again = store_campaign(writer(), c, "source");
  REQUIRE(again.ok());
  CHECK(again->first == stored->first);
  CHECK_FALSE(again->second);
}

TEST_CASE_FIXTURE(StoreFixture,
                  "a campaign whose batch fails stays submitting; storing it again resumes it") {
  fail_at = 1;
  Campaign c = many_tasks(kCampaignBatch * 2 + 5);
  auto stored = store_campaign(writer(), c, "source");
  CHECK(stored.status().message() == "disk on fire");
  auto campaigns = store->campaigns().value();
  REQUIRE(campaigns.size() == 1);
  CHECK(campaigns[0].state == CampaignState::submitting);
  CHECK(store->task_ids_of_campaign(campaigns[0].id).value().size() == kCampaignBatch);
  CHECK(store->unfinished_tasks().value().empty());  // none of it runs
  CHECK(store->interrupted_submissions().value() == std::vector<int64_t>{campaigns[0].id});
  // Stored again: the same campaign, from its first missing task on, each task once.
  fail_at = -1;
  writes = 0;
  auto retried = store_campaign(writer(), c, "source");
  REQUIRE_MESSAGE(retried.ok(), retried.status().to_string());
  CHECK(retried->first == campaigns[0].id);
  CHECK(retried->second);
  CHECK(writes == 2);  // the two batches that were missing
  CHECK(store->campaigns().value().size() == 1);
  CHECK(store->get_campaign(retried->first).value().state == CampaignState::running);
  std::vector<TaskRow> tasks = store->tasks_of_campaign(retried->first).value();
  REQUIRE(tasks.size() == c.tasks.size());
  for (size_t i = 0; i < tasks.size(); ++i) {
    CAPTURE(i);
    CHECK(tasks[i].spec.task_id == c.tasks[i].spec.task_id);
  }
}

TEST_CASE_FIXTURE(StoreFixture,
                  "the Conductor's startable tasks: every pending task outside submitting "
                  "campaigns, in id order") {
  Campaign c = many_tasks(51);
  int64_t big = store->create_campaign("big", "", "h-big").value();
  REQUIRE(store->set_campaign_state(big, CampaignState::submitting).ok());
  int64_t other = store->create_campaign("other", "", "h-other").value();
  std::vector<int64_t> expected;
  auto add = [&](int64_t campaign, size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) {
      int64_t id = store->create_task(campaign, c.tasks[i].spec).value();
      if (campaign == other) expected.push_back(id);
    }
  };
  TaskQuery startable;
  startable.state = TaskState::pending;
  startable.startable = true;
  add(other, 0, 1);
  add(big, 1, 10);  // ids that only the submitting campaign holds: passed over whole
  add(other, 10, 11);
  CHECK(store->task_ids(startable).value() == expected);
  CHECK(store->task_ids(startable).value() == expected);  // the range as checked before
  add(big, 11, 20);  // its range now holds another campaign's task
  CHECK(store->task_ids(startable).value() == expected);
  add(other, 20, 21);
  add(big, 21, 22);
  CHECK(store->task_ids(startable).value() == expected);
  // A second submission grows by batches that hold nothing else.
  int64_t second = store->create_campaign("second", "", "h-second").value();
  REQUIRE(store->set_campaign_state(second, CampaignState::submitting).ok());
  add(second, 22, 30);
  CHECK(store->task_ids(startable).value() == expected);
  add(second, 30, 40);
  add(other, 40, 41);
  CHECK(store->task_ids(startable).value() == expected);
  // Pages by after_id and limit.
  startable.limit = 2;
  CHECK(store->task_ids(startable).value() == std::vector<int64_t>{expected[0], expected[1]});
  startable.after_id = expected[1];
  CHECK(store->task_ids(startable).value() == std::vector<int64_t>{expected[2], expected[3]});
  // A rolled-back batch gives its ids to the next tasks: none of them is passed over.
  startable.limit = -1;
  startable.after_id = 0;
  int64_t third = store->create_campaign("third", "", "h-third").value();
  REQUIRE(store->set_campaign_state(third, CampaignState::submitting).ok());
  add(third, 41, 44);
  CHECK(store->task_ids(startable).value() == expected);
  REQUIRE(store->begin().ok());
  add(third, 44, 46);
  CHECK(store->task_ids(startable).value() == expected);
  store->rollback();
  add(other, 46, 48);  // the ids the rolled-back tasks had
  add(third, 48, 51);
  CHECK(store->task_ids(startable).value() == expected);
  // Once they run, their tasks are startable, in id order with the others'.
  for (int64_t id : {big, second, third})
    REQUIRE(store->set_campaign_state(id, CampaignState::running).ok());
  auto all = store->task_ids(startable).value();
  CHECK(all.size() == 49);
  CHECK(std::is_sorted(all.begin(), all.end()));
}

TEST_CASE_FIXTURE(StoreFixture,
                  "a submission its process did not finish is resumed by the next one, not by a "
                  "second of its own") {
  Campaign c = many_tasks(kCampaignBatch + 3);
  int64_t id = store->create_campaign(c.name, "", c.content_hash).value();
  REQUIRE(store->set_campaign_state(id, CampaignState::submitting).ok());
  for (size_t i = 0; i < 3; ++i) REQUIRE(store->create_task(id, c.tasks[i].spec).ok());
  CHECK(store->unfinished_tasks().value().empty());
  // The Conductor's admission (pending tasks it may start) passes it over, the listing not.
  TaskQuery startable;
  startable.state = TaskState::pending;
  startable.startable = true;
  CHECK(store->task_ids(startable).value().empty());
  startable.startable = false;
  CHECK(store->task_ids(startable).value().size() == 3);
  // This Store is still submitting it: a second submission stores nothing.
  CHECK(store->interrupted_submissions().value().empty());
  auto second = store_campaign(writer(), c, "source");
  REQUIRE(second.ok());
  CHECK(second->first == id);
  CHECK_FALSE(second->second);
  CHECK(store->task_ids_of_campaign(id).value().size() == 3);
  // A new process (the old one died mid-way) resumes it after the tasks it holds.
  store.reset();
  store = Store::open(dir / "kforge.db", clock).value();
  CHECK(store->interrupted_submissions().value() == std::vector<int64_t>{id});
  auto resumed = store_campaign(writer(), c, "source");
  REQUIRE_MESSAGE(resumed.ok(), resumed.status().to_string());
  CHECK(resumed->first == id);
  CHECK(resumed->second);
  std::vector<TaskRow> tasks = store->tasks_of_campaign(id).value();
  REQUIRE(tasks.size() == c.tasks.size());
  CHECK(tasks[3].spec.task_id == c.tasks[3].spec.task_id);
  CHECK(tasks.back().spec.task_id == c.tasks.back().spec.task_id);
  CHECK(store->get_campaign(id).value().state == CampaignState::running);
  CHECK(store->interrupted_submissions().value().empty());
}

// ---- Plans: a campaign expanded on demand ----

TEST_CASE(
    "a plan expands to the tasks, hash and files of the campaign parsed whole, from any task on") {
  Result<Campaign> whole = load_campaign(fixtures() / "sweep.toml");
  REQUIRE(whole.ok());
  const std::string text = test::read_file(fixtures() / "sweep.toml");
  auto plan = plan_campaign(text, files_under(fixtures()), "sweep.toml");
  REQUIRE_MESSAGE(plan.ok(), plan.status().to_string());
  CHECK(plan->name() == whole->name);
  CHECK(plan->content_hash() == whole->content_hash);
  REQUIRE(plan->size() == whole->tasks.size());
  CHECK(plan->files().size() == 2);
  CHECK(plan->files().count("tasks/softmax.py") == 1);
  for (size_t begin = 0; begin < plan->size(); ++begin) {
    size_t i = begin;
    REQUIRE(plan->expand(begin, plan->size(),
                         [&](CampaignTask&& t) {
                           CHECK(t.spec.task_id == whole->tasks[i].spec.task_id);
                           CHECK(t.spec.task_desc == whole->tasks[i].spec.task_desc);
                           CHECK(t.spec.task_type == whole->tasks[i].spec.task_type);
                           ++i;
                           return Status();
                         })
                .ok());
    CHECK(i == plan->size());
  }
  // Files come from the reader only: one that does not have a file says which and why.
  auto missing = plan_campaign(
      text,
      [](const std::string&) -> Result<std::string> {
        return not_found("was not sent with the campaign");
      },
      "sweep.toml");
  REQUIRE_FALSE(missing.ok());
  CHECK(contains(missing.status().message(),
                 "sweep.toml:15:13: ops[0].task_desc: task file \"tasks/softmax.py\" was not sent "
                 "with the campaign"));
}

TEST_CASE("per-op search leaves the hash of campaigns without it as before") {
  // Values computed before ops could carry a search table (issue 17): a campaign without
  // per-op search stores and hashes as it did.
  Result<Campaign> sweep = load_campaign(fixtures() / "sweep.toml");
  Result<Campaign> searched =
      parse("search = { strategy = \"evolve\", islands = 3 }\n" + softmax_campaign());
  REQUIRE(sweep.ok());
  REQUIRE(searched.ok());
  CHECK(sweep->content_hash == "bb9b07570617133cf2624fcc1195ba5691b341c6483370fc778dfd38abcbb220");
  CHECK(searched->content_hash ==
        "7ec95454bf2e3d3b4d6ffbbca806c03c128b9db2f16ad994cc3c13bafd52c1f6");
  for (const CampaignTask& t : sweep->tasks) CHECK(t.spec.search.empty());
}

TEST_CASE("an op's search table reaches every task of its sweep and is part of the identity") {
  Result<Campaign> plain = parse(softmax_campaign("[ops.sweep]\nN = [1024, 4096]\n"));
  Result<Campaign> own = parse(
      softmax_campaign("[ops.sweep]\nN = [1024, 4096]\n[ops.search]\nstrategy = \"evolve\"\n"));
  REQUIRE(plain.ok());
  REQUIRE_MESSAGE(own.ok(), own.status().to_string());
  REQUIRE(own->tasks.size() == 2);
  for (const CampaignTask& t : own->tasks) CHECK(t.spec.search == "{\"strategy\":\"evolve\"}");
  CHECK(own->content_hash != plain->content_hash);
  CHECK(hash_campaign(*own) == own->content_hash);
}
