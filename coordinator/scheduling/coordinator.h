// coordinator/scheduling/: the loop that owns the agent link -- agents, leases, dispatch,
// results (coordinator.h) -- and the bookkeeping of free device slots (device_pool.h).
//
// The coordinator's event loop: agents, leases, dispatch and results over one ROUTER socket.
//
// One thread runs the loop and owns the Store, the socket and the DevicePool. Each turn:
// receive what is waiting, apply it (agents, results, operator commands, timers, dispatch)
// inside one store batch, commit, and only then send the messages announcing it
// (docs/architecture.md invariant 1). Other threads talk to the loop through call().
//
// Who may speak (schema/protocol.md, Security): with a CURVE secret key the ROUTER is a CURVE
// server and a ZAP handler on this loop admits only the public keys of the allow-list
// (agent id -> keys); every message carries its key (User-Id) and is checked against the
// agent it claims to come from. Without one the link is plain TCP: anyone who reaches the
// port may register, but still cannot take over a live agent's id or record a result for an
// attempt it does not hold.
//
// Agent lifecycle, as the coordinator sees it (docs/architecture.md invariant 5):
//   (unknown) --Hello--> live --silence > heartbeat_ms*liveness--> lost (jobs re-queued)
//   live --Bye--> gone (jobs re-queued)      lost/gone --Hello--> live (reconciled)
//
// Disk full (the no-space alarm, docs/operations.md): a turn whose writes the store refuses
// for lack of space (Code::no_space) is rolled back and the loop degrades instead of
// stopping: it gives the space reserve back, forgets its in-memory view (agents, leases,
// pool), and runs no turns: nothing is dispatched, no agent message is read, no posted work
// runs (LLM answers wait in memory). Every probe interval (1 s doubling to 30 s) it tries to
// take the reserve back and reload its view from the store as a restart would; when that
// commits, the alarm clears, the failed turn's posted work runs again, then the rest.
//   serving --write refused: no space--> alarm --probe commits--> serving (reloaded)
#pragma once

#include <atomic>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/config.h"
#include "common/curve.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/protocol.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "coordinator/scheduling/device_pool.h"
#include "coordinator/store/reserve.h"
#include "coordinator/store/store.h"

namespace kforge {

struct CoordinatorOptions {
  std::string listen = "tcp://127.0.0.1:7700";     // ROUTER endpoint; port * picks a free one
  std::filesystem::path data_dir = "kforge-data";  // holds kforge.db
  uint32_t heartbeat_ms = 1000;                    // send something to each agent this often
  uint32_t liveness = 3;                           // silent intervals before an agent is lost
  uint32_t max_heartbeats_per_s = 5000;    // a larger fleet is told a longer interval (0: never)
  uint32_t restart_grace_ms = 5000;        // after start: wait for agents before re-queuing
  uint32_t precision_jobs_per_device = 1;  // >1: precision-only jobs may share a device
  size_t max_msg_bytes = 64u << 20;        // ZMQ_MAXMSGSIZE and decode limit
  std::string curve_secret_key;  // z85: CURVE on the agent link; empty: plain TCP (a warning)
  std::filesystem::path agent_keys_file;      // CURVE allow-list, re-read when it changes; or:
  AgentKeys agent_keys;                       // the allow-list when agent_keys_file is empty
  uint64_t disk_reserve_bytes = 64ull << 20;  // kept free in data_dir for the store (0: none)

  bool operator==(const CoordinatorOptions&) const = default;
};

// The options [coordinator] gives the loop, for both daemons (kforge-coordinator, kforge run):
// every key copied, the CURVE secret key read from secret_key_file (an error names the key).
[[nodiscard]] Result<CoordinatorOptions> coordinator_options(const CoordinatorConfig& config);

// A test shim between the loop and the wire (fault injection), called on the loop thread for
// every message the coordinator sends: return Millis(0) to send it now, a positive delay to
// hold it that long, or kDropMessage to lose it.
using MessageFilter = std::function<Millis(const std::string& agent_id, const proto::Message&)>;
inline constexpr Millis kDropMessage{-1};

// Called on the loop thread after the result is committed; `job` is the stored row.
using ResultListener = std::function<void(const JobRow& job, const proto::JobResult& result)>;

class Coordinator {
 public:
  // Opens the store under options.data_dir and binds the socket; does not start the loop.
  static Result<std::unique_ptr<Coordinator>> open(const CoordinatorOptions& options,
                                                   Clock& clock = SystemClock::instance());
  ~Coordinator();

