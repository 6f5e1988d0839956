#include "coordinator/scheduling/coordinator.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "common/fs.h"
#include "common/zmq_util.h"

namespace kforge {
namespace {

// While agents are live, their timers (liveness, heartbeats) are checked this often.
constexpr int64_t kTimerTickMs = 20;
// Messages taken from the socket per turn, so a flood cannot starve timers and commits.
constexpr int kMaxMessagesPerTurn = 4096;
// Messages a peer that is not a registered agent gets handled per turn (a legitimate one
// sends a Hello and waits); the rest of its messages in that turn are discarded undecoded,
// so a flooding stranger costs a recv each, not a decode and a log line (issue 16).
constexpr int kMaxStrangerMessagesPerTurn = 16;
// How long an old routing id is remembered after its agent re-registered under a new
// one (at least): its process, if it still runs, is refused during that time. Beyond
// kMaxSuperseded entries the oldest are forgotten first.
constexpr int64_t kSupersededKeepMs = 60'000;
constexpr size_t kMaxSuperseded = 65'536;
// Free heap pages are given back to the OS (malloc_trim) at most this often, after a window
// with many messages or dropped frames: a flood's buffers are freed, but glibc keeps the
// pages in its arenas (issue 16, F11).
constexpr int64_t kTrimIntervalMs = 10'000;
constexpr uint64_t kTrimAfterMessages = 50'000;
// Inbound messages queued per peer inside zmq before it stops reading that connection
// (back-pressure to the sender). zmq's default is 1000; an agent has a few in flight.
constexpr int kRouterRcvHwm = 256;
// How often an agent's last_seen_ms is stored while it talks to us (operators see when a
// host was last heard from, also after the coordinator stopped).
constexpr int64_t kTouchIntervalMs = 5000;
// How often the store is checked for jobs and drain flags written outside the loop's
// operations (kforge enqueue, drain) and for other processes' commits (kforge submit: a
// PRAGMA; only a change runs the change listeners).
constexpr int64_t kAdoptIntervalMs = 1000;
// While the no-space alarm is raised, how often the loop tries to write again: the first
// probe after this long, then twice as long each time, up to the maximum.
constexpr int64_t kProbeInitialMs = 1000;
constexpr int64_t kProbeMaxMs = 30'000;

// A routing id as log text: printable bytes as they are, others as \xNN (a peer without an
// identity gets five binary bytes from the ROUTER).
std::string printable(const std::string& id) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : id) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

bool contains(const std::vector<proto::JobRef>& refs, uint64_t job_id, uint64_t epoch) {
  return std::any_of(refs.begin(), refs.end(), [&](const proto::JobRef& r) {
    return r.job_id == job_id && r.epoch == epoch;
  });
}

}  // namespace

Result<std::unique_ptr<Coordinator>> Coordinator::open(const CoordinatorOptions& options,
                                                       Clock& clock) {
  // The data directory 0700 and the database 0600 (its -wal and -shm follow the database's
  // mode): they hold task code, LLM answers and the API token.
  KF_RETURN_IF_ERROR(ensure_private_dir(options.data_dir));
  KF_RETURN_IF_ERROR(ensure_private_file(options.data_dir / "kforge.db"));
  for (const char* side : {"kforge.db-wal", "kforge.db-shm"}) {  // from a kforge before 0600
    std::error_code ec;
    if (std::filesystem::exists(options.data_dir / side, ec)) {
      std::filesystem::permissions(options.data_dir / side, std::filesystem::perms(0600), ec);
    }
  }
  CoordinatorOptions resolved = options;
  bool curve = !options.curve_secret_key.empty();
  if (curve) {
    if (!curve_available()) {
      return failed_precondition(
          "this libzmq has no CURVE support: the agent link cannot be authenticated");
    }
    if (!is_z85_key(options.curve_secret_key)) {
      return invalid_argument("coordinator CURVE secret key: expected 40 characters of Z85");
    }
    if (!options.agent_keys_file.empty()) {
      auto keys = AgentKeys::load(options.agent_keys_file);
      if (!keys.ok()) return keys.status();
      resolved.agent_keys = std::move(keys.value());
    }
  }
  SpaceReserve reserve(options.data_dir / "kforge.reserve", options.disk_reserve_bytes);
  auto store = Store::open(options.data_dir / "kforge.db", clock);
  if (!store.ok() && store.status().code() == Code::no_space) {
    // A full disk at start: the reserve's space lets SQLite open the WAL and its index.
    spdlog::warn("{}; giving the space reserve back and opening again", store.status().message());
    reserve.release();
    store = Store::open(options.data_dir / "kforge.db", clock);
  }
  if (!store.ok()) return store.status();
  zmq::context_t ctx(1);
  // The ZAP handler is bound before the ROUTER: a CURVE server without one admits everybody.
  std::optional<zmq::socket_t> zap;
  if (curve) {
    try {
      zap.emplace(ctx, zmq::socket_type::rep);
      zap->set(zmq::sockopt::linger, 0);
      zap->bind(kZapEndpoint);
    } catch (const zmq::error_t& e) {
      return io_error(std::string("cannot bind the ZAP handler ") + kZapEndpoint + ": " + e.what());
    }
  }
  auto socket = make_router(ctx, options.listen, options.max_msg_bytes, options.curve_secret_key);
  if (!socket.ok()) return socket.status();
  socket->set(zmq::sockopt::rcvhwm, kRouterRcvHwm);
  std::string endpoint = bound_endpoint(*socket);
  auto wake = EventFd::open("coordinator wake-up");
  if (!wake.ok()) return wake.status();
  std::unique_ptr<Coordinator> c(
      new Coordinator(resolved, clock, std::move(store.value()), std::move(ctx), std::move(zap),
                      std::move(socket.value()), endpoint, std::move(wake.value())));
  // Without room for the reserve or for recovery's writes the coordinator starts with the
  // no-space alarm raised: it serves reads and recovers once space returns.
  Status st = c->reserve_.hold();
  if (st.ok()) st = c->recover();
  if (!st.ok()) {
    if (st.code() != Code::no_space) return st;
    c->unload();
    c->raise_alarm(st, {});
  }
  return c;
}

Coordinator::Coordinator(const CoordinatorOptions& options, Clock& clock,
                         std::unique_ptr<Store> store, zmq::context_t ctx,
                         std::optional<zmq::socket_t> zap, zmq::socket_t socket,
                         std::string endpoint, EventFd wake)
    : options_(options),
      clock_(clock),
      store_(std::move(store)),
      ctx_(std::move(ctx)),
      zap_(std::move(zap)),
      socket_(std::move(socket)),
      curve_(!options.curve_secret_key.empty()),
      agent_keys_(options.agent_keys),
      endpoint_(std::move(endpoint)),
      incarnation_(random_hex_id().substr(0, 16)),
      wake_(std::move(wake)),
      pool_(options.precision_jobs_per_device),
      reserve_(options.data_dir / "kforge.reserve", options.disk_reserve_bytes) {
  limits_.max_frame_bytes = options.max_msg_bytes;
  options_.agent_keys = AgentKeys();  // agent_keys_ is the list in force
  if (!options_.agent_keys_file.empty()) {
    std::error_code ec;
    keys_mtime_ = std::filesystem::last_write_time(options_.agent_keys_file, ec);
    keys_size_ = std::filesystem::file_size(options_.agent_keys_file, ec);
  }
}

Coordinator::~Coordinator() {
  socket_.close();
  if (zap_) zap_->close();
}

