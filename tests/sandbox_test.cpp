// The job box (common/sandbox.h through ProcessSpec::box) with real processes, cgroups and
// namespaces. Needs root and the kernel features; each test says why when it skips.
#include "common/sandbox.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pty.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "common/fs.h"
#include "common/process.h"
#include "tests/support/support.h"

using namespace kforge;
using kforge::test::write_file;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// One CgroupRoot and support probe for the whole test binary.
struct Host {
  std::shared_ptr<CgroupRoot> cgroups;
  SandboxSupport support;
  std::string skip;  // why boxed tests cannot run here
  Host() {
    if (::geteuid() != 0) {
      skip = "not root";
      return;
    }
    auto root = CgroupRoot::open("test-" + random_hex_id().substr(0, 12));
    if (root.ok()) cgroups = *root;
    support = probe_sandbox(cgroups.get());
    if (!cgroups)
      skip = "no cgroups: " + root.status().message();
    else if (!support.missing.empty())
      skip = support.missing.front();
    else
      MESSAGE("jobs contained by " << cgroups->describe());
  }
};

Host& host() {
  static Host h;
  return h;
}

#define REQUIRE_BOX()                                                     \
  do {                                                                    \
    if (!host().skip.empty()) {                                           \
      MESSAGE("skipped: the full box is not available: " << host().skip); \
      return;                                                             \
    }                                                                     \
  } while (0)

Box full_box() {
  Box box = box_for(host().support, host().cgroups);
  box.tmp_mb = 16;
  return box;
}

// A work root the job uids can traverse, and helpers to run a shell script in the box.
struct Jobs {
  test::TempDir dir;
  Jobs() { fs::permissions(dir.path(), fs::perms(0711)); }

  std::unique_ptr<JobDir> job_dir(uid_t uid, uint64_t quota_mb = 16) {
    auto d = JobDir::create(dir.path(), uid, uid, quota_mb);
    REQUIRE_MESSAGE(d.ok(), d.status().to_string());
    return std::move(d.value());
  }

  static ProcessSpec spec(const std::string& script, uid_t uid, const fs::path& work,
                          Box box = full_box()) {
    ProcessSpec spec;
    spec.argv = {"/bin/sh", "-c", script};
    spec.env["PATH"] = "/usr/bin:/bin";
    spec.run_as = UserIds{uid, uid, "/"};
    spec.cwd = work;
    box.writable.push_back(work);
    spec.box = box;
    spec.timeout = 60s;
    return spec;
  }
};

ProcessResult run_ok(const ProcessSpec& spec, CancelToken* cancel = nullptr) {
  auto r = run_process(spec, cancel);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return std::move(r).value();
}

// Host pids of live (not zombie) processes owned by `uid`.
std::vector<int> processes_of(uid_t uid) {
  std::vector<int> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    std::string name = e.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::ifstream in(e.path() / "status");
    std::string line;
    bool zombie = false;
    uid_t real = static_cast<uid_t>(-1);
    while (std::getline(in, line)) {
      if (line.rfind("State:", 0) == 0) zombie = line.find('Z') != std::string::npos;
      if (line.rfind("Uid:", 0) == 0) real = static_cast<uid_t>(std::stoul(line.substr(4)));
    }
    if (real == uid && !zombie) out.push_back(std::stoi(name));
  }
  return out;
}

}  // namespace

TEST_CASE("an escaped setsid watcher is dead and its cgroup gone when run_process returns") {
  REQUIRE_BOX();
  Jobs jobs;
  const uid_t uid = 61001;
  for (bool pid_ns : {true, false}) {
    CAPTURE(pid_ns);
    auto work = jobs.job_dir(uid);
    Box box = full_box();
    box.pid_ns = pid_ns;  // without it the cgroup alone must catch the watcher
    // Double fork plus setsid: the watcher leaves the process group and the job's session.
    auto r = run_ok(Jobs::spec("(setsid sh -c 'sleep 1000' > /dev/null 2>&1 &) ; echo started", uid,
                               work->path(), box));
    CHECK(r.exit_code == 0);
    CHECK(r.stdout_data == "started\n");
    CHECK(processes_of(uid).empty());  // no waiting: gone before run_process returned
    std::error_code ec;
    size_t groups = 0;
    for (auto it = fs::directory_iterator(host().cgroups->kill_dir(), ec);
         it != fs::directory_iterator(); ++it) {
      if (it->is_directory()) ++groups;
    }
    CHECK(groups == 0);
  }
}