  // The endpoint actually bound (with the port the OS chose for '*').
  const std::string& endpoint() const { return endpoint_; }
  const std::string& incarnation() const { return incarnation_; }

  // Runs the loop until stop(); returns an error if the store fails (the process should
  // exit and be restarted: everything committed survives).
  Status run();
  // Thread-safe; run() returns after the current turn.
  void stop();

  // Runs `fn` on the loop thread inside a turn and returns its value once that turn has
  // committed. Thread-safe; must not be called from the loop thread itself.
  template <typename F>
  auto call(F fn) -> decltype(fn(std::declval<Coordinator&>())) {
    return call_async(std::move(fn)).get();
  }
  // As call(), without waiting: the future is ready once the turn that ran `fn` committed.
  // It is never made ready if the loop ends first (see stopped()).
  template <typename F>
  auto call_async(F fn) -> std::future<decltype(fn(std::declval<Coordinator&>()))> {
    using R = decltype(fn(*this));
    auto promise = std::make_shared<std::promise<R>>();
    auto future = promise->get_future();
    post([this, promise, fn = std::move(fn)]() mutable {
      if constexpr (std::is_void_v<R>) {
        fn(*this);
        after_commit_.push_back([promise] { promise->set_value(); });
      } else {
        auto value = std::make_shared<R>(fn(*this));
        after_commit_.push_back([promise, value] { promise->set_value(std::move(*value)); });
      }
    });
    return future;
  }
  // True once run() has returned: posted work no longer runs.
  bool stopped() const { return stopped_; }

  // The no-space alarm. Thread-safe.
  struct StorageAlarm {
    bool raised = false;
    std::string message;        // the store's error that raised it
    int64_t since_ms = 0;       // wall clock
    uint64_t raised_total = 0;  // alarms raised since start-up
  };
  StorageAlarm storage_alarm() const;
  // Appends the alarm's gauge and counter in Prometheus text format. Thread-safe (the
  // loop's own metrics, render_metrics, need the loop, which runs no turns meanwhile).
  void render_storage_metrics(std::string& out) const;
  // Called on the loop thread, outside a batch, after the loop reloaded its view from the
  // store at the end of an alarm and before the failed turn's posted work runs again: what
  // the listener keeps in memory about the rolled-back turns is stale. Work it post()s runs
  // after the replayed work.
  void add_reload_listener(std::function<void()> fn) { reload_listeners_.push_back(std::move(fn)); }

  // Runs `fn` on the loop thread in a coming turn, inside its batch. Thread-safe.
  void post(std::function<void()> fn);
  // Runs `fn` on the loop thread once the current turn has committed, with what it announces
  // (an LLM request whose pending row is in the turn). Loop thread only.
  void after_commit(std::function<void()> fn) { after_commit_.push_back(std::move(fn)); }

  // --- Loop-thread operations (use inside call(), or from listeners) ---

