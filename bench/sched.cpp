// kforge-bench-sched: how many durable job round trips the coordinator sustains, and how
// quickly it dispatches at half that load.
//
// One process holds a real Coordinator (its loop on a thread, its SQLite database in WAL
// mode on disk under a fresh temporary directory) and N simulated agents: real DEALER
// sockets over TCP loopback, driven by one (or a few) threads with epoll over the sockets'
// ZMQ_FDs. Each simulated agent registers with D cpu devices, answers every Assign at once
// with a successful JobResult and sends heartbeats, so the figures measure the scheduler
// (store, pool, wire), not job execution.
//
// Phase 1 (throughput): all --jobs jobs are submitted in large batches through
// Coordinator::call; round_trips_per_s = results recorded / time from the first submit to
// the last result recorded (committed, counted by a result listener).
// Phase 2 (latency): jobs are submitted open-loop at --rate jobs/s (default: half of
// phase 1's figure) in small batches every millisecond; a job's dispatch latency runs from
// just before its submitting call to the moment a simulated agent receives its Assign.
//
// Output: one `name: value` line per figure on stdout; the coordinator's log goes to stderr.
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>
#include <zmq.hpp>

#include "common/config.h"
#include "common/flags.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/protocol.h"
#include "common/zmq_util.h"
#include "coordinator/scheduling/coordinator.h"

namespace kforge {
namespace {

using SteadyClock = std::chrono::steady_clock;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now().time_since_epoch())
      .count();
}

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const std::vector<FlagSpec> kFlags = {
    {"agents", true, "simulated agents (default 64)"},
    {"devices", true, "cpu devices per agent (default 8)"},
    {"jobs", true, "jobs in the throughput phase (default 50000)"},
    {"rate", true, "jobs/s in the latency phase (default: half the measured throughput)"},
    {"latency-seconds", true, "length of the latency phase (default 10)"},
    {"agent-threads", true, "threads driving the simulated agents (default 1)"},
    {"data", true, "coordinator data directory (default: a fresh temporary directory)"},
    {"log-level", true, "coordinator log level on stderr (default info)"},
    {"help", false, "show this message"},
};

// ---- Simulated agents ---------------------------------------------------------------------

struct SimAgent {
  std::string id;
  std::string routing_id;
  zmq::socket_t socket;
  bool welcomed = false;
  uint32_t heartbeat_ms = 1000;  // from the Welcome
  int64_t last_send_ns = 0;
  // Results sent and not yet acknowledged: the heartbeat's outbox.
  std::vector<proto::JobRef> outbox;
};

// Counters and receipts shared with the main thread.
struct SimStats {
  std::mutex mu;
  std::vector<std::pair<uint64_t, int64_t>> receipts;  // (job id, Assign received, ns)
  std::atomic<uint64_t> assigns{0};
  std::atomic<uint64_t> reassigned{0};  // Assigns with epoch > 1 (a job was re-queued)
  std::atomic<uint64_t> refused{0};
  std::atomic<uint64_t> heartbeats_sent{0};
  std::atomic<size_t> welcomed{0};
};