TEST_CASE("a job cannot write another job's directory") {
  REQUIRE_BOX();
  Jobs jobs;
  auto a = jobs.job_dir(61002);
  auto b = jobs.job_dir(61003);
  CHECK(a->path().parent_path() == b->path().parent_path());
  CHECK(a->path() != b->path());
  // Even with B's directory in A's view (bound writable), B's uid and mode 0700 keep A out.
  Box box = full_box();
  box.writable.push_back(b->path());
  std::string script = "echo mine > own && echo evil > " + (b->path() / "evil").string() +
                       " ; ls " + b->path().string() + " ; exit 0";
  auto r = run_ok(Jobs::spec(script, 61002, a->path(), box));
  CHECK(fs::exists(a->path() / "own"));
  CHECK_FALSE(fs::exists(b->path() / "evil"));
  CHECK(r.stderr_data.find("Permission denied") != std::string::npos);
  // Without the bind, B's directory is on the read-only host tree.
  r = run_ok(Jobs::spec("echo evil > " + (b->path() / "evil").string(), 61002, a->path()));
  CHECK(r.exit_code != 0);
  CHECK_FALSE(fs::exists(b->path() / "evil"));
}

TEST_CASE("a job has no network but its own loopback") {
  REQUIRE_BOX();
  Jobs jobs;
  // A listener in this (the agent's) namespace: the job must not reach it.
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  REQUIRE(listener >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(listener, 4) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  int port = ntohs(addr.sin_port);
  auto work = jobs.job_dir(61004);
  std::string py =
      "import socket\n"
      "try:\n"
      "    socket.create_connection(('127.0.0.1', " +
      std::to_string(port) +
      "), timeout=5)\n"
      "    print('connected')\n"
      "except OSError as e:\n"
      "    print('refused', e.errno)\n"
      "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\n"
      "c = socket.create_connection(s.getsockname(), timeout=5)\n"
      "print('loopback ok')\n"
      "print('routes', len(open('/proc/net/route').read().splitlines()) - 1)\n";
  write_file(work->path() / "net.py", py);
  REQUIRE(work->hand_over().ok());
  auto r = run_ok(Jobs::spec("/usr/bin/python3 net.py", 61004, work->path()));
  CAPTURE(r.stderr_data);
  CHECK(r.stdout_data.find("refused") != std::string::npos);
  CHECK(r.stdout_data.find("connected") == std::string::npos);
  CHECK(r.stdout_data.find("loopback ok") != std::string::npos);
  CHECK(r.stdout_data.find("routes 0") != std::string::npos);  // no route out of the host
  CHECK(::accept(listener, nullptr, nullptr) < 0);             // nobody knocked
  ::close(listener);
}

TEST_CASE("a disk flood stops at the quota and leaves the host's /tmp alone") {
  REQUIRE_BOX();
  Jobs jobs;
  auto work = jobs.job_dir(61005, 8);
  std::string marker = "kforge-flood-" + random_hex_id().substr(0, 8);
  std::string script = "dd if=/dev/zero of=/tmp/" + marker +
                       " bs=1M count=64 2>&1; "
                       "dd if=/dev/zero of=flood bs=1M count=64 2>&1; "
                       "ls -l /tmp/" +
                       marker + " flood";
  Box box = full_box();
  box.tmp_mb = 8;
  auto r = run_ok(Jobs::spec(script, 61005, work->path(), box));
  CAPTURE(r.stdout_data);
  size_t first = r.stdout_data.find("No space left on device");
  CHECK(first != std::string::npos);                                                     // /tmp
  CHECK(r.stdout_data.find("No space left on device", first + 1) != std::string::npos);  // work dir
  CHECK_FALSE(fs::exists(fs::path("/tmp") / marker));                // private /tmp
  CHECK(fs::file_size(work->path() / "flood") <= 8u * 1024 * 1024);  // the work dir quota
}

TEST_CASE("a job's disk bandwidth is limited on every disk of the host") {
  REQUIRE_BOX();
  if (!host().support.io) {
    MESSAGE("skipped: no io (v1 blkio) controller for job cgroups on this host");
    return;
  }
  Jobs jobs;
  auto work = jobs.job_dir(61010);
  // The job reads its own group's limits (the host's cgroup tree is visible, read-only).
  std::string script =
      "p=$(awk -F: '$2==\"blkio\"{print $3}' /proc/self/cgroup); "
      "if [ -n \"$p\" ]; then cat /sys/fs/cgroup/blkio$p/blkio.throttle.read_bps_device "
      "/sys/fs/cgroup/blkio$p/blkio.throttle.write_bps_device; "
      "else p=$(awk -F: '$1==\"0\"{print $3}' /proc/self/cgroup); cat /sys/fs/cgroup$p/io.max; fi";
  Box box = full_box();
  box.io_mbps = 7;
  auto r = run_ok(Jobs::spec(script, 61010, work->path(), box));
  CAPTURE(r.stdout_data);
  const std::string bps = std::to_string(7u << 20);
  size_t lines = 0;
  for (size_t at = r.stdout_data.find(bps); at != std::string::npos;
       at = r.stdout_data.find(bps, at + 1))
    ++lines;
  CHECK(lines >= 2);  // read and write, on at least one disk
}

TEST_CASE("a job's /dev/shm is its own") {
  REQUIRE_BOX();
  Jobs jobs;
  std::string mine = "kforge-host-" + random_hex_id().substr(0, 8);
  std::string theirs = "kforge-job-" + random_hex_id().substr(0, 8);
  write_file(fs::path("/dev/shm") / mine, "host");
  auto work = jobs.job_dir(61006);
  auto r = run_ok(Jobs::spec("ls /dev/shm; echo job > /dev/shm/" + theirs + " && echo wrote", 61006,
                             work->path()));
  CHECK(r.stdout_data.find(mine) == std::string::npos);
  CHECK(r.stdout_data.find("wrote") != std::string::npos);
  CHECK_FALSE(fs::exists(fs::path("/dev/shm") / theirs));
  fs::remove(fs::path("/dev/shm") / mine);
}

TEST_CASE("a job over its memory cap is OOM-killed and says so") {
  REQUIRE_BOX();
  if (!host().support.memory) {
    MESSAGE("skipped: no memory controller");
    return;
  }
  Jobs jobs;
  auto work = jobs.job_dir(61007);
  Box box = full_box();
  box.memory_mb = 64;
  auto r = run_ok(Jobs::spec("exec /usr/bin/python3 -c 'b = bytearray(512 << 20); print(len(b))'",
                             61007, work->path(), box));
  CHECK(r.memory_exceeded);
  CHECK(r.signal == SIGKILL);
  CHECK(r.stdout_data.empty());
  // Under the cap: not reported.
  box.memory_mb = 256;
  r = run_ok(Jobs::spec("exec /usr/bin/python3 -c 'b = bytearray(16 << 20); print(len(b))'", 61007,
                        work->path(), box));
  CHECK_FALSE(r.memory_exceeded);
  CHECK(r.exit_code == 0);
  CHECK(r.memory_peak_bytes > (16u << 20));
}

TEST_CASE("a fork bomb stops at the process cap and says so") {
  REQUIRE_BOX();
  Jobs jobs;
  auto work = jobs.job_dir(61008);
  Box box = full_box();
  box.pids = 16;
  auto r = run_ok(
      Jobs::spec("for i in $(seq 40); do sleep 100 & done; echo done", 61008, work->path(), box));
  CHECK(r.pids_exceeded);
  CHECK(processes_of(61008).empty());
}

TEST_CASE("a job cannot see or signal another job's processes") {
  REQUIRE_BOX();
  Jobs jobs;
  auto wa = jobs.job_dir(61009);
  auto wb = jobs.job_dir(61010);
  CancelToken cancel_a;
  Result<ProcessResult> ra = io_error("not run");
  std::thread runner(
      [&] { ra = run_process(Jobs::spec("sleep 1000", 61009, wa->path()), &cancel_a); });
  std::vector<int> victims;
  REQUIRE(test::wait_until([&] {
    victims = processes_of(61009);
    return !victims.empty();
  }));
  std::string script;
  for (int pid : victims) script += "kill -9 " + std::to_string(pid) + " ; ";
  script += "ps -e -o pid= | wc -l";  // what the job can see: only itself
  auto rb = run_ok(Jobs::spec(script, 61010, wb->path()));
  CHECK(rb.stderr_data.find("No such process") != std::string::npos);
  cancel_a.cancel();
  runner.join();
  REQUIRE(ra.ok());
  CHECK(ra->cancelled);  // killed by the cancel, not by the other job
  CHECK(processes_of(61009).empty());
}

TEST_CASE("a job's /proc shows only its own processes, not its init's command line") {
  REQUIRE_BOX();
  Jobs jobs;
  auto work = jobs.job_dir(61019);
  // pid 1 of the job's namespace is a copy of this process (the agent, in production): its
  // command line names this test binary.
  std::string self = test::read_file("/proc/self/cmdline");
  REQUIRE(!self.empty());
  std::string me = fs::path(self.c_str()).filename().string();
  std::string script =
      "cat /proc/1/cmdline; echo; cat /proc/1/environ; echo; "
      // until the child has exec'd sleep its cmdline is the forked shell's: wait for the
      // exec (a bounded number of reads), not for a time
      "sleep 100 & p=$!; for i in $(seq 2000); do c=$(tr '\\0' ' ' < /proc/$p/cmdline); "
      "case \"$c\" in sleep*) break;; esac; done; echo child=$c; kill $p; "
      "for d in /proc/[0-9]*; do stat -c 'owner=%u' $d; done | sort -u";
  auto r = run_ok(Jobs::spec(script, 61019, work->path()));
  CAPTURE(r.stdout_data);
  CAPTURE(r.stderr_data);
  CHECK(r.stdout_data.find(me) == std::string::npos);
  CHECK(r.stderr_data.find("/proc/1/cmdline") != std::string::npos);  // not there to read
  CHECK(r.stdout_data.find("child=sleep 100") != std::string::npos);  // its own tree is
  CHECK(r.stdout_data.find("owner=61019") != std::string::npos);
  CHECK(r.stdout_data.find("owner=0") == std::string::npos);
}

TEST_CASE("a job cannot connect to the host's Unix sockets under /run") {
  REQUIRE_BOX();
  // A world-writable socket such as the system's D-Bus or journal sockets.
  const fs::path path =
      fs::path("/run") / ("kforge-test-" + random_hex_id().substr(0, 8) + ".sock");
  int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  REQUIRE(listener >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(listener, 4) == 0);
  fs::permissions(path, fs::perms(0777));
  Jobs jobs;
  auto work = jobs.job_dir(61020);
  std::string py =
      "import socket\n"
      "s = socket.socket(socket.AF_UNIX)\n"
      "try:\n"
      "    s.connect('" +
      path.string() +
      "')\n"
      "    print('connected')\n"
      "except OSError as e:\n"
      "    print('refused', e.errno)\n";
  write_file(work->path() / "unix.py", py);
  REQUIRE(work->hand_over().ok());
  // What the cover takes away: with the host's mount view the job reaches the socket.
  Box open_view = full_box();
  open_view.mount_ns = false;
  auto before = run_ok(Jobs::spec("/usr/bin/python3 unix.py", 61020, work->path(), open_view));
  CAPTURE(before.stderr_data);
  CHECK(before.stdout_data.find("connected") != std::string::npos);
  int knocked = ::accept(listener, nullptr, nullptr);
  CHECK(knocked >= 0);
  if (knocked >= 0) ::close(knocked);
  auto r = run_ok(Jobs::spec("/usr/bin/python3 unix.py; ls -A /run /var/run", 61020, work->path()));
  CAPTURE(r.stderr_data);
  CHECK(r.stdout_data.find("refused") != std::string::npos);
  CHECK(r.stdout_data.find("connected") == std::string::npos);
  CHECK(r.stdout_data.find(path.filename().string()) == std::string::npos);
  CHECK(::accept(listener, nullptr, nullptr) < 0);  // nobody knocked
  ::close(listener);
  fs::remove(path);
}

TEST_CASE("a job cannot ptrace or leave anything for the next job of its slot uid") {
  REQUIRE_BOX();
  Jobs jobs;
  auto w1 = jobs.job_dir(61011);
  // The first job leaves a watcher and a file in /tmp, /dev/shm; all go with it.
  run_ok(Jobs::spec("(setsid sleep 1000 &); echo x > /tmp/left; echo x > /dev/shm/left", 61011,
                    w1->path()));
  auto w2 = jobs.job_dir(61011);
  auto r = run_ok(Jobs::spec("ls /tmp /dev/shm; ps -e -o comm=", 61011, w2->path()));
  CHECK(r.stdout_data.find("left") == std::string::npos);
  CHECK(r.stdout_data.find("sleep") == std::string::npos);
}

TEST_CASE("a job cannot reach the terminal of whoever started it") {
  REQUIRE_BOX();
  // `kforge verify` or `kforge run` typed by root in a terminal: the job must not open it
  // (/dev/tty), or it could read the keys root types and push its own (TIOCSTI).
  Jobs jobs;
  auto work = jobs.job_dir(61015);
  const std::string script = "exec 3<>/dev/tty && echo reached the terminal";
  int master = -1;
  pid_t pid = ::forkpty(&master, nullptr, nullptr, nullptr);  // a child whose terminal is a pty
  REQUIRE(pid >= 0);
  if (pid == 0) {
    auto r = run_process(Jobs::spec(script, 61015, work->path()));
    bool held = r.ok() && r->stdout_data.empty() && r->exit_code != 0;
    ::_exit(!r.ok() ? 2 : held ? 0 : 1);
  }
  ::fcntl(master, F_SETFL, O_NONBLOCK);
  int status = 0;
  bool ended = test::wait_until(
      [&] {
        char buf[256];
        while (::read(master, buf, sizeof buf) > 0) {  // drain whatever reaches the terminal
        }
        return ::waitpid(pid, &status, WNOHANG) == pid;
      },
      60s);
  if (!ended) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  ::close(master);
  REQUIRE(ended);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);  // 1: the job opened the terminal
}

