// Verifications per minute: Verifier v2 (a warm judge and warm workers, agent/verifier/)
// against one harness process per job (the design of 366e201, kforge_harness.py), on the
// same job files, in the same run, one after the other on one device.
//
//   kforge-bench-verifier --task T.py --candidate C.py --impl-type cpp --framework torch
//       [--backend cpu] [--task-type precision_only|profile] [--jobs 20] [--warmup-jobs 2]
//       [--python /usr/bin/python3] [--harness DIR] [--modes process,v2,v2cold] [--contain UIDS]
//
// Modes: process (one harness process per job), v2 (workers forked from the zygote), v2cold
// (v2 with each worker its own interpreter). Prints, per mode: jobs, the median and p90 wall time
// of one verification (the device is held for all of it: device seconds per verification),
// verifications per minute at steady state (after --warmup-jobs), and the verdicts seen; then v2's
// ratio to the baseline.
#include "agent/verifier/verifier.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "agent/verify.h"
#include "common/flags.h"
#include "common/fs.h"
#include "common/sandbox.h"
#include "common/verify_job.h"

using namespace kforge;

namespace {

struct Figures {
  std::vector<double> wall_s;
  std::map<std::string, int> verdicts;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5)];
}

Status write_job(const std::filesystem::path& dir,
                 const std::map<std::string, std::string>& files) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  KF_RETURN_IF_ERROR(ensure_dir(dir));
  std::filesystem::permissions(dir, std::filesystem::perms(0755), ec);
  for (const auto& [name, content] : files)
    KF_RETURN_IF_ERROR(atomic_write_file(dir / name, content));
  return Status();
}

