// The cost of the job box (common/sandbox.h) per job: /bin/true run N times uncontained, then
// N times in the full box (own cgroup, PID/network/IPC/mount namespaces, a slot uid), then
// N times in the box with a fresh tmpfs job directory as the agent makes one. Prints the
// median and p90 wall time of each, and the differences. Needs root.
//
//   kforge-bench-box [N]   (default 200)
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "common/fs.h"
#include "common/process.h"
#include "common/sandbox.h"

using namespace kforge;
using Clock = std::chrono::steady_clock;

namespace {

struct Stats {
  double median_ms, p90_ms;
};

Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 9 / 10)]};
}

void print(const char* name, const Stats& s) {
  std::printf("%s_median_ms: %.3f\n%s_p90_ms: %.3f\n", name, s.median_ms, name, s.p90_ms);
}

}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 200;
  if (n <= 0) n = 200;
  if (::geteuid() != 0) {
    std::fprintf(stderr, "kforge-bench-box: needs root (cgroups, namespaces, uids)\n");
    return 77;
  }
  auto root = CgroupRoot::open("bench-" + random_hex_id().substr(0, 8));
  if (!root.ok()) {
    std::fprintf(stderr, "kforge-bench-box: %s\n", root.status().message().c_str());
    return 1;
  }
  SandboxSupport support = probe_sandbox(root->get());
  for (const auto& line : support.missing) std::fprintf(stderr, "missing: %s\n", line.c_str());
  std::printf("cgroups: %s\n", (*root)->describe().c_str());

  std::string tmpl = (std::filesystem::temp_directory_path() / "kforge-bench-box-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) return 1;
  std::filesystem::path work_root = tmpl;
  std::filesystem::permissions(work_root, std::filesystem::perms(0711));

  ProcessSpec plain;
  plain.argv = {"/bin/true"};
  plain.cwd = "/";
  Box box = box_for(support, *root);
  box.memory_mb = support.memory ? 1024 : 0;
  box.pids = support.pids ? 256 : 0;
  ProcessSpec boxed = plain;
  boxed.run_as = UserIds{60999, 60999, "/"};
  boxed.box = box;

  auto run = [&](ProcessSpec& spec, bool job_dir) -> std::vector<double> {
    std::vector<double> ms;
    for (int i = 0; i < n; ++i) {
      auto t0 = Clock::now();
      std::unique_ptr<JobDir> dir;
      if (job_dir) {
        auto d = JobDir::create(work_root, 60999, 60999, 1024);
        if (!d.ok()) {
          std::fprintf(stderr, "%s\n", d.status().message().c_str());
          std::exit(1);
        }
        dir = std::move(d.value());
        spec.cwd = dir->path();
        spec.box->writable = {dir->path()};
      }
      auto r = run_process(spec);
      dir.reset();
      auto t1 = Clock::now();
      if (!r.ok() || r->exit_code != 0) {
        std::fprintf(stderr, "run failed: %s\n",
                     r.ok() ? "exit status" : r.status().message().c_str());
        std::exit(1);
      }
      ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    return ms;
  };

  run(plain, false);  // warm-up: page cache, the first cgroup
  Stats p = stats(run(plain, false));
  Stats b = stats(run(boxed, false));
  Stats d = stats(run(boxed, true));
  std::printf("runs: %d\n", n);
  print("uncontained", p);
  print("boxed", b);
  print("boxed_with_job_dir", d);
  std::printf("box_cost_median_ms: %.3f\nbox_cost_p90_ms: %.3f\n", b.median_ms - p.median_ms,
              b.p90_ms - p.p90_ms);
  std::printf("box_and_dir_cost_median_ms: %.3f\nbox_and_dir_cost_p90_ms: %.3f\n",
              d.median_ms - p.median_ms, d.p90_ms - p.p90_ms);
  std::error_code ec;
  std::filesystem::remove_all(work_root, ec);
  return 0;
}