TEST_CASE("a job's system calls that reach into the kernel or other processes fail") {
  REQUIRE_BOX();
  Jobs jobs;
  auto work = jobs.job_dir(61016);
  // Each call as an unprivileged user could make it without the filter; with it, EPERM.
  std::string py =
      "import ctypes, errno, os\n"
      "libc = ctypes.CDLL(None, use_errno=True)\n"
      "def call(name, *args):\n"
      "    rc = libc.syscall(*args)\n"
      "    if rc == 0 and name.startswith('clone'): os._exit(0)\n"  // the clone's child
      "    print(name, 'EPERM' if rc == -1 and ctypes.get_errno() == errno.EPERM else 'allowed')\n"
      "call('ptrace', 101, 0, 0, 0, 0)\n"   // PTRACE_TRACEME
      "call('unshare', 272, 0x10000000)\n"  // CLONE_NEWUSER
      "call('clone-newuser', 56, 0x10000000 | 17, 0, 0, 0, 0)\n"
      "call('keyctl', 250, 0, -3, 0, 0, 0)\n"  // KEYCTL_GET_KEYRING_ID
      "call('userfaultfd', 323, 1)\n"          // UFFD_USER_MODE_ONLY
      "call('bpf', 321, 0, 0, 0)\n"
      "call('perf_event_open', 298, 0, 0, -1, -1, 0)\n"
      "call('io_uring_setup', 425, 1, 0)\n"
      "call('process_vm_readv', 310, 1, 0, 0, 0, 0, 0)\n"
      "pid = os.fork()\n"  // plain fork and threads still work
      "if pid == 0: os._exit(7)\n"
      "print('fork', os.waitpid(pid, 0)[1] >> 8)\n"
      "import threading; t = threading.Thread(target=lambda: None); t.start(); t.join(); "
      "print('thread ok')\n";
  write_file(work->path() / "calls.py", py);
  REQUIRE(work->hand_over().ok());
  auto r = run_ok(Jobs::spec("/usr/bin/python3 calls.py", 61016, work->path()));
  CAPTURE(r.stdout_data);
  CAPTURE(r.stderr_data);
  for (const char* name : {"ptrace", "unshare", "clone-newuser", "keyctl", "userfaultfd", "bpf",
                           "perf_event_open", "io_uring_setup", "process_vm_readv"}) {
    CHECK_MESSAGE(r.stdout_data.find(std::string(name) + " EPERM\n") != std::string::npos, name);
  }
  CHECK(r.stdout_data.find("fork 7\n") != std::string::npos);
  CHECK(r.stdout_data.find("thread ok\n") != std::string::npos);
}