// Drives a group of simulated agents from one thread.
class AgentGroup {
 public:
  AgentGroup(zmq::context_t& ctx, const std::string& endpoint, int first, int count,
             uint32_t devices, SimStats& stats)
      : stats_(stats) {
    std::string incarnation = random_hex_id().substr(0, 12);
    for (int i = first; i < first + count; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "bench-%03d", i);
      auto agent = std::make_unique<SimAgent>();
      agent->id = name;
      agent->routing_id = agent->id + "/" + incarnation;
      auto socket = make_dealer(ctx, endpoint, agent->routing_id);
      if (!socket.ok()) {
        std::fprintf(stderr, "kforge-bench-sched: %s\n", socket.status().to_string().c_str());
        std::exit(1);
      }
      agent->socket = std::move(socket.value());
      proto::Hello hello;
      hello.agent_id = agent->id;
      hello.incarnation = incarnation;
      hello.host = "bench";
      for (uint32_t d = 0; d < devices; ++d) {
        hello.devices.push_back(proto::DeviceInfo{d, "cpu", "x86_64", "bench cpu", 0});
      }
      send(*agent, hello);
      agents_.push_back(std::move(agent));
    }
  }

  void start() {
    thread_ = std::thread([this] { loop(); });
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    for (auto& a : agents_) {
      send(*a, proto::Bye{"benchmark over"});
      a->socket.close();
    }
  }

 private:
  void send(SimAgent& a, const proto::Message& m) {
    std::string bytes = proto::encode(m);
    a.socket.send(zmq::buffer(bytes), zmq::send_flags::dontwait);
    a.last_send_ns = now_ns();
  }

  // One epoll set over the sockets' ZMQ_FDs, so a wake-up costs work for the sockets that
  // have something, not for all of them (zmq::poll checks every socket on every call). A
  // ZMQ_FD only says "look again": a socket is drained until it has nothing left, and drained
  // again after any send outside drain() (a send may consume the notification).
  void loop() {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
      std::perror("kforge-bench-sched: epoll_create1");
      std::exit(1);
    }
    for (size_t i = 0; i < agents_.size(); ++i) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = i;
      int fd = agents_[i]->socket.get(zmq::sockopt::fd);
      if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        std::perror("kforge-bench-sched: epoll_ctl");
        std::exit(1);
      }
    }
    std::vector<std::pair<uint64_t, int64_t>> receipts;
    std::vector<epoll_event> events(agents_.size());
    int64_t next_timer_ns = 0;
    for (auto& a : agents_) drain(*a, receipts);  // anything that came before the epoll set
    while (!stop_) {
      int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 10);
      for (int i = 0; i < n; ++i)
        drain(*agents_[events[static_cast<size_t>(i)].data.u64], receipts);
      if (!receipts.empty()) {
        std::lock_guard lock(stats_.mu);
        stats_.receipts.insert(stats_.receipts.end(), receipts.begin(), receipts.end());
        receipts.clear();
      }
      int64_t now = now_ns();
      if (now >= next_timer_ns) {
        next_timer_ns = now + 10'000'000;  // 10 ms
        for (auto& a : agents_) {
          // "Send something at least every heartbeat_ms": heartbeat when idle for half of it.
          if (a->welcomed && now - a->last_send_ns >= int64_t{a->heartbeat_ms} * 500'000) {
            send(*a, proto::Heartbeat{{}, a->outbox});
            stats_.heartbeats_sent++;
            drain(*a, receipts);
          }
        }
      }
    }
    ::close(ep);
  }

  void drain(SimAgent& a, std::vector<std::pair<uint64_t, int64_t>>& receipts) {
    for (;;) {
      zmq::message_t msg;
      if (!a.socket.recv(msg, zmq::recv_flags::dontwait)) return;
      int64_t received = now_ns();
      auto frame = proto::decode(msg.to_string());
      if (!frame.ok()) {
        std::fprintf(stderr, "kforge-bench-sched: agent %s: bad frame: %s\n", a.id.c_str(),
                     frame.status().message().c_str());
        continue;
      }
      const proto::Message& m = frame->message;
      if (auto* assign = std::get_if<proto::Assign>(&m)) {
        receipts.emplace_back(assign->job.job_id, received);
        stats_.assigns++;
        if (assign->job.epoch > 1) stats_.reassigned++;
        proto::JobResult result;
        result.job = assign->job;
        result.agent_id = a.id;
        result.exit_code = 0;
        result.started_ms = result.finished_ms = wall_ms();
        a.outbox.push_back(assign->job);
        send(a, result);
      } else if (auto* ack = std::get_if<proto::ResultAck>(&m)) {
        auto it = std::find(a.outbox.begin(), a.outbox.end(), ack->job);
        if (it != a.outbox.end()) a.outbox.erase(it);
      } else if (auto* welcome = std::get_if<proto::Welcome>(&m)) {
        if (!a.welcomed) stats_.welcomed++;
        a.welcomed = true;
        a.heartbeat_ms = std::max<uint32_t>(welcome->heartbeat_ms, 1);
      } else if (std::holds_alternative<proto::Refused>(m)) {
        stats_.refused++;
      }
      // Heartbeats and Cancels need no answer: every job finishes as soon as it starts.
    }
  }

  SimStats& stats_;
  std::vector<std::unique_ptr<SimAgent>> agents_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

// ---- Measurement helpers ------------------------------------------------------------------

// Counts recorded results; remembers when the count reached `target`.
struct Recorder {
  std::atomic<uint64_t> recorded{0};
  std::atomic<uint64_t> target{UINT64_MAX};
  std::atomic<int64_t> reached_ns{0};

