// agent/: kforge-agent -- the loop and job execution (this file), device discovery
// (devices.h), the outbox of unacknowledged results (outbox.h), the state directory
// (state_dir.h), verify jobs' files (verify.h), the warm Verifier (verifier/) and the Python
// harness (harness/).
//
// kforge-agent's core: registration, heartbeats, job execution and the outbox.
//
// One loop thread owns the DEALER socket and the outbox; each job attempt runs in a child
// process (common/process.h) watched by a runner thread that hands the outcome back to the
// loop. The agent never runs job code in its own process.
//
// Connection states:
//   connecting  -- Hello sent, waiting for Welcome; Hello re-sent with backoff 1 s .. 32 s
//   registered  -- Welcome received; heartbeats both ways; results flow
//   refused     -- the coordinator refused this agent for good (protocol version, key not
//                  allowed, invalid hello, superseded); run() returns. A transient refusal
//                  (another live process holds this agent id) keeps it connecting, with backoff
// A registered agent that hears nothing for heartbeat_ms * liveness goes back to connecting
// on a fresh socket (the coordinator died, restarted, or declared us lost).
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "agent/outbox.h"
#include "agent/verifier/verifier.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/process.h"
#include "common/protocol.h"
#include "common/sandbox.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "common/zmq_util.h"

namespace kforge {

struct AgentOptions {
  std::string coordinator = "tcp://127.0.0.1:7700";  // the coordinator's ROUTER endpoint
  std::filesystem::path state_dir = "kforge-agent";  // agent id, outbox
  std::string id;                                    // agent id; empty: the state dir's (random)
  std::string curve_secret_key;                      // z85: CURVE on the link; empty: plain TCP
  std::string coordinator_public_key;                // z85: the coordinator's key (with CURVE)
  std::filesystem::path work_root;                   // job work dirs; empty: <tmp>/kforge-jobs-<id>
  std::string host;                                  // empty: gethostname()
  std::vector<proto::DeviceInfo> devices;            // advertised devices (agent/devices.h)
  std::map<std::string, std::string> capabilities;   // python, torch, triton versions...
  std::vector<std::string> env_allow = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"};
  std::string python = "/usr/bin/python3";  // runs the verification harness
  std::string harness_dir;                  // empty: find_harness_dir()
  ResourceLimits limits;                    // defaults for jobs that set none
  // Containment (common/sandbox.h, docs/security.md "Jobs"). With `contain`, open() probes the
  // host, logs which cgroup hierarchy holds the jobs and one line per missing feature, kills
  // and removes what an earlier agent with this id left (job cgroups, job directories), and
  // refuses to start when a feature is missing unless allow_uncontained. Without it jobs run
  // as the agent's own uid with rlimits only (in-process test clusters); open() says so.
  bool contain = false;
  bool allow_uncontained = false;
  std::string job_uids;          // "60000-60063": a uid per running job (root); "": own uid
  uint64_t job_memory_mb = 0;    // cgroup memory.max per job; 0: none
  uint64_t job_pids = 4096;      // cgroup pids.max per job; 0: none
  uint32_t job_cpu_percent = 0;  // cgroup CPU quota per job, % of one CPU; 0: none
  uint64_t job_io_mbps = 0;      // cgroup disk bandwidth per job and disk, MiB/s; 0: none
  uint64_t job_disk_mb = 1024;   // tmpfs size of each job's directory, /tmp and /dev/shm
  std::vector<std::filesystem::path> hide_dirs;  // hidden from jobs besides state_dir
  uint32_t job_timeout_ms = 600'000;             // for jobs that set none
  size_t output_cap = 1 << 20;                   // per stream, per job
  uint32_t heartbeat_ms = 1000;                  // until the Welcome says otherwise
  uint32_t liveness = 3;
  uint32_t backoff_initial_ms = 1000;  // Hello retry: doubling ...
  uint32_t backoff_max_ms = 32'000;    // ... up to this
  bool keep_work_dirs = false;         // keep jobs/<job>-<epoch>/ after the result
  size_t warm_workers = 2;             // candidate workers started ahead, per device
  // Each device's Verifier (judge, zygote, warm workers) started when run() begins, in the
  // background, instead of on the device's first job (the daemons: [agent] warm_start).
  bool warm_start = false;
  size_t max_msg_bytes = 64u << 20;

  bool operator==(const AgentOptions&) const = default;
};

// The options [agent] gives an Agent, for both daemons (kforge-agent, kforge run): every key
// copied (containment as configured), the CURVE secret key read from secret_key_file (an
// error names the key), this host's devices (discovered as the config says, or read from
// `device_fixtures` when not empty, then filtered by agent.devices) and, with `probe`, the
// capabilities of agent.python (a failed probe is logged and leaves them empty).
[[nodiscard]] Result<AgentOptions> agent_options(const AgentConfig& config,
                                                 const std::string& device_fixtures = "",
                                                 bool probe = true);

// A test shim between the loop and the wire (fault injection), called for every message the
// agent sends: Millis(0) sends it now, a positive delay holds it, a negative value drops it.
using AgentMessageFilter = std::function<Millis(const proto::Message&)>;

class Agent {
 public:
  // Loads (or creates) the agent id and outbox under options.state_dir.
  static Result<std::unique_ptr<Agent>> open(const AgentOptions& options,
                                             Clock& clock = SystemClock::instance());
  ~Agent();

