// agent/verifier/: one Verifier per device -- a warm trusted judge and boxed candidate
// workers (this file); the Python side is agent/harness/.
//
// The agent's side of Verifier v2: a warm judge and warm candidate workers per device.
//
// A verification has two processes (docs/harness.md):
//   judge   trusted Python (kforge_judge.py): the reference, the secret seeds, the inputs,
//           the comparison, the clock and the verdict. One per device, long-lived; it keeps
//           the reference outputs of recent tasks, so a candidate pays only for itself.
//   worker  untrusted Python (kforge_worker.py) in the job's box: numpy, the framework and
//           the device context loaded ahead of time; it runs exactly one candidate and is
//           killed, with everything it started, before the verdict leaves the judge.
// The Verifier starts both, hands each job's worker socket to the judge (SCM_RIGHTS), kills
// the worker when the judge releases it, tells the judge how it ended, and returns the
// judge's verdict document. Nothing the worker writes, prints or returns reaches the verdict
// except through the judge's own checks.
//
// Workers are forked from a zygote (kforge_zygote.py: the framework imported once, no device
// context) into a box the agent makes as for any job: run_process starts a holder in the
// job's cgroup and namespaces as the job's uid, and the zygote's child enters it before it
// becomes the worker (kforge_verifier/zygote.py). A worker so made is ready in tens of
// milliseconds instead of the second or more of a cold start; without a zygote (it failed
// to start, or died) workers start cold, each its own interpreter, as before.
//
//   agent thread --verify(job_dir)--> Verifier --{"op":"verify"} + worker fd--> judge
//                                        ^   <--{"release_worker"}--   |  shared memory,
//        kill worker box, reap  ---------+   --{"worker_exit"}-->      |  one socket
//                                            <--{"result": doc}--    worker (one candidate)
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/process.h"
#include "common/sandbox.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace kforge {

struct VerifierOptions {
  std::string python = "/usr/bin/python3";  // runs the judge and the workers
  std::filesystem::path harness_dir;        // kforge_judge.py, kforge_worker.py
  std::filesystem::path work_root;          // workers' private directories
  std::optional<UserIds> worker_as;         // candidates run as this user (root agents)...
  std::shared_ptr<UidPool> uids;            // ... or each worker as a slot uid of its own
  std::optional<Box> box;                   // each worker's box (common/sandbox.h)
  uint64_t disk_mb = 0;                     // a boxed worker's directory: a tmpfs this big
  std::optional<UserIds> judge_as;          // the judge's user; never the workers' user
  std::vector<std::string> env_allow = {"PATH", "LANG", "LC_ALL", "TMPDIR"};
  std::map<std::string, std::string> env;  // both processes (device selection, ...)
  ResourceLimits worker_limits;            // per candidate worker
  ResourceLimits judge_limits;             // the judge (the reference runs there)
  size_t output_cap = 64 << 10;            // stderr kept per process
  size_t warm_workers = 2;                 // started ahead of the jobs that will use them
                                           // (two: a worker's start outlasts a short job)
  bool refill = true;                      // start a replacement when a job takes one
                                           // (false: one-shot use, as kforge verify)
  std::string preload = "torch";           // what workers import before any job
                                           // ("torch,triton" on cuda: compiler warmed)
  std::string device = "cpu";              // cpu | cuda | ascend: workers create its context
  bool zygote = true;                      // fork workers from a zygote (false: cold only)
};

// One device's judge and worker pool. verify() is called by one thread at a time (one job
// per device); stats() from any thread.
class Verifier {
 public:
  // Waits until the judge is up (and the zygote, when it has one); `cancel` (optional) gives
  // up that wait: cancelled.
  static Result<std::unique_ptr<Verifier>> start(const VerifierOptions& options,
                                                 CancelToken* cancel = nullptr);
  ~Verifier();  // kills the judge and every worker
  Verifier(const Verifier&) = delete;
  Verifier& operator=(const Verifier&) = delete;

  // Verifies the job in `job_dir` (job.json, reference.py, candidate.py; readable by the
  // judge's user). Returns the verdict document (docs/harness.md). timeout bounds the whole
  // job; `cancel` (may be null) ends it early with infra_error "cancelled".
  // `limits`, when given and unlike options.worker_limits, gets a worker of its own, started
  // for this job (cold). Never throws: whatever goes wrong is an infra_error verdict.
  nlohmann::json verify(const std::filesystem::path& job_dir, std::chrono::milliseconds timeout,
                        CancelToken* cancel = nullptr,
                        const std::optional<ResourceLimits>& limits = std::nullopt);

  struct Stats {
    size_t warm = 0;       // workers started and waiting for a job
    size_t busy = 0;       // workers running a candidate
    uint64_t spawned = 0;  // workers started since start()
    uint64_t forked = 0;   // of which forked from the zygote (the rest started cold)
    bool zygote = false;   // a zygote is up and ready
    uint64_t judges = 0;   // judges started since start() (restarts after a failure)
  };
  Stats stats() const;

 private:
  struct Proc;
  explicit Verifier(const VerifierOptions& options);
  Result<std::unique_ptr<Proc>> spawn_worker(const ResourceLimits& limits);
  // verify() without its lock, and any exception left to it.
  nlohmann::json run_verify(const std::filesystem::path& job_dir, std::chrono::milliseconds timeout,
                            CancelToken* cancel, const std::optional<ResourceLimits>& limits);
  // A warm worker when `limits` are the standard ones and the pool has one, else a new one.
  Status take_worker(std::unique_ptr<Proc>* out, const std::optional<ResourceLimits>& limits = {});
  Result<std::unique_ptr<Proc>> fork_worker(std::unique_ptr<Proc> proc, ProcessSpec spec,
                                            UniqueFd child_end);
  nlohmann::json worker_exit(Proc& worker);
  UniqueFd cpu_meter(const Proc& worker, nlohmann::json* msg) const;
  void launch_zygote();
  bool zygote_ready(std::chrono::steady_clock::time_point wait, CancelToken* cancel = nullptr);
  // The zygote's next message about worker `id` ("spawned", "spawn_error", "exited"), or
  // null at the deadline or when the zygote is gone. Messages about others are kept.
  nlohmann::json zygote_message(uint64_t id, std::chrono::steady_clock::time_point deadline);
  void drop_zygote();
  Status ensure_judge();
  Status launch_judge();
  Status await_judge(CancelToken* cancel = nullptr);
  void refill();
  void stop_judge();

  VerifierOptions options_;
  std::mutex job_mu_;  // one job at a time: a cancelled attempt may still be finishing
  std::unique_ptr<Proc> judge_;
  std::deque<std::unique_ptr<Proc>> warm_;
  std::unique_ptr<Proc> zygote_;
  bool zygote_up_ = false;  // its "ready" came
  std::chrono::steady_clock::time_point zygote_launched_{};
  uint64_t next_worker_id_ = 1;
  std::map<uint64_t, nlohmann::json> zygote_inbox_;  // messages not yet asked for
  mutable std::mutex mu_;                            // stats_
  Stats stats_;
};

// The verdict document for a job that never reached a judge's verdict.
nlohmann::json verifier_error(const std::string& verdict, const std::string& message);

}  // namespace kforge
