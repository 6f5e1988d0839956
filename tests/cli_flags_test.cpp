// The command line's flags as a user meets them, against real processes: timeouts against a
// coordinator that never answers, --version of every program.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/process.h"
#include "tests/support/child.h"

using namespace kforge;
using namespace kforge::test;

namespace {

// A listener that never answers: the kernel completes the connection, nobody reads it.
struct HungCoordinator {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int port = 0;
  HungCoordinator() {
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd, 16) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port = ntohs(addr.sin_port);
  }
  ~HungCoordinator() { ::close(fd); }
};

}  // namespace

TEST_CASE("a hung coordinator costs a query its timeout, not minutes; --timeout sets it") {
  HungCoordinator hung;
  const std::string where = "127.0.0.1:" + std::to_string(hung.port);
  Ran quick = kforge_cli({"status", "--coordinator", where, "--token", "t", "--timeout", "1"},
                         std::chrono::seconds(60));
  CHECK(quick.code == 3);
  CHECK_MESSAGE(quick.err.find("the coordinator at http://" + where +
                               " did not answer within 1 s") != std::string::npos,
                quick.err);
  // Without --timeout a query gives up after its default (the test's own limit is far above it).
  Ran fallback =
      kforge_cli({"agents", "--coordinator", where, "--token", "t"}, std::chrono::seconds(120));
  CHECK(fallback.code == 3);
  CHECK_MESSAGE(fallback.err.find("did not answer within 20 s") != std::string::npos, fallback.err);
  // Defaults match the operation; --help says them.
  CHECK(kforge_cli({"status", "--help"}).out.find("0: no limit (default 20)") != std::string::npos);
  CHECK(kforge_cli({"drain", "--help"}).out.find("0: no limit (default 30)") != std::string::npos);
  CHECK(kforge_cli({"export", "--help"}).out.find("0: no limit (default 600)") !=
        std::string::npos);
  Ran bad = kforge_cli({"status", "--coordinator", where, "--timeout", "soon"});
  CHECK(bad.code == 2);
  CHECK(bad.err.find("flag '--timeout': expected a non-negative integer, got 'soon'") !=
        std::string::npos);
}

TEST_CASE("--version names the program once, with the version and commit; so do flag mistakes") {
  for (auto [exe, name] :
       {std::pair{binary_dir() / "coordinator" / "kforge-coordinator", "kforge-coordinator"},
        {binary_dir() / "agent" / "kforge-agent", "kforge-agent"},
        {binary_dir() / "cli" / "kforge", "kforge"}}) {
    CAPTURE(name);
    for (const char* flag : {"--version", "--colour"}) {
      ProcessSpec spec;
      spec.argv = {exe.string(), flag};
      spec.timeout = std::chrono::seconds(30);
      auto r = run_process(spec);
      REQUIRE(r.ok());
      std::string text = r->stdout_data + r->stderr_data;
      CHECK_MESSAGE(text.find(std::string(name) + ": " + name) == std::string::npos, text);
      if (std::string(flag) == "--version") {
        CHECK(r->exit_code == 0);
        CHECK(r->stdout_data.rfind(std::string(name) + " " KFORGE_VERSION " (commit ", 0) == 0);
      } else {
        CHECK(r->exit_code == 2);
      }
    }
  }
}

TEST_CASE(
    "flag mistakes name the flag and what it wants; a flag given twice takes its last value") {
  auto run = [](const std::filesystem::path& exe, std::vector<std::string> args) {
    ProcessSpec spec;
    spec.argv = {exe.string()};
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    spec.timeout = std::chrono::seconds(30);
    auto r = run_process(spec);
    REQUIRE(r.ok());
    return Ran{r->exit_code, r->stdout_data, r->stderr_data};
  };
  const auto kforge = binary_dir() / "cli" / "kforge",
             agent = binary_dir() / "agent" / "kforge-agent";
  Ran missing = run(kforge, {"status", "--timeout"});
  CHECK(missing.code == 2);
  CHECK(missing.err ==
        "kforge status: flag '--timeout' needs a value: seconds to wait for each answer of the "
        "coordinator; 0: no limit\n");
  Ran agent_missing = run(agent, {"--no-probe", "--cpu-devices"});
  CHECK(agent_missing.code == 2);
  CHECK(agent_missing.err ==
        "kforge-agent: flag '--cpu-devices' needs a value: number of CPU devices to offer (default "
        "1)\n");
  Ran valued_switch = run(kforge, {"status", "--json=yes"});
  CHECK(valued_switch.code == 2);
  CHECK(valued_switch.err == "kforge status: flag '--json' takes no value\n");
  Ran short_flag = run(kforge, {"tasks", "-x"});
  CHECK(short_flag.code == 2);
  CHECK(short_flag.err ==
        "kforge tasks: unknown flag '-x'; run `kforge tasks --help` for the list\n");
  Ran with_value = run(kforge, {"tasks", "--colour=red"});
  CHECK(with_value.err ==
        "kforge tasks: unknown flag '--colour'; run `kforge tasks --help` for the list\n");
  // The last --timeout is the one read (checked before any connection is tried).
  Ran twice = run(
      kforge, {"status", "--coordinator", "127.0.0.1:1", "--timeout", "5", "--timeout", "soon"});
  CHECK(twice.code == 2);
  CHECK(twice.err.find("expected a non-negative integer, got 'soon'") != std::string::npos);
  // A command's flags end at "--": what follows is the job's command line, dashes and all.
  Ran job = run(kforge, {"enqueue", "--data", "/nonexistent", "--", "echo", "--colour"});
  CHECK(job.code == 1);
  CHECK(job.err.find("no kforge database at /nonexistent") != std::string::npos);
}

TEST_CASE(
    "--help lists the commands, and each command's flags with what they take and their defaults") {
  Ran top = kforge_cli({"--help"});
  CHECK(top.code == 0);
  for (const char* command : {"drain", "undrain", "cluster", "agents", "tasks", "version"}) {
    CHECK_MESSAGE(top.out.find("\n  " + std::string(command) + " ") != std::string::npos, command);
  }
  Ran tasks = kforge_cli({"tasks", "--help"});
  CHECK(tasks.code == 0);
  CHECK(tasks.out.rfind(
            "usage: kforge tasks [options]\n\ntasks, filtered by campaign, state, op or verdict\n",
            0) == 0);
  CHECK(tasks.out.find("--verdict VALUE") != std::string::npos);
  CHECK(tasks.out.find("--json ") != std::string::npos);
  CHECK(tasks.out.find("0: no limit (default 20)") != std::string::npos);
  CHECK(kforge_cli({"tasks", "-h"}).out == tasks.out);
  ProcessSpec spec;
  spec.argv = {(binary_dir() / "coordinator" / "kforge-coordinator").string(), "-h"};
  auto coordinator = run_process(spec);
  REQUIRE(coordinator.ok());
  CHECK(coordinator->exit_code == 0);
  CHECK(coordinator->stdout_data.rfind("usage: kforge-coordinator [options]\n", 0) == 0);
  CHECK(coordinator->stdout_data.find("--listen VALUE") != std::string::npos);
  CHECK(coordinator->stdout_data.find(
            "ZeroMQ endpoint for agents (default tcp://127.0.0.1:7700)") != std::string::npos);
}

// (One coordinator for both: each costs a kforge run.)