Status Coordinator::recover() {
  // Jobs leased before a restart stay leased, detached, until their agent says Hello
  // (it still runs them, or has their results) or the grace period ends.
  auto assigned = store_->jobs_in_state(JobState::assigned);
  if (!assigned.ok()) return assigned.status();
  for (const JobRow& job : *assigned) {
    Lease lease{
        job.agent_id,      job.backend, static_cast<uint32_t>(std::max(job.device_index, 0)),
        job.epoch,         0,           job.exclusive,
        /*attached=*/false};
    leases_[job.id] = lease;
    leases_by_agent_[job.agent_id].insert(job.id);
  }
  // Queued jobs without their specs (read at dispatch): the pool needs only where they fit.
  size_t queued = 0;
  JobFilter filter;
  filter.state = JobState::queued;
  KF_RETURN_IF_ERROR(store_->list_jobs(filter, [&](const JobRow& job) {
    pool_.enqueue(PoolJob{job.id, job.backend, job.arch, job.priority, job.exclusive});
    adopted_up_to_ = std::max(adopted_up_to_, job.id);
    queued++;
  }));
  for (const JobRow& job : *assigned) adopted_up_to_ = std::max(adopted_up_to_, job.id);
  auto agents = store_->agents();
  if (!agents.ok()) return agents.status();
  for (const AgentRow& a : *agents) {
    if (a.state == AgentState::live)
      KF_RETURN_IF_ERROR(store_->set_agent_state(a.id, AgentState::lost));
  }
  grace_until_ms_ = clock_.now_ms() + options_.restart_grace_ms;
  spdlog::info("coordinator {} recovered: {} queued, {} leased jobs; grace {} ms", incarnation_,
               queued, assigned->size(), options_.restart_grace_ms);
  return Status();
}

void Coordinator::post(std::function<void()> fn) {
  {
    std::lock_guard lock(posted_mu_);
    posted_.push_back(std::move(fn));
  }
  wake_.notify();
}

void Coordinator::stop() {
  stop_ = true;
  wake_.notify();
}

Status Coordinator::run() {
  struct Stopped {
    std::atomic<bool>& flag;
    ~Stopped() { flag = true; }
  } stopped{stopped_};
  if (curve_) {
    spdlog::info("coordinator {} serving agents on {} (CURVE, {} agent keys allowed)", incarnation_,
                 endpoint_, agent_keys_.size());
  } else {
    spdlog::warn(
        "coordinator {} serving agents on {}: agent link is not authenticated (plain TCP): "
        "anyone who reaches this port can register as an agent and receive jobs; "
        "set coordinator.secret_key_file and agent_keys_file (docs/deploy.md)",
        incarnation_, endpoint_);
  }
  int64_t next_timer = 0;
  while (!stop_) {
    if (alarm_) {
      // No turns: wake for stop() and for the next probe only (posted work waits).
      zmq::pollitem_t wake[] = {{nullptr, wake_.fd(), ZMQ_POLLIN, 0}};
      poll_interruptible(wake, 1,
                         std::clamp<int64_t>(next_probe_ms_ - clock_.now_ms(), 0, kTimerTickMs));
      wake_.drain();
      if (stop_ || clock_.now_ms() < next_probe_ms_) continue;
      if (Status st = probe_alarm(); !st.ok()) {
        spdlog::critical("coordinator stopping: {}", st.to_string());
        return st;
      }
      continue;
    }
    zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0},
                               {nullptr, wake_.fd(), ZMQ_POLLIN, 0},
                               {zap_ ? zap_->handle() : nullptr, zap_ ? 0 : -1, ZMQ_POLLIN, 0}};
    // Sleeps until a message, a post() or stop(), or the next timer.
    poll_interruptible(items, zap_ ? 3 : 2, std::max<int64_t>(next_timer - clock_.now_ms(), 0));
    if (items[1].revents & ZMQ_POLLIN) wake_.drain();
    bool timers_due = clock_.now_ms() >= next_timer;
    Status st = turn(timers_due);
    // A turn may bring a timer forward (an agent registered, a message held).
    int64_t next = next_timer_ms(clock_.now_ms());
    next_timer = timers_due ? next : std::min(next_timer, next);
    if (!st.ok()) {
      spdlog::critical("coordinator stopping: {}", st.to_string());
      return st;
    }
  }
  spdlog::info("coordinator {} stopped", incarnation_);
  return Status();
}

Status Coordinator::turn(bool timers_due) {
  if (Status began = store_->begin(); !began.ok()) {
    if (began.code() != Code::no_space) return began;
    raise_alarm(began, {});
    return Status();
  }
  store_error_ = Status();
  turns_++;
  receive_all();
  std::vector<std::function<void()>> posted;
  {
    std::lock_guard lock(posted_mu_);
    posted.swap(posted_);
  }
  for (auto& fn : posted) fn();
  if (timers_due) timers();
  dispatch();
  // Any write refused for lack of space dooms the batch (the store makes commit fail then).
  Status st = store_error_.ok() ? store_->commit() : store_error_;
  if (!st.ok()) {
    store_->rollback();
    if (st.code() != Code::no_space) return st;
    raise_alarm(st, std::move(posted));
    return Status();
  }
  flush();
  // Listeners first: a caller whose call() returns sees every listener of its turn done.
  auto recorded = std::move(recorded_);
  recorded_.clear();
  for (const auto& [row, result] : recorded) {
    for (const auto& listener : listeners_) listener(row, result);
  }
  auto done = std::move(after_commit_);
  after_commit_.clear();
  for (auto& fn : done) fn();
  return Status();
}

void Coordinator::unload() {
  agents_.clear();
  agent_timers_ = {};
  routing_.clear();
  superseded_.clear();
  superseded_order_.clear();
  leases_.clear();
  leases_by_agent_.clear();
  pool_ = DevicePool(options_.precision_jobs_per_device);
  adopted_up_to_ = 0;
  grace_until_ms_ = 0;
  outgoing_.clear();
  delayed_.clear();
  recorded_.clear();
  after_commit_.clear();  // promises of replayed call()s stay with their posted work
}

void Coordinator::raise_alarm(const Status& why, std::vector<std::function<void()>> replay) {
  // The failed turn never happened: its posted work runs again first once the alarm clears;
  // the agents' messages it read are sent again by the agents (outbox, Hello).
  {
    std::lock_guard lock(posted_mu_);
    replay.insert(replay.end(), std::make_move_iterator(posted_.begin()),
                  std::make_move_iterator(posted_.end()));
    posted_ = std::move(replay);
  }
  unload();
  // The reserve's space lets the WAL be copied into the database, and the WAL's own space
  // is free again after it.
  reserve_.release();
  if (Status st = store_->checkpoint(); !st.ok()) {
    spdlog::warn("no-space alarm: WAL checkpoint: {}", st.message());
  }
  alarm_ = true;
  probe_backoff_ms_ = kProbeInitialMs;
  next_probe_ms_ = clock_.now_ms() + probe_backoff_ms_;
  {
    std::lock_guard lock(alarm_mu_);
    alarm_view_.raised = true;
    alarm_view_.message = why.message();
    alarm_view_.since_ms = clock_.wall_ms();
    alarm_view_.raised_total++;
  }
  spdlog::error(
      "no-space alarm raised: {}; serving reads only (no dispatch, no agent messages, "
      "no LLM calls) until writes succeed again; retrying every {} to {} s",
      why.message(), kProbeInitialMs / 1000, kProbeMaxMs / 1000);
}

