// kforge-bench-scale: the coordinator's memory, CPU and log under a steady fleet of fake
// agents, and under a flood of malformed frames.
//
// Starts a real kforge-coordinator process (its own temporary data directory, a config that
// sets heartbeat_ms and a log file, `--listen tcp://127.0.0.1:*`, no operator API) and N fake
// agents speaking the real wire protocol: one DEALER per agent over TCP loopback with routing
// id "<agent_id>/<incarnation>", a Hello with D cpu devices, a Heartbeat every H ms once
// welcomed. No jobs run: the figures measure what a steady fleet costs the coordinator.
//
// Optionally --churn agents per second restart (a new incarnation, a new socket, a new
// Hello), and a flood: --flood-clients DEALERs that are not agents send malformed frames as
// fast as the socket takes them, from --flood-at s for --flood-seconds s (or until
// --flood-frames were sent), then the soak goes on so what the coordinator gives back shows.
//
// Every --sample-ms the coordinator's VmRSS (/proc/PID/status), its CPU use
// (/proc/PID/stat) and the size of its log (file and stderr) are printed as a `sample:` line;
// the summary follows as `name: value` lines. --coordinator runs another build's binary (the
// main branch's, for a baseline) under the same load.
//
// --tasks N measures a campaign of N tasks instead of a fleet (issue 21): a verify_only
// campaign (a 5 KB file whose sweep expands to N tasks, up to 1,000,000; --campaign-tasks
// splits it into several campaigns, for builds with a lower limit) is submitted with `kforge
// submit` through the operator API of a running coordinator (its wall time, the CLI's peak
// RSS and the coordinator's highest RSS meanwhile), or with `--data` before the coordinator
// starts (--submit-offline, the only way for builds before scale21's). With every task queued
// and no agent connected it prints the coordinator's RSS and CPU for --idle-seconds (after
// --settle-seconds), the latency of `GET /api/v1/tasks` pages (first, middle and last, by
// `after` and by `offset`) and of job pages by `after`, of the dashboard's progress, alerts,
// LLM health and a comparison page (issue 18), the cost of `kforge results --csv`
// (wall, the CLI's peak RSS, the coordinator's highest RSS meanwhile), then kills it
// (SIGKILL), starts it again on the same data and times the first Assign a fresh fake agent
// (one cpu device) receives: restart_to_dispatch_ms. --submit-only stops after the
// submission's figures.
//
// --evolve-tasks N measures a search campaign (issue 17): a coder_only campaign of N profile
// tasks (one op swept over N points) run twice, each time to its end on a fresh coordinator,
// first under `[search] strategy = "fix_loop"`, then "evolve" (--islands, --island-size,
// --generations; migration after every generation). The Coder is the tests' fake
// OpenAI-compatible server (tests/support/fake_llm.h, --llm-concurrency requests in flight)
// answering from search_test's pool of variants; the fake agents (--agents, default 16, x
// --devices) answer each verify job at once with its variant's verdict and profile speedup.
// Per strategy: candidates judged, the coordinator's CPU and the wall time per candidate,
// queued -> assigned and assigned -> result recorded (the jobs' own timestamps, p50/p99/max),
// RSS (VmHWM, end), LLM requests; then evolve's figures over fix_loop's.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/flags.h"
#include "common/fs.h"
#include "common/protocol.h"
#include "common/zmq_util.h"
#include "tests/support/fake_llm.h"

namespace kforge {
namespace {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             SteadyClock::now().time_since_epoch())
      .count();
}

const std::vector<FlagSpec> kFlags = {
    {"agents", true, "fake agents (default 1000)"},
    {"devices", true, "cpu devices per agent (default 8)"},
    {"seconds", true, "soak length after registration, in s (default 60)"},
    {"heartbeat-ms", true, "each agent's heartbeat interval (default 1000)"},
    {"coordinator-heartbeat-ms", true, "the coordinator's heartbeat_ms (default 1000)"},
    {"max-heartbeats-per-s", true,
     "the coordinator's max_heartbeats_per_s (default: not written, the coordinator's own)"},
    {"agent-threads", true, "threads driving the fake agents, per process (default 1)"},
    {"agent-processes", true,
     "processes the fake agents are spread over (default 1; each DEALER takes two fds)"},
    {"churn", true, "agents restarted (new incarnation) per second (default 0)"},
    {"flood-clients", true, "DEALERs sending malformed frames (default 0: no flood)"},
    {"flood-at", true, "flood start, s after registration (default 10)"},
    {"flood-seconds", true, "flood length in s (default 30)"},
    {"flood-frames", true, "stop the flood after this many frames per client (default: no cap)"},
    {"flood-bytes", true, "size of each malformed frame (default 200)"},
    {"sample-ms", true, "interval between samples (default 5000)"},
    {"coordinator", true, "kforge-coordinator binary (default: beside this build's bench)"},
    {"log-level", true, "the coordinator's log level (default info)"},
    {"tasks", true,
     "measure a campaign of this many tasks instead of a fleet (default 0: the fleet)"},
    {"settle-seconds", true,
     "--tasks: wait this long after the start before measuring (default 10)"},
    {"idle-seconds", true, "--tasks: measure idle CPU and RSS this long (default 20)"},
    {"kforge", true,
     "--tasks: the kforge CLI that submits the campaign (default: beside this build's bench)"},
    {"campaign-tasks", true,
     "--tasks: tasks per campaign (default 1000000: one campaign up to that)"},
    {"submit-offline", false,
     "--tasks: submit with --data before the coordinator starts, not through its API"},
    {"submit-only", false,
     "--tasks: stop after the submission's figures (submit_s, RSS, database size)"},
    {"evolve-tasks", true,
     "a coder_only campaign of this many tasks, under fix_loop then evolve (default 0)"},
    {"islands", true, "--evolve-tasks: evolve's islands (default 2)"},
    {"island-size", true, "--evolve-tasks: children per island and generation (default 2)"},
    {"generations", true, "--evolve-tasks: evolve's generations (default 3)"},
    {"llm-concurrency", true, "--evolve-tasks: the fake Coder's requests in flight (default 16)"},
    {"keep", false, "keep the temporary directory (data, config, logs)"},
    {"help", false, "show this message"},
};

int fail(const std::string& message) {
  std::fprintf(stderr, "kforge-bench-scale: %s\n", message.c_str());
  return 1;
}

// ---- The coordinator process --------------------------------------------------------------

struct CoordinatorProcess {
  pid_t pid = -1;
  std::string endpoint;

  std::string api;         // the operator API's URL, when it serves one
  int64_t started_ms = 0;  // when it was forked

  // Starts `exe` with stdout on a pipe (its first line names the endpoint) and stderr
  // appended to `stderr_path`. With `api`, also waits for the API's URL (and the dashboard
  // line printed with it, so nothing is written to the pipe after it is closed).
  Status start(const fs::path& exe, const std::vector<std::string>& args,
               const fs::path& stderr_path, bool with_api = false) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return io_error("pipe: " + std::string(std::strerror(errno)));
    int err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (err < 0) return io_error(stderr_path.string() + ": " + std::strerror(errno));
    std::vector<std::string> all = {exe.string()};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t parent = ::getpid();
    started_ms = now_ms();
    pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::dup2(out[1], 1);
      ::dup2(err, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(err);
    if (pid < 0) return io_error("fork: " + std::string(std::strerror(errno)));
    // "listening tcp://127.0.0.1:PORT\n", maybe after lines of a wrapper (heaptrack).
    const std::string prefix = "listening ";
    std::string text;
    int64_t deadline = now_ms() + 30'000;
    auto line_of = [&](const std::string& head) -> std::optional<std::string> {
      size_t start = 0;
      for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
        std::string line = text.substr(start, nl - start);
        if (line.rfind(head, 0) == 0) return line.substr(head.size());
      }
      return std::nullopt;
    };
    auto endpoint_line = [&] { return line_of(prefix); };
    while (!endpoint_line() || (with_api && !line_of("dashboard "))) {
      pollfd p{out[0], POLLIN, 0};
      int left = static_cast<int>(std::max<int64_t>(deadline - now_ms(), 0));
      if (left == 0 || ::poll(&p, 1, left) <= 0) break;
      char buf[256];
      ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, static_cast<size_t>(n));
    }
    ::close(out[0]);
    auto found = endpoint_line();
    if (!found) {
      return io_error("the coordinator did not say where it listens (see " + stderr_path.string() +
                      ")");
    }
    endpoint = *found;
    api = line_of("api ").value_or("");
    if (with_api && api.empty()) return io_error("the coordinator did not say where its API is");
    return Status();
  }

  void kill_now() {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    pid = -1;
  }

  bool alive() const { return pid > 0 && ::kill(pid, 0) == 0; }

  void stop() {
    if (pid <= 0) return;
    ::kill(pid, SIGTERM);
    for (int i = 0; i < 200; ++i) {
      if (::waitpid(pid, nullptr, WNOHANG) == pid) {
        pid = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    pid = -1;
  }
};

// VmRSS (or another /proc/PID/status field in kB: VmHWM) of `pid` in MiB; -1 if unavailable.
double rss_mb(pid_t pid, const std::string& field = "VmRSS:") {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0)
      return std::strtod(line.c_str() + field.size(), nullptr) / 1024.0;
  }
  return -1;
}

