#include "common/process.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>

#include "common/sandbox_child.h"
#include "common/unique_fd.h"

namespace kforge {
namespace {

using SteadyClock = std::chrono::steady_clock;

// How long to wait for the output pipes to reach EOF after the group was killed. Every
// process of the group is dead or dying by then, so only a process that left the group can
// keep a pipe open; its output is abandoned.
constexpr std::chrono::milliseconds kDrainGrace{2000};

// At most this many bytes are read from one pipe per wake-up, so that a child writing
// without pause cannot starve the deadline, the cancel token or the other pipe.
constexpr size_t kReadBurst = 1 << 20;

std::string errno_text(int err) {
  return std::strerror(err);
}

// Both ends are close-on-exec, so that a child forked concurrently by another thread never
// inherits them (it would keep our pipes open).
Status make_pipe(UniqueFd& read_end, UniqueFd& write_end, const std::string& what) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    return io_error("cannot create " + what + " pipe: " + errno_text(errno));
  read_end = UniqueFd(fds[0]);
  write_end = UniqueFd(fds[1]);
  return Status();
}

Status set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return io_error(std::string("cannot make a pipe non-blocking: ") + errno_text(errno));
  }
  return Status();
}

// What the child reports through the exec-error pipe when it cannot reach exec.
enum class ChildStage : int {
  setpgid = 1,
  stdio,
  rlimit,
  chdir,
  exec,
  user,
  cgroup,   // joining the job's cgroup
  mounts,   // building the mount namespace (detail_text names the step)
  network,  // bringing up loopback in the network namespace
  init,     // the namespace's init could not fork the program
  privs,    // PR_SET_NO_NEW_PRIVS
  seccomp,  // installing the system-call filter
};

struct ChildError {
  ChildStage stage;
  int err;
  int detail;               // for rlimit: the index into ChildPlan::limits
  const char* detail_text;  // a static string of the child, which is a copy of this process
};

// Everything the child needs, prepared before fork: between fork and exec the child may only
// make async-signal-safe calls, so it neither allocates nor formats.
struct ChildPlan {
  std::vector<char*> argv;               // null-terminated
  std::vector<std::string> env_storage;  // "NAME=value"
  std::vector<char*> envp;               // null-terminated
  std::vector<std::string> candidates;   // paths to execve, in order
  std::vector<RlimitSetting> limits;
  const char* cwd = nullptr;
  bool switch_user = false;
  uid_t uid = 0;
  gid_t gid = 0;
  int stdio[3] = {-1, -1, -1};
  std::vector<int> pass_fds;  // become 3, 4, ... in the child
  int error_fd = -1;
  int max_fd = 1024;  // for the fallback when close_range is unavailable
  // The box (all unused without one).
  bool boxed = false;
  bool raw_ids = false;  // the child came from a raw clone: glibc's set*id must not be used
  const std::vector<int>* join_fds = nullptr;  // cgroup.procs of the job's groups
  const sandbox_detail::MountPlan* mounts = nullptr;
  bool net_ns = false;
  bool pid_ns = false;
  int status_fd = -1;                     // pid_ns: init writes the program's wait status here
  sock_fprog syscall_filter{0, nullptr};  // installed just before exec when len > 0
};

[[noreturn]] void child_fail(int error_fd, ChildStage stage, int err, int detail = 0,
                             const char* detail_text = nullptr) {
  ChildError e{stage, err, detail, detail_text};
  ssize_t n = ::write(error_fd, &e, sizeof e);
  (void)n;
  ::_exit(127);
}

