#include "common/process.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "tests/support/support.h"

using namespace kforge;
using namespace std::chrono_literals;

namespace {

ProcessSpec sh(const std::string& script) {
  ProcessSpec spec;
  spec.argv = {"/bin/sh", "-c", script};
  return spec;
}

ProcessResult run_ok(const ProcessSpec& spec, CancelToken* cancel = nullptr) {
  Result<ProcessResult> r = run_process(spec, cancel);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return std::move(r).value();
}

// True once `pid` no longer runs: gone, or a zombie waiting for its new parent (which may be
// an init that never reaps) to collect it.
bool process_dead(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!in || !std::getline(in, line)) return true;
  size_t paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 >= line.size()) return true;
  char state = line[paren + 2];
  return state == 'Z' || state == 'X';
}

// The first line of `text` as a pid.
int first_pid(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  REQUIRE_MESSAGE(!line.empty(), "the child printed no pid");
  return std::stoi(line);
}

}  // namespace

TEST_CASE("exit code is reported") {
  ProcessResult r = run_ok(sh("exit 3"));
  CHECK(r.exit_code == 3);
  CHECK(r.signal == 0);
  CHECK_FALSE(r.timed_out);
  CHECK(r.pid > 0);
}

TEST_CASE("stdout and stderr are captured separately") {
  ProcessResult r = run_ok(sh("echo out; echo err >&2"));
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data == "out\n");
  CHECK(r.stderr_data == "err\n");
  CHECK_FALSE(r.stdout_truncated);
}

TEST_CASE("stdin data is delivered, then closed") {
  ProcessSpec spec;
  spec.argv = {"cat"};
  spec.stdin_data = "hello\nworld\n";
  ProcessResult r = run_ok(spec);
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data == "hello\nworld\n");
}

TEST_CASE("large stdin and stdout flow at once without deadlock") {
  ProcessSpec spec;
  spec.argv = {"cat"};
  spec.stdin_data = std::string(8 << 20, 'x');
  spec.output_cap = 16 << 20;
  ProcessResult r = run_ok(spec);
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data == spec.stdin_data);
}

TEST_CASE("without stdin data the child reads /dev/null") {
  ProcessResult r = run_ok(sh("cat; echo done"));
  CHECK(r.stdout_data == "done\n");
}

TEST_CASE("stdin the child never reads does not raise SIGPIPE in the caller") {
  // With the default disposition a stray SIGPIPE would kill this test process.
  auto old = ::signal(SIGPIPE, SIG_DFL);
  ProcessSpec spec = sh("exit 0");
  spec.stdin_data = std::string(16 << 20, 'x');
  ProcessResult r = run_ok(spec);
  ::signal(SIGPIPE, old);
  CHECK(r.exit_code == 0);
}

