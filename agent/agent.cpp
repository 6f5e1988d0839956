#include "agent/agent.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "agent/devices.h"
#include "agent/state_dir.h"
#include "agent/verify.h"
#include "common/curve.h"
#include "common/fs.h"
#include "common/vocabulary.h"
#include "common/zmq_util.h"

namespace kforge {
namespace {

constexpr int64_t kTickMs = 20;
// The harness writes its verdict here, inside the job's work directory.
constexpr const char* kResultFile = "result.json";
constexpr size_t kMaxResultJson = 4u << 20;
// The agent's copy of the harness under the work root (root-owned, world-readable).
constexpr const char* kHarnessCopy = "harness";

std::string hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

// A file name the coordinator may ask us to write: one path component, nothing hidden.
bool safe_file_name(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != ".." &&
         name.find('\0') == std::string::npos;
}

uint64_t pick(uint64_t job_value, uint64_t agent_default) {
  return job_value ? job_value : agent_default;
}

}  // namespace

Result<AgentOptions> agent_options(const AgentConfig& config, const std::string& device_fixtures,
                                   bool probe) {
  AgentOptions options;
  options.coordinator = config.coordinator;
  options.state_dir = config.state_dir;
  options.id = config.id;
  if (!config.secret_key_file.empty()) {
    auto keys = read_secret_key_file(config.secret_key_file);
    if (!keys.ok())
      return Status(keys.status().code(), "agent.secret_key_file: " + keys.status().message());
    options.curve_secret_key = keys->secret_key;
    options.coordinator_public_key = config.coordinator_public_key;
  }
  options.host = config.host;
  DiscoveryOptions discovery;
  discovery.nvidia_smi = config.nvidia_smi;
  discovery.npu_smi = config.npu_smi;
  discovery.cpu_devices = config.cpu_devices;
  discovery.cpu_arch = config.cpu_arch;
  discovery.fixture_dir = device_fixtures;
  auto devices = select_devices(discover_devices(discovery), config.devices);
  if (!devices.ok()) return devices.status();
  options.devices = *devices;
  if (probe) {
    auto caps = probe_capabilities(config.python);
    if (caps.ok()) {
      options.capabilities = *caps;
    } else {
      spdlog::warn("capability probe failed: {}", caps.status().message());
    }
  }
  options.env_allow = config.env_allow;
  options.python = config.python;
  options.harness_dir = config.harness_dir;
  options.work_root = config.work_dir;
  options.limits =
      ResourceLimits{config.limits.address_space_mb, config.limits.cpu_s, config.limits.open_files,
                     config.limits.processes, config.limits.file_size_mb};
  options.job_timeout_ms = config.job_timeout_s * 1000;
  options.output_cap = static_cast<size_t>(config.output_cap_kb) * 1024;
  options.warm_start = config.warm_start;
  options.warm_workers = config.warm_workers;
  options.contain = config.contain;
  options.allow_uncontained = config.allow_uncontained;
  options.job_uids = config.job_uids;
  options.job_memory_mb = config.limits.memory_mb;  // 0: default_job_memory_mb
  options.job_pids = config.limits.pids;
  options.job_cpu_percent = config.limits.cpu_percent;
  options.job_io_mbps = config.limits.io_mbps;
  options.job_disk_mb = config.job_disk_mb;
  options.hide_dirs.assign(config.hide_dirs.begin(), config.hide_dirs.end());
  return options;
}

Result<std::unique_ptr<Agent>> Agent::open(const AgentOptions& options, Clock& clock) {
  if (!options.id.empty() && !proto::valid_agent_id(options.id)) {
    return invalid_argument("agent id '" + options.id +
                            "' is not valid (1 to 128 printable characters, no '/')");
  }
  if (options.curve_secret_key.empty() != options.coordinator_public_key.empty()) {
    return invalid_argument(
        "CURVE needs both this agent's secret key and the coordinator's public key");
  }
  CurveClientKeys curve;
  if (!options.curve_secret_key.empty()) {
    if (!curve_available()) return failed_precondition("this libzmq has no CURVE support");
    if (!is_z85_key(options.coordinator_public_key)) {
      return invalid_argument("the coordinator's public key: expected 40 characters of Z85");
    }
    auto pub = curve_public_key(options.curve_secret_key);
    if (!pub.ok()) return pub.status();
    curve = CurveClientKeys{*pub, options.curve_secret_key, options.coordinator_public_key};
  }
  auto id = load_or_create_agent_id(options.state_dir, options.id);
  if (!id.ok()) return id.status();
  auto outbox = Outbox::open(options.state_dir / "outbox.db");
  if (!outbox.ok()) return outbox.status();
  AgentOptions resolved = options;
  if (resolved.work_root.empty()) {
    resolved.work_root = std::filesystem::temp_directory_path() / ("kforge-jobs-" + *id);
  }
  KF_RETURN_IF_ERROR(ensure_dir(resolved.work_root));
  // Jobs may run as another user: it must reach its own directory, and list no others.
  std::error_code ec;
  std::filesystem::permissions(resolved.work_root, std::filesystem::perms(0711), ec);
  if (ec)
    return io_error("cannot set permissions of " + resolved.work_root.string() + ": " +
                    ec.message());
  auto wake = EventFd::open("agent wake-up");
  if (!wake.ok()) return wake.status();
  std::unique_ptr<Agent> agent(
      new Agent(resolved, clock, *id, std::move(outbox.value()), std::move(wake.value())));
  agent->curve_ = std::move(curve);
  KF_RETURN_IF_ERROR(agent->contain_jobs());
  return agent;
}

Status Agent::contain_jobs() {
  // Job directories of an earlier agent: their jobs are gone (or die with their cgroups).
  size_t stale = remove_stale_job_dirs(options_.work_root, {kHarnessCopy});
  if (stale > 0)
    spdlog::info("agent {}: removed {} job directories left in {}", id_, stale,
                 options_.work_root.string());
  if (!options_.contain) {
    spdlog::warn("agent {}: jobs run uncontained (no cgroup, no namespaces, the agent's uid)", id_);
    return Status();
  }
  // The harness as any job uid can read it, whatever the permissions of where it came from
  // (a clone under /root is 0700).
  if (auto harness = find_harness_dir(options_.harness_dir); harness.ok()) {
    auto copy = options_.work_root / kHarnessCopy;
    Status st = install_readable_copy(*harness, copy);
    if (st.ok()) {
      spdlog::info("agent {}: jobs run the harness copy {} (root-owned, readable by any uid)", id_,
                   copy.string());
      options_.harness_dir = copy.string();
    } else {
      return failed_precondition(
          "cannot make the verification harness readable for jobs: " + st.message() +
          " (set agent.work_dir to a directory every user can traverse)");
    }
  }
  std::shared_ptr<CgroupRoot> cgroups;
  auto root = CgroupRoot::open(id_);
  if (root.ok()) {
    cgroups = *root;
    size_t left = cgroups->remove_leftovers();
    if (left > 0)
      spdlog::info("agent {}: killed and removed {} job cgroups left by an earlier agent", id_,
                   left);
    spdlog::info("agent {}: jobs contained by {}", id_, cgroups->describe());
  } else {
    spdlog::warn("agent {}: {}", id_, root.status().message());
  }
  SandboxSupport support = probe_sandbox(cgroups.get());
  for (const auto& line : support.missing) spdlog::warn("agent {}: containment: {}", id_, line);
  Box box = box_for(support, cgroups);
  box.memory_mb = support.memory ? options_.job_memory_mb : 0;
  if (support.memory && box.memory_mb == 0) {
    // Unset: sized from the machine, so that one job cannot set off the host's OOM killer.
    box.memory_mb = default_job_memory_mb(host_memory_mb(), options_.devices.size());
    spdlog::info(
        "agent {}: each job's memory limit is {} MiB (3/4 of the host's memory over {} device(s); "
        "agent.limits.memory_mb sets it)",
        id_, box.memory_mb, std::max<size_t>(1, options_.devices.size()));
  }
  box.pids = support.pids ? options_.job_pids : 0;
  box.cpu_percent = support.cpu ? options_.job_cpu_percent : 0;
  box.io_mbps = support.io ? options_.job_io_mbps : 0;
  if (options_.job_io_mbps && !support.io) {
    spdlog::warn(
        "agent {}: containment: no io controller for job cgroups: limits.io_mbps is not enforced",
        id_);
  }
  box.tmp_mb = options_.job_disk_mb;
  box.hidden.push_back(std::filesystem::absolute(options_.state_dir));
  // Other jobs' directories, verify jobs' files, the judge's home: a job sees its own directory
  // and the harness copy only, bound back into the covered work root (under /tmp, the job's
  // private /tmp covers it already; agent.work_dir may put it elsewhere).
  box.hidden.push_back(std::filesystem::absolute(options_.work_root));
  for (const auto& dir : options_.hide_dirs) box.hidden.push_back(std::filesystem::absolute(dir));
  if (!options_.job_uids.empty() && support.root) {
    auto pool = UidPool::parse(options_.job_uids);
    if (!pool.ok()) return pool.status();
    uids_ = *pool;
    spdlog::info("agent {}: jobs run as uids {}-{}", id_, uids_->first(), uids_->last());
  } else if (options_.job_uids.empty()) {
    support.missing.push_back("no job uid range (agent.job_uids): jobs run as the agent's own uid");
    spdlog::warn("agent {}: containment: {}", id_, support.missing.back());
  }
  if (!support.missing.empty() && !options_.allow_uncontained) {
    return failed_precondition("refusing to run jobs without a full box (" +
                               std::to_string(support.missing.size()) +
                               " features missing, first: " + support.missing.front() +
                               "); run as root on a host with cgroups and namespaces, or set "
                               "agent.allow_uncontained = true to accept it");
  }
  if (!support.root) {
    spdlog::warn("agent {}: jobs run uncontained (not root; allow_uncontained = true)", id_);
    return Status();
  }
  box_ = std::move(box);
  return Status();
}

Agent::Agent(const AgentOptions& options, Clock& clock, std::string id,
             std::unique_ptr<Outbox> outbox, EventFd wake)
    : options_(options),
      clock_(clock),
      id_(std::move(id)),
      incarnation_(random_hex_id().substr(0, 16)),
      outbox_(std::move(outbox)),
      ctx_(1),
      wake_(std::move(wake)),
      heartbeat_ms_(options.heartbeat_ms),
      liveness_(options.liveness),
      backoff_ms_(options.backoff_initial_ms) {
  if (options_.host.empty()) options_.host = hostname();
  outbox_size_ = outbox_->size();
}

Agent::~Agent() {
  stop(false);
  shutdown_jobs();
  join_warmers();
  close_socket();
}

void Agent::set_filter(AgentMessageFilter filter) {
  std::lock_guard lock(filter_mu_);
  filter_ = std::move(filter);
}

void Agent::stop(bool graceful) {
  graceful_ = graceful;
  stop_ = true;
  warm_cancel_.cancel();
  wake_.notify();
}

proto::Hello Agent::make_hello() const {
  proto::Hello hello;
  hello.agent_id = id_;
  hello.incarnation = incarnation_;
  hello.host = options_.host;
  hello.devices = options_.devices;
  hello.capabilities = options_.capabilities;
  hello.running = running_refs();
  hello.outbox = outbox_->refs();
  return hello;
}

std::vector<proto::JobRef> Agent::running_refs() const {
  std::vector<proto::JobRef> refs;
  for (const auto& [key, job] : running_) refs.push_back(job.assign.job);
  return refs;
}

std::string Agent::routing_id() const {
  std::lock_guard lock(routing_mu_);
  return routing_id_;
}

std::string Agent::link_problem() const {
  std::lock_guard lock(routing_mu_);
  return link_problem_;
}

void Agent::set_link_problem(std::string problem) {
  {
    std::lock_guard lock(routing_mu_);
    if (problem == link_problem_) return;
    link_problem_ = problem;
  }
  if (!problem.empty()) spdlog::warn("agent {}: {}", id_, problem);
}

void Agent::close_socket() {
  if (socket_ && monitor_) (void)zmq_socket_monitor(socket_->handle(), nullptr, 0);
  monitor_.reset();
  socket_.reset();
}

void Agent::watch_link() {
  for (int i = 0; i < 64 && monitor_; ++i) {
    zmq::message_t event, address;
    if (!monitor_->recv(event, zmq::recv_flags::dontwait)) return;
    if (monitor_->get(zmq::sockopt::rcvmore))
      (void)monitor_->recv(address, zmq::recv_flags::dontwait);
    if (event.size() < 6) continue;
    uint16_t id = 0;
    uint32_t value = 0;
    std::memcpy(&id, event.data(), sizeof id);
    std::memcpy(&value, static_cast<const char*>(event.data()) + 2, sizeof value);
    switch (id) {
      case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: handshake_ok_ = true; break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        handshake_failed_ = true;
        set_link_problem("coordinator " + options_.coordinator +
                         " refused this agent's key at the handshake (status " +
                         std::to_string(value) + "): is " + curve_.public_key +
                         " on its allow-list (coordinator.agent_keys_file) for agent " + id_ + "?");
        break;
      case ZMQ_EVENT_DISCONNECTED:
        if (handshake_ok_) {
          // The connection broke (network, coordinator restart). zmq would reconnect this
          // socket under the same routing id, which the coordinator's ROUTER does not hand
          // over while it still holds the old connection (no ROUTER_HANDOVER): start afresh
          // now, with a new routing id and a Hello of this same incarnation, so the
          // coordinator keeps our leases if it has not declared us lost.
          // At most once per liveness window, so a coordinator that keeps dropping us (an
          // oversized message, say) is not hammered.
          int64_t now = clock_.now_ms();
          next_hello_ms_ =
              std::max(now, last_relink_ms_ + static_cast<int64_t>(heartbeat_ms_) * liveness_);
          last_relink_ms_ = next_hello_ms_;
          spdlog::info("agent {}: connection to {} lost; reconnecting in {} ms", id_,
                       options_.coordinator, next_hello_ms_ - now);
          close_socket();
          state_ = State::connecting;
          if (now >= next_hello_ms_) connect();
          return;
        }
        if (handshake_failed_) break;  // that failure, said already
        [[fallthrough]];
      case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
      case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        handshake_failed_ = true;
        set_link_problem(
            curve_.enabled()
                ? "the CURVE handshake with " + options_.coordinator +
                      " failed: is agent.coordinator_public_key the coordinator's public key, and "
                      "does "
                      "the coordinator use CURVE?"
                : "the handshake with " + options_.coordinator +
                      " failed: does the coordinator require CURVE keys (agent.secret_key_file)?");
        break;
      default: break;
    }
  }
}

void Agent::connect() {
  // A fresh socket drops whatever the old one still queued for a peer that is gone. It gets
  // a routing id of its own: the coordinator's ROUTER lets no connection take over another's
  // (no ROUTER_HANDOVER), and the old connection may linger there until TCP notices.
  std::string routing_id = id_ + "/" + incarnation_ + "/" + random_hex_id().substr(0, 8);
  {
    std::lock_guard lock(routing_mu_);
    routing_id_ = routing_id;
  }
  close_socket();
  handshake_ok_ = false;
  handshake_failed_ = false;
  auto socket = make_dealer(ctx_, options_.coordinator, routing_id, options_.max_msg_bytes, curve_);
  if (!socket.ok()) {
    spdlog::error("agent {}: cannot connect to {}: {}", id_, options_.coordinator,
                  socket.status().message());
  } else {
    socket_ = std::make_unique<zmq::socket_t>(std::move(socket.value()));
    // The handshake's outcome, for the operator: a refused key otherwise looks like an
    // unreachable coordinator. Failures repeat with every reconnect, so none is missed for
    // good by attaching after connect.
    std::string endpoint = "inproc://kforge-agent-link-" + routing_id;
    int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                 ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                 ZMQ_EVENT_DISCONNECTED;
    if (zmq_socket_monitor(socket_->handle(), endpoint.c_str(), events) == 0) {
      try {
        monitor_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::pair);
        monitor_->set(zmq::sockopt::linger, 0);
        monitor_->connect(endpoint);
      } catch (const zmq::error_t& e) {
        spdlog::debug("agent {}: no handshake monitor: {}", id_, e.what());
        (void)zmq_socket_monitor(socket_->handle(), nullptr, 0);
        monitor_.reset();
      }
    }
  }
  state_ = State::connecting;
  sent_ms_.clear();
  send(make_hello());
  next_hello_ms_ = clock_.now_ms() + backoff_ms_;
  spdlog::info("agent {}: hello to {} (next try in {} ms)", id_, options_.coordinator, backoff_ms_);
  backoff_ms_ = std::min<uint32_t>(backoff_ms_ * 2, options_.backoff_max_ms);
}

