#include "common/sandbox.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/magic.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "common/fs.h"
#include "common/sandbox_child.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif
#ifndef CGROUP_SUPER_MAGIC
#define CGROUP_SUPER_MAGIC 0x27e0eb
#endif

namespace kforge {
namespace fs = std::filesystem;

// The new mount API by number: glibc before 2.36 (Ubuntu 22.04, RHEL 9) has no wrappers.
namespace {
constexpr unsigned kOpenTreeClone = 1;  // OPEN_TREE_CLONE
constexpr unsigned kOpenTreeCloexec = O_CLOEXEC;
constexpr unsigned kAtRecursive = 0x8000;  // AT_RECURSIVE
constexpr unsigned kMoveMountFEmptyPath = 0x4;
constexpr uint64_t kMountAttrRdonly = 0x1;
constexpr uint64_t kMountAttrNosuid = 0x2;
struct KMountAttr {
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};
int sys_open_tree(int dfd, const char* path, unsigned flags) {
  return static_cast<int>(::syscall(SYS_open_tree, dfd, path, flags));
}
int sys_move_mount(int from_dfd, const char* from, int to_dfd, const char* to, unsigned flags) {
  return static_cast<int>(::syscall(SYS_move_mount, from_dfd, from, to_dfd, to, flags));
}
int sys_mount_setattr(int dfd, const char* path, unsigned flags, KMountAttr* attr) {
  return static_cast<int>(::syscall(SYS_mount_setattr, dfd, path, flags, attr, sizeof *attr));
}

std::string errno_text(int err) {
  return std::strerror(err);
}

bool fs_is(const fs::path& p, long magic) {
  struct statfs s;
  return ::statfs(p.c_str(), &s) == 0 && static_cast<long>(s.f_type) == magic;
}

std::string read_small(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status write_cg(const fs::path& file, const std::string& value) {
  int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return io_error("cannot open " + file.string() + ": " + errno_text(errno));
  ssize_t n = ::write(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size())) {
    return io_error("cannot write '" + value + "' to " + file.string() + ": " + errno_text(err));
  }
  return Status();
}

// "key value" lines (memory.events, pids.events, memory.oom_control): the value of `key`.
uint64_t keyed_value(const fs::path& file, const std::string& key) {
  std::istringstream in(read_small(file));
  std::string k;
  uint64_t v = 0;
  while (in >> k >> v) {
    if (k == key) return v;
  }
  return 0;
}

std::vector<pid_t> list_procs(const fs::path& dir) {
  std::vector<pid_t> out;
  std::istringstream in(read_small(dir / "cgroup.procs"));
  pid_t p;
  while (in >> p) out.push_back(p);
  return out;
}

// /proc/PID/cgroup (`which`: "self" or a pid): hierarchy controllers -> path ("" for the v2
// entry).
std::map<std::string, std::string> cgroups_of(const std::string& which) {
  std::map<std::string, std::string> out;
  std::istringstream in(read_small("/proc/" + which + "/cgroup"));
  std::string line;
  while (std::getline(in, line)) {
    size_t a = line.find(':');
    size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    std::string controllers = line.substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    std::istringstream names(controllers);
    std::string name;
    if (controllers.empty()) out[""] = path;
    while (std::getline(names, name, ',')) out[name] = path;
  }
  return out;
}

fs::path join_cg(const fs::path& mount, const std::string& rel) {
  std::string r = rel;
  while (!r.empty() && r.front() == '/') r.erase(r.begin());
  return r.empty() ? mount : mount / r;
}

std::set<std::string> words(const std::string& text) {
  std::istringstream in(text);
  std::set<std::string> out;
  std::string w;
  while (in >> w) out.insert(w);
  return out;
}

// Kills every process in `dir` and its sub-groups, waits for them (bounded), removes the
// sub-groups and, unless keep_self, `dir` itself.
void kill_tree(const fs::path& dir, bool keep_self, std::chrono::milliseconds deadline) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_directory(ec)) kill_tree(entry.path(), false, deadline);
  }
  if (fs::exists(dir / "cgroup.kill", ec)) (void)write_cg(dir / "cgroup.kill", "1");
  auto until = std::chrono::steady_clock::now() + deadline;
  for (;;) {
    auto procs = list_procs(dir);
    if (procs.empty()) break;
    for (pid_t p : procs) ::kill(p, SIGKILL);
    if (std::chrono::steady_clock::now() >= until) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (!keep_self) ::rmdir(dir.c_str());
}

// Where this process's job groups go, computed once per process: in v2 the agent moves
// itself into a leaf once, so that its own group can hand controllers to the job groups.
struct Delegation {
  CgroupMode mode = CgroupMode::none;
  fs::path base_v2;  // parent of kforge-jobs-<tag> in the v2/unified tree
  fs::path base_memory, base_pids, base_cpu, base_io;  // hybrid: v1 parents (io: blkio);
                                                       // v2: same as base_v2 if enabled
  std::string why;                                     // when mode is none
  std::vector<std::string> notes;                      // controllers missing
};