Status Coordinator::probe_alarm() {
  Status st;
  if (!reserve_.held()) {
    st = reserve_.room_to_hold()
             ? reserve_.hold()
             : Status(Code::no_space, "less than twice the reserve (" +
                                          std::to_string(reserve_.bytes()) + " bytes) free in " +
                                          options_.data_dir.string());
  }
  if (st.ok()) st = store_->begin();
  if (st.ok()) {
    // The view a restart would load: leases detached until their agents say Hello again.
    st = store_->write_probe();
    if (st.ok()) st = recover();
    if (st.ok()) st = store_->commit();
    store_->rollback();  // after a failure; nothing to do after a commit
  }
  if (!st.ok()) {
    unload();
    reserve_.release();
    if (st.code() != Code::no_space) return st;
    probe_backoff_ms_ = std::min(probe_backoff_ms_ * 2, kProbeMaxMs);
    next_probe_ms_ = clock_.now_ms() + probe_backoff_ms_;
    spdlog::debug("no-space alarm stays: {}; next try in {} ms", st.message(), probe_backoff_ms_);
    return Status();
  }
  alarm_ = false;
  int64_t since_ms = 0;
  {
    std::lock_guard lock(alarm_mu_);
    alarm_view_.raised = false;
    since_ms = alarm_view_.since_ms;
  }
  spdlog::info("no-space alarm cleared after {} s: writes succeed again; resuming from the store",
               std::max<int64_t>(clock_.wall_ms() - since_ms, 0) / 1000);
  for (auto& fn : reload_listeners_) fn();
  return Status();
}

Coordinator::StorageAlarm Coordinator::storage_alarm() const {
  std::lock_guard lock(alarm_mu_);
  return alarm_view_;
}

void Coordinator::render_storage_metrics(std::string& out) const {
  StorageAlarm a = storage_alarm();
  metric_family(out, "kforge_nospace_alarm", "gauge",
                "1 while the store refuses writes for lack of space (reads are served, nothing is "
                "dispatched)");
  metric_sample(out, "kforge_nospace_alarm", {}, a.raised ? 1 : 0);
  metric_family(out, "kforge_nospace_alarms_total", "counter",
                "no-space alarms raised since start-up");
  metric_sample(out, "kforge_nospace_alarms_total", {}, static_cast<double>(a.raised_total));
}

void Coordinator::note(const Status& st) {
  if (!st.ok() && store_error_.ok()) store_error_ = st;
}

void Coordinator::receive_all() {
  strangers_this_turn_.clear();
  serve_zap();
  for (int i = 0; i < kMaxMessagesPerTurn; ++i) {
    zmq::message_t id;
    if (!socket_.recv(id, zmq::recv_flags::dontwait)) return;
    std::vector<zmq::message_t> parts;
    while (socket_.get(zmq::sockopt::rcvmore)) {
      zmq::message_t part;
      if (!socket_.recv(part, zmq::recv_flags::dontwait)) break;
      parts.push_back(std::move(part));
    }
    received_since_trim_++;
    std::string routing_id = id.to_string();
    if (routing_.find(routing_id) == routing_.end() &&
        ++strangers_this_turn_[routing_id] > kMaxStrangerMessagesPerTurn) {
      stranger_discarded_++;
      if (strangers_this_turn_[routing_id] == kMaxStrangerMessagesPerTurn + 1 && !parts.empty()) {
        cut_off(routing_id, parts[0]);
      }
      continue;
    }
    if (parts.size() != 1) {
      if (peer_log_.allow(routing_id)) {
        spdlog::warn("dropping message of {} frames from peer '{}'", parts.size() + 1,
                     printable(routing_id));
      }
      continue;
    }
    // The key the connection authenticated with, as the ZAP handler named it (User-Id).
    std::string key;
    if (curve_) {
      const char* user = zmq_msg_gets(parts[0].handle(), "User-Id");
      if (user == nullptr || !is_z85_key(user)) {
        spdlog::warn("dropping message without an authenticated key from peer '{}'",
                     printable(routing_id));
        continue;
      }
      key = user;
    }
    handle(routing_id, key, parts[0].to_string());
  }
}

// A peer that is not a registered agent and sends more in one turn than a legitimate one
// ever does (it says Hello and waits) is flooding: its TCP connection is shut down. The
// kernel then resets the sender, discarding what it had queued, so a flood ends when its
// client stops rather than minutes later, once the coordinator has read everything the
// client's socket buffered (issue 16: after a 20 s flood from 300 clients the coordinator was
// still reading frames, its RSS 7 times its start, 3 minutes on). zmq has no call to close
// one peer of a ROUTER: the connection is the file descriptor the frame was read from
// (ZMQ_SRCFD), used only while it is still a TCP socket to the frame's peer address.
void Coordinator::cut_off(const std::string& routing_id, const zmq::message_t& frame) {
  int fd = zmq_msg_get(const_cast<zmq_msg_t*>(frame.handle()), ZMQ_SRCFD);
  const char* address = zmq_msg_gets(frame.handle(), "Peer-Address");
  if (fd < 0 || address == nullptr) return;
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  char host[INET6_ADDRSTRLEN] = "";
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return;
  const void* in =
      peer.ss_family == AF_INET
          ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&peer)->sin_addr)
      : peer.ss_family == AF_INET6
          ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&peer)->sin6_addr)
          : nullptr;
  if (in == nullptr || ::inet_ntop(peer.ss_family, in, host, sizeof host) == nullptr ||
      address != std::string(host)) {
    return;
  }
  if (::shutdown(fd, SHUT_RDWR) != 0) return;
  peers_cut_off_++;
  if (peer_log_.allow(routing_id)) {
    spdlog::warn(
        "disconnecting peer '{}' ({}): more than {} messages in one turn before registering",
        printable(routing_id), address, kMaxStrangerMessagesPerTurn);
  }
}

Coordinator::Agent* Coordinator::agent_by_routing(const std::string& routing_id) {
  auto r = routing_.find(routing_id);
  if (r == routing_.end()) return nullptr;
  auto a = agents_.find(r->second);
  return a == agents_.end() ? nullptr : &a->second;
}

bool Coordinator::agent_live(const std::string& agent_id) const {
  return agents_.count(agent_id) > 0;
}

std::string Coordinator::agent_routing_id(const std::string& agent_id) const {
  auto it = agents_.find(agent_id);
  return it == agents_.end() ? "" : it->second.routing_id;
}

void Coordinator::serve_zap() {
  if (!zap_) return;
  // ZAP (RFC 27): [version, request id, domain, address, identity, mechanism, credentials...].
  // Answered at once; a REP socket takes the next request only after the reply.
  for (int i = 0; i < kMaxMessagesPerTurn; ++i) {
    std::vector<zmq::message_t> frames;
    zmq::message_t first;
    if (!zap_->recv(first, zmq::recv_flags::dontwait)) return;
    frames.push_back(std::move(first));
    while (zap_->get(zmq::sockopt::rcvmore)) {
      zmq::message_t part;
      if (!zap_->recv(part, zmq::recv_flags::dontwait)) break;
      frames.push_back(std::move(part));
    }
    std::string request_id = frames.size() > 1 ? frames[1].to_string() : "";
    std::string address = frames.size() > 3 ? frames[3].to_string() : "";
    std::string status = "400", text, user;
    if (frames.size() < 7 || frames[0].to_string() != "1.0") {
      text = "malformed ZAP request";
    } else if (frames[5].to_string() != "CURVE") {
      text = "only CURVE is accepted";
    } else {
      std::string key = z85_of_key_bytes(frames[6].to_string());
      if (const std::string* owner = agent_keys_.agent_of(key)) {
        status = "200";
        text = "OK";
        user = key;
        spdlog::debug("zap: admitting {} with the key of agent {}", address, *owner);
      } else {
        text = "key not on the allow-list";
        spdlog::warn("refusing connection from {}: key {} is not on the allow-list", address, key);
      }
    }
    try {
      zap_->send(zmq::str_buffer("1.0"), zmq::send_flags::sndmore);
      zap_->send(zmq::buffer(request_id), zmq::send_flags::sndmore);
      zap_->send(zmq::buffer(status), zmq::send_flags::sndmore);
      zap_->send(zmq::buffer(text), zmq::send_flags::sndmore);
      zap_->send(zmq::buffer(user), zmq::send_flags::sndmore);
      zap_->send(zmq::message_t(), zmq::send_flags::none);  // metadata: none
    } catch (const zmq::error_t& e) {
      spdlog::error("zap: cannot reply: {}", e.what());
    }
  }
}

