// A real child process for tests that run kforge's binaries: started with fork/exec,
// output appended to a log file, killed (SIGTERM, then SIGKILL) when the test is done.
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "common/process.h"
#include "tests/support/support.h"

namespace kforge::test {

class Child {
 public:
  Child(std::filesystem::path exe, std::vector<std::string> args, std::filesystem::path log,
        std::filesystem::path cwd)
      : exe_(std::move(exe)), args_(std::move(args)), log_(std::move(log)), cwd_(std::move(cwd)) {
    start();
  }
  ~Child() { stop(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool running() { return !reap(); }
  pid_t pid() const { return pid_; }
  std::string log() const { return read_file(log_); }
  // The wait status once reaped (see running()/kill()); -1 before.
  int wait_status() const { return status_; }

  // Sends `sig` and waits for the process to exit; false if it is still running after
  // `deadline`.
  bool kill(int sig, std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
    if (pid_ > 0) ::kill(pid_, sig);
    return wait_until([&] { return reap(); }, deadline);
  }
  // SIGTERM (the orderly path), then SIGKILL if that was not enough.
  void stop() {
    if (pid_ <= 0) return;
    if (!kill(SIGTERM, std::chrono::seconds(5))) kill(SIGKILL, std::chrono::seconds(10));
  }

 private:
  void start() {
    std::vector<std::string> all = {exe_.string()};
    all.insert(all.end(), args_.begin(), args_.end());
    std::string cwd = cwd_.string();
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    int out = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    REQUIRE_MESSAGE(out >= 0, log_.string() << ": " << std::strerror(errno));
    REQUIRE(in >= 0);
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid == 0) {
      // Only async-signal-safe calls from here to exec.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      struct rlimit no_core = {0, 0};
      ::setrlimit(RLIMIT_CORE, &no_core);  // a crash must not leave core files behind
      if (::chdir(cwd.c_str()) != 0) ::_exit(127);
      ::dup2(in, 0);
      ::dup2(out, 1);
      ::dup2(out, 2);
      ::signal(SIGCHLD, SIG_DFL);
      ::signal(SIGPIPE, SIG_DFL);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::execv(argv[0], argv.data());
      const char msg[] = "exec failed\n";
      [[maybe_unused]] ssize_t n = ::write(2, msg, sizeof msg - 1);
      ::_exit(127);
    }
    ::close(out);
    ::close(in);
    REQUIRE_MESSAGE(pid > 0, "fork: " << std::strerror(errno));
    pid_ = pid;
  }

  // True once the process has exited (reaping it).
  bool reap() {
    if (pid_ <= 0) return true;
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = st;
      pid_ = -1;
      return true;
    }
    if (r < 0 && errno == ECHILD) {
      pid_ = -1;
      return true;
    }
    return false;
  }

  std::filesystem::path exe_;
  std::vector<std::string> args_;
  std::filesystem::path log_;
  std::filesystem::path cwd_;
  pid_t pid_ = -1;
  int status_ = -1;
};

// What a run of the kforge command line gave.
struct Ran {
  int code = -1;
  std::string out, err;
};

// Runs build/cli/kforge with `args` to completion (PATH, HOME, TMPDIR and LANG passed on, and
// `env`; not KFORGE_COORDINATOR: each test names its own coordinator).
inline Ran kforge_cli(const std::vector<std::string>& args,
                      std::chrono::milliseconds timeout = std::chrono::seconds(240),
                      const std::map<std::string, std::string>& env = {}) {
  ProcessSpec spec;
  spec.argv = {(binary_dir() / "cli" / "kforge").string()};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.timeout = timeout;
  spec.env_allow = {"PATH", "HOME", "TMPDIR", "LANG"};
  spec.env = env;
  auto r = run_process(spec);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return Ran{r->exit_code, r->stdout_data, r->stderr_data};
}

}  // namespace kforge::test