// The box's part of the child, as root, before anything of the job runs: join the job's
// cgroup, build the mount view, bring up loopback; with a PID namespace become its init and
// fork the program, which returns from here. System calls only.
void box_child(const ChildPlan& plan) {
  static const char kZero[] = "0";
  for (int fd : *plan.join_fds) {
    if (::write(fd, kZero, 1) != 1) child_fail(plan.error_fd, ChildStage::cgroup, errno);
  }
  if (plan.mounts != nullptr) {
    const char* step = "";
    int err = sandbox_detail::apply_mounts(*plan.mounts, &step);
    if (err != 0) child_fail(plan.error_fd, ChildStage::mounts, err, 0, step);
  }
  if (plan.net_ns) {
    int err = sandbox_detail::loopback_up();
    if (err != 0) child_fail(plan.error_fd, ChildStage::network, err);
  }
  if (!plan.pid_ns) return;

  // Init of the namespace. If the agent dies, so does the namespace with all of the job.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  pid_t program = static_cast<pid_t>(::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
  if (program < 0) child_fail(plan.error_fd, ChildStage::init, errno);
  if (program == 0) return;
  // Keep only the status pipe: the parent sees EOF on the error pipe when the program execs,
  // and on stdout/stderr when the program's side closes them.
  if (plan.status_fd > 0) ::close_range(0, static_cast<unsigned>(plan.status_fd) - 1, 0);
  ::close_range(static_cast<unsigned>(plan.status_fd) + 1, ~0U, 0);
  for (;;) {
    int status = 0;
    pid_t got = ::waitpid(-1, &status, 0);
    if (got == program) {
      ssize_t n = ::write(plan.status_fd, &status, sizeof status);
      (void)n;
      ::_exit(0);  // the kernel now kills whatever else is left in the namespace
    }
    if (got < 0 && errno != EINTR) ::_exit(126);
  }
}

// Runs in the child between fork and exec: async-signal-safe calls only.
[[noreturn]] void exec_child(const ChildPlan& plan) {
  // The parent blocked every signal around fork, so no handler of the parent can run here
  // before the dispositions are back to default. Ignored signals are reset too.
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);  // EINVAL for some: fine

  if (plan.boxed) {
    box_child(plan);  // returns in the program's process
    // The terminal of whoever started the agent (root typing `kforge run`) is not the job's:
    // no reading the keys typed there, no typing into it (TIOCSTI). Without a controlling
    // terminal /dev/tty cannot be opened, and this process can never get one back.
    int tty = ::open("/dev/tty", O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (tty >= 0) {
      ::ioctl(tty, TIOCNOTTY);
      ::close(tty);
    }
  }

  if (::setpgid(0, 0) != 0) child_fail(plan.error_fd, ChildStage::setpgid, errno);

  // Move the three sources above 2 first, so dup2 onto 0..2 cannot clobber one of them.
  int src[3];
  for (int i = 0; i < 3; ++i) {
    src[i] = ::fcntl(plan.stdio[i], F_DUPFD, 3);
    if (src[i] < 0) child_fail(plan.error_fd, ChildStage::stdio, errno);
  }
  for (int i = 0; i < 3; ++i) {
    if (::dup2(src[i], i) < 0) child_fail(plan.error_fd, ChildStage::stdio, errno);
  }
  // Passed descriptors land on 3, 4, ...: first every source (and the error pipe) moves above
  // that range, so that no dup2 below clobbers one still to be moved.
  const int first_free = 3 + static_cast<int>(plan.pass_fds.size());
  int error_fd = plan.error_fd;
  if (!plan.pass_fds.empty()) {
    error_fd = ::fcntl(plan.error_fd, F_DUPFD_CLOEXEC, first_free);
    if (error_fd < 0) child_fail(plan.error_fd, ChildStage::stdio, errno);
    for (size_t i = 0; i < plan.pass_fds.size(); ++i) {
      int moved = ::fcntl(plan.pass_fds[i], F_DUPFD, first_free);
      if (moved < 0 || ::dup2(moved, 3 + static_cast<int>(i)) < 0)
        child_fail(error_fd, ChildStage::stdio, errno);
    }
  }
  // Every other fd closes at exec; the error pipe must stay open until then.
  if (::close_range(first_free, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    for (int fd = first_free; fd < plan.max_fd; ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  }

  for (size_t i = 0; i < plan.limits.size(); ++i) {
    const rlimit value{plan.limits[i].soft, plan.limits[i].hard};
    if (::setrlimit(plan.limits[i].resource, &value) != 0) {
      child_fail(error_fd, ChildStage::rlimit, errno, static_cast<int>(i));
    }
  }
  if (plan.boxed && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    child_fail(error_fd, ChildStage::privs, errno);
  }
  if (plan.switch_user) {
    // Groups first: after setuid we could no longer drop them. After a raw clone glibc's
    // wrappers would try to reach the parent's other threads (setxid broadcast): use the
    // system calls, which act on this single-threaded process.
    bool ok;
    if (plan.raw_ids) {
      ok = ::syscall(SYS_setgroups, 0, nullptr) == 0 &&
           ::syscall(SYS_setresgid, plan.gid, plan.gid, plan.gid) == 0 &&
           ::syscall(SYS_setresuid, plan.uid, plan.uid, plan.uid) == 0;
    } else {
      ok = ::setgroups(0, nullptr) == 0 && ::setgid(plan.gid) == 0 && ::setuid(plan.uid) == 0;
    }
    if (!ok) child_fail(error_fd, ChildStage::user, errno);
  }
  if (plan.cwd != nullptr && ::chdir(plan.cwd) != 0) child_fail(error_fd, ChildStage::chdir, errno);

  if (plan.syscall_filter.len > 0 &&
      ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &plan.syscall_filter) != 0) {
    child_fail(error_fd, ChildStage::seccomp, errno);
  }

  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);

  // Like execvp: a candidate that is missing moves on to the next; EACCES is remembered and
  // reported if nothing else is found; any other error stops the search.
  bool saw_eacces = false;
  int last = ENOENT;
  for (const std::string& path : plan.candidates) {
    ::execve(path.c_str(), plan.argv.data(), plan.envp.data());
    last = errno;
    switch (last) {
      case EACCES: saw_eacces = true; continue;
      case ENOENT:
      case ENOTDIR:
      case ESTALE:
      case ENODEV:
      case ETIMEDOUT: continue;
      default: child_fail(error_fd, ChildStage::exec, last);
    }
  }
  child_fail(error_fd, ChildStage::exec, saw_eacces ? EACCES : last);
}