  void on_result() {
    uint64_t n = recorded.fetch_add(1) + 1;
    if (n == target.load()) reached_ns = now_ns();
  }
  // Waits until the count reaches `n` (or the deadline passes); false on timeout.
  bool wait_for(uint64_t n, std::chrono::seconds deadline) const {
    auto end = SteadyClock::now() + deadline;
    while (recorded.load() < n) {
      if (SteadyClock::now() > end) return false;
      std::this_thread::sleep_for(
          std::chrono::milliseconds(2));  // the time comes from the listener
    }
    return true;
  }
};

// Submits `n` plain "true" jobs in one coordinator turn; returns their ids.
std::vector<int64_t> submit_batch(Coordinator& c, size_t n) {
  return c.call([n](Coordinator& co) {
    std::vector<int64_t> ids;
    ids.reserve(n);
    NewJob job;
    job.backend = "cpu";
    proto::Assign assign;
    assign.kind = "exec";
    assign.argv = {"true"};
    for (size_t i = 0; i < n; ++i) {
      auto id = co.submit(job, assign);
      if (!id.ok()) {
        std::fprintf(stderr, "kforge-bench-sched: submit failed: %s\n",
                     id.status().to_string().c_str());
        std::exit(1);
      }
      ids.push_back(*id);
    }
    return ids;
  });
}

// A /proc/self/status figure in MiB ("VmRSS", "VmHWM"); -1 if unavailable.
double proc_status_mb(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0)
      return std::strtod(line.c_str() + key.size() + 1, nullptr) / 1024.0;
  }
  return -1;
}

