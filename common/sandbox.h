// Containment for untrusted jobs: a cgroup, namespaces and a private uid around each child
// that common/process.h starts (ProcessSpec::box); docs/architecture.md invariant 4.
//
// A Box says what surrounds one job:
//   cgroup      its own group, created by run_process under a CgroupRoot, with memory, pids
//               and CPU limits; killed as a whole (cgroup.kill) when the job ends for any
//               reason and verified empty before run_process returns
//   pid ns      the job's first process is a tiny init (pid 1) that reaps and reports the
//               program's exit; when it exits the kernel kills everything left in the ns
//   net ns      only a loopback interface, up: no route out of the host
//   ipc ns      System V IPC and POSIX message queues of its own
//   mount ns    the host's tree read-only and nosuid, private size-limited tmpfs on /tmp and
//               /dev/shm, the host's runtime directories (kHostRuntimeDirs: the sockets of
//               the host's daemons) and `hidden` directories covered by an empty tmpfs, a
//               fresh /proc of the pid ns with hidepid=invisible (the job sees only the
//               processes of its own uid: never its init, a copy of the agent, nor a holder's
//               zygote), `writable` and `readable` paths bound back at the same place
//   seccomp     job_syscall_filter(): calls that reach beyond the job fail
// and the uid comes from ProcessSpec::run_as (a slot uid from a UidPool); the job's first
// process also gives up the controlling terminal it inherited.
//
// Host support is probed once (probe_sandbox); cgroups come in two shapes:
//   v2      pure cgroup v2 (/sys/fs/cgroup is cgroup2): memory.max, pids.max, cpu.max,
//           memory.events, cgroup.kill. The agent needs a delegated subtree (systemd
//           Delegate=yes): it moves itself into a leaf so that its own group can enable
//           controllers for the job groups beside it.
//   hybrid  v1 controllers (/sys/fs/cgroup/{memory,pids,cpu}) set the limits; the v2 tree at
//           /sys/fs/cgroup/unified tracks and kills the job (cgroup.kill).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace kforge {

enum class CgroupMode {
  none,    // no usable cgroup hierarchy (or not root): jobs get no cgroup
  v2,      // pure cgroup v2
  hybrid,  // v1 controllers for limits + the v2 unified tree for tracking and kill
};
const char* cgroup_mode_name(CgroupMode mode);

// Where this process may create job cgroups: one directory per hierarchy, each named
// kforge-jobs-<tag> below the process's own group. Opening it kills and removes whatever an
// earlier process with the same tag left there. Thread-safe.
class CgroupRoot {
 public:
  // `tag` names the directories (an agent id: stable across restarts, unique per agent).
  // failed_precondition when the host has no usable hierarchy or this process may not write it.
  static Result<std::shared_ptr<CgroupRoot>> open(const std::string& tag);
  ~CgroupRoot();  // removes the (empty) root directories
  CgroupRoot(const CgroupRoot&) = delete;
  CgroupRoot& operator=(const CgroupRoot&) = delete;

  CgroupMode mode() const { return mode_; }
  // e.g. "cgroup v2 at /sys/fs/cgroup/system.slice/kforge-agent.service/kforge-jobs-x
  // (memory pids cpu)"; for the start-up log.
  std::string describe() const;
  bool has_memory() const { return !memory_dir_.empty(); }
  bool has_pids() const { return !pids_dir_.empty(); }
  bool has_cpu() const { return !cpu_dir_.empty(); }
  bool has_io() const { return !io_dir_.empty(); }
  // Kills and removes every job group below the root; returns how many there were.
  size_t remove_leftovers();
  // The cpu.stat of the job group `pid` is in (read-only): the CPU time of everything in the
  // job's box, for a judge to read from outside it. not_found when pid is in none of ours.
  Result<UniqueFd> open_cpu_stat(int pid) const;

  // The hierarchies' job directories (empty when that controller is absent). In v2 all three
  // are kill_dir.
  const std::filesystem::path& kill_dir() const { return kill_dir_; }
  const std::filesystem::path& memory_dir() const { return memory_dir_; }
  const std::filesystem::path& pids_dir() const { return pids_dir_; }
  const std::filesystem::path& cpu_dir() const { return cpu_dir_; }
  const std::filesystem::path& io_dir() const { return io_dir_; }  // v1: blkio

