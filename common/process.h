// Child processes for untrusted work (the agent runs generated GPU kernels this way).
//
// run_process() starts argv in a new process group with an environment built only from an
// allow-list, resource limits and no inherited file descriptors beyond stdin/stdout/stderr.
// It captures bounded output, enforces a wall-clock timeout and a cancel token, and when the
// job ends for any reason it SIGKILLs the whole process group, so helpers forked by the job
// never outlive it.
//
// Without a box, containment is by process group: a descendant that moves itself to another
// group or session (setpgid, setsid) escapes the final kill. With ProcessSpec::box
// (common/sandbox.h) the job gets its own cgroup and namespaces: everything it started is
// killed and verified gone before run_process returns.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/sandbox.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace kforge {

// Limits set in the child with setrlimit before exec; 0 leaves the inherited limit. Both the
// soft and the hard limit are set, so the child cannot raise them again; a value above the
// inherited hard limit is capped to it.
struct ResourceLimits {
  uint64_t address_space_mb = 0;  // RLIMIT_AS (virtual memory, MiB)
  uint64_t cpu_s = 0;             // RLIMIT_CPU (CPU seconds; then SIGKILL)
  uint64_t open_files = 0;        // RLIMIT_NOFILE (highest fd number + 1)
  uint64_t processes = 0;         // RLIMIT_NPROC (counts all processes of the real uid; not
                                  // enforced for root)
  uint64_t file_size_mb = 0;      // RLIMIT_FSIZE (MiB per file written; then SIGXFSZ)

  bool operator==(const ResourceLimits&) const = default;
};

// The rlimits a child gets for `limits` (each capped to this process's hard limit), in the
// order they are set; RLIMIT_CORE is always 0 (a crashed GPU job can have a huge address
// space to write out). For children started some other way than run_process (a zygote's).
struct RlimitSetting {
  int resource;      // RLIMIT_*
  const char* name;  // "RLIMIT_AS", for messages
  uint64_t soft, hard;
};
std::vector<RlimitSetting> rlimits_for(const ResourceLimits& limits);

// Who a child runs as, when the parent is root (see ProcessSpec::run_as).
struct UserIds {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
};

// Looks a user up by name; not_found when there is no such user.
Result<UserIds> lookup_user(const std::string& name);

struct ProcessSpec {
  // argv[0] is searched in the child's PATH (from `env`, else from `env_allow`, else
  // "/usr/bin:/bin") when it has no '/'; a relative path with a '/' is relative to `cwd`.
  // Unlike execvp, a file without "#!" is not handed to /bin/sh: it fails to exec.
  std::vector<std::string> argv;
  std::filesystem::path cwd;               // empty = inherit
  std::vector<std::string> env_allow;      // names copied from this process's environment
  std::map<std::string, std::string> env;  // set in the child (overrides allowed names)
  ResourceLimits limits;
  std::chrono::milliseconds timeout{0};  // wall clock from the start; 0 = none
  size_t output_cap = 1 << 20;           // per stream; bytes beyond are read and discarded
  // Switch the child to this user (supplementary groups dropped) before exec. Needs root.
  // Besides isolation, RLIMIT_NPROC is only enforced for non-root users.
  std::optional<UserIds> run_as;
  std::string stdin_data;  // written to the child's stdin, then closed
                           // (empty: stdin is /dev/null)
  // Descriptors the child inherits: pass_fds[i] becomes fd 3 + i in the child; every other
  // descriptor above 2 is closed at exec. The caller keeps ownership of its copies.
  std::vector<int> pass_fds;
  // Called in the parent once the child has been forked and has exec'd (or failed to), with
  // its pid (with box->pid_ns: the namespace's init): the moment to close the parent's copies
  // of pass_fds, so that the child's end of a socket reaches end-of-file when the child dies.
  // Runs on the calling thread.
  std::function<void(int pid)> on_started;
  // Containment (common/sandbox.h): a cgroup of its own (limits, kill-all, verified empty
  // before run_process returns) and PID/network/IPC/mount namespaces. Needs root. Unset: the
  // process group and the rlimits above are all there is. With box->pid_ns the process
  // started is a small init (pid 1 in the namespace) that runs argv as its only child; the
  // exit status and signal reported are argv's. With box->mount_ns, `cwd` is resolved in the
  // job's view (bind it through box->writable or box->readable when it is under /tmp).
  // Jobs also get PR_SET_NO_NEW_PRIVS (no setuid binaries), lose the controlling terminal of
  // whoever started us (TIOCNOTTY), get box->syscall_filter (job_syscall_filter) just before
  // exec, and never dump core.
  std::optional<Box> box;
};