// The 1-minute load average: the machine is shared, so say how busy it was.
double load_average() {
  std::ifstream in("/proc/loadavg");
  double v = -1;
  in >> v;
  return v;
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto idx = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  idx = std::clamp<size_t>(idx, 1, v.size()) - 1;
  return v[idx];
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

void print(const char* name, double v, int decimals = 0) {
  std::printf("%s: %.*f\n", name, decimals, v);
}

int fail(const std::string& message) {
  std::fprintf(stderr, "kforge-bench-sched: %s\n", message.c_str());
  return 1;
}

// The value of an unsigned integer flag, or `fallback` when it is absent.
Result<uint64_t> uint_flag(const ParsedFlags& flags, const std::string& name, uint64_t fallback) {
  auto v = flags.get(name);
  if (!v) return fallback;
  return parse_uint_flag(name, *v);
}

int run(int argc, char** argv) {
  auto flags = parse_flags(argc, argv, 1, kFlags, "kforge-bench-sched");
  if (!flags.ok()) {  // the message names the program already
    std::fprintf(stderr, "%s\n", flags.status().message().c_str());
    return 1;
  }
  if (flags->has("help")) {
    std::printf("%s", flags_help(kFlags, "usage: kforge-bench-sched [options]").c_str());
    return 0;
  }
  uint64_t n_agents = 0, n_devices = 0, n_jobs = 0, rate = 0, latency_s = 0, agent_threads = 0;
  for (auto [name, out, fallback] :
       {std::tuple{"agents", &n_agents, 64}, std::tuple{"devices", &n_devices, 8},
        std::tuple{"jobs", &n_jobs, 50000}, std::tuple{"rate", &rate, 0},
        std::tuple{"latency-seconds", &latency_s, 10},
        std::tuple{"agent-threads", &agent_threads, 1}}) {
    auto v = uint_flag(*flags, name, static_cast<uint64_t>(fallback));
    if (!v.ok()) return fail(v.status().message());
    *out = *v;
  }
  if (n_agents == 0 || n_devices == 0 || n_jobs == 0 || agent_threads == 0) {
    return fail("--agents, --devices, --jobs and --agent-threads must be at least 1");
  }
  agent_threads = std::min(agent_threads, n_agents);

  LogConfig log;
  log.level = flags->get("log-level").value_or("info");
  if (Status st = init_logging(log, "coordinator"); !st.ok()) return fail(st.message());

  // The data directory: --data, or a fresh one removed at the end.
  std::filesystem::path data_dir;
  bool remove_data = false;
  if (auto d = flags->get("data")) {
    data_dir = *d;
  } else {
    data_dir =
        std::filesystem::temp_directory_path() / ("kforge-bench-" + random_hex_id().substr(0, 12));
    remove_data = true;
  }

  CoordinatorOptions options;
  options.listen = "tcp://127.0.0.1:*";
  options.data_dir = data_dir;
  options.heartbeat_ms = 1000;
  options.liveness = 3;
  options.restart_grace_ms = 0;
  auto opened = Coordinator::open(options);
  if (!opened.ok()) return fail(opened.status().to_string());
  std::unique_ptr<Coordinator> coordinator = std::move(opened.value());
  Coordinator& c = *coordinator;

  Recorder recorder;
  c.add_result_listener(
      [&recorder](const JobRow&, const proto::JobResult&) { recorder.on_result(); });
  Status loop_status;
  std::thread loop([&] { loop_status = c.run(); });

  // Simulated agents, split evenly over the agent threads.
  zmq::context_t agent_ctx(1);
  SimStats stats;
  std::vector<std::unique_ptr<AgentGroup>> groups;
  for (uint64_t t = 0; t < agent_threads; ++t) {
    int first = static_cast<int>(n_agents * t / agent_threads);
    int last = static_cast<int>(n_agents * (t + 1) / agent_threads);
    groups.push_back(std::make_unique<AgentGroup>(agent_ctx, c.endpoint(), first, last - first,
                                                  static_cast<uint32_t>(n_devices), stats));
  }
  for (auto& g : groups) g->start();
  auto stop_all = [&] {
    for (auto& g : groups) g->stop();
    c.stop();
    loop.join();
  };

  auto deadline = SteadyClock::now() + std::chrono::seconds(30);
  while (stats.welcomed.load() < n_agents ||
         c.call([](Coordinator& co) { return co.live_agents(); }) < n_agents) {
    if (SteadyClock::now() > deadline) {
      stop_all();
      return fail("simulated agents did not all register within 30 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }

  // ---- Phase 1: throughput with the pool saturated ----
  const double load_start = load_average();
  const uint64_t batch = 1000;
  recorder.target = n_jobs;
  double cpu0 = cpu_seconds();
  int64_t t0 = now_ns();
  for (uint64_t sent = 0; sent < n_jobs; sent += batch)
    submit_batch(c, std::min(batch, n_jobs - sent));
  if (!recorder.wait_for(n_jobs, std::chrono::seconds(600))) {
    stop_all();
    return fail("throughput phase: only " + std::to_string(recorder.recorded.load()) + " of " +
                std::to_string(n_jobs) + " results recorded within 600 s");
  }
  double phase1_s = static_cast<double>(recorder.reached_ns.load() - t0) / 1e9;
  double phase1_cpu = cpu_seconds() - cpu0;
  double round_trips = static_cast<double>(n_jobs) / phase1_s;
  {
    std::lock_guard lock(stats.mu);
    stats.receipts.clear();
  }

  // ---- Phase 2: dispatch latency at a fixed open-loop rate ----
  if (rate == 0) rate = std::max<uint64_t>(1, static_cast<uint64_t>(round_trips / 2));
  const uint64_t lat_jobs = std::max<uint64_t>(1, rate * latency_s);
  const uint64_t base = recorder.recorded.load();
  recorder.target = base + lat_jobs;
  std::unordered_map<uint64_t, int64_t> submitted_ns;
  submitted_ns.reserve(lat_jobs);
  double cpu1 = cpu_seconds();
  int64_t t1 = now_ns();
  uint64_t sent = 0;
  double max_batch = 0;
  const auto tick = std::chrono::milliseconds(1);
  auto next = SteadyClock::now();
  while (sent < lat_jobs) {
    // Open loop: as many jobs as the schedule says are due by now, whatever came before.
    double elapsed = static_cast<double>(now_ns() - t1) / 1e9;
    auto due = std::min<uint64_t>(lat_jobs,
                                  static_cast<uint64_t>(elapsed * static_cast<double>(rate)) + 1);
    if (due > sent) {
      int64_t before = now_ns();
      for (int64_t id : submit_batch(c, due - sent))
        submitted_ns[static_cast<uint64_t>(id)] = before;
      max_batch = std::max(max_batch, static_cast<double>(due - sent));
      sent = due;
    }
    next += tick;
    std::this_thread::sleep_until(next);
  }
  double submit_s = static_cast<double>(now_ns() - t1) / 1e9;
  if (!recorder.wait_for(base + lat_jobs, std::chrono::seconds(120))) {
    stop_all();
    return fail("latency phase: results missing after 120 s");
  }
  double phase2_cpu = cpu_seconds() - cpu1;
  std::vector<double> latency_ms;
  {
    std::lock_guard lock(stats.mu);
    latency_ms.reserve(stats.receipts.size());
    for (const auto& [job, received] : stats.receipts) {
      auto s = submitted_ns.find(job);
      if (s != submitted_ns.end())
        latency_ms.push_back(static_cast<double>(received - s->second) / 1e6);
    }
  }
  size_t measured = latency_ms.size();
  auto over_target =
      std::count_if(latency_ms.begin(), latency_ms.end(), [](double ms) { return ms > 5.0; });
  double p50 = percentile(latency_ms, 50), p99 = percentile(latency_ms, 99);
  double p999 = percentile(latency_ms, 99.9), pmax = latency_ms.empty() ? 0 : latency_ms.back();
  size_t live = c.call([](Coordinator& co) { return co.live_agents(); });
  auto queued = c.call([](Coordinator& co) { return co.store().count_jobs(JobState::queued); });
  auto assigned = c.call([](Coordinator& co) { return co.store().count_jobs(JobState::assigned); });
  auto done = c.call([](Coordinator& co) { return co.store().count_jobs(JobState::done); });
  double wall_s = static_cast<double>(now_ns() - t0) / 1e9;
  const double load_end = load_average();
  std::error_code ec;
  // The WAL as the run left it (under sustained load it grows until the store restarts it).
  auto wal_bytes = std::filesystem::file_size(data_dir / "kforge.db-wal", ec);
  if (ec) wal_bytes = 0;
  stop_all();
  if (!loop_status.ok()) return fail("coordinator loop failed: " + loop_status.to_string());

  print("agents", static_cast<double>(n_agents));
  print("devices", static_cast<double>(n_devices));
  print("jobs", static_cast<double>(n_jobs));
  print("throughput_s", phase1_s, 3);
  print("round_trips_per_s", round_trips);
  print("throughput_cpu_s", phase1_cpu, 3);  // process CPU (coordinator + simulated agents)
  print("latency_rate_jobs_per_s", static_cast<double>(rate));
  print("latency_jobs", static_cast<double>(lat_jobs));
  print("latency_submit_s", submit_s, 3);  // ~ latency_jobs / rate when submission kept up
  print("latency_cpu_s", phase2_cpu, 3);
  print("latency_max_batch", max_batch);
  print("latency_samples", static_cast<double>(measured));
  print("dispatch_p50_ms", p50, 3);
  print("dispatch_p99_ms", p99, 3);
  print("dispatch_p999_ms", p999, 3);
  print("dispatch_max_ms", pmax, 3);
  print("dispatch_over_5ms_pct",
        measured ? 100.0 * static_cast<double>(over_target) / static_cast<double>(measured) : 0, 3);
  print("assigns_received", static_cast<double>(stats.assigns.load()));
  print("reassigned_attempts", static_cast<double>(stats.reassigned.load()));
  print("results_recorded", static_cast<double>(recorder.recorded.load()));
  print("jobs_done", done.ok() ? static_cast<double>(*done) : -1);
  print("jobs_not_done",
        queued.ok() && assigned.ok() ? static_cast<double>(*queued + *assigned) : -1);
  print("live_agents_at_end", static_cast<double>(live));
  print("agent_heartbeats_sent", static_cast<double>(stats.heartbeats_sent.load()));
  // The coordinator runs in this process, so these include the simulated agents (a few MiB
  // of sockets and buffers); VmHWM is the peak.
  print("coordinator_rss_mb", proc_status_mb("VmHWM"), 1);
  print("rss_at_end_mb", proc_status_mb("VmRSS"), 1);
  auto db_bytes = std::filesystem::file_size(data_dir / "kforge.db", ec);
  print("db_mb", ec ? -1 : static_cast<double>(db_bytes) / 1048576.0, 1);
  print("wal_mb", static_cast<double>(wal_bytes) / 1048576.0, 1);
  print("wall_s", wall_s, 3);
  print("load_avg_start", load_start, 2);  // other work on the machine (1-minute load average)
  print("load_avg_end", load_end, 2);
  std::fflush(stdout);

  coordinator.reset();
  if (remove_data) std::filesystem::remove_all(data_dir, ec);
  bool ok =
      stats.refused.load() == 0 && live == n_agents && recorder.recorded.load() == base + lat_jobs;
  if (!ok)
    return fail("inconsistent run: refused agents, lost agents or missing results (see above)");
  return 0;
}

}  // namespace
}  // namespace kforge

int main(int argc, char** argv) {
  try {
    return kforge::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kforge-bench-sched: %s\n", e.what());
    return 1;
  }
}