TEST_CASE("a hung child is killed at the timeout") {
  ProcessSpec spec;
  spec.argv = {"sleep", "1000"};
  spec.timeout = 200ms;
  ProcessResult r = run_ok(spec);
  CHECK(r.timed_out);
  CHECK(r.signal == SIGKILL);
  CHECK(r.exit_code == -1);
  CHECK(r.wall_ms >= 200);
  CHECK(r.wall_ms < 100'000);  // well before the child's own sleep would end
}

TEST_CASE("grandchildren are killed with the child at the timeout") {
  ProcessSpec spec = sh("sleep 1000 & echo $!; sleep 1000 & wait");
  spec.timeout = 1500ms;  // only needs to outlast two forks and an echo
  ProcessResult r = run_ok(spec);
  CHECK(r.timed_out);
  CHECK(r.signal == SIGKILL);
  int grandchild = first_pid(r.stdout_data);
  CHECK(test::wait_until([&] { return process_dead(grandchild); }));
}

TEST_CASE("a grandchild left behind by a child that exits normally is killed") {
  // The background sleep holds stdout open; without the final kill this would block until
  // the (generous) timeout.
  ProcessSpec spec = sh("sleep 1000 & echo $!");
  spec.timeout = 60s;
  ProcessResult r = run_ok(spec);
  CHECK(r.exit_code == 0);
  CHECK_FALSE(r.timed_out);
  CHECK(r.wall_ms < 100'000);
  int grandchild = first_pid(r.stdout_data);
  CHECK(test::wait_until([&] { return process_dead(grandchild); }));
}

TEST_CASE("a child killed by a signal reports the signal") {
  test::TempDir dir;  // for a core file, if the system writes one
  ProcessSpec spec = sh("kill -SEGV $$");
  spec.cwd = dir.path();
  ProcessResult r = run_ok(spec);
  CHECK(r.signal == SIGSEGV);
  CHECK(r.exit_code == -1);
  CHECK_FALSE(r.timed_out);
}

TEST_CASE("output beyond the cap is read and discarded") {
  ProcessSpec spec;
  spec.argv = {"head", "-c", "50000000", "/dev/zero"};
  spec.output_cap = 64 * 1024;
  ProcessResult r = run_ok(spec);
  CHECK(r.exit_code == 0);  // it was never blocked on a full pipe
  CHECK(r.stdout_data.size() == spec.output_cap);
  CHECK(r.stdout_truncated);
  CHECK_FALSE(r.stderr_truncated);
}

TEST_CASE("the environment is exactly env_allow plus env") {
  ::setenv("KFORGE_SECRET", "hunter2", 1);
  ProcessSpec spec;
  spec.argv = {"env"};
  spec.env = {{"KFORGE_JOB", "42"}};
  ProcessResult scrubbed = run_ok(spec);
  CHECK(scrubbed.stdout_data == "KFORGE_JOB=42\n");

  spec.env_allow = {"KFORGE_SECRET", "KFORGE_UNSET_NAME"};
  ProcessResult allowed = run_ok(spec);
  CHECK(allowed.stdout_data == "KFORGE_JOB=42\nKFORGE_SECRET=hunter2\n");

  spec.env["KFORGE_SECRET"] = "override";
  ProcessResult overridden = run_ok(spec);
  CHECK(overridden.stdout_data == "KFORGE_JOB=42\nKFORGE_SECRET=override\n");
  ::unsetenv("KFORGE_SECRET");
}

TEST_CASE("PATH in env decides where argv[0] is found") {
  test::TempDir dir;
  test::write_file(dir / "kforge-hello", "#!/bin/sh\necho hello from path\n");
  std::filesystem::permissions(dir / "kforge-hello", std::filesystem::perms::owner_all);
  ProcessSpec spec;
  spec.argv = {"kforge-hello"};
  CHECK_FALSE(run_process(spec).ok());
  spec.env["PATH"] = "/nonexistent:" + dir.path().string();
  ProcessResult r = run_ok(spec);
  CHECK(r.stdout_data == "hello from path\n");
}

TEST_CASE("the file size limit stops a large write") {
  test::TempDir dir;
  // head writes the file itself, so SIGXFSZ lands on the leader.
  ProcessSpec spec = sh("exec head -c 4000000 /dev/zero > big");
  spec.cwd = dir.path();
  spec.limits.file_size_mb = 1;
  ProcessResult r = run_ok(spec);
  CHECK(r.signal == SIGXFSZ);
  CHECK(std::filesystem::file_size(dir / "big") <= (1u << 20));
}

TEST_CASE("resource limits are visible in the child") {
  ProcessSpec spec = sh("ulimit -n; ulimit -v; ulimit -t");
  spec.limits.open_files = 17;
  spec.limits.address_space_mb = 512;
  spec.limits.cpu_s = 30;
  ProcessResult r = run_ok(spec);
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data == "17\n524288\n30\n");  // ulimit -v is in KiB
}

TEST_CASE("the child cannot raise its limits back") {
  // The hard limit was lowered too, so even the soft limit cannot go above it (even for root).
  ProcessSpec spec = sh("ulimit -S -n 100");
  spec.limits.open_files = 17;
  ProcessResult r = run_ok(spec);
  CHECK(r.exit_code != 0);
}

TEST_CASE("no file descriptor beyond 0, 1 and 2 is inherited") {
  test::TempDir dir;
  test::write_file(dir / "kforge-leak-marker", "x");
  int leaked = ::open((dir / "kforge-leak-marker").c_str(), O_RDONLY);  // not close-on-exec
  REQUIRE(leaked >= 0);
  ProcessResult r = run_ok(sh("ls -l /proc/self/fd/"));
  ::close(leaked);
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data.find("kforge-leak-marker") == std::string::npos);
  CHECK(r.stdout_data.find("pipe:") != std::string::npos);  // stdout itself is listed
}

TEST_CASE("signal dispositions are reset in the child") {
  auto old = ::signal(SIGTERM, SIG_IGN);
  ProcessResult r = run_ok(sh("kill -TERM $$; exit 0"));
  ::signal(SIGTERM, old);
  CHECK(r.signal == SIGTERM);
}