void Agent::send(proto::Message msg) {
  Millis hold(0);
  {
    std::lock_guard lock(filter_mu_);
    if (filter_) hold = filter_(msg);
  }
  if (hold < Millis(0)) return;
  if (hold > Millis(0)) {
    delayed_.emplace_back(clock_.now_ms() + hold.count(), std::move(msg));
    return;
  }
  send_now(msg);
}

void Agent::send_delayed() {
  int64_t now = clock_.now_ms();
  for (auto it = delayed_.begin(); it != delayed_.end();) {
    if (it->first <= now) {
      send_now(it->second);
      it = delayed_.erase(it);
    } else {
      ++it;
    }
  }
}

void Agent::send_now(const proto::Message& msg) {
  if (!socket_) return;
  std::string bytes = proto::encode(msg);
  try {
    if (!socket_->send(zmq::buffer(bytes), zmq::send_flags::dontwait)) {
      spdlog::debug("agent {}: send queue full, {} dropped", id_,
                    proto::msg_type_name(proto::type_of(msg)));
    }
  } catch (const zmq::error_t& e) {
    spdlog::debug("agent {}: send failed: {}", id_, e.what());
  }
  last_send_ms_ = clock_.now_ms();
}

Status Agent::run() {
  spdlog::info("agent {} incarnation {} on {}: {} devices", id_, incarnation_, options_.host,
               options_.devices.size());
  if (options_.warm_start && warmers_.empty()) {
    for (const proto::DeviceInfo& d : options_.devices) {
      warmers_.emplace_back([this, d] {
        auto v = verifier_for(d.backend, d.index);
        if (!v.ok() && !stop_)
          spdlog::warn("agent {}: warm start of {}:{} failed: {}", id_, d.backend, d.index,
                       v.status().message());
      });
    }
  }
  connect();
  while (!stop_ && state_ != State::refused) {
    std::vector<zmq::pollitem_t> items = {{nullptr, wake_.fd(), ZMQ_POLLIN, 0}};
    if (socket_) items.push_back({socket_->handle(), 0, ZMQ_POLLIN, 0});
    poll_interruptible(items.data(), items.size(), kTickMs);
    if (items[0].revents & ZMQ_POLLIN) wake_.drain();
    watch_link();
    receive_all();
    collect_finished();
    timers();
    send_delayed();
  }
  if (stop_ && graceful_ && state_ == State::registered) send(proto::Bye{"agent stopping"});
  shutdown_jobs();
  close_socket();
  if (state_ == State::refused) return failed_precondition(refused_reason_);
  return Status();
}

