// kforge import: write a campaign file from a benchmark's problem files. One kind so far,
// kernelbench (coordinator/kernelbench.h).
#include <cstdio>
#include <filesystem>
#include <vector>

#include "cli/commands.h"
#include "common/fs.h"
#include "common/text.h"
#include "coordinator/intake/kernelbench.h"

namespace kforge {
namespace {

namespace fs = std::filesystem;

const char* kKinds = "kernelbench";

int usage_error(const std::string& message) {
  return cli_fail(message, kExitUsage);
}

int import_kernelbench(const ParsedFlags& flags) {
  const std::string cmd = "import kernelbench: ";
  if (flags.positional.size() != 2) {
    return usage_error(
        cmd +
        "give one directory: KernelBench's problem root (holding level1/, ...) or a level "
        "directory, e.g. kforge import kernelbench KernelBench/KernelBench --level 1");
  }
  KernelBenchImport options;
  options.dir = flags.positional[1];
  auto level = flags.get("level");
  if (!level)
    return usage_error(cmd +
                       "--level is required (1, 2, 3, ...: the level<N>/ directory to import)");
  auto n = parse_uint_flag("level", *level);
  if (!n.ok()) return usage_error(cmd + n.status().message());
  if (*n < 1 || *n > 1000)
    return usage_error(cmd + "--level: expected a level number from 1, got " + *level);
  options.level = static_cast<int>(*n);
  if (auto p = flags.get("problems")) {
    auto numbers = parse_problem_ranges(*p);
    if (!numbers.ok()) return usage_error(cmd + "--" + numbers.status().message());
    options.problems = std::move(*numbers);
  }
  auto target = parse_target(flags.get("target").value_or("cuda/h100/triton"),
                             flags.get("framework").value_or("torch"));
  if (!target.ok()) return usage_error(cmd + "--" + target.status().message());
  options.target = *target;
  options.task_type = flags.get("task-type").value_or("profile");
  options.timing = flags.get("timing").value_or("kernelbench");
  if (auto s = flags.get("limit-steps")) {
    auto steps = parse_uint_flag("limit-steps", *s);
    if (!steps.ok()) return usage_error(cmd + steps.status().message());
    if (*steps < 1 || *steps > 100)
      return usage_error(cmd + "--limit-steps: expected 1 to 100, got " + *s);
    options.limit_steps = static_cast<int>(*steps);
  }
  if (auto name = flags.get("name")) {
    if (name->empty()) return usage_error(cmd + "--name: expected a campaign name, got nothing");
    options.name = *name;
  }
  if (Status st = check_kernelbench_import(options); !st.ok())
    return usage_error(cmd + st.message());

  options.out =
      flags.get("out").value_or("kernelbench-level" + std::to_string(options.level) + ".toml");
  std::error_code ec;
  if (fs::is_directory(options.out, ec))
    return cli_fail(cmd + "--out " + options.out.string() + " is a directory");
  fs::path parent = fs::absolute(options.out).parent_path();
  if (!fs::is_directory(parent, ec)) {
    return cli_fail(cmd + "the directory of --out " + options.out.string() + " (" +
                    parent.string() + ") does not exist");
  }

  auto campaign = kernelbench_campaign(options);
  if (!campaign.ok()) return cli_fail(cmd + campaign.status().message());
  if (fs::exists(options.out, ec) && !flags.has("force")) {
    return cli_fail(cmd + options.out.string() + " exists; pass --force to overwrite it");
  }
  if (Status st = atomic_write_file(options.out, campaign->toml); !st.ok())
    return cli_fail(cmd + st.message());
  const Target& t = options.target;
  std::vector<int> numbers;
  for (const KernelBenchProblem& p : campaign->problems) numbers.push_back(p.number);
  std::printf("kernelbench: problems from %s\n", campaign->dir_used.c_str());
  for (const KernelBenchProblem& p : campaign->problems) {
    if (p.downloads.empty()) continue;
    std::fprintf(stderr,
                 "kforge: warning: problem %d (%s) calls %s: it downloads at verification, and "
                 "jobs run without "
                 "network access (docs/security.md), so expect it to fail\n",
                 p.number, p.path.filename().string().c_str(), join(p.downloads).c_str());
  }
  std::printf("wrote %s: %zu problem%s of level %d (%s), target %s/%s/%s/%s, %s\n",
              options.out.string().c_str(), numbers.size(), numbers.size() == 1 ? "" : "s",
              options.level, format_problem_ranges(numbers).c_str(), t.backend.c_str(),
              t.arch.c_str(), t.impl_type.c_str(), t.framework.c_str(), options.task_type.c_str());
  return kExitOk;
}

}  // namespace

int cmd_import(const ParsedFlags& flags) {
  if (flags.positional.empty()) {
    return usage_error(
        std::string("import: say what to import, e.g. kforge import kernelbench DIR --level 1 "
                    "(known kinds: ") +
        kKinds + ")");
  }
  if (flags.positional[0] == "kernelbench") return import_kernelbench(flags);
  return usage_error("import: unknown kind '" + flags.positional[0] + "'; known kinds: " + kKinds);
}

}  // namespace kforge