Delegation compute_delegation() {
  Delegation d;
  if (::geteuid() != 0) {
    d.why = "not running as root";
    return d;
  }
  auto own = cgroups_of("self");
  const fs::path top = "/sys/fs/cgroup";
  if (fs_is(top, CGROUP2_SUPER_MAGIC)) {
    d.mode = CgroupMode::v2;
    fs::path self = join_cg(top, own[""]);
    std::set<std::string> want;
    for (const auto& c : words(read_small(self / "cgroup.controllers"))) {
      if (c == "memory" || c == "pids" || c == "cpu" || c == "io") want.insert(c);
    }
    std::set<std::string> enabled = words(read_small(self / "cgroup.subtree_control"));
    bool all = std::includes(enabled.begin(), enabled.end(), want.begin(), want.end());
    if (!all && self != top) {
      // No internal processes: leave our own group for a leaf so it can enable controllers.
      fs::path leaf = self / "kforge-agent";
      std::error_code ec;
      fs::create_directory(leaf, ec);
      if (Status st = write_cg(leaf / "cgroup.procs", std::to_string(::getpid())); !st.ok()) {
        d.notes.push_back("cannot move the agent into " + leaf.string() + ": " + st.message());
      }
    }
    std::string enable;
    for (const auto& c : want) {
      if (!enabled.count(c)) enable += "+" + c + " ";
    }
    if (!enable.empty()) {
      if (Status st = write_cg(self / "cgroup.subtree_control", enable); !st.ok()) {
        d.notes.push_back(
            st.message() +
            " (other processes share the agent's group: give it its own unit with Delegate=yes)");
      }
    }
    enabled = words(read_small(self / "cgroup.subtree_control"));
    d.base_v2 = self;
    if (enabled.count("memory")) d.base_memory = self;
    if (enabled.count("pids")) d.base_pids = self;
    if (enabled.count("cpu")) d.base_cpu = self;
    if (enabled.count("io")) d.base_io = self;
    return d;
  }
  const fs::path unified = top / "unified";
  if (!fs_is(unified, CGROUP2_SUPER_MAGIC)) {
    d.why = "no cgroup v2 tree (neither /sys/fs/cgroup nor /sys/fs/cgroup/unified is cgroup2)";
    return d;
  }
  d.mode = CgroupMode::hybrid;
  d.base_v2 = join_cg(unified, own[""]);
  auto v1 = [&](const std::string& name) -> fs::path {
    fs::path mount = top / name;
    if (!fs_is(mount, CGROUP_SUPER_MAGIC) || !own.count(name)) return {};
    return join_cg(mount, own[name]);
  };
  d.base_memory = v1("memory");
  d.base_pids = v1("pids");
  d.base_cpu = v1("cpu");
  d.base_io = v1("blkio");
  return d;
}

const Delegation& delegation() {
  static const Delegation d = compute_delegation();
  return d;
}

std::string hex16() {
  return random_hex_id().substr(0, 16);
}

// "MAJ:MIN" of each whole disk of the host (/sys/block), memory-backed devices left out.
std::vector<std::string> block_devices() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/sys/block", ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("loop", 0) == 0 || name.rfind("ram", 0) == 0 || name.rfind("zram", 0) == 0)
      continue;
    std::string dev = read_small(entry.path() / "dev");
    while (!dev.empty() && (dev.back() == '\n' || dev.back() == ' ')) dev.pop_back();
    if (!dev.empty()) out.push_back(dev);
  }
  return out;
}

}  // namespace

const char* cgroup_mode_name(CgroupMode mode) {
  switch (mode) {
    case CgroupMode::none: return "none";
    case CgroupMode::v2: return "v2";
    case CgroupMode::hybrid: return "hybrid";
  }
  return "?";
}

Result<std::shared_ptr<CgroupRoot>> CgroupRoot::open(const std::string& tag) {
  const Delegation& d = delegation();
  if (d.mode == CgroupMode::none) return failed_precondition("no cgroups for jobs: " + d.why);
  std::shared_ptr<CgroupRoot> root(new CgroupRoot());
  root->mode_ = d.mode;
  const std::string name = "kforge-jobs-" + tag;
  auto make = [&](const fs::path& base, fs::path& out) -> Status {
    if (base.empty()) return Status();
    out = base / name;
    if (::mkdir(out.c_str(), 0755) != 0 && errno != EEXIST) {
      return failed_precondition("cannot create the job cgroup root " + out.string() + ": " +
                                 errno_text(errno));
    }
    return Status();
  };
  KF_RETURN_IF_ERROR(make(d.base_v2, root->kill_dir_));
  if (d.mode == CgroupMode::v2) {
    std::string enable;
    if (!d.base_memory.empty()) enable += "+memory ";
    if (!d.base_pids.empty()) enable += "+pids ";
    if (!d.base_cpu.empty()) enable += "+cpu ";
    if (!d.base_io.empty()) enable += "+io ";
    if (!enable.empty()) {
      if (Status st = write_cg(root->kill_dir_ / "cgroup.subtree_control", enable); !st.ok()) {
        return failed_precondition(st.message());
      }
    }
    if (!d.base_memory.empty()) root->memory_dir_ = root->kill_dir_;
    if (!d.base_pids.empty()) root->pids_dir_ = root->kill_dir_;
    if (!d.base_cpu.empty()) root->cpu_dir_ = root->kill_dir_;
    if (!d.base_io.empty()) root->io_dir_ = root->kill_dir_;
  } else {
    KF_RETURN_IF_ERROR(make(d.base_memory, root->memory_dir_));
    KF_RETURN_IF_ERROR(make(d.base_pids, root->pids_dir_));
    KF_RETURN_IF_ERROR(make(d.base_cpu, root->cpu_dir_));
    KF_RETURN_IF_ERROR(make(d.base_io, root->io_dir_));
  }
  return root;
}

