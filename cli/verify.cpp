// kforge verify: one candidate against its reference, locally, through the same harness
// and sandbox an agent uses.
#include "agent/verify.h"

#include <unistd.h>

#include <cstdio>

#include "agent/verifier/verifier.h"
#include "cli/commands.h"
#include "common/fs.h"
#include "common/verify_result.h"

namespace kforge {
namespace {

std::string required(const ParsedFlags& flags, const std::string& name, std::string* missing) {
  auto v = flags.get(name);
  if (!v || v->empty()) {
    if (missing->empty()) *missing = name;
    return "";
  }
  return *v;
}

void print_summary(const VerifyResult& r) {
  std::printf("verdict: %s\n", std::string(to_string(r.verdict)).c_str());
  if (!r.message.empty()) std::printf("%s\n", r.message.c_str());
  if (r.profile) {
    const Profile& p = *r.profile;
    std::printf("candidate median %.1f us, reference median %.1f us, speedup %.2fx%s\n",
                p.candidate.median_us, p.reference.median_us, p.speedup,
                p.suspicious ? " (suspicious)" : "");
  }
}

}  // namespace

int cmd_verify(const ParsedFlags& flags) {
  std::string missing;
  std::string task_path = required(flags, "task", &missing);
  std::string candidate_path = required(flags, "candidate", &missing);
  VerifySpec spec;
  spec.target.impl_type = required(flags, "impl-type", &missing);
  spec.target.framework = required(flags, "framework", &missing);
  if (!missing.empty())
    return cli_fail("verify: --" + missing + " is required; see `kforge verify --help`",
                    kExitUsage);
  spec.target.backend = flags.get("backend").value_or("cpu");
  spec.target.arch = flags.get("arch").value_or(spec.target.backend == "cpu" ? "x86_64" : "");
  spec.task_type = flags.get("task-type").value_or("precision_only");
  if (spec.task_type != "precision_only" && spec.task_type != "profile") {
    return cli_fail(
        "verify: --task-type must be precision_only or profile, not '" + spec.task_type + "'",
        kExitUsage);
  }
  if (Status st = validate_target(spec.target); !st.ok())
    return cli_fail("verify: " + st.message(), kExitUsage);
  uint64_t timeout_s = 300, memory_mb = 0, processes = 512;
  for (auto [name, target] : {std::pair{"timeout", &timeout_s},
                              {"memory-limit", &memory_mb},
                              {"processes", &processes}}) {
    if (auto v = flags.get(name)) {
      auto n = parse_uint_flag(name, *v);
      if (!n.ok()) return cli_fail(n.status().message(), kExitUsage);
      *target = *n;
    }
  }
  for (const char* name : {"trials", "seed"}) {
    if (auto v = flags.get(name)) {
      auto n = parse_uint_flag(name, *v);
      if (!n.ok()) return cli_fail(n.status().message(), kExitUsage);
      spec.options[name] = *n;
    }
  }

  auto reference = read_file(task_path);
  if (!reference.ok())
    return cli_fail("verify: cannot read --task " + task_path + ": " +
                    reference.status().message());
  auto candidate = read_file(candidate_path);
  if (!candidate.ok())
    return cli_fail("verify: cannot read --candidate " + candidate_path + ": " +
                    candidate.status().message());
  spec.op_name = flags.get("op-name").value_or(std::filesystem::path(task_path).stem().string());

  auto harness = find_harness_dir(flags.get("harness").value_or(""));
  if (!harness.ok()) return cli_fail("verify: " + harness.status().message());
  std::optional<UserIds> run_as;
  std::string user = flags.get("run-as").value_or("nobody");
  if (::geteuid() == 0 && !user.empty()) {
    auto ids = lookup_user(user);
    if (!ids.ok()) return cli_fail("verify: --run-as: " + ids.status().message());
    run_as = *ids;
  }

  std::string tmpl = (std::filesystem::temp_directory_path() / "kforge-verify-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr)
    return cli_fail("verify: cannot create a job directory in " +
                    std::filesystem::temp_directory_path().string());
  std::filesystem::path dir = tmpl;
  // The worker's user must reach its own directory below this one (and list nothing here).
  std::error_code perm_ec;
  std::filesystem::permissions(dir, std::filesystem::perms(0711), perm_ec);
  std::filesystem::path harness_copy;  // when the job runs as another user
  auto cleanup = [&] {
    std::error_code ec;
    if (!harness_copy.empty()) std::filesystem::remove_all(harness_copy.parent_path(), ec);
    if (flags.has("keep")) {
      std::fprintf(stderr, "kforge: job directory kept: %s\n", dir.c_str());
    } else {
      std::filesystem::remove_all(dir, ec);
    }
  };
  if (run_as) {
    // The job's user must read the harness wherever it lives (a clone under /root is 0700):
    // run a root-owned, world-readable copy (common/sandbox.h).
    std::string htmpl = (std::filesystem::temp_directory_path() / "kforge-harness-XXXXXX").string();
    if (::mkdtemp(htmpl.data()) == nullptr) {
      cleanup();
      return cli_fail("verify: cannot create a directory for the harness copy");
    }
    std::filesystem::permissions(htmpl, std::filesystem::perms(0755));
    harness_copy = std::filesystem::path(htmpl) / "harness";
    if (Status st = install_readable_copy(*harness, harness_copy); !st.ok()) {
      cleanup();
      return cli_fail("verify: " + st.message());
    }
    harness = harness_copy;
  }
  for (const auto& [name, content] : verify_files(spec, *reference, *candidate)) {
    if (Status st = atomic_write_file(dir / name, content); !st.ok()) {
      cleanup();
      return cli_fail("verify: " + st.message());
    }
  }
  // Verifier v2, as on an agent: a judge (this user) and one candidate worker (--run-as).
  VerifierOptions vo;
  vo.python = flags.get("python").value_or("/usr/bin/python3");
  vo.harness_dir = *harness;
  vo.work_root = dir / "verifier";
  vo.worker_as = run_as;
  vo.env_allow = {"PATH",
                  "LANG",
                  "LC_ALL",
                  "LD_LIBRARY_PATH",
                  "CUDA_HOME",
                  "CUDA_VISIBLE_DEVICES",
                  "ASCEND_HOME_PATH",
                  "ASCEND_RT_VISIBLE_DEVICES"};
  vo.worker_limits.address_space_mb = memory_mb;
  vo.worker_limits.processes = processes;
  vo.worker_limits.file_size_mb = 1024;
  // Start beside the judge: the candidate's worker, and for a profile job the reference's
  vo.warm_workers = spec.task_type == "profile" ? 2 : 1;
  vo.refill = false;  // one job
  vo.zygote = false;  // which would cost what the one worker costs
  vo.device = spec.target.backend;
  if (vo.device == "cuda") vo.preload = "torch,triton";
  // As root, the worker gets the agent's box (common/sandbox.h): its own cgroup, PID, network,
  // IPC and mount namespaces, a tmpfs directory; whatever this host supports of it.
  std::string contain = flags.get("contain").value_or("auto");
  if (contain != "auto" && contain != "off") {
    cleanup();
    return cli_fail("verify: --contain: expected auto or off, got '" + contain + "'", kExitUsage);
  }
  std::shared_ptr<CgroupRoot> cgroups;
  if (contain == "auto" && ::geteuid() == 0 && run_as) {
    auto cg = CgroupRoot::open("verify-" + random_hex_id().substr(0, 16));
    if (cg.ok()) cgroups = *cg;
    SandboxSupport support = probe_sandbox(cgroups.get());
    Box box = box_for(support, cgroups);
    box.memory_mb = cgroups && support.memory ? default_job_memory_mb(host_memory_mb(), 1) : 0;
    vo.box = box;
    vo.disk_mb = 1024;
  }
  auto verifier = Verifier::start(vo);
  if (!verifier.ok()) {
    cleanup();
    return cli_fail("verify: cannot start the verifier: " + verifier.status().message());
  }
  VerifyResult result =
      verify_result_from_json((*verifier)->verify(dir, std::chrono::seconds(timeout_s)));
  verifier->reset();
  cleanup();
  if (!result.input_error.empty()) {
    return cli_fail("verify: the task or candidate is unusable: " + result.input_error);
  }
  if (flags.has("json")) {
    std::printf("%s\n", to_json(result).dump(2).c_str());
  } else {
    print_summary(result);
  }
  return kExitOk;
}

}  // namespace kforge
