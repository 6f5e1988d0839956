#include "agent/agent.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <spdlog/spdlog.h>

#include "agent/state_dir.h"
#include "agent/verify.h"
#include "common/curve.h"
#include "common/fs.h"
#include "common/zmq_util.h"

namespace kforge {
namespace {

constexpr int64_t kTickMs = 20;
// The harness writes its verdict here, inside the job's work directory.
constexpr const char* kResultFile = "result.json";
constexpr size_t kMaxResultJson = 4u << 20;

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

Result<std::unique_ptr<Agent>> Agent::open(const AgentOptions& options, Clock& clock) {
  if (!options.id.empty() && !proto::valid_agent_id(options.id)) {
    return invalid_argument("agent id '" + options.id + "' is not valid (1 to 128 printable characters, no '/')");
  }
  if (options.curve_secret_key.empty() != options.coordinator_public_key.empty()) {
    return invalid_argument("CURVE needs both this agent's secret key and the coordinator's public key");
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
  if (ec) return io_error("cannot set permissions of " + resolved.work_root.string() + ": " + ec.message());
  std::unique_ptr<Agent> agent(new Agent(resolved, clock, *id, std::move(outbox.value())));
  agent->curve_ = std::move(curve);
  return agent;
}

Agent::Agent(const AgentOptions& options, Clock& clock, std::string id,
             std::unique_ptr<Outbox> outbox)
    : options_(options),
      clock_(clock),
      id_(std::move(id)),
      incarnation_(random_hex_id().substr(0, 16)),
      outbox_(std::move(outbox)),
      ctx_(1),
      wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
      heartbeat_ms_(options.heartbeat_ms),
      liveness_(options.liveness),
      backoff_ms_(options.backoff_initial_ms) {
  if (options_.host.empty()) options_.host = hostname();
  outbox_size_ = outbox_->size();
}

Agent::~Agent() {
  stop(false);
  shutdown_jobs();
  close_socket();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Agent::set_filter(AgentMessageFilter filter) {
  std::lock_guard lock(filter_mu_);
  filter_ = std::move(filter);
}

void Agent::stop(bool graceful) {
  graceful_ = graceful;
  stop_ = true;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
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
    if (monitor_->get(zmq::sockopt::rcvmore)) (void)monitor_->recv(address, zmq::recv_flags::dontwait);
    if (event.size() < 6) continue;
    uint16_t id = 0;
    uint32_t value = 0;
    std::memcpy(&id, event.data(), sizeof id);
    std::memcpy(&value, static_cast<const char*>(event.data()) + 2, sizeof value);
    switch (id) {
      case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        handshake_ok_ = true;
        break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        handshake_failed_ = true;
        set_link_problem("coordinator " + options_.coordinator + " refused this agent's key at the handshake (status " +
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
          next_hello_ms_ = std::max(now, last_relink_ms_ + static_cast<int64_t>(heartbeat_ms_) * liveness_);
          last_relink_ms_ = next_hello_ms_;
          spdlog::info("agent {}: connection to {} lost; reconnecting in {} ms", id_, options_.coordinator,
                       next_hello_ms_ - now);
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
                      " failed: is agent.coordinator_public_key the coordinator's public key, and does "
                      "the coordinator use CURVE?"
                : "the handshake with " + options_.coordinator +
                      " failed: does the coordinator require CURVE keys (agent.secret_key_file)?");
        break;
      default:
        break;
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
  connect();
  while (!stop_ && state_ != State::refused) {
    std::vector<zmq::pollitem_t> items = {{nullptr, wake_fd_, ZMQ_POLLIN, 0}};
    if (socket_) items.push_back({socket_->handle(), 0, ZMQ_POLLIN, 0});
    poll_interruptible(items.data(), items.size(), kTickMs);
    if (items[0].revents & ZMQ_POLLIN) {
      uint64_t v;
      [[maybe_unused]] ssize_t n = ::read(wake_fd_, &v, sizeof v);
    }
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
      spdlog::warn("agent {}: coordinator {} refused this agent for now: {}; next hello in {} ms", id_,
                   options_.coordinator, refused->reason, std::max<int64_t>(next_hello_ms_ - clock_.now_ms(), 0));
      state_ = State::connecting;
      return;
    }
    refused_reason_ = "coordinator " + options_.coordinator + " refused this agent: " +
                      refused->reason;
    spdlog::error("agent {}: {}", id_, refused_reason_);
    state_ = State::refused;
  } else if (auto* welcome = std::get_if<proto::Welcome>(&msg)) {
    on_welcome(*welcome);
  } else if (state_ != State::registered) {
    spdlog::debug("agent {}: {} before welcome ignored", id_,
                  proto::msg_type_name(frame->type));
  } else if (auto* assign = std::get_if<proto::Assign>(&msg)) {
    on_assign(*assign);
  } else if (auto* cancel = std::get_if<proto::Cancel>(&msg)) {
    on_cancel(*cancel);
  } else if (auto* ack = std::get_if<proto::ResultAck>(&msg)) {
    on_ack(*ack);
  }
  // Heartbeats need nothing beyond last_recv_ms_.
}

void Agent::on_welcome(const proto::Welcome& welcome) {
  state_ = State::registered;
  set_link_problem("");
  heartbeat_ms_ = welcome.heartbeat_ms ? welcome.heartbeat_ms : options_.heartbeat_ms;
  liveness_ = welcome.liveness ? welcome.liveness : options_.liveness;
  backoff_ms_ = options_.backoff_initial_ms;
  spdlog::info("agent {}: registered with coordinator {} (heartbeat {} ms, liveness {})", id_,
               welcome.coordinator_incarnation, heartbeat_ms_, liveness_);
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
  spdlog::info("agent {}: start job={} epoch={} on {}:{}", id_, assign.job.job_id,
               assign.job.epoch, assign.backend, assign.device_index);
  Running& job = running_[key];
  job.assign = assign;
  job.cancel = std::make_unique<CancelToken>();
  CancelToken* cancel = job.cancel.get();
  running_count_ = running_.size();
  job.thread = std::thread([this, assign, cancel] {
    proto::JobResult result = run_job(assign, *cancel);
    {
      std::lock_guard lock(finished_mu_);
      finished_.push_back(Finished{assign.job, std::move(result)});
    }
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
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
    if (!options_.keep_work_dirs) {
      std::error_code ec;
      std::filesystem::remove_all(options_.work_root /
                                      (std::to_string(f.job.job_id) + "-" + std::to_string(f.job.epoch)),
                                  ec);
    }
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
  auto work = options_.work_root /
              (std::to_string(assign.job.job_id) + "-" + std::to_string(assign.job.epoch));
  std::error_code ec;
  std::filesystem::remove_all(work, ec);
  if (Status st = ensure_dir(work); !st.ok()) return finish(st.message());
  for (const auto& [name, content] : assign.files) {
    if (!safe_file_name(name)) return finish("refusing job file name '" + name + "'");
    if (Status st = atomic_write_file(work / name, content); !st.ok()) return finish(st.message());
  }
  bool known_device = std::any_of(options_.devices.begin(), options_.devices.end(), [&](const auto& d) {
    return d.backend == assign.backend && d.index == assign.device_index;
  });
  if (!known_device) {
    return finish("this agent has no device " + assign.backend + ":" + std::to_string(assign.device_index));
  }
  ProcessSpec spec;
  std::string token;  // verify jobs: proves result.json came from the harness
  if (assign.kind == "exec") {
    if (assign.argv.empty()) return finish("exec job without a command");
    spec.argv = assign.argv;
    spec.cwd = work;
  } else if (assign.kind == "verify") {
    auto harness = find_harness_dir(options_.harness_dir);
    if (!harness.ok()) return finish(harness.status().message());
    token = random_hex_id();
    spec = harness_process(options_.python, *harness, work, token);
  } else {
    return finish("job kind '" + assign.kind + "' is not supported by this agent");
  }
  if (Status st = hand_over(work, options_.run_as); !st.ok()) return finish(st.message());
  spec.run_as = options_.run_as;
  spec.env_allow = options_.env_allow;
  for (const auto& [k, v] : assign.env) spec.env[k] = v;
  spec.env["KFORGE_JOB_ID"] = std::to_string(assign.job.job_id);
  spec.env["KFORGE_EPOCH"] = std::to_string(assign.job.epoch);
  spec.env["KFORGE_WORK_DIR"] = work.string();
  spec.env["KFORGE_DEVICE"] = assign.backend + ":" + std::to_string(assign.device_index);
  if (assign.backend == "cuda") {
    spec.env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID";  // nvidia-smi's numbering
    spec.env["CUDA_VISIBLE_DEVICES"] = std::to_string(assign.device_index);
  } else if (assign.backend == "ascend") {
    spec.env["ASCEND_RT_VISIBLE_DEVICES"] = std::to_string(assign.device_index);
  }
  spec.limits.address_space_mb = pick(assign.limits.address_space_mb, options_.limits.address_space_mb);
  spec.limits.cpu_s = pick(assign.limits.cpu_s, options_.limits.cpu_s);
  spec.limits.open_files = pick(assign.limits.open_files, options_.limits.open_files);
  spec.limits.processes = pick(assign.limits.processes, options_.limits.processes);
  spec.limits.file_size_mb = pick(assign.limits.file_size_mb, options_.limits.file_size_mb);
  spec.timeout = std::chrono::milliseconds(pick(assign.timeout_ms, options_.job_timeout_ms));
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
  if (assign.kind == "verify") {
    result.result_json = finalize_verdict(*outcome, work, token).dump();
  } else if (std::filesystem::exists(work / kResultFile, ec) &&
             std::filesystem::file_size(work / kResultFile, ec) <= kMaxResultJson) {
    if (auto json = read_file(work / kResultFile); json.ok()) result.result_json = *json;
  }
  return finish("");
}

}  // namespace kforge