 private:
  CgroupRoot() = default;
  CgroupMode mode_ = CgroupMode::none;
  std::filesystem::path kill_dir_;  // v2 (or unified) group: cgroup.procs, cgroup.kill
  std::filesystem::path memory_dir_, pids_dir_, cpu_dir_, io_dir_;
};

// What surrounds one job (ProcessSpec::box). The defaults are the full box.
struct Box {
  std::shared_ptr<CgroupRoot> cgroups;  // null: no cgroup (kill by process group / pid ns only)
  uint64_t memory_mb = 0;               // memory.max / memory.limit_in_bytes (+memsw); 0: none
  uint64_t pids = 0;                    // pids.max (processes and threads); 0: none
  uint32_t cpu_percent = 0;             // cpu.max quota, % of one CPU (200 = two); 0: none
  uint64_t io_mbps = 0;                 // read and write bandwidth on each disk of the host
                                        // (io.max; v1 blkio.throttle), MiB/s; 0: none
  bool pid_ns = true;                   // own PID namespace with an init (see above)
  bool net_ns = true;                   // own network namespace, loopback only
  bool ipc_ns = true;                   // own IPC namespace
  bool mount_ns = true;                 // own mount namespace (the fields below need it)
  uint64_t tmp_mb = 1024;               // size of the private /tmp and of /dev/shm (each)
  bool read_only_root = true;           // the host's tree read-only (and nosuid) for the job
  std::vector<std::filesystem::path> writable;  // bound back read-write (the job's directory)
  std::vector<std::filesystem::path> readable;  // bound back read-only (harness, toolchain
                                                // under /tmp); must exist
  std::vector<std::filesystem::path> hidden;    // covered by an empty read-only tmpfs
  bool syscall_filter = true;  // job_syscall_filter() (seccomp), after no_new_privs
  // After the kill, the job's group must be empty within this; else run_process fails.
  std::chrono::milliseconds empty_deadline{5000};
};

// The host's runtime directories, covered in every job's mount view (where they are real
// directories; /var/run is usually a link to /run) by an empty read-only tmpfs: they hold
// the Unix sockets of the host's daemons (D-Bus, the journal and /dev/log, nscd, docker,
// nvidia-persistenced), which a read-only mount does not stop a job from connecting to.
// Nothing of them is bound back: CUDA needs only /dev/nvidia* and the driver's libraries.
inline constexpr const char* kHostRuntimeDirs[] = {"/run", "/var/run"};

// The system-call filter of a boxed job (a seccomp BPF program, struct sock_filter[] as bytes):
// calls that reach into other processes or widen the kernel's attack surface fail with EPERM
// (ptrace, process_vm_readv/writev, pidfd_getfd, process_madvise, bpf, perf_event_open,
// userfaultfd, keyctl/add_key/request_key, io_uring_*, mount and the new mount API, pivot_root,
// chroot, unshare, setns, clone with a CLONE_NEW* flag, kexec_*, *_module, iopl/ioperm,
// swapon/swapoff, reboot, acct, quotactl, syslog, vhangup, open_by_handle_at, and the
// TIOCSTI/TIOCLINUX ioctls); clone3 fails with ENOSYS, so that glibc falls back to clone,
// whose flags the filter can see; a call of another architecture (x32, i386) kills the
// process. Everything else is allowed: fork, threads, files, sockets, devices (GPUs).
// For a process that installs it itself (the Verifier's zygote children): prctl
// PR_SET_SECCOMP with a sock_fprog of size() / 8 instructions, after PR_SET_NO_NEW_PRIVS.
const std::string& job_syscall_filter();

// What this host supports, probed by trying each feature in a throw-away child.
struct SandboxSupport {
  bool root = false;  // euid 0: can switch uids, create groups and namespaces
  CgroupMode cgroups = CgroupMode::none;
  bool memory = false, pids = false, cpu = false,
       io = false;  // controllers the jobs' groups can use
  bool pid_ns = false, net_ns = false, ipc_ns = false, mount_ns = false;
  bool mount_api = false;  // open_tree/move_mount/mount_setattr (Linux 5.12+)
  bool seccomp = false;    // seccomp filters (job_syscall_filter)
  // One line per missing feature ("no network namespace: jobs can open outbound
  // connections"), for the start-up log; empty when the full box is available.
  std::vector<std::string> missing;
};