std::set<std::string> split_modes(const std::string& modes) {
  std::set<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t comma = modes.find(',', start);
    out.insert(modes.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

void report(const char* mode, const Figures& f, size_t skip) {
  std::vector<double> steady(f.wall_s.begin() + static_cast<long>(std::min(skip, f.wall_s.size())),
                             f.wall_s.end());
  double total = 0;
  for (double s : steady) total += s;
  std::printf("%s.jobs: %zu\n", mode, f.wall_s.size());
  std::printf("%s.first_job_s: %.3f\n", mode, f.wall_s.empty() ? 0.0 : f.wall_s.front());
  std::printf("%s.median_s_per_verification: %.3f\n", mode, percentile(steady, 0.5));
  std::printf("%s.p90_s_per_verification: %.3f\n", mode, percentile(steady, 0.9));
  std::printf("%s.verifications_per_minute: %.1f\n", mode,
              steady.empty() ? 0.0 : 60.0 * static_cast<double>(steady.size()) / total);
  std::string v;
  for (const auto& [name, n] : f.verdicts)
    v += (v.empty() ? "" : ", ") + name + " " + std::to_string(n);
  std::printf("%s.verdicts: %s\n", mode, v.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<FlagSpec> specs;
  for (const char* name :
       {"task", "candidate", "impl-type", "framework", "backend", "task-type", "jobs",
        "warmup-jobs", "python", "harness", "modes", "op-name", "contain", "warm-workers"}) {
    specs.push_back({name, true, ""});
  }
  auto flags = parse_flags(argc, argv, 1, specs, "kforge-bench-verifier");
  if (!flags.ok()) {
    std::fprintf(stderr, "%s\n", flags.status().message().c_str());
    return 2;
  }
  auto get = [&](const char* name, const char* fallback) {
    return flags->get(name).value_or(fallback);
  };
  auto getc = [&](const char* name) { return flags->get(name).value_or(""); };
  if (!flags->get("task") || !flags->get("candidate")) {
    std::fprintf(stderr,
                 "usage: kforge-bench-verifier --task T.py --candidate C.py --impl-type I "
                 "--framework F ...\n");
    return 2;
  }
  auto reference = read_file(get("task", ""));
  auto candidate = read_file(get("candidate", ""));
  if (!reference.ok() || !candidate.ok()) {
    std::fprintf(stderr, "cannot read --task or --candidate\n");
    return 2;
  }
  VerifySpec spec;
  spec.op_name = get("op-name", "op");
  spec.target =
      Target{get("backend", "cpu"), "", get("impl-type", "cpp"), get("framework", "torch")};
  spec.task_type = get("task-type", "profile");
  auto files = verify_files(spec, *reference, *candidate);
  size_t jobs = std::stoul(get("jobs", "20"));
  size_t skip = std::stoul(get("warmup-jobs", "2"));
  std::string python = get("python", "/usr/bin/python3");
  auto harness = find_harness_dir(get("harness", ""));
  if (!harness.ok()) {
    std::fprintf(stderr, "%s\n", harness.status().message().c_str());
    return 2;
  }
  std::string modes = get("modes", "process,v2,v2cold");
  std::string tmpl =
      (std::filesystem::temp_directory_path() / "kforge-bench-verifier-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) return 1;
  std::filesystem::path root = tmpl;
  std::filesystem::permissions(root, std::filesystem::perms(0755));
  std::map<std::string, std::string> device_env;
  if (spec.target.backend == "cuda") device_env = {{"CUDA_VISIBLE_DEVICES", "0"}};
  std::printf("task: %s\ncandidate: %s\nbackend: %s\ntask_type: %s\n", getc("task").c_str(),
              getc("candidate").c_str(), spec.target.backend.c_str(), spec.task_type.c_str());

  Figures process_fig, v2_fig;
  if (split_modes(modes).count("process")) {
    // 366e201: one `python kforge_harness.py --job-dir DIR` per job, everything in it.
    for (size_t i = 0; i < jobs; ++i) {
      auto dir = root / ("p" + std::to_string(i));
      if (!write_job(dir, files).ok()) return 1;
      ProcessSpec p;
      p.argv = {python, (*harness / "kforge_harness.py").string(), "--job-dir", dir.string()};
      p.cwd = dir;
      p.env_allow = {"PATH", "LANG"};
      p.env = device_env;
      p.env["HOME"] = dir.string();
      p.env["PYTHONPATH"] = harness->string();
      p.env["PYTHONDONTWRITEBYTECODE"] = "1";
      auto t0 = std::chrono::steady_clock::now();
      auto r = run_process(p);
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      process_fig.wall_s.push_back(s);
      std::string verdict = "error";
      if (r.ok()) {
        if (auto text = read_file(dir / "result.json"); text.ok()) {
          auto doc = nlohmann::json::parse(*text, nullptr, false);
          if (doc.is_object()) verdict = doc.value("verdict", "?");
        }
      }
      ++process_fig.verdicts[verdict];
    }
    report("process_per_job", process_fig, skip);
  }
  // --contain UIDS (root): v2's workers in the agent's full box (common/sandbox.h), each as a
  // slot uid of the range UIDS, as on a production agent.
  std::optional<Box> box;
  std::shared_ptr<UidPool> uids;
  if (auto range = flags->get("contain")) {
    auto cg = CgroupRoot::open("bench-verifier");
    SandboxSupport support = probe_sandbox(cg.ok() ? cg->get() : nullptr);
    box = box_for(support, cg.ok() ? *cg : nullptr);
    auto pool = UidPool::parse(*range);
    if (!pool.ok() || !support.root) {
      std::fprintf(stderr, "--contain needs root and a uid range (%s)\n",
                   pool.ok() ? "not root" : pool.status().message().c_str());
      return 2;
    }
    uids = *pool;
    for (const auto& line : support.missing) std::printf("contain.missing: %s\n", line.c_str());
    std::printf("contain: %s\n", cg.ok() ? (*cg)->describe().c_str() : "no cgroups");
  }
  // v2 with workers forked from the zygote; v2cold: each worker its own interpreter.
  auto run_v2 = [&](const char* mode, bool zygote, Figures& fig) -> bool {
    VerifierOptions vo;
    vo.box = box;
    vo.uids = uids;
    vo.python = python;
    vo.harness_dir = *harness;
    vo.work_root = root / (std::string("verifier-") + mode);
    vo.env = device_env;
    vo.device = spec.target.backend;
    vo.zygote = zygote;
    if (auto n = flags->get("warm-workers")) vo.warm_workers = std::stoul(*n);
    if (vo.device == "cuda") vo.preload = "torch,triton";
    auto t_start = std::chrono::steady_clock::now();
    auto verifier = Verifier::start(vo);
    if (!verifier.ok()) {
      std::fprintf(stderr, "%s\n", verifier.status().message().c_str());
      return false;
    }
    std::printf("%s.start_s: %.3f\n", mode,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count());
    std::vector<double> first_calls;  // ms, each job's first call (a Triton compile)
    std::vector<double> overheads;    // ms, each counted job's time outside its phases
    nlohmann::json doc_last;
    for (size_t i = 0; i < jobs; ++i) {
      auto dir = root / (std::string(mode) + std::to_string(i));
      if (!write_job(dir, files).ok()) return false;
      auto t0 = std::chrono::steady_clock::now();
      auto doc = (*verifier)->verify(dir, std::chrono::seconds(300));
      doc_last = doc;
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      fig.wall_s.push_back(s);
      ++fig.verdicts[doc.value("verdict", "?")];
      if (doc.value("verdict", "?") != "passed")
        std::printf("%s.job%zu: %s: %s\n", mode, i, doc.value("verdict", "?").c_str(),
                    doc.value("message", "").substr(0, 400).c_str());
      if (i >= skip && doc.contains("phases_ms")) {
        // outside compile, checks and profile: job files, the worker's readiness, buffers,
        // the round-trip measurement, the kill and the result (the 0.1 s)
        double inside = 0;
        for (const char* k :  // precision includes the first call
             {"load_reference", "time_reference", "load_candidate", "precision", "profile"})
          inside += doc["phases_ms"].value(k, 0.0);
        overheads.push_back(s * 1e3 - inside);
        // where the rest went: the box's kill as the judge waited for it, the agent's parts,
        // and the judge's Triton seeding after the job before (it delays this one)
        std::printf("%s.job%zu: overhead_ms %.1f release_ms %.1f agent_ms %s seed %s\n", mode, i,
                    overheads.back(), doc["phases_ms"].value("release", 0.0),
                    doc.value("worker_pool", nlohmann::json::object())
                        .value("agent_ms", nlohmann::json::object())
                        .dump()
                        .c_str(),
                    doc.value("triton_seed", nlohmann::json::object()).dump().c_str());
      }
      if (doc.contains("phases_ms") && doc["phases_ms"].contains("first_call")) {
        first_calls.push_back(doc["phases_ms"].value("first_call", 0.0));
        // where it went as the worker saw it, and what the worker's warm-up had done
        std::printf(
            "%s.job%zu: first_call_ms %.0f in_worker %s warm %s\n", mode, i, first_calls.back(),
            doc["phases_ms"].value("first_call_in_worker", nlohmann::json::object()).dump().c_str(),
            doc.value("worker_warm", nlohmann::json::object()).dump().c_str());
      }
      if (i + 1 == jobs && doc.contains("phases_ms"))
        std::printf("%s.last_phases_ms: %s\n", mode, doc["phases_ms"].dump().c_str());
    }
    if (!overheads.empty()) {
      std::sort(overheads.begin(), overheads.end());
      std::printf("%s.overhead_ms_median: %.1f\n", mode, overheads[overheads.size() / 2]);
    }
    std::printf("%s.first_call_ms:", mode);
    for (double ms : first_calls) std::printf(" %.0f", ms);
    std::printf("\n");
    // the Triton signatures the judge kept for later workers (agent/harness/.../launchers.py)
    if (auto kept = read_file(vo.work_root / "triton-launchers.json"); kept.ok())
      std::printf("%s.triton_launchers_kept: %s\n", mode, kept->c_str());
    if (doc_last.contains("triton_seed"))
      std::printf("%s.triton_seed: %s\n", mode, doc_last["triton_seed"].dump().c_str());
    auto st = (*verifier)->stats();
    std::printf("%s.workers_spawned: %llu\n%s.workers_forked: %llu\n", mode,
                static_cast<unsigned long long>(st.spawned), mode,
                static_cast<unsigned long long>(st.forked));
    report(mode, fig, skip);
    return true;
  };
  Figures v2cold_fig;
  for (const std::string& m : split_modes(modes)) {
    if (m == "v2" && !run_v2("v2", true, v2_fig)) return 1;
    if (m == "v2cold" && !run_v2("v2cold", false, v2cold_fig)) return 1;
  }
  auto steady = [&](const Figures& f) {
    std::vector<double> v(f.wall_s.begin() + static_cast<long>(std::min(skip, f.wall_s.size())),
                          f.wall_s.end());
    return percentile(v, 0.5);
  };
  for (auto [name, fig] : {std::pair{"v2", &v2_fig}, std::pair{"v2cold", &v2cold_fig}}) {
    if (process_fig.wall_s.empty() || fig->wall_s.empty()) continue;
    std::printf("ratio.verifications_per_minute_%s_over_process: %.2f\n", name,
                steady(process_fig) / steady(*fig));
  }
  std::error_code ec;
  std::filesystem::remove_all(root, ec);
  return 0;
}