TEST_CASE("cwd is honoured") {
  test::TempDir dir;
  ProcessSpec spec;
  spec.argv = {"pwd", "-P"};
  spec.cwd = dir.path();
  ProcessResult r = run_ok(spec);
  CHECK(r.stdout_data == std::filesystem::canonical(dir.path()).string() + "\n");
}

TEST_CASE("a missing program is an io_error naming it") {
  ProcessSpec spec;
  spec.argv = {"kforge-no-such-program", "arg"};
  Result<ProcessResult> r = run_process(spec);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Code::io_error);
  CHECK(r.status().message() == "cannot exec 'kforge-no-such-program': No such file or directory");
}

TEST_CASE("a missing cwd is an io_error naming it") {
  ProcessSpec spec;
  spec.argv = {"true"};
  spec.cwd = "/nonexistent/kforge-dir";
  Result<ProcessResult> r = run_process(spec);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Code::io_error);
  CHECK(r.status().message().find("/nonexistent/kforge-dir") != std::string::npos);
}

TEST_CASE("an empty argv is rejected") {
  Result<ProcessResult> r = run_process(ProcessSpec{});
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Code::invalid_argument);
}

TEST_CASE("cancel from another thread kills the group promptly") {
  test::TempDir dir;
  ProcessSpec spec = sh("sleep 1000 & echo $! > grandchild; echo started > started; wait");
  spec.cwd = dir.path();
  CancelToken token;
  Result<ProcessResult> r = internal_error("not run");
  std::thread runner([&] { r = run_process(spec, &token); });
  bool started = test::wait_until([&] { return test::read_file(dir / "started") == "started\n"; });
  token.cancel();
  runner.join();
  REQUIRE(started);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  CHECK(r->cancelled);
  CHECK_FALSE(r->timed_out);
  CHECK(r->signal == SIGKILL);
  CHECK(r->wall_ms < 100'000);
  int grandchild = first_pid(test::read_file(dir / "grandchild"));
  CHECK(test::wait_until([&] { return process_dead(grandchild); }));
}

TEST_CASE("a token cancelled before the run kills the job at once") {
  CancelToken token;
  token.cancel();
  CHECK(token.cancelled());
  ProcessSpec spec;
  spec.argv = {"sleep", "1000"};
  ProcessResult r = run_ok(spec, &token);
  CHECK(r.cancelled);
  CHECK(r.signal == SIGKILL);
}

TEST_CASE("runs from several threads at once stay independent") {
  constexpr int kThreads = 8;
  std::string outputs[kThreads];
  std::thread threads[kThreads];
  for (int i = 0; i < kThreads; ++i) {
    threads[i] = std::thread([i, &outputs] {
      for (int round = 0; round < 5; ++round) {
        Result<ProcessResult> r = run_process(sh("echo " + std::to_string(i)));
        if (r.ok()) outputs[i] += r->stdout_data;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kThreads; ++i) {
    std::string one = std::to_string(i) + "\n";
    CHECK(outputs[i] == one + one + one + one + one);
  }
}

TEST_CASE("a job never writes a core dump") {
  ProcessSpec spec;
  spec.argv = {"sh", "-c", "ulimit -c; ulimit -H -c"};
  auto r = run_process(spec);
  REQUIRE(r.ok());
  CHECK(r->stdout_data == "0\n0\n");
}

TEST_CASE("a child can run as an unprivileged user, where the process limit holds") {
  if (::geteuid() != 0) return;  // only root can switch users
  // A uid of its own: RLIMIT_NPROC counts every process of the user, and other tests run
  // jobs as nobody at the same time.
  UserIds user{54321, 54321, "/"};
  ProcessSpec spec;
  spec.argv = {"sh", "-c", "id -u; for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done; wait"};
  spec.run_as = user;
  spec.limits.processes = 4;
  spec.timeout = std::chrono::seconds(20);
  auto r = run_process(spec);
  REQUIRE(r.ok());
  CHECK(r->stdout_data.rfind("54321\n", 0) == 0);
  CHECK(r->stderr_data.find("fork") != std::string::npos);  // sh: cannot fork
  CHECK_FALSE(r->timed_out);
}

TEST_CASE("an unknown user is reported by name") {
  auto r = lookup_user("kforge-no-such-user");
  CHECK(r.status().code() == Code::not_found);
  CHECK(r.status().message().find("kforge-no-such-user") != std::string::npos);
}