void Agent::shutdown_jobs() {
  for (auto& [key, job] : running_) job.cancel->cancel();
  for (auto& [key, job] : running_) {
    if (job.thread.joinable()) job.thread.join();
  }
  running_.clear();
  running_count_ = 0;
  std::lock_guard lock(finished_mu_);
  finished_.clear();  // killed with the agent: never stored
}

void Agent::receive_all() {
  if (!socket_) return;
  for (int i = 0; i < 1024 && socket_; ++i) {
    zmq::message_t msg;
    if (!socket_->recv(msg, zmq::recv_flags::dontwait)) return;
    while (socket_->get(zmq::sockopt::rcvmore)) {
      zmq::message_t extra;
      if (!socket_->recv(extra, zmq::recv_flags::dontwait)) break;
    }
    handle(msg.to_string());
  }
}

void Agent::handle(const std::string& bytes) {
  auto frame = proto::decode(bytes);
  if (!frame.ok()) {
    spdlog::warn("agent {}: dropping malformed frame from coordinator: {}", id_,
                 frame.status().message());
    return;
  }
  const proto::Message& msg = frame->message;
  last_recv_ms_ = clock_.now_ms();
  if (auto* refused = std::get_if<proto::Refused>(&msg)) {
    if (proto::refusal_is_transient(refused->code)) {
      // Not now (another live process holds this agent id): say Hello again, with backoff,
      // on a fresh socket. Stopping here would take the host out of the fleet for good.
      spdlog::warn("agent {}: coordinator {} refused this agent for now: {}; next hello in {} ms",
                   id_, options_.coordinator, refused->reason,
                   std::max<int64_t>(next_hello_ms_ - clock_.now_ms(), 0));
      state_ = State::connecting;
      return;
    }
    refused_reason_ =
        "coordinator " + options_.coordinator + " refused this agent: " + refused->reason;
    spdlog::error("agent {}: {}", id_, refused_reason_);
    state_ = State::refused;
  } else if (auto* welcome = std::get_if<proto::Welcome>(&msg)) {
    on_welcome(*welcome);
  } else if (state_ != State::registered) {
    spdlog::debug("agent {}: {} before welcome ignored", id_, proto::msg_type_name(frame->type));
  } else if (auto* assign = std::get_if<proto::Assign>(&msg)) {
    on_assign(*assign);
  } else if (auto* cancel = std::get_if<proto::Cancel>(&msg)) {
    on_cancel(*cancel);
  } else if (auto* ack = std::get_if<proto::ResultAck>(&msg)) {
    on_ack(*ack);
  } else if (auto* hb = std::get_if<proto::Heartbeat>(&msg); hb && hb->heartbeat_ms) {
    // The coordinator asks a large fleet to heartbeat less often (it announces a longer
    // interval before its own heartbeats space out); otherwise last_recv_ms_ is all.
    heartbeat_ms_ = std::clamp<uint32_t>(*hb->heartbeat_ms, 1, proto::kMaxHeartbeatMs);
    spdlog::info("agent {}: the coordinator asks for a heartbeat every {} ms", id_,
                 heartbeat_ms_.load());
  }
}