Status Coordinator::reload_agent_keys() {
  if (options_.agent_keys_file.empty()) return Status();
  std::error_code ec;
  keys_mtime_ = std::filesystem::last_write_time(options_.agent_keys_file, ec);
  keys_size_ = std::filesystem::file_size(options_.agent_keys_file, ec);
  auto keys = AgentKeys::load(options_.agent_keys_file);
  if (!keys.ok()) {
    spdlog::error("agent keys not reloaded, the previous list stays in force: {}",
                  keys.status().message());
    return keys.status();
  }
  spdlog::info("agent keys reloaded from {}: {} keys", options_.agent_keys_file.string(),
               keys->size());
  set_agent_keys(std::move(keys.value()));
  return Status();
}

void Coordinator::check_agent_keys_file() {
  if (!curve_ || options_.agent_keys_file.empty()) return;
  std::error_code ec1, ec2;
  auto mtime = std::filesystem::last_write_time(options_.agent_keys_file, ec1);
  auto size = std::filesystem::file_size(options_.agent_keys_file, ec2);
  if (ec1 || ec2 || (mtime == keys_mtime_ && size == keys_size_)) return;
  (void)reload_agent_keys();
}

void Coordinator::set_agent_keys(AgentKeys keys) {
  agent_keys_ = std::move(keys);
  if (!curve_) return;
  std::vector<std::string> revoked;
  for (const auto& [id, agent] : agents_) {
    const std::string* owner = agent_keys_.agent_of(agent.key);
    if (owner == nullptr || *owner != id) revoked.push_back(id);
  }
  for (const auto& id : revoked) {
    spdlog::warn("agent {}: its key was removed from the allow-list; dropping it", id);
    lose_agent(id, AgentState::lost);
  }
}
bool Coordinator::agent_drained(const std::string& agent_id) const {
  auto it = agents_.find(agent_id);
  return it != agents_.end() && it->second.drained;
}

size_t Coordinator::live_agents() const {
  return agents_.size();
}

void Coordinator::handle(const std::string& routing_id, const std::string& key,
                         const std::string& bytes) {
  auto frame = proto::decode(bytes, limits_);
  if (!frame.ok()) {
    malformed_frames_++;
    if (peer_log_.allow(routing_id)) {
      spdlog::warn("dropping malformed frame from {}: {}", describe_peer(routing_id, key),
                   frame.status().message());
    }
    return;
  }
  if (frame->version != proto::kProtocolVersion) {
    std::string reason = "protocol version " + std::to_string(frame->version) +
                         " is not supported; this coordinator speaks version " +
                         std::to_string(proto::kProtocolVersion);
    refuse(routing_id, key, proto::RefusalCode::protocol_version, reason);
    return;
  }
  const proto::Message& msg = frame->message;
  if (auto* hello = std::get_if<proto::Hello>(&msg)) {
    on_hello(routing_id, key, *hello);
    return;
  }
  // The routing id is derived from the key (schema/protocol.md, Security): whatever a
  // connection sends under a routing id of another agent than its key's is refused here,
  // before any handler sees that routing id.
  if (std::string problem = routing_key_problem(routing_id, key); !problem.empty()) {
    refuse(routing_id, key, proto::RefusalCode::not_authorized, problem);
    return;
  }
  Agent* agent = agent_by_routing(routing_id);
  if (agent == nullptr) {
    if (auto s = superseded_.find(routing_id); s != superseded_.end()) {
      // Two processes sharing one agent id (and key): stop the older one instead of flapping.
      send("", routing_id,
           proto::Refused{"superseded by incarnation " + s->second.incarnation,
                          proto::kProtocolVersion,
                          static_cast<uint32_t>(proto::RefusalCode::superseded)});
      return;
    }
    // Not registered with this coordinator (it restarted, or declared the agent lost): the
    // agent notices our silence and says Hello again.
    spdlog::debug("ignoring {} from unregistered {}", proto::msg_type_name(frame->type),
                  describe_peer(routing_id, key));
    return;
  }
  if (agent->key != key) {
    // Without ROUTER_HANDOVER a connection cannot take over a live routing id; this is the
    // check behind that: every message's key must be the one its agent registered with.
    spdlog::warn("dropping {} from {}: agent {} registered with another key",
                 proto::msg_type_name(frame->type), describe_peer(routing_id, key), agent->id);
    return;
  }
  agent->last_recv_ms = clock_.now_ms();
  if (agent->last_recv_ms - agent->last_touch_ms >= kTouchIntervalMs) {
    agent->last_touch_ms = agent->last_recv_ms;
    note(store_->touch_agent(agent->id));
  }
  if (auto* result = std::get_if<proto::JobResult>(&msg)) {
    on_result(*agent, *result);
  } else if (auto* hb = std::get_if<proto::Heartbeat>(&msg)) {
    on_heartbeat(*agent, *hb);
  } else if (auto* bye = std::get_if<proto::Bye>(&msg)) {
    on_bye(*agent, *bye);
  } else if (peer_log_.allow(routing_id)) {
    spdlog::warn("agent {}: unexpected {} message dropped", agent->id,
                 proto::msg_type_name(frame->type));
  }
}

std::string Coordinator::describe_peer(const std::string& routing_id,
                                       const std::string& key) const {
  std::string out = "peer '" + printable(routing_id) + "'";
  if (!key.empty()) {
    const std::string* owner = agent_keys_.agent_of(key);
    out += " (key " + key + (owner ? ", agent " + *owner : ", not on the allow-list") + ")";
  }
  return out;
}

void Coordinator::refuse(const std::string& routing_id, const std::string& key,
                         proto::RefusalCode code, const std::string& reason) {
  if (peer_log_.allow(routing_id))
    spdlog::warn("refusing {}: {}", describe_peer(routing_id, key), reason);
  send("", routing_id,
       proto::Refused{reason, proto::kProtocolVersion, static_cast<uint32_t>(code)});
}

namespace {

// What makes a Hello unacceptable whoever sent it: a bad id, a routing id that is not the
// agent's, devices that contradict each other. Empty when it is fine.
std::string hello_problem(const std::string& routing_id, const proto::Hello& hello) {
  if (!proto::valid_agent_id(hello.agent_id)) {
    return "agent id '" + printable(hello.agent_id) +
           "' is not valid (1 to 128 printable characters, no '/')";
  }
  if (hello.incarnation.find('/') != std::string::npos) return "incarnation must not contain '/'";
  // "<agent_id>/<incarnation>" (agents before 0.x) or "<agent_id>/<incarnation>/<connection>".
  std::string prefix = hello.agent_id + "/" + hello.incarnation;
  bool ok = routing_id == prefix || (routing_id.size() > prefix.size() + 1 &&
                                     routing_id.compare(0, prefix.size(), prefix) == 0 &&
                                     routing_id[prefix.size()] == '/' &&
                                     routing_id.find('/', prefix.size() + 1) == std::string::npos);
  if (!ok) {
    return "hello must come from routing id '<agent_id>/<incarnation>/<connection>' (got '" +
           printable(routing_id) + "')";
  }
  std::set<std::pair<std::string, uint32_t>> seen;
  for (const auto& d : hello.devices) {
    if (d.backend.empty()) return "device " + std::to_string(d.index) + " has no backend";
    if (!seen.emplace(d.backend, d.index).second) {
      return "device " + printable(d.backend) + ":" + std::to_string(d.index) + " is listed twice";
    }
  }
  return "";
}

}  // namespace