  const std::string& id() const { return id_; }
  const std::string& incarnation() const { return incarnation_; }
  // The routing id of the current connection: "<id>/<incarnation>/<connection>". Thread-safe.
  std::string routing_id() const;
  // Why the link to the coordinator does not come up, as far as the handshake tells (key not
  // on the allow-list, wrong coordinator key, CURVE on one side only); "" once registered.
  // Thread-safe; it is logged too.
  std::string link_problem() const;

  // Runs until stop() (ok) or until the coordinator refuses this agent (the reason).
  Status run();
  // Thread-safe. Graceful: kills running jobs, says Bye. Not graceful: as if killed -9
  // (no Bye, running jobs killed, their results never stored) — for tests.
  void stop(bool graceful = true);

  void set_filter(AgentMessageFilter filter);
  bool registered() const { return state_ == State::registered; }
  // Whether jobs run as this process's own uid (no slot uids: not root, agent.job_uids empty,
  // or agent.contain = false): they can then read and signal whatever this process can.
  bool jobs_share_uid() const { return uids_ == nullptr; }
  size_t running_jobs() const { return running_count_; }
  size_t outbox_size() const { return outbox_size_; }
  // The heartbeat interval in force (the coordinator's word once registered). Thread-safe.
  uint32_t heartbeat_ms() const { return heartbeat_ms_; }

 private:
  enum class State { connecting, registered, refused };
  struct Running {
    proto::Assign assign;
    std::unique_ptr<CancelToken> cancel;
    std::thread thread;
  };
  struct Finished {
    proto::JobRef job;
    proto::JobResult result;
  };

  Agent(const AgentOptions& options, Clock& clock, std::string id, std::unique_ptr<Outbox> outbox,
        EventFd wake);
  Status contain_jobs();  // open()'s containment set-up (see AgentOptions::contain)
  void connect();
  void close_socket();
  void watch_link();  // handshake events of the current socket
  void set_link_problem(std::string problem);
  void send(proto::Message msg);
  void send_now(const proto::Message& msg);
  void send_delayed();
  void receive_all();
  void handle(const std::string& bytes);
  void on_assign(const proto::Assign& assign);
  void on_cancel(const proto::Cancel& cancel);
  void on_ack(const proto::ResultAck& ack);
  void on_welcome(const proto::Welcome& welcome);
  void collect_finished();
  void timers();
  void resend_outbox();
  proto::Hello make_hello() const;
  std::vector<proto::JobRef> running_refs() const;
  proto::JobResult run_job(const proto::Assign& assign, CancelToken& cancel);
  // The device's judge and warm workers, started at its first verify job.
  std::map<std::string, std::string> device_env(const std::string& backend, uint32_t index) const;
  void shutdown_jobs();

  AgentOptions options_;
  std::optional<Box> box_;         // every job's box (plus its directory and the harness)
  std::shared_ptr<UidPool> uids_;  // null: jobs run as the agent's uid
  Clock& clock_;
  std::string id_;
  std::string incarnation_;
  std::unique_ptr<Outbox> outbox_;
  zmq::context_t ctx_;
  std::unique_ptr<zmq::socket_t> socket_;
  CurveClientKeys curve_;
  mutable std::mutex routing_mu_;
  std::string routing_id_;  // of socket_; a new connection suffix for every socket
  std::string link_problem_;
  std::unique_ptr<zmq::socket_t> monitor_;  // handshake events of socket_
  bool handshake_ok_ = false;               // socket_ completed a handshake
  bool handshake_failed_ = false;           // socket_ reported a failed one
  EventFd wake_;                            // runner threads and stop() wake the loop

  std::atomic<State> state_{State::connecting};
  std::atomic<bool> stop_{false};
  std::atomic<bool> graceful_{true};
  std::atomic<size_t> running_count_{0};
  std::atomic<size_t> outbox_size_{0};
  std::string refused_reason_;
  std::atomic<uint32_t> heartbeat_ms_;  // as the coordinator asks (Welcome, Heartbeat)
  uint32_t liveness_;
  uint32_t backoff_ms_;
  int64_t next_hello_ms_ = 0;
  int64_t last_relink_ms_ = -1'000'000;  // last reconnect after a broken connection
  int64_t last_recv_ms_ = 0;
  int64_t last_send_ms_ = 0;
  std::map<std::pair<uint64_t, uint64_t>, int64_t> sent_ms_;  // outbox entry -> last sent

  std::map<std::pair<uint64_t, uint64_t>, Running> running_;  // (job, epoch)
  std::mutex finished_mu_;
  std::vector<Finished> finished_;
  std::mutex filter_mu_;
  AgentMessageFilter filter_;
  std::vector<std::pair<int64_t, proto::Message>> delayed_;  // held by the filter
  // One per device ("backend:index"), started by its first job or by warm start; a slot's
  // own mutex lets devices start their Verifiers at the same time.
  struct VerifierSlot {
    std::mutex mu;
    std::unique_ptr<Verifier> verifier;
    std::atomic<Verifier*> started{nullptr};  // set once `verifier` is up: heartbeats read it
  };
  std::vector<proto::VerifierPool> verifier_pools();
  Result<Verifier*> verifier_for(const std::string& backend, uint32_t device_index);
  void join_warmers();
  std::mutex verifiers_mu_;
  std::map<std::pair<std::string, uint32_t>, std::unique_ptr<VerifierSlot>>
      verifiers_;                     // (backend, index)
  std::vector<std::thread> warmers_;  // warm start: one per device
  CancelToken warm_cancel_;           // stop() gives up the warm starts' waits
};

}  // namespace kforge