// utime + stime of `pid` in seconds.
double cpu_s(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  // Fields after the command: state(3) ... utime(14) stime(15).
  std::vector<std::string> fields;
  size_t pos = close + 2;
  while (pos < stat.size() && fields.size() < 13) {
    size_t space = stat.find(' ', pos);
    fields.push_back(stat.substr(pos, space - pos));
    pos = space == std::string::npos ? stat.size() : space + 1;
  }
  if (fields.size() < 13) return 0;
  double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  return (std::strtod(fields[11].c_str(), nullptr) + std::strtod(fields[12].c_str(), nullptr)) /
         ticks;
}

// Bytes in every file under `dir` whose name starts with `prefix` (a log and its rotations).
uint64_t bytes_of(const fs::path& dir, const std::string& prefix) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().filename().string().rfind(prefix, 0) == 0) total += e.file_size(ec);
  }
  return total;
}

// ---- Fake agents --------------------------------------------------------------------------

struct FakeAgent {
  std::string id;
  std::string routing_id;
  zmq::socket_t socket;
  int fd = -1;
  bool welcomed = false;
  int64_t next_heartbeat_ms = 0;
  uint32_t heartbeat_ms = 0;  // a longer interval the coordinator asked for (0: the group's)
  std::vector<proto::JobRef> outbox;  // results sent and not yet acknowledged
};

struct FleetStats {
  std::atomic<uint64_t> welcomes{0};    // Welcomes received (re-registrations included)
  std::atomic<uint64_t> registered{0};  // agents welcomed at least once
  std::atomic<uint64_t> heartbeats{0};
  std::atomic<uint64_t> stretched{0};  // agents the coordinator asked for a longer interval
  std::atomic<uint64_t> refused{0};
  std::atomic<uint64_t> restarts{0};
  std::atomic<uint64_t> bad_frames{0};
  std::atomic<uint64_t> reassigned{0};  // Assigns of an attempt after the first (epoch > 1)
};

// The verdict a fake agent reports for a verify job: the scripted variant its candidate names
// ("# variant: NAME", the fake Coder's answers under --evolve-tasks), with that variant's
// verdict and profile speedup; a candidate of no variant does not compile.
VerifyResult scripted_verdict(const proto::Assign& assign) {
  struct Variant {
    const char* name;
    double speedup;  // 0: compile_error
  };
  static const Variant kVariants[] = {{"broken", 0}, {"slow", 1.0}, {"medium", 1.6}, {"fast", 3.2}};
  for (const auto& [name, text] : assign.files) {
    for (const Variant& v : kVariants) {
      if (text.find(std::string("# variant: ") + v.name + "\n") == std::string::npos) continue;
      if (v.speedup == 0) return verify_failure(Verdict::compile_error, "scripted");
      VerifyResult r;
      r.verdict = Verdict::passed;
      r.profile = Profile{};
      r.profile->speedup = v.speedup;
      return r;
    }
  }
  return verify_failure(Verdict::compile_error, "scripted: no variant");
}

// Drives a group of fake agents from one thread with epoll over the sockets' ZMQ_FDs.
class AgentGroup {
 public:
  AgentGroup(zmq::context_t& ctx, std::string endpoint, int first, int count, uint32_t devices,
             uint32_t heartbeat_ms, double churn_per_s, FleetStats& stats,
             uint32_t coordinator_heartbeat_ms = 0)
      : ctx_(ctx),
        endpoint_(std::move(endpoint)),
        devices_(devices),
        heartbeat_ms_(heartbeat_ms),
        coordinator_heartbeat_ms_(coordinator_heartbeat_ms),
        churn_per_s_(churn_per_s),
        stats_(stats) {
    for (int i = first; i < first + count; ++i) {
      auto a = std::make_unique<FakeAgent>();
      char name[32];
      std::snprintf(name, sizeof name, "scale-%05d", i);
      a->id = name;
      agents_.push_back(std::move(a));
    }
  }