CgroupRoot::~CgroupRoot() {
  for (const auto& dir : {memory_dir_, pids_dir_, cpu_dir_, io_dir_, kill_dir_}) {
    if (!dir.empty()) ::rmdir(dir.c_str());
  }
}

std::string CgroupRoot::describe() const {
  std::string s = std::string("cgroup ") +
                  (mode_ == CgroupMode::v2 ? "v2" : "hybrid (v1 limits, v2 kill)") + " at " +
                  kill_dir_.string() + " (";
  std::string ctl;
  if (has_memory()) ctl += " memory";
  if (has_pids()) ctl += " pids";
  if (has_cpu()) ctl += " cpu";
  if (has_io()) ctl += " io";
  s += ctl.empty() ? "no controllers" : ctl.substr(1);
  if (mode_ == CgroupMode::hybrid && has_memory()) s += "; memory at " + memory_dir_.string();
  for (const auto& note : delegation().notes) s += "; " + note;
  return s + ")";
}

Result<UniqueFd> CgroupRoot::open_cpu_stat(int pid) const {
  auto groups = cgroups_of(std::to_string(pid));
  auto it = groups.find("");
  if (it == groups.end() || kill_dir_.empty()) {
    return not_found("process " + std::to_string(pid) + " is in no cgroup v2 group");
  }
  // A job's group is a child of ours: its directory is kill_dir_/<its name>.
  const fs::path rel(it->second);
  if (rel.parent_path().filename() != kill_dir_.filename() || rel.filename().empty()) {
    return not_found("process " + std::to_string(pid) + " is not in a job group of " +
                     kill_dir_.string() + " (it is in " + it->second + ")");
  }
  const fs::path file = kill_dir_ / rel.filename() / "cpu.stat";
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return io_error("cannot open " + file.string() + ": " + std::strerror(errno));
  return fd;
}

size_t CgroupRoot::remove_leftovers() {
  size_t n = 0;
  std::set<fs::path> dirs{kill_dir_, memory_dir_, pids_dir_, cpu_dir_, io_dir_};
  // The kill dir first: its cgroup.kill takes every process of every hierarchy.
  std::vector<fs::path> order{kill_dir_};
  for (const auto& d : dirs) {
    if (!d.empty() && d != kill_dir_) order.push_back(d);
  }
  for (const auto& dir : order) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (!entry.is_directory(ec)) continue;
      if (dir == kill_dir_) ++n;
      kill_tree(entry.path(), false, std::chrono::milliseconds(5000));
    }
  }
  return n;
}

// ---- probe ----------------------------------------------------------------------------

namespace {

// Runs `fn` in a forked child; true when it returns 0.
template <typename Fn>
bool in_child(Fn fn) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(fn() == 0 ? 0 : 1);
  if (pid < 0) return false;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

SandboxSupport probe_sandbox(const CgroupRoot* cgroup) {
  SandboxSupport s;
  s.root = ::geteuid() == 0;
  if (!s.root)
    s.missing.push_back(
        "not root: jobs cannot run as per-slot uids (they run as the agent's own uid)");
  if (cgroup != nullptr) {
    s.cgroups = cgroup->mode();
    s.memory = cgroup->has_memory();
    s.pids = cgroup->has_pids();
    s.cpu = cgroup->has_cpu();
    s.io = cgroup->has_io();  // used only when a bandwidth limit is configured
    if (!s.memory)
      s.missing.push_back("no memory controller for job cgroups: the memory limit is not enforced");
    if (!s.pids)
      s.missing.push_back("no pids controller for job cgroups: the process limit is not enforced");
    if (!s.cpu)
      s.missing.push_back("no cpu controller for job cgroups: the CPU quota is not enforced");
  } else {
    s.missing.push_back(
        "no job cgroups: a job's escaped processes are not tracked, no memory or process limit");
  }
  s.pid_ns = in_child([] { return ::unshare(CLONE_NEWPID); });
  if (!s.pid_ns) s.missing.push_back("no PID namespace: jobs see and may signal other processes");
  s.net_ns = in_child([] { return ::unshare(CLONE_NEWNET); });
  if (!s.net_ns) s.missing.push_back("no network namespace: jobs can open outbound connections");
  s.ipc_ns = in_child([] { return ::unshare(CLONE_NEWIPC); });
  if (!s.ipc_ns) s.missing.push_back("no IPC namespace: jobs share System V IPC with the host");
  s.mount_ns = in_child([] { return ::unshare(CLONE_NEWNS); });
  s.mount_api = in_child([] {
    if (::unshare(CLONE_NEWNS) != 0) return -1;
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return -1;
    int fd = sys_open_tree(AT_FDCWD, "/tmp", kOpenTreeClone | kOpenTreeCloexec);
    if (fd < 0) return -1;
    KMountAttr attr{kMountAttrRdonly, 0, 0, 0};
    return sys_mount_setattr(fd, "", AT_EMPTY_PATH, &attr);
  });
  s.seccomp = in_child([] {
    const std::string& filter = job_syscall_filter();
    sock_fprog prog{static_cast<unsigned short>(filter.size() / sizeof(sock_filter)),
                    reinterpret_cast<sock_filter*>(const_cast<char*>(filter.data()))};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) return -1;
    return ::unshare(CLONE_NEWUSER) == -1 && errno == EPERM ? 0 : -1;
  });
  if (!s.seccomp)
    s.missing.push_back(
        "no seccomp filter: jobs may ptrace, create user namespaces and use bpf, keyctl, io_uring");
  if (!s.mount_ns || !s.mount_api) {
    s.missing.push_back(std::string(s.mount_ns ? "no open_tree/mount_setattr (Linux 5.12+)"
                                               : "no mount namespace") +
                        ": jobs see the host's file system writable where their uid may write, and "
                        "share /tmp and /dev/shm");
  }
  return s;
}