  // Queues a job of `job.kind`. `assign` is the template sent to the agent: its request is
  // stored in the job's columns (its kind is not read), and the Assign is built again from the
  // row at dispatch, with the job ref, the kind and the device (assign_for).
  Result<int64_t> submit(NewJob job, const proto::Assign& assign);
  // A drained agent runs its current jobs to the end and gets no new ones.
  Status set_drained(const std::string& agent_id, bool drained);
  // Withdraws a job: queued ones never run, running ones are cancelled on their agent.
  Status cancel(int64_t job_id);
  Store& store() { return *store_; }
  std::filesystem::path store_path() const { return options_.data_dir / "kforge.db"; }
  const DevicePool& pool() const { return pool_; }
  bool agent_live(const std::string& agent_id) const;
  // The routing id the live agent's messages come from ("" when it is not live).
  std::string agent_routing_id(const std::string& agent_id) const;
  // Re-reads options.agent_keys_file now (it is also re-read about every second when its
  // modification time or size changes). On error the list in force stays.
  Status reload_agent_keys();
  // Replaces the allow-list. Live agents whose key it no longer binds to their id are
  // dropped (as lost): revocation takes effect at once, not at their next reconnect.
  void set_agent_keys(AgentKeys keys);
  bool authenticated() const { return curve_; }
  bool agent_drained(const std::string& agent_id) const;
  size_t live_agents() const;
  void add_result_listener(ResultListener listener) { listeners_.push_back(std::move(listener)); }
  // Runs `fn` on the loop thread about every `every_ms`, inside a turn's batch. The loop
  // wakes for it: keep periodic work for what has no event to wake it.
  void add_periodic(int64_t every_ms, std::function<void()> fn) {
    periodic_.push_back(Periodic{every_ms, 0, std::move(fn)});
  }
  // Runs `fn` on the loop thread, inside a turn's batch, in the first turn and whenever
  // another process committed to the store (kforge submit, enqueue, cancel on the database,
  // the LLM client's answers); checked about every second with a PRAGMA, no scan.
  void add_change_listener(std::function<void()> fn) { change_listeners_.push_back(std::move(fn)); }
  void set_filter(MessageFilter filter) { filter_ = std::move(filter); }
  // Sizes of the loop's per-agent and per-peer state: each is bounded by the live agents,
  // their leases, or a cap, whatever the history of connections (tests check this).
  struct Footprint {
    size_t agents = 0;
    size_t routing = 0;
    size_t superseded = 0;        // old routing ids still refused
    size_t superseded_order = 0;  // their expiry queue
    size_t leases = 0;
    size_t leases_by_agent = 0;
    size_t log_keys = 0;      // peers with a rate-limited warning window open
    size_t agent_timers = 0;  // entries of the agents' timer queue, stale ones included
  };
  Footprint footprint() const;
  // Loop turns run since start-up. Thread-safe. Idle (no agent, nothing due) the loop wakes
  // about once a second; tests check that it does not spin.
  uint64_t turns() const { return turns_; }
  // Frames from peers dropped unprocessed since start-up (malformed, or over a stranger's
  // per-turn budget).
  uint64_t dropped_frames() const { return malformed_frames_ + stranger_discarded_; }
  // Connections of strangers shut down for flooding (cut_off).
  uint64_t peers_disconnected() const { return peers_cut_off_; }
  // Appends agents, devices (busy or idle), leases, queued jobs and dispatch latency in
  // Prometheus text format.
  void render_metrics(std::string& out) const;

 private:
  struct Agent {
    std::string id;
    std::string routing_id;  // "<agent_id>/<incarnation>/<connection>"
    std::string incarnation;
    std::string key;  // CURVE public key (z85) it registered with; "" in plain mode
    std::vector<proto::DeviceInfo> devices;
    std::vector<proto::VerifierPool> pools;  // from its last heartbeat (metrics)
    int64_t last_recv_ms = 0;
    int64_t last_send_ms = 0;
    int64_t last_touch_ms = 0;  // when last_seen_ms was last stored
    int64_t timer_due_ms = 0;   // its current entry in agent_timers_
    uint32_t heartbeat_ms = 0;  // the interval it was told (Welcome, or a Heartbeat since)
    bool drained = false;
  };
  struct Lease {  // a job assigned to an agent, as the coordinator knows it
    std::string agent_id;
    std::string backend;
    uint32_t device_index = 0;
    int64_t epoch = 0;
    int64_t sent_ms = 0;  // when the assignment was (last) sent
    bool exclusive = false;
    bool attached = true;  // false after a restart until the agent re-registers with it
  };