  void start() {
    thread_ = std::thread([this] { loop(); });
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  void connect(FakeAgent& a, bool restart) {
    if (a.fd >= 0) {
      epoll_ctl(ep_, EPOLL_CTL_DEL, a.fd, nullptr);
      a.socket.close();
      a.fd = -1;
    }
    std::string incarnation = random_hex_id().substr(0, 12);
    a.routing_id = a.id + "/" + incarnation;
    auto socket = make_dealer(ctx_, endpoint_, a.routing_id);
    if (!socket.ok()) {
      std::fprintf(stderr, "kforge-bench-scale: %s\n", socket.status().to_string().c_str());
      std::exit(1);
    }
    a.socket = std::move(socket.value());
    a.fd = a.socket.get(zmq::sockopt::fd);
    a.welcomed = false;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &a;
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, a.fd, &ev) != 0) {
      std::perror("kforge-bench-scale: epoll_ctl");
      std::exit(1);
    }
    proto::Hello hello;
    hello.agent_id = a.id;
    hello.incarnation = incarnation;
    hello.host = "scale";
    hello.capabilities = {{"python", "3.11"}, {"bench", "scale"}};
    for (uint32_t d = 0; d < devices_; ++d) {
      hello.devices.push_back(proto::DeviceInfo{d, "cpu", "x86_64", "scale cpu", 0});
    }
    send(a, hello);
    if (restart) stats_.restarts++;
  }

  void send(FakeAgent& a, const proto::Message& m) {
    std::string bytes = proto::encode(m);
    (void)a.socket.send(zmq::buffer(bytes), zmq::send_flags::dontwait);
  }

  void loop() {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    for (auto& a : agents_) connect(*a, false);
    std::vector<epoll_event> events(agents_.size());
    size_t churn_next = 0;
    double churn_due = 0;
    int64_t last_churn_ms = now_ms();
    int64_t next_tick = 0;
    for (auto& a : agents_) drain(*a);
    while (!stop_) {
      int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), 5);
      for (int i = 0; i < n; ++i)
        drain(*static_cast<FakeAgent*>(events[static_cast<size_t>(i)].data.ptr));
      int64_t now = now_ms();
      if (now < next_tick) continue;
      next_tick = now + 5;
      for (auto& a : agents_) {
        if (a->welcomed && now >= a->next_heartbeat_ms) {
          a->next_heartbeat_ms = now + (a->heartbeat_ms ? a->heartbeat_ms : heartbeat_ms_);
          send(*a, proto::Heartbeat{{}, a->outbox});
          stats_.heartbeats++;
          drain(*a);  // a send may consume the ZMQ_FD notification
        }
      }
      if (churn_per_s_ > 0) {
        churn_due += churn_per_s_ * static_cast<double>(now - last_churn_ms) / 1000.0;
        last_churn_ms = now;
        while (churn_due >= 1) {
          churn_due -= 1;
          FakeAgent& a = *agents_[churn_next++ % agents_.size()];
          connect(a, true);
          drain(a);
        }
      }
    }
    for (auto& a : agents_) {
      send(*a, proto::Bye{"benchmark over"});
      a->socket.close();
    }
    ::close(ep_);
  }

  void drain(FakeAgent& a) {
    for (;;) {
      zmq::message_t msg;
      if (!a.socket.recv(msg, zmq::recv_flags::dontwait)) return;
      auto frame = proto::decode(msg.to_string());
      if (!frame.ok()) {
        stats_.bad_frames++;
        continue;
      }
      const proto::Message& m = frame->message;
      if (auto* welcome = std::get_if<proto::Welcome>(&m)) {
        follow(a, welcome->heartbeat_ms);
        if (!a.welcomed) {
          stats_.welcomes++;
          if (a.next_heartbeat_ms == 0) stats_.registered++;
          // Spread the heartbeats over the interval instead of sending them in lockstep.
          a.next_heartbeat_ms = now_ms() + static_cast<int64_t>(rng_() % heartbeat_ms_);
        }
        a.welcomed = true;
      } else if (std::holds_alternative<proto::Refused>(m)) {
        stats_.refused++;
      } else if (auto* assign = std::get_if<proto::Assign>(&m)) {
        // Jobs take no time: the verdict goes back at once (only --evolve-tasks queues jobs).
        if (assign->job.epoch > 1) stats_.reassigned++;
        proto::JobResult result;
        result.job = assign->job;
        result.agent_id = a.id;
        result.exit_code = 0;
        result.verify = scripted_verdict(*assign);
        result.started_ms = result.finished_ms = SystemClock::instance().wall_ms();
        a.outbox.push_back(assign->job);
        send(a, result);
      } else if (auto* ack = std::get_if<proto::ResultAck>(&m)) {
        auto it = std::find(a.outbox.begin(), a.outbox.end(), ack->job);
        if (it != a.outbox.end()) a.outbox.erase(it);
      } else if (auto* hb = std::get_if<proto::Heartbeat>(&m); hb && hb->heartbeat_ms) {
        follow(a, *hb->heartbeat_ms);
      }
      // Cancels need no answer.
    }
  }

  // As a real agent does when the coordinator stretches the fleet's interval beyond its
  // configured one (max_heartbeats_per_s); below that, the --heartbeat-ms under test holds.
  void follow(FakeAgent& a, uint32_t told_ms) {
    if (coordinator_heartbeat_ms_ == 0 || told_ms <= coordinator_heartbeat_ms_) return;
    if (a.heartbeat_ms == 0) stats_.stretched++;
    a.heartbeat_ms = std::max(heartbeat_ms_, told_ms);
  }

  zmq::context_t& ctx_;
  std::string endpoint_;
  uint32_t devices_;
  uint32_t heartbeat_ms_;
  uint32_t coordinator_heartbeat_ms_;  // its configured heartbeat_ms (0: never follow it)
  double churn_per_s_;
  FleetStats& stats_;
  std::vector<std::unique_ptr<FakeAgent>> agents_;
  std::minstd_rand rng_{std::random_device{}()};
  int ep_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

// ---- The flood ----------------------------------------------------------------------------

// Frames a broken or hostile client might send: not msgpack, a truncated map, a map that
// is not a message, a valid frame of an unknown type. None of them decodes.
std::vector<std::string> malformed_frames(size_t bytes, std::minstd_rand& rng) {
  std::vector<std::string> frames;
  std::string junk(bytes, '\0');
  for (auto& c : junk) c = static_cast<char>(rng());
  junk[0] = static_cast<char>(0xc1);  // a byte msgpack never uses
  frames.push_back(junk);
  std::string hello = proto::encode(proto::Hello{"flood", "x", "host", {}, {}, {}, {}});
  frames.push_back(hello.substr(0, hello.size() / 2));  // truncated
  std::string map =
      "\x81\xa3"
      "foo"
      "\xa3"
      "bar";  // {"foo": "bar"}
  frames.push_back(map + std::string(bytes > map.size() ? bytes - map.size() : 0, ' '));
  return frames;
}

class Flooder {
 public:
  Flooder(zmq::context_t& ctx, const std::string& endpoint, int index, size_t bytes,
          uint64_t max_frames)
      : max_frames_(max_frames) {
    std::minstd_rand rng(static_cast<uint32_t>(index) + 1);
    frames_ = malformed_frames(bytes, rng);
    auto socket = make_dealer(ctx, endpoint, "flood-" + std::to_string(index));
    if (!socket.ok()) {
      std::fprintf(stderr, "kforge-bench-scale: %s\n", socket.status().to_string().c_str());
      std::exit(1);
    }
    socket_ = std::move(socket.value());
  }
  void start() {
    thread_ = std::thread([this] { loop(); });
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    socket_.close();
  }
  uint64_t sent() const { return sent_; }

 private:
  void loop() {
    while (!stop_ && sent_ < max_frames_) {
      const std::string& f = frames_[sent_ % frames_.size()];
      if (socket_.send(zmq::buffer(f), zmq::send_flags::dontwait)) {
        sent_++;
        continue;
      }
      // The queue is full (the high-water mark): wait for room.
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLOUT, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(10));
    }
  }

  uint64_t max_frames_;
  std::vector<std::string> frames_;
  zmq::socket_t socket_;
  std::thread thread_;
  std::atomic<uint64_t> sent_{0};
  std::atomic<bool> stop_{false};
};

// ---- A campaign of many tasks -------------------------------------------------------------

// Writes campaigns of `tasks` verify_only tasks in all into `dir` (campaign-K.toml, `per`
// tasks each at most), each a small file whose sweep expands.
std::vector<fs::path> write_campaigns(const fs::path& dir, uint64_t tasks, uint64_t per) {
  {
    // About the size of a KernelBench reference (3 KB): its docstring stands for the rest.
    std::ofstream task(dir / "add.py");
    task << "\"\"\"" << std::string(3000, 'x') << "\"\"\"\n";
    task << "import torch\n\nA = 1\nB = 1\nC = 1\nD = 1\n\n\nclass Model(torch.nn.Module):\n"
            "    def forward(self, x):\n        return x + A\n\n\ndef get_inputs():\n"
            "    return [torch.randn(B * C * D)]\n\n\ndef get_init_inputs():\n    return []\n";
    std::ofstream candidate(dir / "add_candidate.py");
    candidate << "import torch\n\n\nclass ModelNew(torch.nn.Module):\n    def forward(self, x):\n"
                 "        return x + 1\n";
  }
  std::vector<fs::path> files;
  for (uint64_t done = 0, k = 0; done < tasks; ++k) {
    uint64_t n = std::min<uint64_t>(tasks - done, per);
    // n = a * b * c points (else one sweep of n).
    std::vector<std::pair<char, uint64_t>> axes;
    if (n % 10'000 == 0) {
      axes = {{'A', 100}, {'B', 100}, {'C', n / 10'000}};
    } else {
      axes = {{'A', n}};
    }
    fs::path file = dir / ("campaign-" + std::to_string(k) + ".toml");
    std::ofstream out(file);
    out << "name = \"scale-" << k
        << "\"\nworkflow = \"verify_only\"\n\n[defaults]\nbackend = \"cpu\"\n"
        << "arch = \"x86_64\"\nimpl_type = \"cpp\"\nframework = \"torch\"\n\n[[ops]]\nop_name = "
           "\"add\"\n"
        << "task_desc = \"add.py\"\ncandidate = \"add_candidate.py\"\n[ops.sweep]\nD = " << k + 1
        << "\n";
    for (auto [name, count] : axes) {
      out << name << " = [";
      for (uint64_t i = 0; i < count; ++i) out << (i ? ", " : "") << i + 1;
      out << "]\n";
    }
    files.push_back(file);
    done += n;
  }
  return files;
}

// What run_and_wait saw of the child.
struct ChildRun {
  int rc = -1;  // the exit status, or -1
  double wall_s = 0;
  double peak_rss_mb = 0;  // the child's high-water mark (ru_maxrss)
};

// Runs `argv` and waits for it; its stderr goes to `log`, its stdout too unless `out` is
// given. `meanwhile` is called every 200 ms until it exits (sampling another process).
ChildRun run_and_wait(std::vector<std::string> argv, const fs::path& log, const fs::path& out = {},
                      const std::function<void()>& meanwhile = {}) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const int64_t t0 = now_ms();
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int o = out.empty() ? fd : ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) ::dup2(fd, 2);
    if (o >= 0) ::dup2(o, 1);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ChildRun run;
  if (pid < 0) return run;
  int status = 0;
  rusage usage{};
  for (;;) {
    pid_t got = ::wait4(pid, &status, meanwhile ? WNOHANG : 0, &usage);
    if (got == pid) break;
    if (got < 0) return run;
    meanwhile();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // a sampling interval
  }
  run.wall_s = static_cast<double>(now_ms() - t0) / 1000.0;
  run.peak_rss_mb = static_cast<double>(usage.ru_maxrss) / 1024.0;
  run.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

// One request on loopback (HTTP/1.1, Connection: close; a POST has an empty JSON body):
// the status code and the time to the whole answer in ms, or {-1, ...} when it could not be had.
std::pair<int, double> http_request(const std::string& method, const std::string& url,
                                    const std::string& path, const std::string& token) {
  // url: http://127.0.0.1:PORT
  size_t colon = url.rfind(':');
  int port = std::atoi(url.c_str() + colon + 1);
  int64_t t0 = SteadyClock::now().time_since_epoch().count();
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (fd >= 0) ::close(fd);
    return {-1, 0};
  }
  std::string body = method == "POST" ? "{}" : "";
  std::string request =
      method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\nConnection: close\r\n\r\n" + body;
  (void)::write(fd, request.data(), request.size());
  std::string answer;
  char buf[65536];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;)
    answer.append(buf, static_cast<size_t>(n));
  ::close(fd);
  double ms = static_cast<double>(SteadyClock::now().time_since_epoch().count() - t0) / 1e6;
  int code = answer.size() > 12 ? std::atoi(answer.c_str() + 9) : -1;
  return {code, ms};
}