std::string Coordinator::routing_key_problem(const std::string& routing_id,
                                             const std::string& key) const {
  if (!curve_) return "";
  const std::string* owner = agent_keys_.agent_of(key);
  if (owner == nullptr) return "this agent's key is not on the coordinator's allow-list";
  std::string named = routing_id.substr(0, routing_id.find('/'));
  if (named != *owner)
    return "this agent's key belongs to agent " + *owner + ", not " + printable(named);
  return "";
}

void Coordinator::on_hello(const std::string& routing_id, const std::string& key,
                           const proto::Hello& hello) {
  if (std::string problem = hello_problem(routing_id, hello); !problem.empty()) {
    refuse(routing_id, key, proto::RefusalCode::invalid_hello, problem);
    return;
  }
  const std::string& id = hello.agent_id;
  // The routing id starts with the Hello's agent id (hello_problem), so this binds the id too.
  if (std::string problem = routing_key_problem(routing_id, key); !problem.empty()) {
    refuse(routing_id, key, proto::RefusalCode::not_authorized, problem);
    return;
  }
  auto old = agents_.find(id);
  if (old != agents_.end() && old->second.incarnation != hello.incarnation && !curve_) {
    // Plain TCP proves nothing about who sends a Hello: a live agent's id is not handed to
    // another process until the holder says Bye or is lost. (With CURVE the key decides.)
    refuse(routing_id, key, proto::RefusalCode::id_in_use,
           "agent id " + id + " is held by live incarnation " + old->second.incarnation +
               "; retry once it is gone");
    return;
  }

  // Drained survives restarts of either side. (One row: reading every agent's made the
  // registration of N agents cost N^2, 150 s for 10,000; issue 21.)
  bool drained = false;
  if (auto row = store_->agent(id); row.ok()) {
    drained = row->has_value() && (*row)->drained;
  } else {
    note(row.status());
    return;
  }
  std::vector<DeviceRow> device_rows;
  for (const auto& d : hello.devices) {
    device_rows.push_back(DeviceRow{id, static_cast<int>(d.index), d.backend, d.arch, d.name,
                                    static_cast<int64_t>(d.memory_mb)});
  }
  // Stored first: a Hello the store will not take is that peer's problem, refused here
  // before anything in memory changed, never the coordinator's (a failed operation leaves
  // the batch as it was).
  nlohmann::json caps = nlohmann::json::object();
  for (const auto& [k, v] : hello.capabilities) caps[k] = v;
  int64_t now_wall = clock_.wall_ms();
  AgentRow row{id,         hello.incarnation,
               hello.host, AgentState::live,
               drained,    caps.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
               now_wall,   now_wall};
  if (Status st = store_->upsert_agent(row, device_rows); !st.ok()) {
    if (st.code() == Code::invalid_argument) {
      refuse(routing_id, key, proto::RefusalCode::invalid_hello, st.message());
    } else {
      note(st);
    }
    return;
  }

  if (old != agents_.end()) {
    if (old->second.routing_id != routing_id) {
      if (old->second.incarnation != hello.incarnation) {
        spdlog::info("agent {} restarted: incarnation {} replaces {}", id, hello.incarnation,
                     old->second.incarnation);
        supersede(old->second.routing_id, hello.incarnation);
      } else {
        spdlog::info("agent {} reconnected: routing id '{}' replaces '{}'", id,
                     printable(routing_id), printable(old->second.routing_id));
      }
    }
    routing_.erase(old->second.routing_id);
  }

  std::vector<PoolDevice> devices;
  for (const auto& d : hello.devices) devices.push_back(PoolDevice{d.backend, d.index, d.arch});
  pool_.remove_agent(id);
  pool_.add_agent(id, devices, drained);

  // Reconcile the leases this agent holds with what it reports.
  std::vector<int64_t> lost;
  for (int64_t job_id : leases_by_agent_[id]) {
    Lease& lease = leases_.at(job_id);
    auto epoch = static_cast<uint64_t>(lease.epoch);
    if (contains(hello.running, job_id, epoch)) {
      lease.attached = true;
      if (!pool_.occupy(job_id, id, lease.backend, lease.device_index, lease.exclusive)) {
        lost.push_back(job_id);  // the device it ran on is gone
      }
    } else if (contains(hello.outbox, job_id, epoch)) {
      lease.attached = true;  // finished; its result follows the Welcome
    } else {
      lost.push_back(job_id);
    }
  }
  for (int64_t job_id : lost) requeue(job_id, "attempt unknown to its agent after hello");
  for (const auto& ref : hello.running) {
    auto l = leases_.find(static_cast<int64_t>(ref.job_id));
    if (l == leases_.end() || l->second.agent_id != id ||
        static_cast<uint64_t>(l->second.epoch) != ref.epoch) {
      spdlog::info("agent {}: cancelling attempt job={} epoch={} it no longer owns", id, ref.job_id,
                   ref.epoch);
      send(id, routing_id, proto::Cancel{ref, "attempt no longer assigned to this agent"});
    }
  }

  Agent& agent = agents_[id];
  agent.id = id;
  agent.routing_id = routing_id;
  agent.incarnation = hello.incarnation;
  agent.key = key;
  agent.devices = hello.devices;
  agent.last_recv_ms = clock_.now_ms();
  agent.last_touch_ms = agent.last_recv_ms;  // upsert_agent stored last_seen_ms
  agent.drained = drained;
  agent.heartbeat_ms = fleet_heartbeat_ms();
  schedule_timer(agent, agent.last_recv_ms + agent.heartbeat_ms);  // after the Welcome
  routing_[routing_id] = id;
  spdlog::info("agent {} registered: host {} incarnation {} devices {} running {} outbox {}{}", id,
               hello.host, hello.incarnation, hello.devices.size(), hello.running.size(),
               hello.outbox.size(), key.empty() ? "" : " key " + key);
  send(id, routing_id, proto::Welcome{incarnation_, agent.heartbeat_ms, options_.liveness});
}

void Coordinator::on_result(Agent& agent, const proto::JobResult& result) {
  auto job_id = static_cast<int64_t>(result.job.job_id);
  auto epoch = static_cast<int64_t>(result.job.epoch);
  // Only the agent holding the lease of this (job, epoch) may report it. Another peer's
  // claim is neither recorded nor acked, and the real attempt runs on untouched.
  if (auto l = leases_.find(job_id);
      l != leases_.end() && l->second.epoch == epoch && l->second.agent_id != agent.id) {
    results_refused_++;
    spdlog::warn(
        "refusing result job={} epoch={} from agent {} ({}): the attempt is leased to agent {}",
        job_id, epoch, agent.id, describe_peer(agent.routing_id, agent.key), l->second.agent_id);
    return;
  }
  auto recorded = store_->record_result(job_id, epoch, result);
  if (!recorded.ok()) {
    note(recorded.status());
    return;
  }
  if (*recorded) {
    results_recorded_++;
    pool_.release(job_id);
    drop_lease(job_id);
    if (!listeners_.empty()) {
      auto row = store_->get_job(job_id);
      // The stored result, typed as the store keeps it (an older agent's verdict document read).
      if (row.ok() && row->result) {
        proto::JobResult stored = *row->result;
        recorded_.emplace_back(std::move(row.value()), std::move(stored));
      }
    }
  } else {
    results_stale_++;
    spdlog::info("dropping stale result job={} epoch={} from agent {}", job_id, epoch, agent.id);
  }
  send(agent.id, agent.routing_id, proto::ResultAck{result.job, *recorded});
}