bool valid_env_name(const std::string& name) {
  return !name.empty() && name.find('=') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

// The paths to try for argv[0], given the child's environment.
std::vector<std::string> exec_candidates(const std::string& program,
                                         const std::map<std::string, std::string>& env) {
  if (program.empty() || program.find('/') != std::string::npos) return {program};
  auto it = env.find("PATH");
  std::string path = it != env.end() ? it->second : "/usr/bin:/bin";
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t colon = path.find(':', start);
    std::string dir =
        path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    if (dir.empty()) dir = ".";  // POSIX: an empty element is the current directory
    out.push_back(dir + "/" + program);
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return out;
}

// The limit to set for `value` (in `unit`s), capped to the inherited hard limit.
RlimitSetting plan_limit(int resource, const char* name, uint64_t value, uint64_t unit) {
  rlim_t want = value > RLIM_INFINITY / unit ? RLIM_INFINITY : static_cast<rlim_t>(value * unit);
  rlimit current;
  if (::getrlimit(resource, &current) == 0 && current.rlim_max != RLIM_INFINITY) {
    want = std::min(want, current.rlim_max);
  }
  return {resource, name, want, want};
}

std::string child_error_text(const ChildError& e, const std::string& program, const ChildPlan& plan,
                             const ProcessSpec& spec) {
  std::string why = errno_text(e.err);
  switch (e.stage) {
    case ChildStage::setpgid: return "cannot start a process group for '" + program + "': " + why;
    case ChildStage::stdio:
      return "cannot set up stdin/stdout/stderr for '" + program + "': " + why;
    case ChildStage::rlimit: {
      const char* name = e.detail >= 0 && static_cast<size_t>(e.detail) < plan.limits.size()
                             ? plan.limits[static_cast<size_t>(e.detail)].name
                             : "a resource limit";
      return std::string("cannot set ") + name + " for '" + program + "': " + why;
    }
    case ChildStage::chdir:
      return "cannot chdir to " + spec.cwd.string() + " for '" + program + "': " + why;
    case ChildStage::exec: return "cannot exec '" + program + "': " + why;
    case ChildStage::user:
      return "cannot switch to uid " + std::to_string(plan.uid) + " for '" + program + "': " + why;
    case ChildStage::cgroup: return "cannot join the job's cgroup for '" + program + "': " + why;
    case ChildStage::mounts:
      return std::string("cannot ") +
             (e.detail_text ? e.detail_text : "build the job's mount namespace") + " for '" +
             program + "': " + why;
    case ChildStage::network:
      return "cannot bring up loopback in the job's network namespace for '" + program +
             "': " + why;
    case ChildStage::init:
      return "the job's PID namespace init cannot fork '" + program + "': " + why;
    case ChildStage::privs: return "cannot set no_new_privs for '" + program + "': " + why;
    case ChildStage::seccomp:
      return "cannot install the system-call filter (seccomp) for '" + program + "': " + why;
  }
  return "cannot start '" + program + "': " + why;
}

// Reads what `fd` has now, keeping at most `cap` bytes in `out` and discarding the rest.
// Returns false at EOF or on a read error (the pipe is then finished).
bool read_some(int fd, std::string& out, size_t cap, bool& truncated) {
  char buf[64 * 1024];
  size_t total = 0;
  while (total < kReadBurst) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      size_t got = static_cast<size_t>(n);
      size_t room = cap > out.size() ? cap - out.size() : 0;
      size_t keep = std::min(got, room);
      out.append(buf, keep);
      if (keep < got) truncated = true;
      total += got;
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
  return true;
}

// Writes part of `data` from `offset` to the non-blocking `fd` without ever raising SIGPIPE in
// the calling process: SIGPIPE is blocked for this thread around the write, and one it raised
// is consumed before unblocking. Returns false when stdin is finished (all written, or the
// reader is gone).
bool write_some(int fd, const std::string& data, size_t& offset) {
  sigset_t pipe_set, old_mask, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  sigemptyset(&pending);
  ::sigpending(&pending);
  bool was_pending = sigismember(&pending, SIGPIPE) == 1;
  ::pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
  bool more = true;
  while (offset < data.size()) {
    ssize_t n = ::write(fd, data.data() + offset, data.size() - offset);
    if (n >= 0) {
      offset += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    if (errno == EPIPE && !was_pending) {
      timespec zero{0, 0};
      while (::sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    more = false;  // EPIPE or another error: the child will not read the rest
    break;
  }
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  return more && offset < data.size();
}

int poll_timeout_ms(SteadyClock::time_point until) {
  auto left = until - SteadyClock::now();
  if (left <= SteadyClock::duration::zero()) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<int>(std::min<int64_t>(ms, INT_MAX));
}

}  // namespace

std::vector<RlimitSetting> rlimits_for(const ResourceLimits& lim) {
  constexpr uint64_t kMiB = 1024 * 1024;
  std::vector<RlimitSetting> out;
  if (lim.address_space_mb)
    out.push_back(plan_limit(RLIMIT_AS, "RLIMIT_AS", lim.address_space_mb, kMiB));
  if (lim.cpu_s) out.push_back(plan_limit(RLIMIT_CPU, "RLIMIT_CPU", lim.cpu_s, 1));
  if (lim.open_files) out.push_back(plan_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", lim.open_files, 1));
  if (lim.processes) out.push_back(plan_limit(RLIMIT_NPROC, "RLIMIT_NPROC", lim.processes, 1));
  if (lim.file_size_mb)
    out.push_back(plan_limit(RLIMIT_FSIZE, "RLIMIT_FSIZE", lim.file_size_mb, kMiB));
  out.push_back({RLIMIT_CORE, "RLIMIT_CORE", 0, 0});
  return out;
}

CancelToken::CancelToken() {
  if (auto fd = EventFd::open("cancel token"); fd.ok()) fd_ = std::move(fd.value());
}

void CancelToken::cancel() {
  if (cancelled_.exchange(true)) return;
  if (fd_.valid()) fd_.notify();
}

bool CancelToken::cancelled() const {
  return cancelled_.load();
}

Status hide_process_memory() {
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
    return io_error("prctl(PR_SET_DUMPABLE, 0): " + errno_text(errno));
  return Status();
}

Result<std::map<std::string, std::string>> child_environment(const ProcessSpec& spec) {
  std::map<std::string, std::string> env;
  for (const std::string& name : spec.env_allow) {
    if (!valid_env_name(name))
      return invalid_argument("run_process: bad env_allow name '" + name + "'");
    if (const char* value = ::getenv(name.c_str())) env[name] = value;
  }
  for (const auto& [name, value] : spec.env) {
    if (!valid_env_name(name)) return invalid_argument("run_process: bad env name '" + name + "'");
    env[name] = value;
  }
  return env;
}

Result<ProcessResult> run_process(const ProcessSpec& spec, CancelToken* cancel) {
  if (spec.argv.empty()) return invalid_argument("run_process: empty argv");
  if (cancel != nullptr && cancel->fd() < 0) {
    return io_error("run_process: the cancel token has no eventfd (creation failed)");
  }
  const std::string& program = spec.argv[0];

  auto child_env = child_environment(spec);
  if (!child_env.ok()) return child_env.status();
  const std::map<std::string, std::string>& env = *child_env;

  ChildPlan plan;
  for (const std::string& arg : spec.argv) plan.argv.push_back(const_cast<char*>(arg.c_str()));
  plan.argv.push_back(nullptr);
  for (const auto& [name, value] : env) plan.env_storage.push_back(name + "=" + value);
  for (std::string& entry : plan.env_storage) plan.envp.push_back(entry.data());
  plan.envp.push_back(nullptr);
  plan.candidates = exec_candidates(program, env);
  plan.limits = rlimits_for(spec.limits);
  if (!spec.cwd.empty()) plan.cwd = spec.cwd.c_str();
  if (spec.run_as) {
    plan.switch_user = true;
    plan.uid = spec.run_as->uid;
    plan.gid = spec.run_as->gid;
  }
  rlimit nofile;
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) {
    plan.max_fd = static_cast<int>(std::min<rlim_t>(nofile.rlim_cur, INT_MAX));
  }

  UniqueFd stdin_read, stdin_write, stdout_read, stdout_write, stderr_read, stderr_write,
      error_read, error_write;
  if (spec.stdin_data.empty()) {
    stdin_read = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!stdin_read.valid()) return io_error("cannot open /dev/null: " + errno_text(errno));
  } else {
    KF_RETURN_IF_ERROR(make_pipe(stdin_read, stdin_write, "stdin"));
    KF_RETURN_IF_ERROR(set_nonblocking(stdin_write.get()));
  }
  KF_RETURN_IF_ERROR(make_pipe(stdout_read, stdout_write, "stdout"));
  KF_RETURN_IF_ERROR(make_pipe(stderr_read, stderr_write, "stderr"));
  KF_RETURN_IF_ERROR(make_pipe(error_read, error_write, "exec-error"));
  KF_RETURN_IF_ERROR(set_nonblocking(stdout_read.get()));
  KF_RETURN_IF_ERROR(set_nonblocking(stderr_read.get()));
  plan.stdio[0] = stdin_read.get();
  plan.stdio[1] = stdout_write.get();
  plan.stdio[2] = stderr_write.get();
  plan.error_fd = error_write.get();
  plan.pass_fds = spec.pass_fds;

  ProcessResult result;
  const auto start = SteadyClock::now();

  // The box: the job's cgroup exists before the child does; the child joins it first thing.
  std::unique_ptr<sandbox_detail::JobCgroup> cgroup;
  sandbox_detail::MountPlan mounts;
  UniqueFd status_read, status_write;
  unsigned long clone_flags = 0;
  if (spec.box) {
    const Box& box = *spec.box;
    if (::geteuid() != 0) return failed_precondition("run_process: a box needs root");
    plan.boxed = true;
    if (box.syscall_filter) {
      const std::string& filter = job_syscall_filter();
      plan.syscall_filter.len = static_cast<unsigned short>(filter.size() / sizeof(sock_filter));
      plan.syscall_filter.filter = reinterpret_cast<sock_filter*>(const_cast<char*>(filter.data()));
    }
    if (box.cgroups) {
      auto cg = sandbox_detail::JobCgroup::create(box);
      if (!cg.ok()) return cg.status();
      cgroup = std::move(cg.value());
      plan.join_fds = &cgroup->join_fds();
    } else {
      static const std::vector<int> kNone;
      plan.join_fds = &kNone;
    }
    if (box.mount_ns) {
      mounts = sandbox_detail::plan_mounts(box);
      plan.mounts = &mounts;
      clone_flags |= CLONE_NEWNS;
    }
    if (box.net_ns) {
      plan.net_ns = true;
      clone_flags |= CLONE_NEWNET;
    }
    if (box.ipc_ns) clone_flags |= CLONE_NEWIPC;
    if (box.pid_ns) {
      plan.pid_ns = true;
      clone_flags |= CLONE_NEWPID;
      KF_RETURN_IF_ERROR(make_pipe(status_read, status_write, "exit-status"));
      KF_RETURN_IF_ERROR(set_nonblocking(status_read.get()));
      plan.status_fd = status_write.get();
    }
  }
  // Whatever happens from here on, nothing of the job outlives this call.
  auto reap_box = [&]() -> Status {
    if (!cgroup) return Status();
    cgroup->kill();
    Status st = cgroup->wait_empty(spec.box->empty_deadline);
    if (st.ok()) {
      result.memory_exceeded = cgroup->memory_exceeded();
      result.pids_exceeded = cgroup->pids_exceeded();
      result.memory_peak_bytes = cgroup->memory_peak_bytes();
    }
    cgroup.reset();
    return st;
  };

  sigset_t all, old_mask;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old_mask);
  pid_t pid;
  if (clone_flags != 0) {
    // A fork into new namespaces. glibc's fork handlers do not run: the child makes only
    // system calls (plan.raw_ids) until it execs.
    plan.raw_ids = true;
    pid = static_cast<pid_t>(::syscall(SYS_clone, clone_flags | SIGCHLD, 0, 0, 0, 0));
  } else {
    pid = ::fork();
  }
  if (pid == 0) exec_child(plan);
  int fork_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  if (pid < 0) {
    (void)reap_box();
    return io_error("cannot fork to run '" + program + "': " + errno_text(fork_errno));
  }
  status_write.reset();
  if (cgroup) cgroup->close_join_fds();
  // Also here, so that the group exists before we ever killpg it, whichever side runs first.
  // EACCES (the child already exec'd, so it did this itself) and ESRCH are fine.
  ::setpgid(pid, pid);
  result.pid = pid;

  stdin_read.reset();
  stdout_write.reset();
  stderr_write.reset();
  error_write.reset();

  // EOF: exec succeeded (the pipe was close-on-exec). A record: the child failed and exits.
  ChildError child_error;
  ssize_t got;
  do {
    got = ::read(error_read.get(), &child_error, sizeof child_error);
  } while (got < 0 && errno == EINTR);
  error_read.reset();
  if (spec.on_started) spec.on_started(pid);
  if (got != 0) {
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    (void)reap_box();
    if (got == static_cast<ssize_t>(sizeof child_error)) {
      return io_error(child_error_text(child_error, program, plan, spec));
    }
    return io_error("cannot start '" + program + "': lost the child's startup report");
  }

  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd.valid()) {
    int err = errno;
    ::killpg(pid, SIGKILL);
    if (plan.pid_ns) ::kill(pid, SIGKILL);
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    (void)reap_box();
    return io_error("cannot watch '" + program + "' (pidfd_open): " + errno_text(err));
  }

  const bool has_deadline = spec.timeout.count() > 0;
  const auto deadline = start + spec.timeout;
  bool leader_exited = false;
  bool killed = false;
  SteadyClock::time_point drain_until;
  size_t stdin_offset = 0;
  auto kill_group = [&] {
    // The leader is not reaped yet, so `pid` still names this group and nothing else.
    // With a PID namespace, killing its init kills every process in it.
    if (plan.pid_ns) {
      ::kill(pid, SIGKILL);
    } else {
      ::killpg(pid, SIGKILL);
    }
    if (cgroup) cgroup->kill();  // also what left the group (setsid) or double-forked
    killed = true;
    drain_until = SteadyClock::now() + kDrainGrace;
    stdin_write.reset();
  };

  for (;;) {
    bool pipes_open = stdout_read.valid() || stderr_read.valid();
    if (leader_exited && !pipes_open) break;
    if (killed && pipes_open && SteadyClock::now() >= drain_until) {
      // Only a process that left the group can still hold them: abandon its output.
      stdout_read.reset();
      stderr_read.reset();
      continue;
    }

    enum Slot { kStdout, kStderr, kStdin, kPidfd, kCancel, kSlots };
    pollfd fds[kSlots];
    fds[kStdout] = {stdout_read.get(), POLLIN, 0};
    fds[kStderr] = {stderr_read.get(), POLLIN, 0};
    fds[kStdin] = {stdin_write.get(), POLLOUT, 0};
    fds[kPidfd] = {leader_exited ? -1 : pidfd.get(), POLLIN, 0};
    fds[kCancel] = {cancel != nullptr && !killed ? cancel->fd() : -1, POLLIN, 0};
    int timeout_ms = -1;
    if (killed) {
      if (pipes_open) timeout_ms = poll_timeout_ms(drain_until);
    } else if (has_deadline) {
      timeout_ms = poll_timeout_ms(deadline);
    }

    int ready = ::poll(fds, kSlots, timeout_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      // Cannot happen with valid fds; do not leave the job running.
      int err = errno;
      if (!killed) kill_group();
      if (!leader_exited) {
        int status;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
      }
      (void)reap_box();
      return io_error("poll failed while running '" + program + "': " + errno_text(err));
    }

    const short done = POLLIN | POLLHUP | POLLERR;
    if (fds[kStdout].revents & done) {
      if (!read_some(stdout_read.get(), result.stdout_data, spec.output_cap,
                     result.stdout_truncated)) {
        stdout_read.reset();
      }
    }
    if (fds[kStderr].revents & done) {
      if (!read_some(stderr_read.get(), result.stderr_data, spec.output_cap,
                     result.stderr_truncated)) {
        stderr_read.reset();
      }
    }
    if (fds[kStdin].revents & (POLLOUT | POLLHUP | POLLERR)) {
      if (!write_some(stdin_write.get(), spec.stdin_data, stdin_offset)) stdin_write.reset();
    }
    if (fds[kPidfd].revents & (POLLIN | POLLHUP)) {
      leader_exited = true;
      // Before reaping: the zombie leader keeps the group id reserved, so this cannot hit
      // an unrelated group. Stray descendants die and release the pipes.
      if (!killed) kill_group();
    }
    if (!killed && (fds[kCancel].revents & POLLIN)) {
      result.cancelled = true;
      kill_group();
    }
    if (!killed && has_deadline && SteadyClock::now() >= deadline) {
      result.timed_out = true;
      kill_group();
    }
  }

  int status = 0;
  pid_t waited;
  do {
    waited = ::waitpid(pid, &status, 0);
  } while (waited < 0 && errno == EINTR);
  int wait_errno = errno;
  // Before anyone reads what the job left: its group is empty, or the call fails.
  Status boxed = reap_box();
  result.wall_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start).count();
  if (waited < 0) {
    return io_error("cannot reap '" + program + "' (pid " + std::to_string(pid) +
                    "): " + errno_text(wait_errno));
  }
  if (!boxed.ok()) return boxed;
  if (plan.pid_ns) {
    // The program's own status, from init; none when init was killed (timeout, cancel, OOM).
    int program_status = 0;
    if (::read(status_read.get(), &program_status, sizeof program_status) ==
        static_cast<ssize_t>(sizeof program_status)) {
      status = program_status;
    }
  }
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  return result;
}

Result<UserIds> lookup_user(const std::string& name) {
  struct passwd pw;
  struct passwd* found = nullptr;
  std::vector<char> buf(16 * 1024);
  int rc = ::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
  if (rc != 0) return io_error("cannot look up user '" + name + "': " + std::strerror(rc));
  if (found == nullptr) return not_found("no user '" + name + "' on this host");
  return UserIds{found->pw_uid, found->pw_gid, found->pw_dir ? found->pw_dir : "/"};
}

}  // namespace kforge