// Median latency of `reps` GETs of `path`, in ms; -1 when any failed.
double median_get_ms(const CoordinatorProcess& c, const std::string& path, const std::string& token,
                     int reps = 5) {
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    auto [code, t] = http_request("GET", c.api, path, token);
    if (code != 200) return -1;
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// A fresh fake agent with one cpu device: says Hello and waits for an Assign. The time it
// came (steady ms), or -1 at the deadline.
int64_t first_assign_ms(zmq::context_t& ctx, const std::string& endpoint, int64_t deadline_ms) {
  std::string incarnation = random_hex_id().substr(0, 12);
  auto socket = make_dealer(ctx, endpoint, "probe/" + incarnation);
  if (!socket.ok()) return -1;
  proto::Hello hello;
  hello.agent_id = "probe";
  hello.incarnation = incarnation;
  hello.host = "scale";
  hello.devices.push_back(proto::DeviceInfo{0, "cpu", "x86_64", "scale cpu", 0});
  std::string bytes = proto::encode(hello);
  (void)socket->send(zmq::buffer(bytes), zmq::send_flags::none);
  while (now_ms() < deadline_ms) {
    zmq::pollitem_t item{socket->handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(10));
    zmq::message_t msg;
    while (socket->recv(msg, zmq::recv_flags::dontwait)) {
      auto frame = proto::decode(msg.to_string());
      if (frame.ok() && std::holds_alternative<proto::Assign>(frame->message)) {
        int64_t at = now_ms();
        socket->close();
        return at;
      }
    }
  }
  socket->close();
  return -1;
}

uint64_t count_lines(const fs::path& p) {
  std::ifstream in(p);
  uint64_t n = 0;
  for (std::string line; std::getline(in, line);) n++;
  return n;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

// ---- Measurement --------------------------------------------------------------------------

struct Sample {
  double t_s;  // since registration finished (negative before)
  double rss_mb;
  double cpu_pct;
  uint64_t log_bytes;
};

// Least-squares slope of rss over t, in KiB/s.
double slope_kib_per_s(const std::vector<Sample>& s) {
  if (s.size() < 2) return 0;
  double n = static_cast<double>(s.size()), st = 0, sr = 0, stt = 0, str = 0;
  for (const Sample& x : s) {
    st += x.t_s;
    sr += x.rss_mb;
    stt += x.t_s * x.t_s;
    str += x.t_s * x.rss_mb;
  }
  double den = n * stt - st * st;
  return den == 0 ? 0 : (n * str - st * sr) / den * 1024.0;
}

void print(const char* name, double v, int decimals = 1) {
  std::printf("%s: %.*f\n", name, decimals, v);
}

Result<uint64_t> uint_flag(const ParsedFlags& flags, const std::string& name, uint64_t fallback) {
  auto v = flags.get(name);
  if (!v) return fallback;
  return parse_uint_flag(name, *v);
}

// --tasks: the campaign's costs (see the top of this file).
int run_tasks(const ParsedFlags& flags, const fs::path& exe, uint64_t tasks) {
  auto settle = uint_flag(flags, "settle-seconds", 10), idle = uint_flag(flags, "idle-seconds", 20);
  if (!settle.ok()) return fail(settle.status().message());
  if (!idle.ok()) return fail(idle.status().message());
  fs::path kforge = flags.get("kforge").value_or(
      (fs::canonical("/proc/self/exe").parent_path().parent_path() / "cli" / "kforge").string());
  if (!fs::exists(kforge))
    return fail(kforge.string() + " does not exist (build it, or pass --kforge)");
  fs::path dir = fs::temp_directory_path() / ("kforge-bench-scale-" + random_hex_id().substr(0, 8));
  fs::create_directories(dir);
  const fs::path data = dir / "data";
  {
    std::ofstream cfg(dir / "kforge.toml");
    cfg << "[coordinator]\n\n[coordinator.log]\nfile = \"" << (dir / "coordinator.log").string()
        << "\"\n";
  }
  std::printf("coordinator: %s\nkforge: %s\ndir: %s\ntasks: %llu\n", exe.c_str(), kforge.c_str(),
              dir.c_str(), static_cast<unsigned long long>(tasks));
  auto per = uint_flag(flags, "campaign-tasks", 1'000'000);
  if (!per.ok() || *per == 0) return fail("--campaign-tasks: expected a positive integer");
  const std::vector<fs::path> campaigns = write_campaigns(dir, tasks, *per);
  const std::vector<std::string> args = {"--config",    (dir / "kforge.toml").string(),
                                         "--listen",    "tcp://127.0.0.1:*",
                                         "--data",      data.string(),
                                         "--http",      "127.0.0.1:0",
                                         "--log-level", flags.get("log-level").value_or("info")};
  CoordinatorProcess coord;
  auto finish = [&] {
    coord.stop();
    if (!flags.has("keep")) {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
    return 0;
  };
  const bool offline = flags.has("submit-offline");
  double submit_s = 0, submit_rss = 0, coord_rss_submit = 0;
  auto submit_all = [&](const std::vector<std::string>& target) -> bool {
    for (const fs::path& file : campaigns) {
      std::vector<std::string> argv = {kforge.string(), "submit", file.string()};
      argv.insert(argv.end(), target.begin(), target.end());
      ChildRun run = run_and_wait(
          argv, dir / "submit.log", {}, offline ? std::function<void()>() : [&] {
            coord_rss_submit = std::max(coord_rss_submit, rss_mb(coord.pid));
          });
      if (run.rc != 0) return false;
      submit_s += run.wall_s;
      submit_rss = std::max(submit_rss, run.peak_rss_mb);
    }
    return true;
  };
  if (offline) {
    if (!submit_all({"--data", data.string()}))
      return fail("kforge submit failed (see " + (dir / "submit.log").string() + ")");
  }
  if (Status st = coord.start(exe, args, dir / "stderr.log", true); !st.ok())
    return fail(st.to_string());
  print("start_to_listening_ms", static_cast<double>(now_ms() - coord.started_ms), 0);
  const std::string token_file = (data / "api.token").string();
  if (!offline && !submit_all({"--coordinator", coord.api, "--token-file", token_file})) {
    return fail("kforge submit failed (see " + (dir / "submit.log").string() + ")");
  }
  print("submit_s", submit_s, 1);
  print("submit_cli_rss_peak_mb", submit_rss, 1);
  if (!offline) print("submit_coordinator_rss_max_mb", coord_rss_submit, 1);
  uint64_t db_bytes = bytes_of(data, "kforge.db");
  print("db_mb", static_cast<double>(db_bytes) / 1048576.0, 1);
  print("db_bytes_per_task", static_cast<double>(db_bytes) / static_cast<double>(tasks), 0);
  std::fflush(stdout);
  if (flags.has("submit-only")) return finish();
  coord.started_ms = now_ms();  // the settle and idle windows count from here

  // RSS and CPU every second: the settle (admission), then the idle window measured.
  double last_cpu = cpu_s(coord.pid);
  int64_t last_t = now_ms();
  const int64_t idle_from = coord.started_ms + static_cast<int64_t>(*settle) * 1000;
  const int64_t idle_to = idle_from + static_cast<int64_t>(*idle) * 1000;
  double idle_cpu_start = -1, rss_max = 0;
  while (now_ms() < idle_to) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
    if (!coord.alive())
      return fail("the coordinator exited (see " + (dir / "stderr.log").string() + ")");
    int64_t now = now_ms();
    double cpu = cpu_s(coord.pid), rss = rss_mb(coord.pid);
    rss_max = std::max(rss_max, rss);
    if (idle_cpu_start < 0 && now >= idle_from) idle_cpu_start = cpu;
    std::printf(
        "sample: t_s=%.0f rss_mb=%.1f cpu_pct=%.1f%s\n",
        static_cast<double>(now - coord.started_ms) / 1000.0, rss,
        100.0 * (cpu - last_cpu) / std::max(1e-3, static_cast<double>(now - last_t) / 1000.0),
        now >= idle_from ? " idle" : "");
    std::fflush(stdout);
    last_cpu = cpu;
    last_t = now;
  }
  double idle_cpu = cpu_s(coord.pid) - std::max(idle_cpu_start, 0.0);
  print("idle_cpu_pct", 100.0 * idle_cpu / static_cast<double>(std::max<uint64_t>(*idle, 1)), 2);
  print("rss_idle_mb", rss_mb(coord.pid));
  print("rss_max_mb", rss_max);
  print("rss_hwm_mb", rss_mb(coord.pid, "VmHWM:"));

  // Listing pages of 100: by cursor (after) and by offset, at the start, middle and end.
  const std::string token = read_text(data / "api.token");
  const uint64_t middle = tasks / 2, last = tasks > 100 ? tasks - 100 : 0;
  const std::string base = "/api/v1/tasks?limit=100";
  print("listing_first_ms", median_get_ms(coord, base, token), 2);
  print("listing_middle_after_ms",
        median_get_ms(coord, base + "&after=" + std::to_string(middle), token), 2);
  print("listing_last_after_ms",
        median_get_ms(coord, base + "&after=" + std::to_string(last), token), 2);
  print("listing_middle_offset_ms",
        median_get_ms(coord, base + "&offset=" + std::to_string(middle), token), 2);
  print("listing_last_offset_ms",
        median_get_ms(coord, base + "&offset=" + std::to_string(last), token), 2);
  print("jobs_first_ms", median_get_ms(coord, "/api/v1/jobs?limit=100", token), 2);
  print("jobs_last_after_ms",
        median_get_ms(coord, "/api/v1/jobs?limit=100&after=" + std::to_string(last), token), 2);
  // What the dashboard asks every 5 s of the campaign it shows (docs/dashboard.md), and a
  // page of its comparison (campaign 1 beside itself: every task pairs up).
  print("dashboard_progress_ms",
        median_get_ms(coord, "/api/v1/campaigns/1/progress?buckets=48", token), 2);
  print("dashboard_alerts_ms", median_get_ms(coord, "/api/v1/alerts", token), 2);
  print("dashboard_llm_ms", median_get_ms(coord, "/api/v1/llm?campaign=1", token), 2);
  print("dashboard_compare_page_ms",
        median_get_ms(coord, "/api/v1/compare?a=1&b=1&limit=500", token), 2);
  std::fflush(stdout);

  // kforge results --csv of every task, to a file: constant memory on both sides?
  double coord_rss_csv = 0;
  ChildRun csv = run_and_wait({kforge.string(), "results", "--csv", "--coordinator", coord.api,
                               "--token-file", (data / "api.token").string()},
                              dir / "results.log", dir / "results.csv",
                              [&] { coord_rss_csv = std::max(coord_rss_csv, rss_mb(coord.pid)); });
  if (csv.rc != 0)
    return fail("kforge results --csv failed (see " + (dir / "results.log").string() + ")");
  print("results_csv_s", csv.wall_s, 1);
  print("results_csv_rows", static_cast<double>(count_lines(dir / "results.csv")), 0);
  print("results_csv_cli_rss_peak_mb", csv.peak_rss_mb, 1);
  print("results_csv_coordinator_rss_max_mb", coord_rss_csv, 1);
  std::fflush(stdout);

  // kill -9, start again, and time the first Assign a fresh agent gets.
  coord.kill_now();
  zmq::context_t ctx(1);
  if (Status st = coord.start(exe, args, dir / "stderr.log", true); !st.ok())
    return fail(st.to_string());
  print("restart_to_listening_ms", static_cast<double>(now_ms() - coord.started_ms), 0);
  int64_t assigned = first_assign_ms(ctx, coord.endpoint, now_ms() + 60'000);
  print("restart_to_dispatch_ms",
        assigned < 0 ? -1 : static_cast<double>(assigned - coord.started_ms), 0);
  print("rss_after_restart_mb", rss_mb(coord.pid));
  // What kforge submit polls every second while it stores (every campaign with its counts),
  // and a cancel and a resume of the whole campaign, each answered once the Conductor acted.
  print("campaigns_listing_ms", median_get_ms(coord, "/api/v1/campaigns", token), 2);
  for (const char* action : {"cancel", "resume"}) {
    auto [code, ms] =
        http_request("POST", coord.api, "/api/v1/campaigns/1/" + std::string(action), token);
    print(("campaign_" + std::string(action) + "_ms").c_str(), code == 200 ? ms : -1, 0);
  }
  std::fflush(stdout);
  return finish();
}

// ---- A search campaign: evolve against fix_loop (issue 17) --------------------------------

// The fake Coder, the pool of tests/search_test.cpp's evolve test: written from scratch a
// kernel is broken or slow (by the task's sweep point and the request's seed); a fix gives
// slow; "make it faster" gives the next faster variant (slow -> medium -> fast), except for
// one seed in five, which breaks it.
std::string coder_answer(const nlohmann::json& body) {
  const std::string prompt = body["messages"].back()["content"].get<std::string>();
  auto answer = [](const std::string& variant) {
    return "```python\n# variant: " + variant + "\nclass ModelNew:\n    pass\n```\n";
  };
  std::smatch m;
  const int64_t point =
      std::regex_search(prompt, m, std::regex("\nA = ([0-9]+)\n")) ? std::stoll(m[1]) : 0;
  const int64_t seed = body.value("seed", int64_t{0});
  if (std::regex_search(prompt, m,
                        std::regex("## The kernel to improve\n\n```python\n# variant: ([a-z]+)"))) {
    if ((point + seed) % 5 == 0) return answer("broken");
    return answer(m[1] == "slow" ? "medium" : "fast");
  }
  if (prompt.find("failed verification. Fix it") != std::string::npos) return answer("slow");
  return answer((point + seed) % 3 == 0 ? "broken" : "slow");
}

// The rows of `sql` on the database at `path`, every column as a double (NULL: 0), read
// through a read-only connection of its own while another process may write.
std::vector<std::vector<double>> query(const fs::path& path, const std::string& sql) {
  std::vector<std::vector<double>> rows;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK) {
      while (sqlite3_step(stmt) == SQLITE_ROW) {
        std::vector<double> row;
        for (int c = 0; c < sqlite3_column_count(stmt); ++c) {
          row.push_back(sqlite3_column_double(stmt, c));
        }
        rows.push_back(std::move(row));
      }
    } else {
      std::fprintf(stderr, "kforge-bench-scale: %s: %s\n", sql.c_str(), sqlite3_errmsg(db));
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return rows;
}

double query_one(const fs::path& path, const std::string& sql) {
  auto rows = query(path, sql);
  return rows.empty() || rows[0].empty() ? -1 : rows[0][0];
}

// The q-quantile (0..1) of `v`, sorted here; 0 when empty.
double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

// One coder_only campaign of `tasks` profile tasks under `search`, run to its end by a real
// kforge-coordinator process, the fake Coder and `agents` x `devices` fake agents: its
// figures by name.
Result<std::map<std::string, double>> run_search(const std::string& label,
                                                 const std::string& search, const fs::path& exe,
                                                 const fs::path& kforge, uint64_t tasks,
                                                 uint64_t agents, uint64_t devices,
                                                 uint64_t llm_concurrency, uint64_t sample_ms,
                                                 const fs::path& dir) {
  fs::create_directories(dir);
  {
    std::ofstream task(dir / "add.py");
    task << "import torch\n\nA = 1\n\n\nclass Model(torch.nn.Module):\n    def forward(self, x):\n"
            "        return x + A\n\n\ndef get_inputs():\n    return [torch.randn(1024)]\n\n\n"
            "def get_init_inputs():\n    return []\n";
    std::ofstream campaign(dir / "campaign.toml");
    campaign << "name = \"" << label << "\"\nworkflow = \"coder_only\"\n\n"
             << search << "\n"
             << "[defaults]\nbackend = \"cpu\"\narch = \"x86_64\"\nimpl_type = \"cpp\"\n"
             << "framework = \"torch\"\ntask_type = \"profile\"\nlimit_steps = 4\n\n"
             << "[[ops]]\nop_name = \"add\"\ntask_desc = \"add.py\"\n[ops.sweep]\nA = [";
    for (uint64_t i = 0; i < tasks; ++i) campaign << (i ? ", " : "") << i + 1;
    campaign << "]\n";
  }
  const fs::path data = dir / "data", db = data / "kforge.db";
  ChildRun submit = run_and_wait(
      {kforge.string(), "submit", "--data", data.string(), (dir / "campaign.toml").string()},
      dir / "submit.log");
  if (submit.rc != 0) {
    return io_error("kforge submit failed (see " + (dir / "submit.log").string() + ")");
  }

  test::FakeLlmServer llm;
  llm.set_responder(coder_answer);
  {
    std::ofstream cfg(dir / "kforge.toml");
    cfg << "[coordinator]\nheartbeat_ms = 1000\n\n[coordinator.log]\nfile = \""
        << (dir / "coordinator.log").string()
        << "\"\n\n[llm.coder]\nprovider = \"openai\"\nbase_url = \"" << llm.base_url()
        << "\"\nmodel = \"fake\"\nconcurrency = " << llm_concurrency << "\n";
  }
  CoordinatorProcess coord;
  if (Status st = coord.start(exe,
                              {"--config", (dir / "kforge.toml").string(), "--listen",
                               "tcp://127.0.0.1:*", "--data", data.string(), "--http", ""},
                              dir / "stderr.log");
      !st.ok()) {
    return st;
  }
  FleetStats stats;
  zmq::context_t ctx(1);
  AgentGroup group(ctx, coord.endpoint, 0, static_cast<int>(agents), static_cast<uint32_t>(devices),
                   1000, 0, stats);
  group.start();

  // Until no task is pending or running: RSS and CPU every sample_ms.
  const std::string unfinished = "SELECT count(*) FROM tasks WHERE state IN ('pending', 'running')";
  double last_cpu = 0;
  int64_t last_t = coord.started_ms,
          next_sample = coord.started_ms + static_cast<int64_t>(sample_ms);
  int64_t done_ms = 0;
  std::string error;
  while (done_ms == 0 && error.empty()) {
    const int64_t now = now_ms();
    if (!coord.alive()) {
      error = "the coordinator exited during the campaign (see " + dir.string() + ")";
    }
    if (now - coord.started_ms > 3'600'000) error = "the campaign did not end within an hour";
    if (query_one(db, unfinished) == 0) done_ms = now;
    if (now >= next_sample || done_ms) {
      next_sample += static_cast<int64_t>(sample_ms);
      const double cpu = cpu_s(coord.pid);
      std::printf(
          "sample: %s t_s=%.0f rss_mb=%.1f cpu_pct=%.0f tasks_left=%.0f candidates=%.0f "
          "llm_requests=%zu\n",
          label.c_str(), static_cast<double>(now - coord.started_ms) / 1000.0, rss_mb(coord.pid),
          100.0 * (cpu - last_cpu) / std::max(1e-3, static_cast<double>(now - last_t) / 1000.0),
          query_one(db, unfinished), query_one(db, "SELECT count(*) FROM candidates"),
          llm.request_count());
      std::fflush(stdout);
      last_cpu = cpu;
      last_t = now;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // a sampling interval
  }
  std::map<std::string, double> f;
  if (!error.empty()) {
    group.stop();
    coord.stop();
    return io_error(error);
  }
  f["wall_s"] = static_cast<double>(done_ms - coord.started_ms) / 1000.0;
  f["coordinator_cpu_s"] = cpu_s(coord.pid);
  f["rss_peak_mb"] = rss_mb(coord.pid, "VmHWM:");
  f["rss_end_mb"] = rss_mb(coord.pid);
  group.stop();
  coord.stop();

  f["tasks"] = query_one(db, "SELECT count(*) FROM tasks");
  f["tasks_passed"] = query_one(db, "SELECT count(*) FROM tasks WHERE state = 'passed'");
  f["tasks_found_fastest"] =
      query_one(db, "SELECT count(DISTINCT task_id) FROM candidates WHERE speedup >= 3.2");
  f["candidates"] = query_one(db, "SELECT count(*) FROM candidates");
  f["llm_requests"] = static_cast<double>(llm.request_count());
  f["llm_calls_stored"] = query_one(db, "SELECT count(*) FROM llm_calls");
  f["verify_jobs"] = query_one(db, "SELECT count(*) FROM jobs WHERE state = 'done'");
  f["jobs_reassigned"] = static_cast<double>(stats.reassigned.load());
  // The coordinator's side of each verify job, from its own timestamps (ms): queued to
  // assigned (the Assign leaves after this commit) and assigned to its result recorded.
  std::vector<double> queued, held;
  for (const auto& row : query(db,
                               "SELECT assigned_ms - created_ms, finished_ms - assigned_ms FROM "
                               "jobs WHERE state = 'done'")) {
    queued.push_back(row[0]);
    held.push_back(row[1]);
  }
  for (auto [name, v] :
       {std::pair{"queued_to_assigned", &queued}, std::pair{"assigned_to_recorded", &held}}) {
    f[std::string(name) + "_p50_ms"] = quantile(*v, 0.5);
    f[std::string(name) + "_p99_ms"] = quantile(*v, 0.99);
    f[std::string(name) + "_max_ms"] = quantile(*v, 1.0);
  }
  const double candidates = std::max(f["candidates"], 1.0);
  f["cpu_ms_per_candidate"] = 1000.0 * f["coordinator_cpu_s"] / candidates;
  f["wall_ms_per_candidate"] = 1000.0 * f["wall_s"] / candidates;
  f["llm_requests_per_candidate"] = f["llm_requests"] / candidates;
  return f;
}

// --evolve-tasks N: the same campaign of N tasks under fix_loop, then under evolve, each on a
// fresh coordinator; every figure of each, then evolve's over fix_loop's.
int run_evolve(const ParsedFlags& flags, const fs::path& exe, uint64_t tasks, uint64_t agents,
               uint64_t devices, uint64_t sample_ms) {
  fs::path kforge = flags.get("kforge").value_or(
      (fs::canonical("/proc/self/exe").parent_path().parent_path() / "cli" / "kforge").string());
  uint64_t shape[4];
  const char* names[4] = {"islands", "island-size", "generations", "llm-concurrency"};
  const uint64_t defaults[4] = {2, 2, 3, 16};
  for (int i = 0; i < 4; ++i) {
    auto x = uint_flag(flags, names[i], defaults[i]);
    if (!x.ok()) return fail(x.status().message());
    shape[i] = *x;
  }
  const std::string evolve =
      "[search]\nstrategy = \"evolve\"\nislands = " + std::to_string(shape[0]) +
      "\nisland_size = " + std::to_string(shape[1]) +
      "\ngenerations = " + std::to_string(shape[2]) + "\nmigrate_every = 1\n";
  const fs::path dir =
      fs::temp_directory_path() / ("kforge-bench-scale-" + random_hex_id().substr(0, 8));
  std::printf("coordinator: %s\ndir: %s\ntasks: %llu\nagents: %llu\ndevices_per_agent: %llu\n",
              exe.c_str(), dir.c_str(), static_cast<unsigned long long>(tasks),
              static_cast<unsigned long long>(agents), static_cast<unsigned long long>(devices));
  std::map<std::string, std::map<std::string, double>> runs;
  for (const auto& [label, search] :
       {std::pair<std::string, std::string>{"fix_loop", "[search]\nstrategy = \"fix_loop\"\n"},
        std::pair<std::string, std::string>{"evolve", evolve}}) {
    auto figures = run_search(label, search, exe, kforge, tasks, agents, devices, shape[3],
                              sample_ms, dir / label);
    if (!figures.ok()) return fail(label + ": " + figures.status().to_string());
    for (const auto& [name, value] : *figures)
      print((label + "_" + name).c_str(), value, value == std::floor(value) ? 0 : 3);
    std::fflush(stdout);
    runs[label] = std::move(*figures);
  }
  for (const char* name :
       {"cpu_ms_per_candidate", "wall_ms_per_candidate", "queued_to_assigned_p99_ms",
        "assigned_to_recorded_p99_ms", "rss_peak_mb", "candidates"}) {
    const double base = runs["fix_loop"][name];
    print((std::string("ratio_evolve_over_fix_loop_") + name).c_str(),
          base > 0 ? runs["evolve"][name] / base : 0, 2);
  }
  if (!flags.has("keep")) {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  return 0;
}

int run(int argc, char** argv) {
  auto flags = parse_flags(argc, argv, 1, kFlags, "kforge-bench-scale");
  if (!flags.ok()) {  // the message names the program already
    std::fprintf(stderr, "%s\n", flags.status().message().c_str());
    return 1;
  }
  if (flags->has("help")) {
    std::printf("%s", flags_help(kFlags, "usage: kforge-bench-scale [options]").c_str());
    return 0;
  }
  uint64_t v[13];
  const char* names[13] = {
      "agents",        "devices",     "seconds",       "heartbeat-ms", "coordinator-heartbeat-ms",
      "agent-threads", "churn",       "flood-clients", "flood-at",     "flood-seconds",
      "flood-frames",  "flood-bytes", "sample-ms"};
  const uint64_t defaults[13] = {1000, 8, 60, 1000, 1000, 1, 0, 0, 10, 30, UINT64_MAX, 200, 5000};
  for (int i = 0; i < 13; ++i) {
    auto x = uint_flag(*flags, names[i], defaults[i]);
    if (!x.ok()) return fail(x.status().message());
    v[i] = *x;
  }
  const uint64_t agents = std::max<uint64_t>(v[0], 1), devices = v[1], seconds = v[2];
  const uint64_t heartbeat_ms = std::max<uint64_t>(v[3], 1),
                 coord_hb_ms = std::max<uint64_t>(v[4], 1);
  const uint64_t threads = std::clamp<uint64_t>(v[5], 1, agents), churn = v[6];
  const uint64_t flood_clients = v[7], flood_at = v[8], flood_seconds = v[9], flood_frames = v[10];
  const uint64_t flood_bytes = std::max<uint64_t>(v[11], 8),
                 sample_ms = std::max<uint64_t>(v[12], 100);

  fs::path exe;
  if (auto c = flags->get("coordinator")) {
    exe = *c;
  } else {
    exe = fs::canonical("/proc/self/exe").parent_path().parent_path() / "coordinator" /
          "kforge-coordinator";
  }
  if (!fs::exists(exe))
    return fail(exe.string() + " does not exist (build it, or pass --coordinator)");
  auto tasks = uint_flag(*flags, "tasks", 0);
  if (!tasks.ok()) return fail(tasks.status().message());
  if (*tasks > 0) return run_tasks(*flags, exe, *tasks);
  auto evolve_tasks = uint_flag(*flags, "evolve-tasks", 0);
  if (!evolve_tasks.ok()) return fail(evolve_tasks.status().message());
  if (*evolve_tasks > 0) {
    return run_evolve(*flags, exe, *evolve_tasks, flags->has("agents") ? agents : 16, devices,
                      sample_ms);
  }

  fs::path dir = fs::temp_directory_path() / ("kforge-bench-scale-" + random_hex_id().substr(0, 8));
  fs::create_directories(dir);
  {
    // Keys every kforge build knows, so a baseline binary reads the same file.
    std::ofstream cfg(dir / "kforge.toml");
    cfg << "[coordinator]\nheartbeat_ms = " << coord_hb_ms << "\n";
    if (auto cap = flags->get("max-heartbeats-per-s"))
      cfg << "max_heartbeats_per_s = " << *cap << "\n";
    cfg << "\n[coordinator.log]\nfile = \"" << (dir / "coordinator.log").string() << "\"\n";
  }
  CoordinatorProcess coord;
  Status started = coord.start(exe,
                               {"--config", (dir / "kforge.toml").string(), "--listen",
                                "tcp://127.0.0.1:*", "--data", (dir / "data").string(), "--http",
                                "", "--log-level", flags->get("log-level").value_or("info")},
                               dir / "stderr.log");
  if (!started.ok()) return fail(started.to_string());
  auto log_bytes = [&] { return bytes_of(dir, "coordinator.log") + bytes_of(dir, "stderr.log"); };
  std::printf("coordinator: %s\npid: %d\nendpoint: %s\ndir: %s\n", exe.c_str(), coord.pid,
              coord.endpoint.c_str(), dir.c_str());
  std::printf("rss_idle_mb: %.1f\n", rss_mb(coord.pid));
  std::fflush(stdout);

  // The fake agents: agents [0, share) driven here, the rest spread over forked processes
  // (one DEALER is two file descriptors: 10,000 agents pass one process's limit). The counts
  // live in shared memory, so every process adds to the same FleetStats.
  auto procs = uint_flag(*flags, "agent-processes", 1);
  if (!procs.ok()) return fail(procs.status().message());
  const uint64_t processes = std::clamp<uint64_t>(*procs, 1, agents);
  void* shared = ::mmap(nullptr, sizeof(FleetStats), PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) return fail("mmap: " + std::string(std::strerror(errno)));
  FleetStats& stats = *new (shared) FleetStats();
  auto drive = [&](zmq::context_t& c, uint64_t from, uint64_t to,
                   std::vector<std::unique_ptr<AgentGroup>>& out) {
    for (uint64_t g = 0; g < threads; ++g) {
      uint64_t first = from + (to - from) * g / threads,
               last = from + (to - from) * (g + 1) / threads;
      out.push_back(std::make_unique<AgentGroup>(
          c, coord.endpoint, static_cast<int>(first), static_cast<int>(last - first),
          static_cast<uint32_t>(devices), static_cast<uint32_t>(heartbeat_ms),
          static_cast<double>(churn) / static_cast<double>(threads * processes), stats,
          static_cast<uint32_t>(coord_hb_ms)));
      out.back()->start();
    }
  };
  int64_t t0 = now_ms();
  std::vector<pid_t> children;
  for (uint64_t p = 1; p < processes; ++p) {
    pid_t pid = ::fork();
    if (pid < 0) return fail("fork: " + std::string(std::strerror(errno)));
    if (pid == 0) {  // drives its share until the bench ends (or dies: PDEATHSIG)
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      zmq::context_t child_ctx(2);
      child_ctx.set(zmq::ctxopt::max_sockets, static_cast<int>(agents / processes + 64));
      std::vector<std::unique_ptr<AgentGroup>> mine;
      drive(child_ctx, agents * p / processes, agents * (p + 1) / processes, mine);
      for (;;) ::pause();
    }
    children.push_back(pid);
  }
  zmq::context_t ctx(2);
  ctx.set(zmq::ctxopt::max_sockets, static_cast<int>(agents / processes + flood_clients + 64));
  std::vector<std::unique_ptr<AgentGroup>> groups;
  drive(ctx, 0, agents / processes, groups);
  while (stats.registered.load() < agents) {
    if (now_ms() - t0 > 300'000) return fail("agents did not all register within 300 s");
    if (!coord.alive()) return fail("the coordinator exited during registration");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  int64_t registered_ms = now_ms();
  print("registration_s", static_cast<double>(registered_ms - t0) / 1000.0, 2);
  std::fflush(stdout);

  std::vector<std::unique_ptr<Flooder>> flooders;
  bool flood_started = false, flood_over = flood_clients == 0;
  double rss_before_flood = -1, rss_flood_peak = -1;
  uint64_t log_before_flood = 0, log_after_flood = 0;
  int64_t flood_start_ms = 0, flood_end_ms = 0;

  std::vector<Sample> samples;
  double last_cpu = cpu_s(coord.pid);
  int64_t last_t = now_ms();
  uint64_t hb_at_start = stats.heartbeats.load();
  const int64_t end_ms = registered_ms + static_cast<int64_t>(seconds) * 1000;
  int64_t next_sample = registered_ms;
  while (now_ms() < end_ms) {
    if (!coord.alive()) return fail("the coordinator exited during the soak");
    int64_t now = now_ms();
    if (!flood_started && flood_clients > 0 &&
        now >= registered_ms + static_cast<int64_t>(flood_at) * 1000) {
      flood_started = true;
      rss_before_flood = rss_mb(coord.pid);
      log_before_flood = log_bytes();
      flood_start_ms = now;
      for (uint64_t i = 0; i < flood_clients; ++i) {
        flooders.push_back(std::make_unique<Flooder>(ctx, coord.endpoint, static_cast<int>(i),
                                                     flood_bytes, flood_frames));
        flooders.back()->start();
      }
    }
    if (flood_started && !flood_over) {
      bool done = now >= flood_start_ms + static_cast<int64_t>(flood_seconds) * 1000;
      if (flood_frames != UINT64_MAX) {
        done = std::all_of(flooders.begin(), flooders.end(),
                           [&](auto& f) { return f->sent() >= flood_frames; });
      }
      rss_flood_peak = std::max(rss_flood_peak, rss_mb(coord.pid));
      if (done) {
        flood_over = true;
        flood_end_ms = now;
        for (auto& f : flooders) f->stop();
      }
    }
    if (now >= next_sample) {
      next_sample += static_cast<int64_t>(sample_ms);
      double cpu = cpu_s(coord.pid);
      double pct =
          100.0 * (cpu - last_cpu) / std::max(1e-3, static_cast<double>(now - last_t) / 1000.0);
      last_cpu = cpu;
      last_t = now;
      Sample s{static_cast<double>(now - registered_ms) / 1000.0, rss_mb(coord.pid), pct,
               log_bytes()};
      samples.push_back(s);
      std::printf(
          "sample: t_s=%.0f rss_mb=%.1f cpu_pct=%.0f log_mb=%.2f heartbeats=%llu restarts=%llu%s\n",
          s.t_s, s.rss_mb, s.cpu_pct, static_cast<double>(s.log_bytes) / 1048576.0,
          static_cast<unsigned long long>(stats.heartbeats.load()),
          static_cast<unsigned long long>(stats.restarts.load()),
          flood_started && !flood_over ? " flood" : "");
      std::fflush(stdout);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (flood_started && !flood_over) {
    flood_end_ms = now_ms();
    for (auto& f : flooders) f->stop();
    flood_over = true;
  }
  log_after_flood = log_bytes();
  uint64_t heartbeats = stats.heartbeats.load() - hb_at_start;
  double rss_end = rss_mb(coord.pid);

  // The steady part: samples from 10 s after registration (the first heartbeats settle) on,
  // outside the flood and the minute after it.
  std::vector<Sample> steady;
  for (const Sample& s : samples) {
    if (s.t_s < 10) continue;
    steady.push_back(s);
  }
  double rss_start =
      steady.empty() ? (samples.empty() ? -1 : samples.front().rss_mb) : steady.front().rss_mb;
  double rss_max = 0, cpu_sum = 0;
  for (const Sample& s : samples) {
    rss_max = std::max(rss_max, s.rss_mb);
    cpu_sum += s.cpu_pct;
  }
  double soak_s = static_cast<double>(now_ms() - registered_ms) / 1000.0;
  print("agents", static_cast<double>(agents), 0);
  print("devices_per_agent", static_cast<double>(devices), 0);
  print("heartbeat_ms", static_cast<double>(heartbeat_ms), 0);
  print("soak_s", soak_s, 0);
  print("heartbeats_sent", static_cast<double>(heartbeats), 0);
  // agents the coordinator asked for a longer interval than its heartbeat_ms (fleet size)
  print("agents_stretched", static_cast<double>(stats.stretched.load()), 0);
  print("agent_restarts", static_cast<double>(stats.restarts.load()), 0);
  print("refused", static_cast<double>(stats.refused.load()), 0);
  print("rss_after_registration_mb", samples.empty() ? -1 : samples.front().rss_mb);
  print("rss_start_mb", rss_start);
  print("rss_end_mb", rss_end);
  print("rss_max_mb", rss_max);
  print("rss_growth_pct", rss_start > 0 ? 100.0 * (rss_end - rss_start) / rss_start : 0);
  double slope = slope_kib_per_s(steady);
  print("rss_slope_kib_per_s", slope, 2);
  double hb_per_s = static_cast<double>(heartbeats) / std::max(soak_s, 1e-3);
  print("bytes_per_heartbeat", hb_per_s > 0 ? slope * 1024.0 / hb_per_s : 0, 1);
  print("cpu_pct_mean", samples.empty() ? 0 : cpu_sum / static_cast<double>(samples.size()));
  print("log_mb", static_cast<double>(log_bytes()) / 1048576.0, 2);
  if (flood_clients > 0) {
    uint64_t frames = 0;
    for (auto& f : flooders) frames += f->sent();
    double flood_s = static_cast<double>(flood_end_ms - flood_start_ms) / 1000.0;
    print("flood_frames", static_cast<double>(frames), 0);
    print("flood_s", flood_s, 1);
    print("flood_frames_per_s", flood_s > 0 ? static_cast<double>(frames) / flood_s : 0, 0);
    print("rss_before_flood_mb", rss_before_flood);
    print("rss_flood_peak_mb", rss_flood_peak);
    print("rss_after_flood_mb", rss_end);
    print("rss_after_flood_vs_before_pct",
          rss_before_flood > 0 ? 100.0 * (rss_end - rss_before_flood) / rss_before_flood : 0);
    double log_growth = static_cast<double>(log_after_flood - log_before_flood) / 1048576.0;
    print("log_growth_flood_mb", log_growth, 2);
    print("log_growth_mb_per_min",
          flood_s > 0 ? log_growth / (std::max(soak_s - static_cast<double>(flood_at), 1.0) / 60.0)
                      : 0,
          2);
  }
  std::fflush(stdout);

  for (auto& g : groups) g->stop();
  for (pid_t child : children) {
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
  }
  for (auto& f : flooders) f->stop();
  coord.stop();
  if (!flags->has("keep")) {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  return 0;
}

}  // namespace
}  // namespace kforge

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  return kforge::run(argc, argv);
}