void Agent::on_welcome(const proto::Welcome& welcome) {
  state_ = State::registered;
  set_link_problem("");
  heartbeat_ms_ = welcome.heartbeat_ms ? welcome.heartbeat_ms : options_.heartbeat_ms;
  liveness_ = welcome.liveness ? welcome.liveness : options_.liveness;
  backoff_ms_ = options_.backoff_initial_ms;
  spdlog::info("agent {}: registered with coordinator {} (heartbeat {} ms, liveness {})", id_,
               welcome.coordinator_incarnation, heartbeat_ms_.load(), liveness_);
  resend_outbox();
}

void Agent::resend_outbox() {
  auto results = outbox_->all();
  if (!results.ok()) {
    spdlog::error("agent {}: {}", id_, results.status().message());
    return;
  }
  int64_t now = clock_.now_ms();
  for (auto& r : *results) {
    sent_ms_[{r.job.job_id, r.job.epoch}] = now;
    send(std::move(r));
  }
}

void Agent::on_assign(const proto::Assign& assign) {
  std::pair key{assign.job.job_id, assign.job.epoch};
  if (running_.count(key) || outbox_->contains(assign.job)) {
    spdlog::debug("agent {}: duplicate assign job={} epoch={} ignored", id_, assign.job.job_id,
                  assign.job.epoch);
    return;
  }
  // A newer epoch of a job we still run: the coordinator gave up on the old attempt.
  for (auto& [k, old] : running_) {
    if (k.first == assign.job.job_id && k.second < assign.job.epoch) old.cancel->cancel();
  }
  spdlog::info("agent {}: start job={} epoch={} on {}:{}", id_, assign.job.job_id, assign.job.epoch,
               assign.backend, assign.device_index);
  Running& job = running_[key];
  job.assign = assign;
  job.cancel = std::make_unique<CancelToken>();
  CancelToken* cancel = job.cancel.get();
  running_count_ = running_.size();
  job.thread = std::thread([this, assign, cancel] {
    proto::JobResult result;
    try {
      result = run_job(assign, *cancel);
    } catch (const std::exception& e) {
      // One job's failure, whatever threw, is that job's infra_error: never the agent's end
      // (an exception leaving a thread would terminate the whole daemon).
      spdlog::error("agent {}: job {} failed: {}", id_, assign.job.job_id, e.what());
      result.job = assign.job;
      result.agent_id = id_;
      result.infra_error = std::string("the agent failed running the job: ") + e.what();
      result.started_ms = result.finished_ms = clock_.wall_ms();
    }
    {
      std::lock_guard lock(finished_mu_);
      finished_.push_back(Finished{assign.job, std::move(result)});
    }
    wake_.notify();
  });
}