TEST_CASE("a harness under a 0700 directory is readable by jobs once copied") {
  REQUIRE_BOX();
  test::TempDir clone;  // mkdtemp: 0700, like a clone under /root
  write_file(clone / "harness" / "kforge_harness.py", "print('harness ok')\n");
  write_file(clone / "harness" / "pkg" / "mod.py", "X = 1\n");
  Jobs jobs;
  auto work = jobs.job_dir(61012);
  // Straight from the 0700 tree as the host has it: refused, and check_traversable says why.
  Box naive = full_box();
  naive.mount_ns = false;
  auto direct =
      run_ok(Jobs::spec("/usr/bin/python3 " + (clone / "harness" / "kforge_harness.py").string(),
                        61012, work->path(), naive));
  CHECK(direct.stderr_data.find("Permission denied") != std::string::npos);
  Status st = check_traversable(clone / "harness");
  CHECK(st.code() == Code::failed_precondition);
  CHECK(st.message().find(clone.path().string()) != std::string::npos);
  // The agent's copy: root-owned 0755 under the (traversable) work root.
  fs::path copy = jobs.dir / "harness";
  REQUIRE(install_readable_copy(clone / "harness", copy).ok());
  Box box = full_box();
  box.readable.push_back(copy);  // under /tmp, which the job sees as its own tmpfs
  auto r = run_ok(Jobs::spec("/usr/bin/python3 " + (copy / "kforge_harness.py").string() +
                                 " && cat " + (copy / "pkg" / "mod.py").string() + " && touch " +
                                 (copy / "x").string(),
                             61012, work->path(), box));
  CHECK(r.stdout_data == "harness ok\nX = 1\n");
  CHECK_FALSE(fs::exists(copy / "x"));  // read-only for the job
}