void Coordinator::on_heartbeat(Agent& agent, const proto::Heartbeat& hb) {
  int64_t now = clock_.now_ms();
  // Its Verifiers' pools, for /metrics: at most one per device it registered.
  if (hb.pools) {
    agent.pools.assign(
        hb.pools->begin(),
        hb.pools->begin() + static_cast<long>(std::min(hb.pools->size(), agent.devices.size())));
  }
  int64_t slack = silence_ms(agent);
  // An assignment the agent never received (lost on the way) is re-queued once the agent
  // has had time to report it.
  std::vector<int64_t> lost;
  auto held = leases_by_agent_.find(agent.id);
  for (int64_t job_id : held == leases_by_agent_.end() ? std::set<int64_t>{} : held->second) {
    const Lease& lease = leases_.at(job_id);
    auto epoch = static_cast<uint64_t>(lease.epoch);
    if (!contains(hb.running, job_id, epoch) && !contains(hb.outbox, job_id, epoch) &&
        now - lease.sent_ms > slack) {
      lost.push_back(job_id);
    }
  }
  for (int64_t job_id : lost) requeue(job_id, "assignment not running on its agent");
  for (const auto& ref : hb.running) {
    auto l = leases_.find(static_cast<int64_t>(ref.job_id));
    if (l == leases_.end() || l->second.agent_id != agent.id ||
        static_cast<uint64_t>(l->second.epoch) != ref.epoch) {
      send(agent.id, agent.routing_id,
           proto::Cancel{ref, "attempt no longer assigned to this agent"});
    }
  }
  // Results the agent still holds for attempts that are no longer current (recorded
  // already, or stale): ack them so its outbox empties.
  for (const auto& ref : hb.outbox) {
    auto l = leases_.find(static_cast<int64_t>(ref.job_id));
    if (l == leases_.end() || static_cast<uint64_t>(l->second.epoch) != ref.epoch) {
      send(agent.id, agent.routing_id, proto::ResultAck{ref, false});
    }
  }
}

void Coordinator::on_bye(Agent& agent, const proto::Bye& bye) {
  std::string id = agent.id;
  spdlog::info("agent {} said goodbye: {}", id, bye.reason);
  lose_agent(id, AgentState::gone);
}

void Coordinator::supersede(const std::string& old_routing_id, const std::string& incarnation) {
  int64_t until =
      clock_.now_ms() +
      std::max<int64_t>(kSupersededKeepMs,
                        10 * static_cast<int64_t>(options_.heartbeat_ms) * options_.liveness);
  superseded_[old_routing_id] = Superseded{incarnation, until};
  superseded_order_.emplace_back(until, old_routing_id);
}

void Coordinator::forget_superseded(int64_t now) {
  while (!superseded_order_.empty() &&
         (superseded_order_.front().first <= now || superseded_order_.size() > kMaxSuperseded)) {
    auto& [until, routing_id] = superseded_order_.front();
    // A routing id superseded twice has a later entry in the queue: keep the map's.
    if (auto s = superseded_.find(routing_id);
        s != superseded_.end() && s->second.until_ms == until) {
      superseded_.erase(s);
    }
    superseded_order_.pop_front();
  }
}

void Coordinator::trim_heap(int64_t now) {
  if (now - last_trim_ms_ < kTrimIntervalMs) return;
  uint64_t dropped = malformed_frames_ + stranger_discarded_;
  bool busy = received_since_trim_ >= kTrimAfterMessages || dropped != dropped_at_trim_;
  last_trim_ms_ = now;
  received_since_trim_ = 0;
  dropped_at_trim_ = dropped;
  if (busy) (void)malloc_trim(0);
}

Coordinator::Footprint Coordinator::footprint() const {
  return Footprint{agents_.size(),           routing_.size(),     superseded_.size(),
                   superseded_order_.size(), leases_.size(),      leases_by_agent_.size(),
                   peer_log_.keys(),         agent_timers_.size()};
}

void Coordinator::schedule_timer(Agent& agent, int64_t next_send_ms) {
  agent.timer_due_ms = std::min(next_send_ms, agent.last_recv_ms + silence_ms(agent) + 1);
  agent_timers_.emplace(agent.timer_due_ms, agent.id);
}

uint32_t Coordinator::fleet_heartbeat_ms() const {
  const uint64_t base = options_.heartbeat_ms;
  if (options_.max_heartbeats_per_s == 0) return options_.heartbeat_ms;
  // agents / (base * factor / 1000 s) <= max_heartbeats_per_s
  const uint64_t per_base = uint64_t{options_.max_heartbeats_per_s} * base;
  const uint64_t factor = std::max<uint64_t>(1, (agents_.size() * 1000 + per_base - 1) / per_base);
  return static_cast<uint32_t>(
      std::max<uint64_t>(base, std::min<uint64_t>(base * factor, proto::kMaxHeartbeatMs)));
}

int64_t Coordinator::silence_ms(const Agent& agent) const {
  return static_cast<int64_t>(std::max(agent.heartbeat_ms, options_.heartbeat_ms)) *
         options_.liveness;
}

void Coordinator::timers() {
  peer_log_.report();
  int64_t now = clock_.now_ms();
  forget_superseded(now);
  trim_heap(now);
  // An agent's interval only grows while it is registered: a longer one is announced on a
  // heartbeat before the coordinator's own heartbeats to it space out, and the agent's
  // silence is judged by the longest interval it was told.
  const uint32_t fleet_ms = fleet_heartbeat_ms();
  std::vector<std::string> lost;
  while (!agent_timers_.empty() && agent_timers_.top().first <= now) {
    auto [due, id] = agent_timers_.top();
    agent_timers_.pop();
    auto it = agents_.find(id);
    if (it == agents_.end() || it->second.timer_due_ms != due) continue;  // gone or rescheduled
    Agent& agent = it->second;
    if (now - agent.last_recv_ms > silence_ms(agent)) {
      lost.push_back(id);
      continue;
    }
    int64_t next_send_ms = agent.last_send_ms + agent.heartbeat_ms;
    if (now >= next_send_ms) {
      proto::Heartbeat beat;
      if (fleet_ms > agent.heartbeat_ms) {
        beat.heartbeat_ms = fleet_ms;
        agent.heartbeat_ms = fleet_ms;
      }
      send(id, agent.routing_id, std::move(beat));  // last_send_ms is set when it leaves
      next_send_ms = now + agent.heartbeat_ms;
    }
    schedule_timer(agent, next_send_ms);
  }
  for (const auto& id : lost) lose_agent(id, AgentState::lost);
  if (now >= next_adopt_ms_) {
    next_adopt_ms_ = now + kAdoptIntervalMs;
    // Queued jobs above the highest id known and drain flags: an index range and the agent
    // rows (the operator API's drain writes through this connection, so it is read even when
    // no other process committed). The listeners' reconciliation only after another
    // process's commit.
    adopt_changes();
    auto changed = store_->changed_elsewhere();
    if (!changed.ok()) note(changed.status());
    if (changed.ok() && *changed) {
      for (auto& fn : change_listeners_) fn();
    }
    check_agent_keys_file();
  }
  for (auto& p : periodic_) {
    if (now >= p.next_ms) {
      p.next_ms = now + p.every_ms;
      p.fn();
    }
  }
  if (grace_until_ms_ != 0 && now >= grace_until_ms_) {
    grace_until_ms_ = 0;
    std::vector<int64_t> detached;
    for (const auto& [job_id, lease] : leases_) {
      if (!lease.attached) detached.push_back(job_id);
    }
    for (int64_t job_id : detached) requeue(job_id, "agent did not return after restart");
  }
}

