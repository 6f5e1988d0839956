// kforge check, run and submit on broken files: every problem of the config and of the
// campaign in one pass, each with its file:line:column, and nothing created (issue 18).
#include <doctest/doctest.h>

#include "tests/support/child.h"

using namespace kforge;
using namespace kforge::test;

namespace {

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A directory with a campaign and a config that are wrong in several ways each: config keys,
// [llm.*] roles, campaign target and sweep.
struct Broken {
  TempDir dir;
  std::filesystem::path campaign = dir / "bad.toml";
  std::filesystem::path config = dir / "kforge.toml";
  Broken() {
    std::filesystem::copy(source_dir() / "tests" / "fixtures" / "campaigns" / "tasks",
                          dir / "tasks");
    write_file(campaign,
               "name = \"broken\"\n"                 // 1
               "workflow = \"default\"\n"            // 2
               "\n"                                  // 3
               "[defaults]\n"                        // 4
               "backend = \"cdua\"\n"                // 5: no such backend
               "arch = \"h100\"\n"                   // 6
               "impl_type = \"triton\"\n"            // 7
               "\n"                                  // 8
               "[[ops]]\n"                           // 9
               "op_name = \"softmax\"\n"             // 10
               "task_desc = \"tasks/softmax.py\"\n"  // 11
               "[ops.sweep]\n"                       // 12
               "M = [1, 2]\n"                        // 13: softmax.py has no M
               "N = [1.5, -3]\n"                     // 14: N holds a size
               "\n"                                  // 15
               "[[ops]]\n"                           // 16
               "op_name = \"relu\"\n"                // 17
               "task_desc = \"tasks/nope.py\"\n");   // 18: no such file
    write_file(config,
               "[agent]\n"                                       // 1
               "cpu_devcies = 2\n"                               // 2: typo
               "env_allow = [\"PATH\", \"KFORGE_CHECK_KEY\"]\n"  // 3: the coder's key
               "\n"                                              // 4
               "[llm.designer]\n"                                // 5
               "provider = \"opnai\"\n"                          // 6: no such provider
               "base_url = \"http://127.0.0.1:9/v1\"\n"          // 7
               "\n"                                              // 8
               "[llm.coder]\n"                                   // 9: no model
               "provider = \"openai\"\n"                         // 10
               "base_url = \"127.0.0.1:9\"\n"                    // 11: no scheme
               "api_key_env = \"KFORGE_CHECK_KEY\"\n"            // 12: not set
               "\n"                                              // 13
               "[llm.conductor]\n"                               // 14
               "provider = \"replay\"\n"                         // 15
               "recording = \"missing.jsonl\"\n");               // 16: no such file
  }
  std::string c(int line, int column) {
    return campaign.string() + ":" + std::to_string(line) + ":" + std::to_string(column) + ": ";
  }
  std::string k(int line, int column) {
    return config.string() + ":" + std::to_string(line) + ":" + std::to_string(column) + ": ";
  }

  // Every problem of both files, each at its line.
  void check_all_reported(const Ran& r) {
    CHECK(r.code == 1);
    const std::string& e = r.err;
    CHECK_MESSAGE(has(e, k(2, 1) + "unknown key 'agent.cpu_devcies' (did you mean 'cpu_devices'?)"),
                  e);
    CHECK_MESSAGE(
        has(e, k(3, 13) + "agent.env_allow names KFORGE_CHECK_KEY, the API key of llm.coder"), e);
    CHECK_MESSAGE(
        has(e, k(6, 12) +
                   "llm.designer.provider: expected one of openai, replay, record, got \"opnai\""),
        e);
    CHECK_MESSAGE(has(e, k(9, 1) + "llm.coder: provider \"openai\" needs model"), e);
    CHECK_MESSAGE(
        has(e, k(11, 12) + "llm.coder.base_url: expected a URL starting with http:// or https://"),
        e);
    CHECK_MESSAGE(
        has(e, k(12, 15) + "llm.coder.api_key_env: names $KFORGE_CHECK_KEY, which is not set here"),
        e);
    CHECK_MESSAGE(has(e, k(16, 13) + "llm.conductor.recording: "), e);
    CHECK_MESSAGE(has(e, "missing.jsonl does not exist"), e);
    CHECK_MESSAGE(has(e, c(5, 11) + "defaults.backend: backend 'cdua' is not one of"), e);
    CHECK_MESSAGE(has(e, c(13, 1) + "ops[0].sweep.M: op 'softmax': task file tasks/softmax.py has "
                                    "no module-level constant 'M'"),
                  e);
    CHECK_MESSAGE(has(e, c(14, 6) + "ops[0].sweep.N[0]: op 'softmax': "), e);
    CHECK_MESSAGE(has(e, "float 1.5 is not a positive integer"), e);
    CHECK_MESSAGE(has(e, c(14, 11) + "ops[0].sweep.N[1]: op 'softmax': "), e);
    CHECK_MESSAGE(
        has(e, c(18, 13) + "ops[1].task_desc: task file \"tasks/nope.py\" does not exist"), e);
    CHECK_MESSAGE(has(e, "kforge: 12 problems found; nothing was created\n"), e);
    // The config's problems first, then the campaign's, each file in line order.
    CHECK(e.find(k(16, 13)) < e.find(c(5, 11)));
    CHECK(e.find(k(2, 1)) < e.find(k(6, 12)));
  }
};

}  // namespace