// ---- system-call filter ------------------------------------------------------------

namespace {

#if defined(__x86_64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#else
#error "job_syscall_filter: unknown architecture (add its AUDIT_ARCH_*)"
#endif
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the filter reads the low word of 64-bit arguments");

// Calls a job never needs and that reach beyond it: other processes' memory, the kernel's
// less-trodden interfaces, namespaces and mounts, the machine itself.
const std::vector<long>& denied_syscalls() {
  static const std::vector<long> calls = {
      SYS_ptrace,
      SYS_process_vm_readv,
      SYS_process_vm_writev,
#ifdef SYS_pidfd_getfd
      SYS_pidfd_getfd,
#endif
#ifdef SYS_process_madvise
      SYS_process_madvise,
#endif
      SYS_bpf,
      SYS_perf_event_open,
      SYS_userfaultfd,
      SYS_keyctl,
      SYS_add_key,
      SYS_request_key,
#ifdef SYS_io_uring_setup
      SYS_io_uring_setup,
      SYS_io_uring_enter,
      SYS_io_uring_register,
#endif
      SYS_mount,
      SYS_umount2,
      SYS_pivot_root,
      SYS_chroot,
      SYS_unshare,
      SYS_setns,
#ifdef SYS_open_tree
      SYS_open_tree,
      SYS_move_mount,
      SYS_fsopen,
      SYS_fsconfig,
      SYS_fsmount,
      SYS_fspick,
#endif
#ifdef SYS_mount_setattr
      SYS_mount_setattr,
#endif
      SYS_kexec_load,
#ifdef SYS_kexec_file_load
      SYS_kexec_file_load,
#endif
      SYS_init_module,
      SYS_finit_module,
      SYS_delete_module,
#ifdef SYS_iopl
      SYS_iopl,
      SYS_ioperm,
#endif
      SYS_swapon,
      SYS_swapoff,
      SYS_reboot,
      SYS_acct,
      SYS_quotactl,
#ifdef SYS_quotactl_fd
      SYS_quotactl_fd,
#endif
      SYS_syslog,
      SYS_vhangup,
      SYS_open_by_handle_at,
  };
  return calls;
}

std::string build_syscall_filter() {
  std::vector<sock_filter> f;
  auto stmt = [&](uint16_t code, uint32_t k) { f.push_back(BPF_STMT(code, k)); };
  auto jeq = [&](uint32_t k, uint8_t jt, uint8_t jf) {
    f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, k, jt, jf));
  };
  const uint16_t load = BPF_LD | BPF_W | BPF_ABS, ret = BPF_RET | BPF_K;
  const uint32_t allow = SECCOMP_RET_ALLOW, eperm = SECCOMP_RET_ERRNO | EPERM;
  const uint32_t arg0 = offsetof(seccomp_data, args), arg1 = arg0 + sizeof(uint64_t);  // low words
  stmt(load, offsetof(seccomp_data, arch));
  jeq(kAuditArch, 1, 0);
  stmt(ret, SECCOMP_RET_KILL_PROCESS);
  stmt(load, offsetof(seccomp_data, nr));
#if defined(__x86_64__)
  f.push_back(BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1));  // __X32_SYSCALL_BIT
  stmt(ret, SECCOMP_RET_KILL_PROCESS);
#endif
  for (long nr : denied_syscalls()) {
    jeq(static_cast<uint32_t>(nr), 0, 1);
    stmt(ret, eperm);
  }
  // clone3 hides its flags in memory: ENOSYS makes glibc fall back to clone.
  jeq(SYS_clone3, 0, 1);
  stmt(ret, SECCOMP_RET_ERRNO | ENOSYS);
  // clone: no new namespace (flags are the first argument on x86-64 and arm64).
  jeq(SYS_clone, 0, 4);
  stmt(load, arg0);
  f.push_back(BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K,
                       CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
                           CLONE_NEWPID | CLONE_NEWNET,
                       0, 1));
  stmt(ret, eperm);
  stmt(ret, allow);
  // ioctl: no typing into a terminal (TIOCSTI), no console tricks (TIOCLINUX).
  jeq(SYS_ioctl, 0, 5);
  stmt(load, arg1);
  jeq(TIOCSTI, 2, 0);
  jeq(TIOCLINUX, 1, 0);
  stmt(ret, allow);
  stmt(ret, eperm);
  stmt(ret, allow);
  return std::string(reinterpret_cast<const char*>(f.data()), f.size() * sizeof(sock_filter));
}

}  // namespace

