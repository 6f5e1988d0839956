#include "cli/cli.h"

#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "cli/client.h"
#include "cli/commands.h"
#include "common/build_info.h"
#include "common/flags.h"
#include "common/protocol.h"
#include "coordinator/store/store.h"

namespace kforge {
namespace {

struct Command {
  const char* name;
  const char* summary;
  std::vector<FlagSpec> flags;
  const char* usage;  // after "kforge <name> "
  std::function<int(const ParsedFlags&)> run;
};

int fail(const std::string& message, int code = kExitFailed) {
  return cli_fail(message, code);
}

std::filesystem::path db_path(const ParsedFlags& flags) {
  return std::filesystem::path(flags.get("data").value_or("kforge-data")) / "kforge.db";
}

// kforge enqueue writes into an existing coordinator's database, never a new one.
Result<std::unique_ptr<Store>> open_existing(const ParsedFlags& flags) {
  auto path = db_path(flags);
  if (!std::filesystem::exists(path)) {
    return not_found("no kforge database at " + path.string() +
                     "; pass --data with the coordinator's data directory");
  }
  return Store::open(path);
}

int cmd_enqueue(const ParsedFlags& flags) {
  if (flags.positional.empty())
    return fail("enqueue: give the command after --, e.g. kforge enqueue -- echo hi", kExitUsage);
  uint64_t count = 1, priority = 0, timeout_s = 0;
  for (auto [name, target] :
       {std::pair{"count", &count}, {"priority", &priority}, {"timeout", &timeout_s}}) {
    if (auto v = flags.get(name)) {
      auto n = parse_uint_flag(name, *v);
      if (!n.ok()) return fail(n.status().message(), kExitUsage);
      *target = *n;
    }
  }
  auto store = open_existing(flags);
  if (!store.ok()) return fail(store.status().message());
  NewJob job;
  job.kind = JobKind::exec;
  job.request.argv = flags.positional;
  job.request.timeout_ms = timeout_s * 1000;
  job.backend = flags.get("backend").value_or("cpu");
  job.arch = flags.get("arch").value_or("");
  job.priority = static_cast<int>(priority);
  job.exclusive = flags.has("exclusive");
  if (Status st = (*store)->begin(); !st.ok()) return fail(st.message());
  std::vector<int64_t> ids;
  for (uint64_t i = 0; i < count; ++i) {
    auto id = (*store)->enqueue_job(job);
    if (!id.ok()) {
      (*store)->rollback();
      return fail(id.status().message());
    }
    ids.push_back(*id);
  }
  if (Status st = (*store)->commit(); !st.ok()) return fail(st.message());
  std::printf("queued %zu job(s): %lld", ids.size(), static_cast<long long>(ids.front()));
  if (ids.size() > 1) std::printf("..%lld", static_cast<long long>(ids.back()));
  std::printf("\n");
  return kExitOk;
}

// The URL is printed, not opened: the token in it is for the person who can read the token file.
int cmd_dashboard(const ParsedFlags& flags) {
  auto target = resolve_api_target(flags);
  if (!target.ok()) return fail(target.status().message());
  if (target->token.empty()) {
    return fail(
        "dashboard: no API token found: pass --token-file FILE (<data_dir>/api.token of the "
        "coordinator, or "
        "the file coordinator.api_token_file names) or set KFORGE_TOKEN_FILE");
  }
  std::printf("%s/#token=%s\n", target->url.c_str(), url_escape(target->token).c_str());
  return kExitOk;
}

const std::vector<Command>& commands() {
  static const FlagSpec kData{
      "data", true, "read (and change) this data directory's database directly, no coordinator"};
  static const FlagSpec kHelp{"help", false, "show this message"};
  static const FlagSpec kCoordinator{"coordinator", true,
                                     "the coordinator's API URL or HOST:PORT (default: [cli] in "
                                     "--config, $KFORGE_COORDINATOR, http://127.0.0.1:7780)"};
  static const FlagSpec kToken{
      "token-file", true,
      "file holding the API token (default: $KFORGE_TOKEN_FILE, [cli] token_file, "
      "<data_dir>/api.token of a coordinator on this host)"};
  static const FlagSpec kTokenText{
      "token", true,
      "the API token itself (visible to other users in ps; prefer --token-file or $KFORGE_TOKEN)"};
  static const FlagSpec kConfig{"config", true,
                                "configuration file ([cli] coordinator, token_file)"};
  static const FlagSpec kJson{"json", false, "print JSON (--format json)"};
  // An API command's flags; `timeout_s` is its --timeout default, matched to the operation: a
  // query gives up on a hung coordinator in seconds, an export of a large campaign may take long.
  auto api = [](std::vector<FlagSpec> extra, int timeout_s) {
    extra.insert(extra.end(), {kCoordinator,
                               kToken,
                               kTokenText,
                               kConfig,
                               kData,
                               {"timeout", true,
                                "seconds to wait for each answer of the coordinator; 0: no limit",
                                std::to_string(timeout_s)},
                               kHelp});
    return extra;
  };
  // Seconds: listings and status, operator actions, submissions, exports and reports.
  constexpr int kQuery = 20, kAction = 30, kSubmit = 120, kLong = 600;
  static const FlagSpec kFormat{"format", true, "table (default) | json | csv"};
  static const FlagSpec kCsv{"csv", false, "print CSV (--format csv)"};
  static const std::vector<FlagSpec> kTaskFilters = {
      {"campaign", true, "only this campaign's tasks"},
      {"state", true, "pending | running | passed | failed | cancelled"},
      {"op", true, "only this op_name"},
      {"verdict", true,
       "only this verdict (passed, precision_mismatch, compile_error, ..., llm_error, garbled, "
       "cancelled)"},
      {"limit", true, "at most this many"},
      {"offset", true, "skip this many matching tasks first (slower than --after at depth)"},
      {"after", true, "only tasks with ids above this (keyset paging)"},
      kFormat,
      kJson,
      kCsv};
  // The table is laid out by hand, an entry per command (clang-format would re-flow all of it
  // at any change).
  // clang-format off
  static const std::vector<Command> all = {
      {"check", "find every problem of a campaign and its config at once, creating nothing (run and submit check first)",
       {{"config", true, "configuration file, checked as kforge run reads it: [llm.*] roles, keys, recordings"}, kHelp},
       "CAMPAIGN.toml [--config kforge.toml]", cmd_check},
      {"run", "run a campaign to its end here: coordinator, conductor and a local agent",
       {kData,
        {"config", true, "configuration file: [llm.*] roles, [agent] settings"},
        {"cpu-devices", true, "CPU devices of the local agent (default: config, 1)"},
        {"device-fixtures", true, "read nvidia-smi.csv / npu-smi.txt from DIR (simulation)"},
        {"prompts", true, "prompt template directory (default: found)"},
        {"http", true, "serve the operator API and dashboard on HOST:PORT (default 127.0.0.1:0, a free port)"},
        {"log-level", true, "trace|debug|info|warn|error (default warn)"},
        kJson,
        kHelp},
       "CAMPAIGN.toml [options]", cmd_run},
      {"submit", "add a campaign to a coordinator (once: the same campaign is not added twice)", api({}, kSubmit),
       "CAMPAIGN.toml [options]", cmd_submit},
      {"status", "campaigns and their progress (live with --watch)",
       api({kFormat, kJson, kCsv, {"watch", false, "refresh every second until the campaigns finish"}}, kQuery),
       "[CAMPAIGN] [options]",
       cmd_status},
      {"tasks", "tasks, filtered by campaign, state, op or verdict", api(kTaskFilters, kQuery), "[options]", cmd_tasks},
      {"show", "one task's story: every step's prompt, response, code and verdict, and its jobs",
       api({kJson, {"full", false, "print prompts and responses whole"}}, kQuery), "TASK [options]", cmd_show},
      {"results", "every task's outcome: op, task_id, state, verdict, steps, speedup, cost",
       api(kTaskFilters, kQuery), "[CAMPAIGN] [options]", cmd_results},
      {"cancel", "cancel a campaign's unfinished tasks (or one task); their jobs are withdrawn",
       api({{"task", true, "cancel this task only"}}, kAction), "CAMPAIGN | --task N [options]", cmd_cancel},
      {"resume", "run cancelled tasks on from their recorded steps (nothing is asked or paid twice)",
       api({{"task", true, "resume this task only"}}, kAction), "CAMPAIGN | --task N [options]", cmd_resume},
      {"agents", "agents: devices, load, last heartbeat, drained or not (and why)",
       api({kFormat, kJson, kCsv}, kQuery), "[options]", cmd_agents},
      {"cluster", "the cluster at a glance: hosts, devices by state, queue, running jobs, tasks per hour",
       api({kFormat, kJson, kCsv}, kQuery), "[options]", cmd_cluster},
      {"progress", "one campaign for the overnight shift: finished and remaining, tasks per hour, ETA, queue, stalled",
       api({kJson}, kQuery), "CAMPAIGN [options]", cmd_progress},
      {"alerts", "what needs the operator now: lost agents, stalled campaigns, a full disk",
       api({kFormat, kJson, kCsv}, kQuery),
       "[options]", cmd_alerts},
      {"drain", "let a host's agents (or one agent) finish their jobs and give them no new ones",
       api({{"reason", true, "why, shown by `kforge agents` and `kforge cluster` (one line, up to 256 bytes)"}}, kAction),
       "HOST|AGENT [--reason TEXT] [options]\n  AGENT: an agent id or a unique prefix of one; a host name drains every agent of the host",
       [](const ParsedFlags& f) { return set_drained(f, true); }},
      {"undrain", "give a drained host's agents (or one agent) work again", api({}, kAction), "HOST|AGENT [options]",
       [](const ParsedFlags& f) { return set_drained(f, false); }},
      {"export", "write a campaign as files: one per step (AIKG's layout), and each task's winner, its best passing kernel, in passed/",
       api({{"out", true, "the directory to write (new or empty)"}, {"force", false, "write into a non-empty directory"}},
           kLong),
       "CAMPAIGN --out DIR [options]", cmd_export},
      {"report", "a campaign's report: fast_p, pass@k, geomean speedup, speedup by generation, the winners' lineage, per-op table, cost, device hours",
       api({{"out", true, "write DIR/index.html and DIR/report.json"}, {"json", false, "print the report document"}},
           kLong),
       "CAMPAIGN [--out DIR] [--json] [options]", cmd_report},
      {"import", "write a campaign file from benchmark problems (kinds: kernelbench)",
       {{"level", true, "the level to import: N of level<N>/ (required)"},
        {"problems", true, "problem numbers, e.g. 1-20,23,40-42 (default: every problem of the level)"},
        {"target", true, "backend/arch/impl_type (default cuda/h100/triton)"},
        {"framework", true, "torch | numpy | mindspore (default torch)"},
        {"task-type", true, "profile (default) | precision_only"},
        {"limit-steps", true, "Conductor steps per task, 1 to 100 (default 10)"},
        {"timing", true, "kernelbench (default: 5 trials, 100 timed runs) | kforge (3 trials, 50 runs)"},
        {"name", true, "the campaign's name (default kernelbench-level<N>)"},
        {"out", true, "the campaign file to write (default kernelbench-level<N>.toml)"},
        {"force", false, "overwrite --out if it exists"},
        kHelp},
       "kernelbench DIR --level N [options]\n  DIR: KernelBench's problem root (holding level1/, level2/, ...) or a level directory",
       cmd_import},
      {"verify", "check a candidate kernel against its reference, locally",
       {{"task", true, "the reference: a Python file with Model, get_inputs, get_init_inputs"},
        {"candidate", true, "the candidate: a Python file with ModelNew (or {op}_{impl}_{framework})"},
        {"backend", true, "cpu | cuda | ascend (default cpu)"},
        {"arch", true, "x86_64, h100, ascend910b4, ... (default x86_64 on cpu)"},
        {"impl-type", true, "triton | cuda_c | cpp | swft"},
        {"framework", true, "torch | numpy | mindspore"},
        {"task-type", true, "precision_only (default) | profile"},
        {"op-name", true, "the op's name (default: the task file's stem)"},
        {"timeout", true, "wall-clock limit in seconds (default 300)"},
        {"memory-limit", true, "address-space limit in MiB (default none)"},
        {"processes", true, "process limit for the job's user (default 512)"},
        {"trials", true, "precision trials with fresh inputs (default 3)"},
        {"seed", true, "first trial's seed (default 0)"},
        {"python", true, "interpreter (default /usr/bin/python3)"},
        {"harness", true, "directory of kforge_harness.py (default: found)"},
        {"run-as", true, "when root, run the job as this user (default nobody; '' for root)"},
        {"contain", true, "auto (default: the agent's box when root: cgroup, namespaces, disk quota) | off"},
        {"json", false, "print the result document as JSON"},
        {"keep", false, "keep the job directory and print its path"},
        kHelp},
       "--task REF.py --candidate CAND.py --impl-type I --framework F [options]", cmd_verify},
      {"keygen", "make a CURVE key pair for the agent link: secret key file (0600), public key on stdout",
       {{"out", true, "write the secret key to this file (mode 0600)"},
        {"agent-id", true, "print the public key as the allow-list line ID = \"KEY\""},
        {"public", true, "print the public key of this existing secret key file instead"},
        {"force", false, "replace --out if it exists"},
        kHelp},
       "--out FILE [--agent-id ID] | --public FILE", cmd_keygen},
      {"enqueue", "queue a plain command as job(s) in a coordinator's database",
       {kData,
        {"count", true, "how many copies (default 1)"},
        {"priority", true, "higher runs first (default 0)"},
        {"exclusive", false, "run alone on its device (as profile jobs do)"},
        {"backend", true, "cpu | cuda | ascend (default cpu)"},
        {"arch", true, "only devices of this arch (default any)"},
        {"timeout", true, "wall-clock limit in seconds (default: the agent's)"},
        kHelp},
       "[options] -- COMMAND [ARGS...]",
       cmd_enqueue},
      {"dashboard", "print the dashboard's URL with the API token in its fragment (open it in a browser)",
       {kCoordinator, kToken, kTokenText, kConfig, kHelp}, "[options]", cmd_dashboard},
      {"jobs", "jobs with epoch, attempts, agent, device and outcome, by id",
       api({{"state", true, "queued|assigned|done|cancelled"},
            {"task", true, "only this task's jobs"},
            {"limit", true, "at most this many"},
            {"after", true, "only jobs with ids above this (keyset paging: fast at any depth)"},
            {"offset", true, "skip this many matching jobs first (pages, with --limit)"},
            kFormat,
            kJson,
            kCsv},
           kQuery),
       "[options]", cmd_jobs},
  };
  // clang-format on
  return all;
}

void usage(FILE* out) {
  std::fprintf(out, "usage: kforge <command> [options]\n\ncommands:\n");
  for (const auto& c : commands()) std::fprintf(out, "  %-12s %s\n", c.name, c.summary);
  std::fprintf(out, "  %-12s %s\n", "version", "print the version");
  std::fprintf(out, "\nRun `kforge <command> --help` for a command's options.\n");
}

}  // namespace

int cli_fail(const std::string& message, int code) {
  std::fprintf(stderr, "kforge: %s\n", message.c_str());
  return code;
}

int run_cli(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return kExitUsage;
  }
  std::string name = argv[1];
  if (name == "help" || name == "--help" || name == "-h") {
    usage(stdout);
    return kExitOk;
  }
  if (name == "version" || name == "--version") {
    std::puts(version_line("kforge").c_str());
    return kExitOk;
  }
  for (const auto& c : commands()) {
    if (name != c.name) continue;
    // Everything after a bare "--" is the job's command line, not kforge flags.
    int end = argc;
    for (int i = 2; i < argc; ++i) {
      if (std::strcmp(argv[i], "--") == 0) {
        end = i;
        break;
      }
    }
    auto flags = parse_flags(end, argv, 2, c.flags, "kforge " + name);
    if (!flags.ok()) {  // the message names the command already ("kforge tasks: ...")
      std::fprintf(stderr, "%s\n", flags.status().message().c_str());
      return kExitUsage;
    }
    if (flags->has("help")) {
      std::printf("%s",
                  flags_help(c.flags, "usage: kforge " + name + " " + c.usage + "\n\n" + c.summary)
                      .c_str());
      return kExitOk;
    }
    for (int i = end + 1; i < argc; ++i) flags->positional.push_back(argv[i]);
    return c.run(*flags);
  }
  return fail("unknown command '" + name + "'; run `kforge help` for the list", kExitUsage);
}

}  // namespace kforge