void Agent::on_cancel(const proto::Cancel& cancel) {
  auto it = running_.find({cancel.job.job_id, cancel.job.epoch});
  if (it == running_.end()) return;
  spdlog::info("agent {}: cancel job={} epoch={}: {}", id_, cancel.job.job_id, cancel.job.epoch,
               cancel.reason);
  it->second.cancel->cancel();
}

void Agent::on_ack(const proto::ResultAck& ack) {
  if (!outbox_->contains(ack.job)) return;
  Status st = outbox_->remove(ack.job);
  if (!st.ok()) spdlog::error("agent {}: {}", id_, st.message());
  sent_ms_.erase({ack.job.job_id, ack.job.epoch});
  outbox_size_ = outbox_->size();
  if (!ack.recorded) {
    spdlog::info("agent {}: coordinator dropped result job={} epoch={} (stale)", id_,
                 ack.job.job_id, ack.job.epoch);
  }
}

void Agent::collect_finished() {
  std::vector<Finished> done;
  {
    std::lock_guard lock(finished_mu_);
    done.swap(finished_);
  }
  for (auto& f : done) {
    auto it = running_.find({f.job.job_id, f.job.epoch});
    if (it != running_.end()) {
      if (it->second.thread.joinable()) it->second.thread.join();
      running_.erase(it);
    }
    running_count_ = running_.size();
    // Durable before visible: the result is on disk before the coordinator hears of it.
    Status st = outbox_->put(f.result);
    if (!st.ok()) {
      spdlog::error("agent {}: cannot store result job={}: {}", id_, f.job.job_id, st.message());
      continue;
    }
    outbox_size_ = outbox_->size();
    spdlog::info("agent {}: finished job={} epoch={} exit={} signal={}{}", id_, f.job.job_id,
                 f.job.epoch, f.result.exit_code, f.result.signal,
                 f.result.timed_out ? " (timed out)" : "");
    if (state_ == State::registered) {
      sent_ms_[{f.job.job_id, f.job.epoch}] = clock_.now_ms();
      send(std::move(f.result));
    }
  }
}