// Probes once per call (a few ms: forks a child per namespace kind). `cgroup` is the root the
// caller opened, if any (its controllers are reported); null: cgroups are reported missing.
SandboxSupport probe_sandbox(const CgroupRoot* cgroup);

// The full box this host allows: every feature `support` has, none it lacks.
Box box_for(const SandboxSupport& support, std::shared_ptr<CgroupRoot> cgroups);

// MemTotal of /proc/meminfo in MiB; 0 when it cannot be read.
uint64_t host_memory_mb();

// A job's memory limit (Box::memory_mb) when the operator set none: 3/4 of the host's memory
// shared by its devices (one job runs per device at a time), at least 512 MiB.
uint64_t default_job_memory_mb(uint64_t host_mb, size_t devices);

// Per-slot job uids: one uid per concurrently running job, from a configured range, each
// used with the group id of the same number. A uid goes back to the pool only after its job's
// processes are gone (run_process returned). Thread-safe.
class UidPool {
 public:
  class Lease {
   public:
    Lease() = default;
    Lease(UidPool* pool, uid_t uid) : pool_(pool), uid_(uid) {}
    ~Lease() { release(); }
    Lease(Lease&& o) noexcept : pool_(o.pool_), uid_(o.uid_) { o.pool_ = nullptr; }
    Lease& operator=(Lease&& o) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    uid_t uid() const { return uid_; }
    void release();

   private:
    UidPool* pool_ = nullptr;
    uid_t uid_ = 0;
  };

  // "60000-60063" or a single uid "60000". invalid_argument for anything else, for 0 (root),
  // or for a range that holds this process's uid.
  static Result<std::shared_ptr<UidPool>> parse(const std::string& range);
  UidPool(uid_t first, uid_t last) : first_(first), last_(last), used_(last - first + 1, false) {}

  // failed_precondition when every uid is in use (more jobs than slots).
  Result<Lease> acquire();
  size_t size() const { return used_.size(); }
  uid_t first() const { return first_; }
  uid_t last() const { return last_; }

 private:
  void give_back(uid_t uid);
  uid_t first_, last_;
  std::mutex mu_;
  std::vector<bool> used_;
};

// A job's directory: <root>/job-<random hex>, mode 0700, owned by `uid`:`gid`; with
// quota_mb > 0 and root, a tmpfs of that size is mounted on it (the job's disk quota: its
// files, /tmp and /dev/shm are all size-limited and charged to its memory group). Removed
// (unmounted first) when the object dies, unless keep() was called.
class JobDir {
 public:
  static Result<std::unique_ptr<JobDir>> create(const std::filesystem::path& root, uid_t uid,
                                                gid_t gid, uint64_t quota_mb);
  ~JobDir();
  const std::filesystem::path& path() const { return path_; }
  bool on_tmpfs() const { return mounted_; }
  void keep() { keep_ = true; }
  // Gives the directory and every file in it to the job's uid (after the caller wrote them).
  Status hand_over() const;

 private:
  JobDir() = default;
  std::filesystem::path path_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  bool mounted_ = false, keep_ = false;
};

// Removes what earlier processes left under a work root: every entry but `keep` (names),
// unmounting tmpfs job directories first. Returns how many entries went.
size_t remove_stale_job_dirs(const std::filesystem::path& root,
                             const std::vector<std::string>& keep);

// Copies the directory tree `from` to `to` (replacing it), root-owned, directories 0755 and
// files 0644, so that any job uid can read it; then checks that every directory above `to`
// can be traversed by others. failed_precondition naming the directory that blocks it.
Status install_readable_copy(const std::filesystem::path& from, const std::filesystem::path& to);

// failed_precondition when a directory above or at `path` cannot be traversed by others
// (its mode lacks o+x): a job uid could not reach `path`.
Status check_traversable(const std::filesystem::path& path);

}  // namespace kforge