TEST_CASE(
    "kforge check reports every problem of the config and the campaign in one pass, with its "
    "line") {
  Broken b;
  Ran r = kforge_cli({"check", b.campaign.string(), "--config", b.config.string()});
  b.check_all_reported(r);
  CHECK(r.out.empty());
}

TEST_CASE("kforge run makes the same check first and creates no data directory") {
  Broken b;
  const std::filesystem::path data = b.dir / "data";
  Ran r = kforge_cli(
      {"run", b.campaign.string(), "--config", b.config.string(), "--data", data.string()});
  b.check_all_reported(r);
  CHECK_FALSE(std::filesystem::exists(data));
}

TEST_CASE("kforge submit checks the campaign before it reaches for a coordinator") {
  Broken b;
  // Nothing listens on port 1: the campaign's problems come first, not "cannot reach".
  Ran r = kforge_cli({"submit", b.campaign.string(), "--coordinator", "http://127.0.0.1:1"});
  CHECK(r.code == 1);
  CHECK_MESSAGE(has(r.err, b.c(5, 11) + "defaults.backend:"), r.err);
  CHECK_MESSAGE(has(r.err, b.c(13, 1) + "ops[0].sweep.M:"), r.err);
  CHECK_MESSAGE(has(r.err, b.c(18, 13) + "ops[1].task_desc:"), r.err);
  CHECK_FALSE(has(r.err, "cannot reach"));
}

TEST_CASE("a workflow that asks an LLM needs its roles in the config; a sound pair is ok") {
  TempDir dir;
  const std::filesystem::path fixtures = source_dir() / "tests" / "fixtures" / "campaigns";
  const std::string sweep = (fixtures / "sweep.toml").string();
  write_file(dir / "designer-only.toml",
             "[llm.designer]\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = "
             "\"m\"\n");
  Ran r = kforge_cli({"check", sweep, "--config", (dir / "designer-only.toml").string()});
  CHECK(r.code == 1);
  CHECK_MESSAGE(
      has(r.err, sweep + ":3:1: workflow: the default workflow asks an LLM: " +
                     (dir / "designer-only.toml").string() + " lacks [llm.coder] (docs/llm.md)"),
      r.err);
  // kforge run without a config: the same problem, saying what to give.
  Ran run = kforge_cli({"run", sweep, "--data", (dir / "data").string()});
  CHECK(run.code == 1);
  CHECK_MESSAGE(has(run.err, "give a --config file with [llm.designer] and [llm.coder]"), run.err);
  CHECK_FALSE(std::filesystem::exists(dir / "data"));

  write_file(dir / "llm.jsonl", "");
  write_file(dir / "kforge.toml",
             "[llm.designer]\nprovider = \"replay\"\nrecording = \"llm.jsonl\"\n"
             "[llm.coder]\nprovider = \"replay\"\nrecording = \"llm.jsonl\"\n");
  Ran ok = kforge_cli({"check", sweep, "--config", (dir / "kforge.toml").string()});
  CHECK_MESSAGE(ok.code == 0, ok.err);
  CHECK(ok.out == sweep + ": campaign softmax-sweep, workflow default, 5 tasks: ok\n" +
                      (dir / "kforge.toml").string() + ": ok\n");
  // Without --config, the campaign alone, saying what was not checked.
  Ran alone = kforge_cli({"check", sweep});
  CHECK_MESSAGE(alone.code == 0, alone.err);
  CHECK(has(alone.out, "no --config: the LLM roles the default workflow asks were not checked"));
}