void Agent::timers() {
  int64_t now = clock_.now_ms();
  int64_t silence = static_cast<int64_t>(heartbeat_ms_) * liveness_;
  if (state_ == State::connecting) {
    if (now >= next_hello_ms_) connect();
    return;
  }
  if (state_ != State::registered) return;
  if (now - last_recv_ms_ > silence) {
    spdlog::warn("agent {}: coordinator silent for {} ms, reconnecting", id_, now - last_recv_ms_);
    backoff_ms_ = options_.backoff_initial_ms;
    connect();
    return;
  }
  // A result whose ack has not come back within the liveness window is sent again.
  bool overdue = std::any_of(sent_ms_.begin(), sent_ms_.end(),
                             [&](const auto& entry) { return now - entry.second > silence; });
  if (overdue) {
    auto results = outbox_->all();
    if (results.ok()) {
      for (auto& r : *results) {
        auto sent = sent_ms_.find({r.job.job_id, r.job.epoch});
        if (sent != sent_ms_.end() && now - sent->second <= silence) continue;
        sent_ms_[{r.job.job_id, r.job.epoch}] = now;
        send(std::move(r));
      }
    }
  }
  if (now - last_send_ms_ >= heartbeat_ms_) {
    proto::Heartbeat hb;
    hb.running = running_refs();
    hb.outbox = outbox_->refs();
    if (auto pools = verifier_pools(); !pools.empty()) hb.pools = std::move(pools);
    send(std::move(hb));
  }
}