int64_t Coordinator::next_timer_ms(int64_t now) const {
  if (!agents_.empty()) return now + kTimerTickMs;
  int64_t next = next_adopt_ms_;
  for (const auto& p : periodic_) next = std::min(next, p.next_ms);
  if (grace_until_ms_ != 0) next = std::min(next, grace_until_ms_);
  for (const auto& held : delayed_) next = std::min(next, held.first);
  if (!superseded_order_.empty()) next = std::min(next, superseded_order_.front().first);
  if (peer_log_.keys() > 0 || received_since_trim_ > 0)
    next = std::min(next, now + kAdoptIntervalMs);
  return std::max(next, now);
}

void Coordinator::adopt_changes() {
  auto jobs = store_->queued_after(adopted_up_to_);
  if (!jobs.ok()) {
    note(jobs.status());
    return;
  }
  for (const JobRow& job : *jobs) {
    pool_.enqueue(PoolJob{job.id, job.backend, job.arch, job.priority, job.exclusive});
    adopted_up_to_ = std::max(adopted_up_to_, job.id);
  }
  if (!jobs->empty()) spdlog::info("adopted {} jobs queued by other processes", jobs->size());
  // Drain flags set by other processes (kforge drain).
  auto agents = store_->agents();
  if (!agents.ok()) {
    note(agents.status());
    return;
  }
  for (const AgentRow& row : *agents) {
    auto live = agents_.find(row.id);
    if (live != agents_.end() && live->second.drained != row.drained) {
      live->second.drained = row.drained;
      pool_.set_drained(row.id, row.drained);
      spdlog::info("agent {} {}", row.id, row.drained ? "drained" : "undrained");
    }
  }
}

void Coordinator::dispatch() {
  if (pool_.queued() == 0) return;
  for (const Placement& p : pool_.place()) {
    auto epoch = store_->assign_job(p.job_id, p.agent_id, static_cast<int>(p.device_index));
    if (!epoch.ok()) {
      pool_.release(p.job_id);
      if (epoch.status().code() != Code::failed_precondition) note(epoch.status());
      continue;
    }
    auto job = store_->get_job(p.job_id);
    if (!job.ok()) {
      note(job.status());
      continue;
    }
    if (job->attempts == 1) {
      dispatch_latency_.observe(
          static_cast<double>(std::max<int64_t>(job->assigned_ms - job->created_ms, 0)) / 1000.0);
    }
    // Built from the job's row (its request columns): no frame is read from the database.
    proto::Assign assign = assign_for(*job, *epoch, p.device_index, p.backend);
    leases_[p.job_id] =
        Lease{p.agent_id, p.backend, p.device_index, *epoch, clock_.now_ms(), job->exclusive, true};
    leases_by_agent_[p.agent_id].insert(p.job_id);
    const Agent& agent = agents_.at(p.agent_id);
    spdlog::debug("assign job={} epoch={} agent={} device={}:{}", p.job_id, *epoch, p.agent_id,
                  p.backend, p.device_index);
    send(p.agent_id, agent.routing_id, std::move(assign));
  }
}

void Coordinator::drop_lease(int64_t job_id) {
  auto l = leases_.find(job_id);
  if (l == leases_.end()) return;
  auto by = leases_by_agent_.find(l->second.agent_id);
  if (by != leases_by_agent_.end()) {
    by->second.erase(job_id);
    if (by->second.empty()) leases_by_agent_.erase(by);
  }
  leases_.erase(l);
}

void Coordinator::requeue(int64_t job_id, const char* why) {
  pool_.release(job_id);
  drop_lease(job_id);
  auto epoch = store_->requeue_job(job_id);
  if (!epoch.ok()) {
    if (epoch.status().code() != Code::failed_precondition) note(epoch.status());
    return;
  }
  auto job = store_->get_job(job_id);
  if (!job.ok()) {
    note(job.status());
    return;
  }
  spdlog::warn("requeue job={} epoch={}: {}", job_id, *epoch, why);
  pool_.enqueue(PoolJob{job->id, job->backend, job->arch, job->priority, job->exclusive});
}

void Coordinator::lose_agent(const std::string& agent_id, AgentState why_state) {
  auto it = agents_.find(agent_id);
  if (it == agents_.end()) return;
  const char* why = to_string(why_state).data();
  if (why_state == AgentState::gone) {
    spdlog::info("agent {} gone: re-queuing its jobs", agent_id);
  } else {
    spdlog::warn("agent {} {}: re-queuing its jobs", agent_id, why);
  }
  routing_.erase(it->second.routing_id);
  agents_.erase(it);
  pool_.remove_agent(agent_id);
  std::vector<int64_t> jobs;
  if (auto by = leases_by_agent_.find(agent_id); by != leases_by_agent_.end()) {
    jobs.assign(by->second.begin(), by->second.end());
  }
  for (int64_t job_id : jobs) requeue(job_id, why);
  leases_by_agent_.erase(agent_id);  // on_hello leaves an empty set for an agent without jobs
  note(store_->set_agent_state(agent_id, why_state));
}

Result<int64_t> Coordinator::submit(NewJob job, const proto::Assign& assign) {
  job.request = request_of(assign);
  auto id = store_->enqueue_job(job);
  if (!id.ok()) return id.status();
  adopted_up_to_ = std::max(adopted_up_to_, *id);
  pool_.enqueue(PoolJob{*id, job.backend, job.arch, job.priority, job.exclusive});
  return id;
}

Status Coordinator::set_drained(const std::string& agent_id, bool drained) {
  KF_RETURN_IF_ERROR(store_->set_agent_drained(agent_id, drained));
  pool_.set_drained(agent_id, drained);
  if (auto it = agents_.find(agent_id); it != agents_.end()) it->second.drained = drained;
  spdlog::info("agent {} {}", agent_id, drained ? "drained" : "undrained");
  return Status();
}

Status Coordinator::cancel(int64_t job_id) {
  auto job = store_->get_job(job_id);
  if (!job.ok()) return job.status();
  if (job->state == JobState::done || job->state == JobState::cancelled) {
    return failed_precondition("job " + std::to_string(job_id) + " is already " +
                               std::string(to_string(job->state)));
  }
  pool_.dequeue(job_id);
  if (auto l = leases_.find(job_id); l != leases_.end()) {
    if (auto a = agents_.find(l->second.agent_id); a != agents_.end()) {
      send(a->first, a->second.routing_id,
           proto::Cancel{{static_cast<uint64_t>(job_id), static_cast<uint64_t>(l->second.epoch)},
                         "cancelled by operator"});
    }
    pool_.release(job_id);
    drop_lease(job_id);
  }
  return store_->cancel_job(job_id);
}

void Coordinator::send(const std::string& agent_id, const std::string& routing_id,
                       proto::Message msg) {
  if (auto a = agents_.find(agent_id); a != agents_.end()) a->second.last_send_ms = clock_.now_ms();
  outgoing_.push_back(Outgoing{agent_id, routing_id, std::move(msg)});
}