const std::string& job_syscall_filter() {
  static const std::string filter = build_syscall_filter();
  return filter;
}

uint64_t host_memory_mb() {
  long pages = ::sysconf(_SC_PHYS_PAGES);
  long page_size = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size) / (1024 * 1024);
}

uint64_t default_job_memory_mb(uint64_t host_mb, size_t devices) {
  return std::max<uint64_t>(512, host_mb * 3 / 4 / std::max<size_t>(1, devices));
}

Box box_for(const SandboxSupport& support, std::shared_ptr<CgroupRoot> cgroups) {
  Box box;
  box.cgroups = support.cgroups == CgroupMode::none ? nullptr : std::move(cgroups);
  box.pid_ns = support.pid_ns;
  box.net_ns = support.net_ns;
  box.ipc_ns = support.ipc_ns;
  box.mount_ns = support.mount_ns && support.mount_api;
  box.syscall_filter = support.seccomp;
  return box;
}

// ---- uids -----------------------------------------------------------------------------

Result<std::shared_ptr<UidPool>> UidPool::parse(const std::string& range) {
  auto number = [&](const std::string& s) -> Result<uint64_t> {
    if (s.empty() || s.size() > 10 || !std::all_of(s.begin(), s.end(), ::isdigit)) {
      return invalid_argument("job uid range '" + range +
                              "': expected FIRST-LAST, e.g. 60000-60063");
    }
    return std::stoull(s);
  };
  size_t dash = range.find('-');
  auto first = number(range.substr(0, dash));
  if (!first.ok()) return first.status();
  auto last = dash == std::string::npos ? first : number(range.substr(dash + 1));
  if (!last.ok()) return last.status();
  if (*first == 0 || *last < *first || *last >= 0xFFFFFFFFull) {
    return invalid_argument("job uid range '" + range +
                            "': must be FIRST-LAST with 0 < FIRST <= LAST");
  }
  if (*last - *first >= 65536)
    return invalid_argument("job uid range '" + range + "': more than 65536 uids");
  uid_t me = ::getuid();
  if (me >= *first && me <= *last) {
    return invalid_argument("job uid range '" + range + "' holds the agent's own uid " +
                            std::to_string(me));
  }
  return std::make_shared<UidPool>(static_cast<uid_t>(*first), static_cast<uid_t>(*last));
}

Result<UidPool::Lease> UidPool::acquire() {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < used_.size(); ++i) {
    if (!used_[i]) {
      used_[i] = true;
      return Lease(this, static_cast<uid_t>(first_ + i));
    }
  }
  return failed_precondition("every job uid in " + std::to_string(first_) + "-" +
                             std::to_string(last_) +
                             " is in use: more concurrent jobs than the range has uids");
}

void UidPool::give_back(uid_t uid) {
  std::lock_guard lock(mu_);
  if (uid >= first_ && uid <= last_) used_[uid - first_] = false;
}

UidPool::Lease& UidPool::Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    release();
    pool_ = o.pool_;
    uid_ = o.uid_;
    o.pool_ = nullptr;
  }
  return *this;
}

void UidPool::Lease::release() {
  if (pool_ != nullptr) pool_->give_back(uid_);
  pool_ = nullptr;
}

// ---- job directories ------------------------------------------------------------------

Result<std::unique_ptr<JobDir>> JobDir::create(const fs::path& root, uid_t uid, gid_t gid,
                                               uint64_t quota_mb) {
  std::unique_ptr<JobDir> dir(new JobDir());
  dir->uid_ = uid;
  dir->gid_ = gid;
  dir->path_ = root / ("job-" + hex16());
  if (::mkdir(dir->path_.c_str(), 0700) != 0) {
    return io_error("cannot create job directory " + dir->path_.string() + ": " +
                    errno_text(errno));
  }
  if (quota_mb > 0 && ::geteuid() == 0) {
    std::string opts = "size=" + std::to_string(quota_mb) +
                       "m,mode=0700,uid=" + std::to_string(uid) + ",gid=" + std::to_string(gid);
    if (::mount("kforge-job", dir->path_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) !=
        0) {
      Status st = io_error("cannot mount a " + std::to_string(quota_mb) + " MiB tmpfs on " +
                           dir->path_.string() + ": " + errno_text(errno));
      ::rmdir(dir->path_.c_str());
      dir->keep_ = true;
      return st;
    }
    dir->mounted_ = true;
  }
  if (::geteuid() == 0 && ::chown(dir->path_.c_str(), uid, gid) != 0) {
    return io_error("cannot give " + dir->path_.string() + " to uid " + std::to_string(uid) + ": " +
                    errno_text(errno));
  }
  return dir;
}

JobDir::~JobDir() {
  if (keep_) return;
  if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  std::error_code ec;
  fs::remove_all(path_, ec);
}