proto::JobResult Agent::run_job(const proto::Assign& assign, CancelToken& cancel) {
  proto::JobResult result;
  result.job = assign.job;
  result.agent_id = id_;
  result.started_ms = clock_.wall_ms();
  auto finish = [&](std::string infra_error) {
    result.infra_error = std::move(infra_error);
    result.finished_ms = clock_.wall_ms();
    return result;
  };
  bool known_device = std::any_of(
      options_.devices.begin(), options_.devices.end(),
      [&](const auto& d) { return d.backend == assign.backend && d.index == assign.device_index; });
  if (!known_device) {
    return finish("this agent has no device " + assign.backend + ":" +
                  std::to_string(assign.device_index));
  }
  const std::optional<JobKind> kind = parse_enum<JobKind>(assign.kind);
  if (!kind) {
    return finish("job kind '" + assign.kind + "' is not supported by this agent");
  }
  auto limits_of = [&] {
    ResourceLimits l;
    l.address_space_mb = pick(assign.limits.address_space_mb, options_.limits.address_space_mb);
    l.cpu_s = pick(assign.limits.cpu_s, options_.limits.cpu_s);
    l.open_files = pick(assign.limits.open_files, options_.limits.open_files);
    l.processes = pick(assign.limits.processes, options_.limits.processes);
    l.file_size_mb = pick(assign.limits.file_size_mb, options_.limits.file_size_mb);
    return l;
  };
  auto timeout = std::chrono::milliseconds(pick(assign.timeout_ms, options_.job_timeout_ms));
  // A uid of its own for as long as anything of the job may run (run_process returns only
  // when its cgroup is empty), and a directory nobody else can enter or predict. A verify
  // job's directory is read by the judge only (the agent's user); its candidate runs in a
  // worker that has a uid, a box and a directory of its own (agent/verifier/verifier.h).
  bool exec = *kind == JobKind::exec;
  UidPool::Lease uid_lease;
  uid_t uid = ::getuid();
  if (uids_ && exec) {
    auto lease = uids_->acquire();
    if (!lease.ok()) return finish(lease.status().message());
    uid_lease = std::move(lease.value());
    uid = uid_lease.uid();
  }
  auto job_dir =
      JobDir::create(options_.work_root, uid, uid, box_ && exec ? options_.job_disk_mb : 0);
  if (!job_dir.ok()) return finish(job_dir.status().message());
  if (options_.keep_work_dirs) (*job_dir)->keep();
  const std::filesystem::path work = (*job_dir)->path();
  std::error_code ec;
  for (const auto& [name, content] : assign.files) {
    if (!safe_file_name(name)) return finish("refusing job file name '" + name + "'");
    if (Status st = atomic_write_file(work / name, content); !st.ok()) return finish(st.message());
  }
  if (!exec) {
    auto verifier = verifier_for(assign.backend, assign.device_index);
    if (!verifier.ok()) return finish(verifier.status().message());
    // The judge's document is read here, once; the coordinator gets its typed fields.
    result.verify =
        verify_result_from_json((*verifier)->verify(work, timeout, &cancel, limits_of()));
    result.exit_code = 0;
    result.cancelled = cancel.cancelled();
    return finish("");
  }
  if (assign.argv.empty()) return finish("exec job without a command");
  ProcessSpec spec;
  spec.argv = assign.argv;
  spec.cwd = work;
  if (Status st = (*job_dir)->hand_over(); !st.ok()) return finish(st.message());
  if (uids_) spec.run_as = UserIds{uid, uid, work.string()};
  if (box_) {
    spec.box = *box_;
    spec.box->writable.push_back(work);
    // A kernel cache shared by jobs would let one job plant compiled code for the next; and
    // outside its directory a boxed job can write nothing anyway.
    spec.env["TRITON_CACHE_DIR"] = (work / ".triton").string();
  }
  spec.env_allow = options_.env_allow;
  for (const auto& [k, v] : assign.env) spec.env[k] = v;
  spec.env["KFORGE_JOB_ID"] = std::to_string(assign.job.job_id);
  spec.env["KFORGE_EPOCH"] = std::to_string(assign.job.epoch);
  spec.env["KFORGE_WORK_DIR"] = work.string();
  for (const auto& [k, v] : device_env(assign.backend, assign.device_index)) spec.env[k] = v;
  spec.limits = limits_of();
  spec.timeout = timeout;
  spec.output_cap = options_.output_cap;

  auto outcome = run_process(spec, &cancel);
  if (!outcome.ok()) return finish(outcome.status().message());
  result.exit_code = outcome->exit_code;
  result.signal = outcome->signal;
  result.timed_out = outcome->timed_out;
  result.cancelled = outcome->cancelled;
  result.stdout_data = std::move(outcome->stdout_data);
  result.stderr_data = std::move(outcome->stderr_data);
  result.output_truncated = outcome->stdout_truncated || outcome->stderr_truncated;
  if (outcome->memory_exceeded || outcome->pids_exceeded) {
    result.stderr_data +=
        std::string("\n[kforge] resource_exceeded: ") +
        (outcome->memory_exceeded
             ? "memory (the job's cgroup limit of " + std::to_string(spec.box->memory_mb) +
                   " MiB; OOM kill)"
             : "processes (the job's cgroup limit of " + std::to_string(spec.box->pids) + ")") +
        "\n";
  }
  if (std::filesystem::exists(work / kResultFile, ec) &&
      std::filesystem::file_size(work / kResultFile, ec) <= kMaxResultJson) {
    if (auto json = read_file(work / kResultFile); json.ok()) result.result_json = *json;
  }
  return finish("");
}