void Coordinator::flush() {
  int64_t now = clock_.now_ms();
  for (auto& out : outgoing_) {
    Millis hold = filter_ ? filter_(out.agent_id, out.msg) : Millis(0);
    if (hold < Millis(0)) continue;
    if (hold > Millis(0)) {
      delayed_.emplace_back(now + hold.count(), std::move(out));
      continue;
    }
    send_now(out);
  }
  outgoing_.clear();
  for (auto it = delayed_.begin(); it != delayed_.end();) {
    if (it->first <= now) {
      send_now(it->second);
      it = delayed_.erase(it);
    } else {
      ++it;
    }
  }
}

void Coordinator::send_now(const Outgoing& out) {
  std::string bytes = proto::encode(out.msg);
  try {
    socket_.send(zmq::buffer(out.routing_id), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    socket_.send(zmq::buffer(bytes), zmq::send_flags::dontwait);
  } catch (const zmq::error_t& e) {
    // Unroutable (the peer went away) or its queue is full: the message is lost, which
    // heartbeats and reconciliation already handle.
    spdlog::debug("cannot send {} to '{}': {}", proto::msg_type_name(proto::type_of(out.msg)),
                  printable(out.routing_id), e.what());
  }
}

void Coordinator::render_metrics(std::string& out) const {
  metric_family(out, "kforge_agents_live", "gauge", "agents registered and heartbeating");
  metric_sample(out, "kforge_agents_live", {}, static_cast<double>(agents_.size()));
  // Devices by backend: how many, how many run a job now.
  std::map<std::string, std::pair<int, int>> by_backend;  // backend -> (devices, busy)
  metric_family(out, "kforge_device_busy", "gauge", "1 while the device runs a job, else 0");
  for (const DevicePool::DeviceLoad& d : pool_.loads()) {
    auto& [devices, busy] = by_backend[d.device.backend];
    devices++;
    busy += d.running > 0 ? 1 : 0;
    metric_sample(out, "kforge_device_busy",
                  {{"agent", d.agent_id},
                   {"device", d.device.backend + ":" + std::to_string(d.device.index)},
                   {"arch", d.device.arch}},
                  d.running > 0 ? 1 : 0);
  }
  // The agents' Verifiers (agent/verifier), per device, from their last heartbeats.
  auto each_pool = [&](const auto& fn) {
    for (const auto& [id, agent] : agents_) {
      for (const proto::VerifierPool& p : agent.pools) {
        fn(MetricLabels{{"agent", id},
                        {"device", p.backend + ":" + std::to_string(p.device_index)}},
           p);
      }
    }
  };
  metric_family(out, "kforge_verifier_workers", "gauge",
                "candidate workers of a device's Verifier: warm (waiting for a job) or busy");
  each_pool([&](MetricLabels labels, const proto::VerifierPool& p) {
    labels.emplace_back("state", "warm");
    metric_sample(out, "kforge_verifier_workers", labels, p.warm);
    labels.back().second = "busy";
    metric_sample(out, "kforge_verifier_workers", labels, p.busy);
  });
  metric_family(out, "kforge_verifier_workers_spawned_total", "counter",
                "candidate workers a device's Verifier started (rate(): spawned per second)");
  each_pool([&](const MetricLabels& labels, const proto::VerifierPool& p) {
    metric_sample(out, "kforge_verifier_workers_spawned_total", labels,
                  static_cast<double>(p.spawned));
  });
  metric_family(out, "kforge_verifier_workers_forked_total", "counter",
                "of those, the workers forked from the worker zygote (the rest started cold)");
  each_pool([&](const MetricLabels& labels, const proto::VerifierPool& p) {
    metric_sample(out, "kforge_verifier_workers_forked_total", labels,
                  static_cast<double>(p.forked));
  });
  metric_family(out, "kforge_verifier_zygote_up", "gauge",
                "1 while the device's worker zygote is up (0: its workers start cold)");
  each_pool([&](const MetricLabels& labels, const proto::VerifierPool& p) {
    metric_sample(out, "kforge_verifier_zygote_up", labels, p.zygote ? 1 : 0);
  });
  metric_family(out, "kforge_devices", "gauge", "devices of live agents, by backend");
  for (const auto& [backend, n] : by_backend)
    metric_sample(out, "kforge_devices", {{"backend", backend}}, n.first);
  metric_family(out, "kforge_device_utilization_ratio", "gauge",
                "fraction of the backend's devices running a job now");
  for (const auto& [backend, n] : by_backend) {
    metric_sample(out, "kforge_device_utilization_ratio", {{"backend", backend}},
                  n.first ? static_cast<double>(n.second) / n.first : 0.0);
  }
  metric_family(out, "kforge_pool_queued_jobs", "gauge", "jobs waiting for a device");
  metric_sample(out, "kforge_pool_queued_jobs", {}, static_cast<double>(pool_.queued()));
  metric_family(out, "kforge_leases", "gauge", "jobs assigned to agents");
  metric_sample(out, "kforge_leases", {}, static_cast<double>(leases_.size()));
  metric_family(out, "kforge_results_total", "counter",
                "job results from agents since start-up: recorded, dropped as stale, or refused "
                "(from an agent not holding the attempt)");
  metric_sample(out, "kforge_results_total", {{"outcome", "recorded"}},
                static_cast<double>(results_recorded_));
  metric_sample(out, "kforge_results_total", {{"outcome", "stale"}},
                static_cast<double>(results_stale_));
  metric_sample(out, "kforge_results_total", {{"outcome", "refused"}},
                static_cast<double>(results_refused_));
  metric_family(out, "kforge_peer_frames_dropped_total", "counter",
                "frames from peers dropped unprocessed since start-up: malformed, or beyond a "
                "stranger's per-turn budget");
  metric_sample(out, "kforge_peer_frames_dropped_total", {{"reason", "malformed"}},
                static_cast<double>(malformed_frames_));
  metric_sample(out, "kforge_peer_frames_dropped_total", {{"reason", "over_budget"}},
                static_cast<double>(stranger_discarded_));
  metric_family(out, "kforge_peers_disconnected_total", "counter",
                "connections of peers that were not registered agents shut down for flooding (over "
                "the per-turn budget)");
  metric_sample(out, "kforge_peers_disconnected_total", {}, static_cast<double>(peers_cut_off_));
  metric_family(out, "kforge_log_lines_suppressed_total", "counter",
                "warnings about peers not written (rate limit)");
  metric_sample(out, "kforge_log_lines_suppressed_total", {},
                static_cast<double>(peer_log_.suppressed()));
  dispatch_latency_.render(out, "kforge_dispatch_latency_seconds",
                           "time from a job's enqueue to its first assignment to a device");
}

Result<CoordinatorOptions> coordinator_options(const CoordinatorConfig& config) {
  CoordinatorOptions options;
  options.listen = config.listen;
  options.data_dir = config.data_dir;
  options.heartbeat_ms = config.heartbeat_ms;
  options.liveness = config.liveness;
  options.max_heartbeats_per_s = config.max_heartbeats_per_s;
  options.restart_grace_ms = config.restart_grace_ms;
  options.precision_jobs_per_device = config.precision_jobs_per_device;
  options.disk_reserve_bytes = uint64_t{config.disk_reserve_mb} << 20;
  if (!config.secret_key_file.empty()) {
    auto keys = read_secret_key_file(config.secret_key_file);
    if (!keys.ok())
      return Status(keys.status().code(),
                    "coordinator.secret_key_file: " + keys.status().message());
    options.curve_secret_key = keys->secret_key;
    options.agent_keys_file = config.agent_keys_file;
  }
  return options;
}

}  // namespace kforge