  struct Outgoing {
    std::string agent_id;
    std::string routing_id;
    proto::Message msg;
  };

  Coordinator(const CoordinatorOptions& options, Clock& clock, std::unique_ptr<Store> store,
              zmq::context_t ctx, std::optional<zmq::socket_t> zap, zmq::socket_t socket,
              std::string endpoint, EventFd wake);
  // Leases, queue and agents from the store, as a restart finds them (docs/architecture.md
  // invariant 6): leased jobs wait restart_grace_ms for their agents.
  Status recover();
  // Forgets the in-memory view (agents, leases, pool, messages not sent): the store is the
  // truth after a rolled-back turn.
  void unload();
  Status turn(bool timers_due);
  // When the timers need the loop next (steady clock, ms): the next heartbeat tick while
  // agents are live, else the earliest of the change check, periodic work, the grace period's
  // end, held messages and expiring state. Nothing due: the loop sleeps until then.
  int64_t next_timer_ms(int64_t now) const;
  // The no-space alarm: `replay` is the failed turn's posted work, run again after it.
  void raise_alarm(const Status& why, std::vector<std::function<void()>> replay);
  // Tries to clear it: reserve back, reload, commit. An error other than no_space stops the loop.
  Status probe_alarm();
  void note(const Status& st);  // remembers the turn's first store error
  void drop_lease(int64_t job_id);
  void receive_all();
  // Shuts down the connection `frame` came from (a stranger over its budget): see the .cpp.
  void cut_off(const std::string& routing_id, const zmq::message_t& frame);
  void serve_zap();
  void check_agent_keys_file();
  // `key`: the CURVE public key of the connection (z85), "" in plain mode.
  void handle(const std::string& routing_id, const std::string& key, const std::string& bytes);
  void on_hello(const std::string& routing_id, const std::string& key, const proto::Hello& hello);
  // With CURVE, why the connection's routing id is not its key's ("" when it is): the agent id
  // a routing id starts with ("<agent_id>/...") must be the one the allow-list binds `key` to.
  std::string routing_key_problem(const std::string& routing_id, const std::string& key) const;
  void refuse(const std::string& routing_id, const std::string& key, proto::RefusalCode code,
              const std::string& reason);
  // "peer '<routing id>'" plus, with CURVE, the key and the agent it belongs to: for logs.
  std::string describe_peer(const std::string& routing_id, const std::string& key) const;
  void on_result(Agent& agent, const proto::JobResult& result);
  void on_heartbeat(Agent& agent, const proto::Heartbeat& hb);
  void on_bye(Agent& agent, const proto::Bye& bye);
  void timers();
  void dispatch();
  void adopt_changes();  // jobs and drain flags written by other processes
  void lose_agent(const std::string& agent_id, AgentState why);  // lost | gone
  void requeue(int64_t job_id, const char* why);
  void send(const std::string& agent_id, const std::string& routing_id, proto::Message msg);
  void flush();
  void send_now(const Outgoing& out);
  Agent* agent_by_routing(const std::string& routing_id);
  void supersede(const std::string& old_routing_id, const std::string& incarnation);
  void forget_superseded(int64_t now);
  // Queues the agent's next look by timers(): when a heartbeat is due (`next_send_ms`) or its
  // silence would make it lost, whichever comes first.
  void schedule_timer(Agent& agent, int64_t next_send_ms);
  // The heartbeat interval the fleet's size calls for: heartbeat_ms times the least factor
  // that keeps the agents' heartbeats within max_heartbeats_per_s (as Nomad scales its TTL).
  uint32_t fleet_heartbeat_ms() const;
  // How long agent may stay silent before it is lost.
  int64_t silence_ms(const Agent& agent) const;
  void trim_heap(int64_t now);