std::map<std::string, std::string> Agent::device_env(const std::string& backend,
                                                     uint32_t index) const {
  std::map<std::string, std::string> env;
  env["KFORGE_DEVICE"] = backend + ":" + std::to_string(index);
  if (backend == "cuda") {
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID";  // nvidia-smi's numbering
    env["CUDA_VISIBLE_DEVICES"] = std::to_string(index);
  } else if (backend == "ascend") {
    env["ASCEND_RT_VISIBLE_DEVICES"] = std::to_string(index);
  }
  return env;
}

Result<Verifier*> Agent::verifier_for(const std::string& backend, uint32_t device_index) {
  VerifierSlot* slot;
  {
    std::lock_guard lock(verifiers_mu_);
    auto& s = verifiers_[{backend, device_index}];
    if (!s) s = std::make_unique<VerifierSlot>();
    slot = s.get();
  }
  std::lock_guard lock(slot->mu);
  if (slot->verifier) return slot->verifier.get();
  auto harness = find_harness_dir(options_.harness_dir);
  if (!harness.ok()) return harness.status();
  VerifierOptions vo;
  vo.python = options_.python;
  vo.harness_dir = *harness;
  vo.work_root = options_.work_root / ("verifier-" + backend + std::to_string(device_index));
  vo.box = box_;
  vo.uids = uids_;
  vo.disk_mb = options_.job_disk_mb;
  vo.env_allow = options_.env_allow;
  vo.env = device_env(backend, device_index);
  vo.worker_limits = options_.limits;
  vo.output_cap = std::min<size_t>(options_.output_cap, 64 << 10);
  vo.warm_workers = options_.warm_workers;
  vo.device = backend;
  if (backend == "cuda") vo.preload = "torch,triton";
  auto v = Verifier::start(vo, &warm_cancel_);
  if (!v.ok()) return v.status();
  spdlog::info("agent {}: verifier for {}:{} started (judge + {} warm worker(s){})", id_, backend,
               device_index, vo.warm_workers, box_ ? ", boxed" : "");
  slot->verifier = std::move(v.value());
  slot->started = slot->verifier.get();
  return slot->verifier.get();
}

std::vector<proto::VerifierPool> Agent::verifier_pools() {
  std::vector<proto::VerifierPool> pools;
  std::lock_guard lock(verifiers_mu_);
  for (const auto& [device, slot] : verifiers_) {
    Verifier* v = slot->started.load();  // never one still starting: its slot is locked
    if (!v) continue;
    Verifier::Stats st = v->stats();
    proto::VerifierPool p;
    p.backend = device.first;
    p.device_index = device.second;
    p.warm = static_cast<uint32_t>(st.warm);
    p.busy = static_cast<uint32_t>(st.busy);
    p.spawned = st.spawned;
    p.forked = st.forked;
    p.zygote = st.zygote;
    pools.push_back(std::move(p));
  }
  return pools;
}

void Agent::join_warmers() {
  for (auto& t : warmers_) {
    if (t.joinable()) t.join();
  }
  warmers_.clear();
}

}  // namespace kforge