TEST_CASE("the agent's state directories are hidden from jobs") {
  REQUIRE_BOX();
  Jobs jobs;
  test::TempDir state;
  fs::permissions(state.path(), fs::perms(0755));
  write_file(state / "outbox.db", "secret");
  fs::permissions(state / "outbox.db", fs::perms(0644));
  auto work = jobs.job_dir(61013);
  Box box = full_box();
  box.hidden.push_back(state.path());
  auto r = run_ok(
      Jobs::spec("cat " + (state / "outbox.db").string() + "; ls -a " + state.path().string(),
                 61013, work->path(), box));
  CHECK(r.stdout_data.find("secret") == std::string::npos);
  CHECK(r.stderr_data.find("No such file") != std::string::npos);
}

TEST_CASE("a job sees nothing of the work root but its own directory") {
  REQUIRE_BOX();
  // A work root outside /tmp (agent.work_dir), covered in the job's view like the agent's:
  // the judge's files and other workers' directories stay out of sight.
  std::string tmpl = "/var/tmp/kforge-test-XXXXXX";
  REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
  const fs::path root = tmpl;
  fs::permissions(root, fs::perms(0711));
  const fs::path verifier = root / "verifier-cpu0";
  fs::create_directories(verifier);
  fs::permissions(verifier, fs::perms(0755));
  write_file(verifier / "judge-file", "the judge's");
  fs::permissions(verifier / "judge-file", fs::perms(0644));
  {
    auto mine = JobDir::create(verifier, 61017, 61017, 16);
    auto other = JobDir::create(verifier, 61018, 61018, 16);
    REQUIRE(mine.ok());
    REQUIRE(other.ok());
    std::string script = "ls -a " + verifier.string() + "; cat " +
                         (verifier / "judge-file").string() + "; touch own && echo wrote";
    Box seen = full_box();
    auto before = run_ok(Jobs::spec(script, 61017, (*mine)->path(), seen));
    CHECK(before.stdout_data.find("judge-file") != std::string::npos);  // what hiding takes away
    Box box = full_box();
    box.hidden.push_back(root);
    auto r = run_ok(Jobs::spec(script, 61017, (*mine)->path(), box));
    CAPTURE(r.stdout_data);
    CAPTURE(r.stderr_data);
    CHECK(r.stdout_data.find("judge-file") == std::string::npos);
    CHECK(r.stdout_data.find("the judge's") == std::string::npos);
    CHECK(r.stdout_data.find((*other)->path().filename().string()) == std::string::npos);
    CHECK(r.stdout_data.find("wrote") != std::string::npos);
    CHECK(fs::exists((*mine)->path() / "own"));
  }
  fs::remove_all(root);
}