Status JobDir::hand_over() const {
  if (::geteuid() != 0) return Status();
  std::error_code ec;
  auto one = [&](const fs::path& p) -> Status {
    if (::lchown(p.c_str(), uid_, gid_) != 0) {
      return io_error("cannot give " + p.string() + " to uid " + std::to_string(uid_) + ": " +
                      errno_text(errno));
    }
    return Status();
  };
  KF_RETURN_IF_ERROR(one(path_));
  for (auto it = fs::recursive_directory_iterator(path_, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    KF_RETURN_IF_ERROR(one(it->path()));
  }
  if (ec) return io_error("cannot walk " + path_.string() + ": " + ec.message());
  return Status();
}

size_t remove_stale_job_dirs(const fs::path& root, const std::vector<std::string>& keep) {
  size_t n = 0;
  std::error_code ec;
  std::vector<fs::path> doomed;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    std::string name = entry.path().filename().string();
    if (std::find(keep.begin(), keep.end(), name) != keep.end()) continue;
    doomed.push_back(entry.path());
  }
  for (const auto& p : doomed) {
    if (::geteuid() == 0) {
      while (::umount2(p.c_str(), MNT_DETACH) == 0) {
      }
    }
    fs::remove_all(p, ec);
    ++n;
  }
  return n;
}

Status check_traversable(const fs::path& path) {
  fs::path p = fs::absolute(path).lexically_normal();
  for (;;) {
    struct stat st;
    if (::stat(p.c_str(), &st) != 0)
      return io_error("cannot stat " + p.string() + ": " + errno_text(errno));
    if (S_ISDIR(st.st_mode) && !(st.st_mode & S_IXOTH)) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
      return failed_precondition(p.string() + " (mode " + mode +
                                 ") cannot be traversed by job uids, so " + path.string() +
                                 " is out of their reach");
    }
    if (!p.has_parent_path() || p.parent_path() == p) break;
    p = p.parent_path();
  }
  return Status();
}

Status install_readable_copy(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::path tmp = to;
  tmp += ".new-" + hex16();
  fs::remove_all(tmp, ec);
  fs::copy(from, tmp, fs::copy_options::recursive | fs::copy_options::skip_symlinks, ec);
  if (ec)
    return io_error("cannot copy " + from.string() + " to " + tmp.string() + ": " + ec.message());
  auto fix = [&](const fs::path& p) -> Status {
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0)
      return io_error("cannot stat " + p.string() + ": " + errno_text(errno));
    if (::geteuid() == 0 && ::lchown(p.c_str(), 0, 0) != 0) {
      return io_error("cannot give " + p.string() + " to root: " + errno_text(errno));
    }
    mode_t mode = S_ISDIR(st.st_mode) || (st.st_mode & 0111) ? 0755 : 0644;
    if (::chmod(p.c_str(), mode) != 0)
      return io_error("cannot chmod " + p.string() + ": " + errno_text(errno));
    return Status();
  };
  KF_RETURN_IF_ERROR(fix(tmp));
  for (auto it = fs::recursive_directory_iterator(tmp, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    KF_RETURN_IF_ERROR(fix(it->path()));
  }
  if (ec) return io_error("cannot walk " + tmp.string() + ": " + ec.message());
  fs::path old = to;
  old += ".old-" + hex16();
  if (fs::exists(to, ec)) fs::rename(to, old, ec);
  fs::rename(tmp, to, ec);
  if (ec)
    return io_error("cannot move " + tmp.string() + " to " + to.string() + ": " + ec.message());
  fs::remove_all(old, ec);
  return check_traversable(to);
}

// ---- run_process's side ---------------------------------------------------------------

