// The parts of a Box that run_process (common/process.cpp) drives: a job's cgroup and the
// namespace set-up done in the child between clone and exec. Not for other callers.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/sandbox.h"
#include "common/status.h"

namespace kforge::sandbox_detail {

// One job's group in each hierarchy of a CgroupRoot. The child joins by writing "0" to the
// cgroup.procs descriptors of join_fds() before it forks or execs anything.
class JobCgroup {
 public:
  static Result<std::unique_ptr<JobCgroup>> create(const Box& box);
  ~JobCgroup();  // removes the directories (wait_empty must have emptied them)
  const std::vector<int>& join_fds() const { return join_fds_; }
  void close_join_fds();
  // cgroup.kill (SIGKILL to every listed pid where cgroup.kill is missing). Does not wait.
  void kill();
  // Kills again and waits until no process is left, at most `deadline`. failed_precondition
  // when some remain.
  Status wait_empty(std::chrono::milliseconds deadline);
  bool memory_exceeded() const;  // an OOM kill happened in the group
  bool pids_exceeded() const;    // a fork failed at pids.max
  uint64_t memory_peak_bytes() const;

 private:
  JobCgroup() = default;
  std::shared_ptr<CgroupRoot> root_;
  std::vector<std::filesystem::path> dirs_;  // kill dir first
  std::filesystem::path kill_dir_, memory_dir_, pids_dir_;
  std::vector<int> join_fds_;
};

// Everything the child needs for the mount namespace, prepared before clone: the child only
// makes system calls with these strings.
struct MountPlan {
  bool read_only_root = true;
  bool new_proc = false;
  std::string tmp_options;  // "size=...k,mode=1777"
  struct Bind {
    std::string path;
    bool writable;
    std::vector<std::string> parents;  // to mkdir (outermost first) if a tmpfs covered them
  };
  std::vector<Bind> binds;
  std::vector<std::string> hidden;
};

MountPlan plan_mounts(const Box& box);

// In the child, in its new mount namespace: applies the plan. Returns 0, or an errno with
// *step naming what failed (a static string). Async-signal-safe.
int apply_mounts(const MountPlan& plan, const char** step);

// In the child, in its new network namespace: brings `lo` up. Returns 0 or an errno.
int loopback_up();

}  // namespace kforge::sandbox_detail