TEST_CASE("leftover job groups and directories are removed at restart") {
  REQUIRE_BOX();
  const std::string tag = "test-restart-" + random_hex_id().substr(0, 8);
  auto first = CgroupRoot::open(tag);
  REQUIRE(first.ok());
  Jobs jobs;
  auto work = jobs.job_dir(61014);
  work->keep();  // as if the agent died with the job running
  Box box = full_box();
  box.cgroups = *first;
  Result<ProcessResult> r = io_error("not run");
  std::thread runner([&] { r = run_process(Jobs::spec("sleep 1000", 61014, work->path(), box)); });
  REQUIRE(test::wait_until([&] { return !processes_of(61014).empty(); }));
  // The next agent opens the same root: the job dies, its group goes.
  auto second = CgroupRoot::open(tag);
  REQUIRE(second.ok());
  CHECK((*second)->remove_leftovers() == 1);
  runner.join();
  REQUIRE(r.ok());
  CHECK(r->signal == SIGKILL);
  CHECK(processes_of(61014).empty());
  CHECK(remove_stale_job_dirs(jobs.dir.path(), {}) == 1);
  CHECK(fs::is_empty(jobs.dir.path()));
}

TEST_CASE("job uids come from the configured range, one per running job") {
  CHECK_FALSE(UidPool::parse("").ok());
  CHECK_FALSE(UidPool::parse("0-10").ok());
  CHECK_FALSE(UidPool::parse("10-5").ok());
  CHECK_FALSE(UidPool::parse("60000-x").ok());
  auto pool = UidPool::parse("60000-60001");
  REQUIRE(pool.ok());
  auto a = (*pool)->acquire();
  auto b = (*pool)->acquire();
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(a->uid() == 60000);
  CHECK(b->uid() == 60001);
  CHECK_FALSE((*pool)->acquire().ok());
  a->release();
  auto c = (*pool)->acquire();
  REQUIRE(c.ok());
  CHECK(c->uid() == 60000);
}

TEST_CASE("the probe names every missing feature") {
  SandboxSupport s = probe_sandbox(nullptr);
  bool named = false;
  for (const auto& line : s.missing) named = named || line.find("cgroups") != std::string::npos;
  CHECK(named);
  Box box = box_for(s, nullptr);
  CHECK(box.cgroups == nullptr);
}