namespace sandbox_detail {

Result<std::unique_ptr<JobCgroup>> JobCgroup::create(const Box& box) {
  const CgroupRoot& root = *box.cgroups;
  if (box.memory_mb && !root.has_memory())
    return failed_precondition(
        "a memory limit was asked for, but job cgroups have no memory controller");
  if (box.pids && !root.has_pids())
    return failed_precondition(
        "a process limit was asked for, but job cgroups have no pids controller");
  if (box.cpu_percent && !root.has_cpu())
    return failed_precondition("a CPU quota was asked for, but job cgroups have no cpu controller");
  if (box.io_mbps && !root.has_io())
    return failed_precondition(
        "a disk bandwidth limit was asked for, but job cgroups have no io controller");
  std::unique_ptr<JobCgroup> cg(new JobCgroup());
  cg->root_ = box.cgroups;
  const std::string name = "job-" + hex16();
  std::vector<fs::path> bases{root.kill_dir()};
  for (const auto& b : {root.memory_dir(), root.pids_dir(), root.cpu_dir(), root.io_dir()}) {
    if (!b.empty() && std::find(bases.begin(), bases.end(), b) == bases.end()) bases.push_back(b);
  }
  for (const auto& b : bases) {
    fs::path dir = b / name;
    if (::mkdir(dir.c_str(), 0755) != 0)
      return io_error("cannot create job cgroup " + dir.string() + ": " + errno_text(errno));
    cg->dirs_.push_back(dir);
  }
  cg->kill_dir_ = cg->dirs_[0];
  if (root.has_memory()) cg->memory_dir_ = root.memory_dir() / name;
  if (root.has_pids()) cg->pids_dir_ = root.pids_dir() / name;
  const bool v2 = root.mode() == CgroupMode::v2;
  std::error_code ec;
  if (box.memory_mb) {
    std::string bytes = std::to_string(box.memory_mb << 20);
    if (v2) {
      KF_RETURN_IF_ERROR(write_cg(cg->memory_dir_ / "memory.max", bytes));
      if (fs::exists(cg->memory_dir_ / "memory.swap.max", ec))
        KF_RETURN_IF_ERROR(write_cg(cg->memory_dir_ / "memory.swap.max", "0"));
    } else {
      KF_RETURN_IF_ERROR(write_cg(cg->memory_dir_ / "memory.limit_in_bytes", bytes));
      if (fs::exists(cg->memory_dir_ / "memory.memsw.limit_in_bytes", ec)) {
        KF_RETURN_IF_ERROR(write_cg(cg->memory_dir_ / "memory.memsw.limit_in_bytes", bytes));
      }
    }
  }
  if (box.pids) KF_RETURN_IF_ERROR(write_cg(cg->pids_dir_ / "pids.max", std::to_string(box.pids)));
  if (box.cpu_percent) {
    fs::path cpu = root.cpu_dir() / name;
    uint64_t quota = static_cast<uint64_t>(box.cpu_percent) * 1000;  // of a 100 ms period
    if (v2) {
      KF_RETURN_IF_ERROR(write_cg(cpu / "cpu.max", std::to_string(quota) + " 100000"));
    } else {
      KF_RETURN_IF_ERROR(write_cg(cpu / "cpu.cfs_period_us", "100000"));
      KF_RETURN_IF_ERROR(write_cg(cpu / "cpu.cfs_quota_us", std::to_string(quota)));
    }
  }
  if (box.io_mbps) {
    // Every disk's read and write bandwidth (not loop, RAM or zram devices: tmpfs and the
    // page cache are memory, limited above).
    fs::path io = root.io_dir() / name;
    std::string bps = std::to_string(box.io_mbps << 20);
    for (const auto& dev : block_devices()) {
      if (v2) {
        KF_RETURN_IF_ERROR(write_cg(io / "io.max", dev + " rbps=" + bps + " wbps=" + bps));
      } else {
        KF_RETURN_IF_ERROR(write_cg(io / "blkio.throttle.read_bps_device", dev + " " + bps));
        KF_RETURN_IF_ERROR(write_cg(io / "blkio.throttle.write_bps_device", dev + " " + bps));
      }
    }
  }
  for (const auto& dir : cg->dirs_) {
    int fd = ::open((dir / "cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0)
      return io_error("cannot open " + (dir / "cgroup.procs").string() + ": " + errno_text(errno));
    cg->join_fds_.push_back(fd);
  }
  return cg;
}

void JobCgroup::close_join_fds() {
  for (int fd : join_fds_) ::close(fd);
  join_fds_.clear();
}

JobCgroup::~JobCgroup() {
  close_join_fds();
  // Sub-groups a job made itself (possible in v2 when it owns nothing: it cannot) go first.
  for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
    if (::rmdir(it->c_str()) != 0 && errno == EBUSY)
      kill_tree(*it, false, std::chrono::milliseconds(1000));
  }
}

void JobCgroup::kill() {
  std::error_code ec;
  if (fs::exists(kill_dir_ / "cgroup.kill", ec)) {
    (void)write_cg(kill_dir_ / "cgroup.kill", "1");
  } else {
    for (pid_t p : list_procs(kill_dir_)) ::kill(p, SIGKILL);
  }
}

Status JobCgroup::wait_empty(std::chrono::milliseconds deadline) {
  std::error_code ec;
  const bool has_kill = fs::exists(kill_dir_ / "cgroup.kill", ec);
  kill();
  int events = ::open((kill_dir_ / "cgroup.events").c_str(), O_RDONLY | O_CLOEXEC);
  auto until = std::chrono::steady_clock::now() + deadline;
  Status result;
  for (;;) {
    auto procs = list_procs(kill_dir_);
    if (procs.empty()) break;
    if (!has_kill) {
      for (pid_t p : procs) ::kill(p, SIGKILL);
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result = failed_precondition("the job's cgroup " + kill_dir_.string() + " still holds " +
                                   std::to_string(procs.size()) + " processes after the kill");
      break;
    }
    if (events >= 0) {
      // cgroup.events signals POLLPRI when "populated" changes; re-read it first.
      char buf[256];
      (void)::pread(events, buf, sizeof buf, 0);
      if (read_small(kill_dir_ / "cgroup.events").find("populated 0") != std::string::npos)
        continue;
      pollfd p{events, POLLPRI, 0};
      ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 50)));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  if (events >= 0) ::close(events);
  return result;
}

bool JobCgroup::memory_exceeded() const {
  if (memory_dir_.empty()) return false;
  if (root_->mode() == CgroupMode::v2)
    return keyed_value(memory_dir_ / "memory.events", "oom_kill") > 0;
  return keyed_value(memory_dir_ / "memory.oom_control", "oom_kill") > 0;
}

bool JobCgroup::pids_exceeded() const {
  if (pids_dir_.empty()) return false;
  return keyed_value(pids_dir_ / "pids.events", "max") > 0;
}

uint64_t JobCgroup::memory_peak_bytes() const {
  if (memory_dir_.empty()) return 0;
  fs::path f =
      memory_dir_ / (root_->mode() == CgroupMode::v2 ? "memory.peak" : "memory.max_usage_in_bytes");
  std::istringstream in(read_small(f));
  uint64_t v = 0;
  in >> v;
  return v;
}

MountPlan plan_mounts(const Box& box) {
  MountPlan plan;
  plan.read_only_root = box.read_only_root;
  plan.new_proc = box.pid_ns;
  plan.tmp_options = "size=" + std::to_string(box.tmp_mb ? box.tmp_mb : 1024) + "m,mode=1777";
  auto add = [&](const fs::path& p, bool writable) {
    MountPlan::Bind b;
    fs::path abs = fs::absolute(p).lexically_normal();
    b.path = abs.string();
    b.writable = writable;
    fs::path acc = "/";
    for (const auto& part : abs.relative_path()) {
      acc /= part;
      b.parents.push_back(acc.string());
    }
    plan.binds.push_back(std::move(b));
  };
  for (const auto& p : box.readable) add(p, false);
  for (const auto& p : box.writable) add(p, true);
  for (const char* dir : kHostRuntimeDirs) {
    std::error_code ec;
    if (fs::is_symlink(dir, ec) || !fs::is_directory(dir, ec)) continue;  // /var/run -> /run
    plan.hidden.push_back(dir);
  }
  for (const auto& h : box.hidden)
    plan.hidden.push_back(fs::absolute(h).lexically_normal().string());
  return plan;
}

int apply_mounts(const MountPlan& plan, const char** step) {
  *step = "make the mount tree private";
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return errno;
  // Clone the paths to bind back before anything covers them or turns them read-only.
  constexpr size_t kMaxBinds = 32;
  int fds[kMaxBinds];
  size_t nbinds = plan.binds.size() < kMaxBinds ? plan.binds.size() : kMaxBinds;
  *step = "clone a path to bind into the job's view (open_tree)";
  for (size_t i = 0; i < nbinds; ++i) {
    fds[i] = sys_open_tree(AT_FDCWD, plan.binds[i].path.c_str(),
                           kOpenTreeClone | kOpenTreeCloexec | kAtRecursive);
    if (fds[i] < 0) return errno;
    if (!plan.binds[i].writable) {
      KMountAttr ro{kMountAttrRdonly | kMountAttrNosuid, 0, 0, 0};
      *step = "make a bound path read-only";
      if (sys_mount_setattr(fds[i], "", AT_EMPTY_PATH | kAtRecursive, &ro) != 0) return errno;
    }
  }
  if (plan.read_only_root) {
    *step = "make the host's tree read-only (mount_setattr)";
    KMountAttr ro{kMountAttrRdonly | kMountAttrNosuid, 0, 0, 0};
    if (sys_mount_setattr(AT_FDCWD, "/", kAtRecursive, &ro) != 0) return errno;
  }
  *step = "mount a private tmpfs on /tmp";
  if (::mount("kforge-tmp", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, plan.tmp_options.c_str()) != 0)
    return errno;
  *step = "mount a private tmpfs on /dev/shm";
  if (::mount("kforge-shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, plan.tmp_options.c_str()) !=
      0)
    return errno;
  *step = "hide a directory under an empty tmpfs";
  for (const std::string& h : plan.hidden) {
    if (::mount("kforge-hidden", h.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                "size=16k,mode=0755") != 0) {
      if (errno == ENOENT) continue;
      return errno;
    }
  }
  if (plan.new_proc) {
    // hidepid=2 (invisible; the numeric form every kernel since 3.3 reads): a job's uid sees
    // only its own processes, not its root init (whose command line is the agent's).
    *step = "mount the PID namespace's /proc (hidepid)";
    if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2") != 0)
      return errno;
  }
  for (size_t i = 0; i < nbinds; ++i) {
    *step = "create a mount point for a bound path";
    for (const std::string& dir : plan.binds[i].parents) {
      if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return errno;
    }
    *step = "bind a path into the job's view (move_mount)";
    if (sys_move_mount(fds[i], "", AT_FDCWD, plan.binds[i].path.c_str(), kMoveMountFEmptyPath) != 0)
      return errno;
    ::close(fds[i]);
  }
  *step = "make a hidden directory read-only";
  for (const std::string& h : plan.hidden) {
    if (::mount(nullptr, h.c_str(), nullptr,
                MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                nullptr) != 0 &&
        errno != EINVAL && errno != ENOENT) {  // not mounted above: absent or under /tmp
      return errno;
    }
  }
  return 0;
}

int loopback_up() {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return errno;
  struct ifreq ifr;
  std::memset(&ifr, 0, sizeof ifr);
  std::memcpy(ifr.ifr_name, "lo", 3);
  int rc = ::ioctl(s, SIOCGIFFLAGS, &ifr);
  if (rc == 0) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    rc = ::ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  int err = rc == 0 ? 0 : errno;
  ::close(s);
  return err;
}

}  // namespace sandbox_detail
}  // namespace kforge