struct ProcessResult {
  int exit_code = -1;      // when the leader exited normally; else -1
  int signal = 0;          // when the leader was killed by a signal (SIGKILL at timeout/cancel)
  bool timed_out = false;  // we killed the group because spec.timeout passed
  bool cancelled = false;  // we killed the group because the CancelToken fired
  std::string stdout_data, stderr_data;  // at most spec.output_cap bytes each
  bool stdout_truncated = false, stderr_truncated = false;
  int64_t wall_ms = 0;  // from before fork to after the leader was reaped
  int pid = 0;          // the leader's pid (without a box also the process group id;
                        // with box->pid_ns the namespace's init)
  // Only with a box that has a cgroup:
  bool memory_exceeded = false;    // box->memory_mb was hit and the kernel OOM-killed a process
  bool pids_exceeded = false;      // a fork or thread creation failed at box->pids
  uint64_t memory_peak_bytes = 0;  // the group's peak memory use (0 without a memory controller)
};

// Cancels run_process calls from another thread. Thread-safe; once cancelled it stays
// cancelled, and every run_process using it (now or later) kills its job promptly.
class CancelToken {
 public:
  CancelToken();  // on failure to create the eventfd, fd() is -1 and run_process refuses it
  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;

  void cancel();  // idempotent
  bool cancelled() const;
  // An eventfd that is readable once cancelled (level-triggered, never reset); for poll().
  int fd() const { return fd_.fd(); }

 private:
  std::atomic<bool> cancelled_{false};
  EventFd fd_;
};

// Keeps this process's memory from other processes of its uid (PR_SET_DUMPABLE 0): they can
// no longer read its /proc/PID/environ or /proc/PID/mem, ptrace it, or get a core dump of it.
// For processes that hold secrets (LLM API keys). Children run_process starts are dumpable
// again once they exec. io_error when prctl fails.
Status hide_process_memory();

// The child's environment: exactly the names of spec.env_allow that are set here, then
// spec.env. invalid_argument for a name that cannot be one (empty, '=' or NUL in it).
Result<std::map<std::string, std::string>> child_environment(const ProcessSpec& spec);

// Runs spec.argv to completion and reports how it ended. Blocks; safe to call from several
// threads at once. Returns when the leader has been reaped and its output pipes have reached
// EOF (or, after the group was killed, when a short grace period has passed: only a process
// that escaped the group can hold them open then).
//
// The group is SIGKILLed when the timeout passes (timed_out), when `cancel` fires
// (cancelled), and also right after the leader exits normally, before it is reaped.
// Errors: invalid_argument for an empty argv or a bad env name; io_error when the process
// cannot be started (pipe, fork, chdir, setrlimit, exec or a box step failed), naming the
// program and the reason, e.g. "cannot exec 'nosuch': No such file or directory"; with a box,
// failed_precondition when the job's cgroup still holds processes box->empty_deadline after
// the kill (its results must not be trusted). A program that starts and then fails is not an
// error: see exit_code and signal.
// REQUIRES: SIGCHLD is not ignored (SIG_IGN would reap the child behind our back) and nothing
// else in this process reaps children with waitpid(-1); `cancel` outlives the call.
Result<ProcessResult> run_process(const ProcessSpec& spec, CancelToken* cancel = nullptr);

}  // namespace kforge