  CoordinatorOptions options_;
  Clock& clock_;
  std::unique_ptr<Store> store_;
  zmq::context_t ctx_;
  std::optional<zmq::socket_t> zap_;  // ZAP handler (REP), with CURVE
  zmq::socket_t socket_;
  bool curve_ = false;
  AgentKeys agent_keys_;
  std::filesystem::file_time_type keys_mtime_{};
  uintmax_t keys_size_ = 0;
  std::string endpoint_;
  std::string incarnation_;
  EventFd wake_;  // post() and stop() wake the loop
  proto::DecodeLimits limits_;

  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> stopped_{false};

  DevicePool pool_;
  std::unordered_map<std::string, Agent> agents_;         // live agents by id
  std::unordered_map<std::string, std::string> routing_;  // routing id -> agent id
  struct Superseded {
    std::string incarnation;  // the one that replaced it
    int64_t until_ms = 0;     // forgotten after this
  };
  std::unordered_map<std::string, Superseded> superseded_;        // old routing id -> replacement
  std::deque<std::pair<int64_t, std::string>> superseded_order_;  // (until_ms, routing id)
  // (due_ms, agent id), earliest first: timers() looks only at the agents due, not at every
  // agent every tick (10,000 agents every 20 ms was a sixth of the loop's CPU). An entry is
  // current while its due_ms is its agent's timer_due_ms; the others (the agent went away or
  // was scheduled again) are dropped when they come up. A deadline only moves later (a
  // message sent or received), so an entry that comes up early is just scheduled again.
  std::priority_queue<std::pair<int64_t, std::string>, std::vector<std::pair<int64_t, std::string>>,
                      std::greater<>>
      agent_timers_;
  std::unordered_map<int64_t, Lease> leases_;  // assigned jobs
  std::unordered_map<std::string, std::set<int64_t>> leases_by_agent_;
  int64_t adopted_up_to_ = 0;  // highest job id in the pool's view; newer queued ones are adopted
  int64_t next_adopt_ms_ = 0;
  int64_t grace_until_ms_ = 0;  // 0 once the restart grace period is over
  Status store_error_;          // a store failure in this turn: roll back, stop the loop

  std::vector<Outgoing> outgoing_;
  std::vector<std::pair<int64_t, Outgoing>> delayed_;  // held by the filter until the time
  std::vector<std::function<void()>> after_commit_;
  std::vector<std::pair<JobRow, proto::JobResult>> recorded_;
  std::vector<ResultListener> listeners_;
  struct Periodic {
    int64_t every_ms;
    int64_t next_ms;
    std::function<void()> fn;
  };
  std::vector<Periodic> periodic_;
  std::vector<std::function<void()>> change_listeners_;
  std::atomic<uint64_t> turns_{0};
  MessageFilter filter_;
  Histogram dispatch_latency_{latency_buckets_s()};  // enqueue to first assignment
  uint64_t results_recorded_ = 0;
  uint64_t results_stale_ = 0;
  // Warnings a peer can cause at will (malformed frames, refusals), limited per peer.
  LogThrottle peer_log_{clock_};
  // Messages of peers that are not registered agents in this turn, by routing id
  // (cleared every turn: at most kMaxMessagesPerTurn entries).
  std::unordered_map<std::string, int> strangers_this_turn_;
  uint64_t malformed_frames_ = 0;
  uint64_t stranger_discarded_ = 0;  // over a stranger's per-turn budget, undecoded
  uint64_t peers_cut_off_ = 0;       // connections shut down for going over that budget
  uint64_t received_since_trim_ = 0;
  uint64_t dropped_at_trim_ = 0;
  int64_t last_trim_ms_ = 0;
  uint64_t results_refused_ = 0;  // current attempts reported by an agent not holding them

  SpaceReserve reserve_;
  bool alarm_ = false;  // loop thread: no turns run
  int64_t next_probe_ms_ = 0;
  int64_t probe_backoff_ms_ = 0;
  mutable std::mutex alarm_mu_;
  StorageAlarm alarm_view_;  // alarm_ and why, for other threads; guarded by alarm_mu_
  std::vector<std::function<void()>> reload_listeners_;
};

}  // namespace kforge
