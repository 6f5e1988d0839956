#include "agent/verifier/verifier.h"

#include <linux/filter.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <future>
#include <thread>

#include "common/fs.h"
#include "common/unique_fd.h"

namespace kforge {
namespace {

constexpr size_t kMaxMessage = 4u << 20;  // the judge's result document, at most
constexpr auto kJudgeReadyWait = std::chrono::seconds(120);
// Beyond the job's timeout, which the judge starts counting when the candidate is loaded: a
// cold worker's start-up (the judge waits up to 120 s) and the reference's first run.
constexpr auto kJudgeGrace = std::chrono::seconds(300);

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

using Deadline = std::chrono::steady_clock::time_point;

// Text that came from a candidate (its stderr, its exception's message) is any bytes: where
// it is written as JSON, invalid UTF-8 becomes U+FFFD rather than an exception.
std::string dump_json(const nlohmann::json& doc) {
  return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// `text` as valid UTF-8 (what dump_json would write of it).
std::string valid_utf8(const std::string& text) {
  return nlohmann::json::parse(dump_json(text)).get<std::string>();
}

// The last `max` bytes of `text` at most, from a UTF-8 character's first byte: a cut never
// splits a character (bytes invalid anyway are left to dump_json).
std::string utf8_tail(const std::string& text, size_t max) {
  if (text.size() <= max) return text;
  size_t at = text.size() - max;
  for (int i = 0;
       i < 3 && at < text.size() && (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80; ++i)
    ++at;
  return text.substr(at);
}

// JSON messages on a SOCK_SEQPACKET socket, with at most one descriptor attached.
// Sends msg with the valid descriptors of `pass` (at most two), in that order.
Status send_message(int fd, const nlohmann::json& msg, std::initializer_list<int> pass = {}) {
  std::string data = dump_json(msg);
  iovec iov{data.data(), data.size()};
  msghdr hdr{};
  hdr.msg_iov = &iov;
  hdr.msg_iovlen = 1;
  int fds[2];
  size_t n_fds = 0;
  for (int f : pass) {
    if (f >= 0 && n_fds < 2) fds[n_fds++] = f;
  }
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof fds)] = {};
  if (n_fds > 0) {
    hdr.msg_control = control;
    hdr.msg_controllen = CMSG_SPACE(n_fds * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&hdr);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds, n_fds * sizeof(int));
  }
  ssize_t n;
  do {
    n = ::sendmsg(fd, &hdr, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return io_error(std::string("cannot send to the judge: ") + std::strerror(errno));
  return Status();
}

// malformed: a message came that is not a JSON object.
enum class Wait { message, closed, timed_out, cancelled, malformed };

// Waits for one message until `deadline` or `cancel`. Descriptors that come with it are
// closed: the judge never sends any.
Wait recv_message(int fd, Deadline deadline, CancelToken* cancel, nlohmann::json* out) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Wait::timed_out;
    pollfd fds[2] = {{fd, POLLIN, 0}, {cancel ? cancel->fd() : -1, POLLIN, 0}};
    int r = ::poll(fds, cancel ? 2 : 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (r < 0 && errno != EINTR) return Wait::closed;
    if (cancel && cancel->cancelled()) return Wait::cancelled;
    if (r <= 0 || !(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    std::string buf(kMaxMessage, '\0');
    iovec iov{buf.data(), buf.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))];
    msghdr hdr{};
    hdr.msg_iov = &iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control;
    hdr.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(fd, &hdr, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    for (cmsghdr* c = CMSG_FIRSTHDR(&hdr); c; c = CMSG_NXTHDR(&hdr, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int extra;
          std::memcpy(&extra, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          ::close(extra);
        }
      }
    }
    if (n <= 0) return Wait::closed;
    buf.resize(static_cast<size_t>(n));
    *out = nlohmann::json::parse(buf, nullptr, /*allow_exceptions=*/false);
    // the judge is ours, and its channel writes lone surrogates as "?" (channel.py)
    return out->is_object() ? Wait::message : Wait::malformed;
  }
}

Result<std::pair<UniqueFd, UniqueFd>> seqpacket_pair() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return io_error(std::string("cannot create a socket pair: ") + std::strerror(errno));
  }
  int size = static_cast<int>(kMaxMessage);
  for (int fd : sv) {
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  }
  return std::pair{UniqueFd(sv[0]), UniqueFd(sv[1])};
}

// What start() gives back when its CancelToken ends the wait for the judge or the zygote.
Status start_cancelled() {
  return Status(Code::unavailable, "verifier: start cancelled (the agent is stopping)");
}

// job_syscall_filter() as [[code, jt, jf, k], ...]: the zygote's child installs it itself.
const nlohmann::json& syscall_filter_json() {
  static const nlohmann::json program = [] {
    const std::string& raw = job_syscall_filter();
    nlohmann::json out = nlohmann::json::array();
    for (size_t at = 0; at + sizeof(sock_filter) <= raw.size(); at += sizeof(sock_filter)) {
      sock_filter ins;
      std::memcpy(&ins, raw.data() + at, sizeof ins);
      out.push_back({ins.code, ins.jt, ins.jf, ins.k});
    }
    return out;
  }();
  return program;
}

}  // namespace

nlohmann::json verifier_error(const std::string& verdict, const std::string& message) {
  return {{"verdict", verdict}, {"message", valid_utf8(message)}, {"stage", "start"}};
}

// A child process run by run_process() on its own thread; `sock` is our end of its socket.
struct Verifier::Proc {
  UidPool::Lease uid;           // a worker's slot uid, held until its box is empty
  std::unique_ptr<JobDir> dir;  // a worker's private directory, removed with it
  UniqueFd sock;
  uint64_t forked_id = 0;  // a zygote's worker: its id there (0: started cold)
  int pid = 0;             // run_process's child (a forked worker's holder); -1: none
  CancelToken cancel;
  std::thread thread;
  Result<ProcessResult> result = io_error("still running");

  ~Proc() { kill(); }
  // Starts the process on its own thread (child_end as its fd 3, if valid) and waits until it
  // has exec'd: `pid` is then its pid, or -1 when it never started.
  void start(ProcessSpec spec, UniqueFd child_end);
  // Kills the process group (the box: its whole cgroup) and waits for run_process to
  // return, which it does only once nothing of the process is left. Idempotent.
  const Result<ProcessResult>& kill() {
    cancel.cancel();
    if (thread.joinable()) thread.join();
    dir.reset();
    return result;
  }
};

Verifier::Verifier(const VerifierOptions& options) : options_(options) {}

Verifier::~Verifier() {
  warm_.clear();
  drop_zygote();
  stop_judge();
}

Result<std::unique_ptr<Verifier>> Verifier::start(const VerifierOptions& options,
                                                  CancelToken* cancel) {
  if (options.harness_dir.empty()) return invalid_argument("verifier: no harness directory");
  if (options.worker_as && options.judge_as && options.worker_as->uid == options.judge_as->uid &&
      !options.uids) {
    return invalid_argument("verifier: the judge must not run as the candidates' user (uid " +
                            std::to_string(options.judge_as->uid) + ")");
  }
  KF_RETURN_IF_ERROR(ensure_dir(options.work_root));
  std::unique_ptr<Verifier> v(new Verifier(options));
  if (options.zygote) v->launch_zygote();  // it imports while the judge does
  KF_RETURN_IF_ERROR(v->launch_judge());
  KF_RETURN_IF_ERROR(v->await_judge(cancel));
  if (v->zygote_ && !v->zygote_ready(std::chrono::steady_clock::now() + kJudgeReadyWait, cancel)) {
    if (cancel && cancel->cancelled()) return start_cancelled();
    spdlog::warn("verifier: the worker zygote did not start; workers start cold");
    v->drop_zygote();
  }
  v->refill();
  return v;
}

Verifier::Stats Verifier::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

namespace {

// Starts `spec` on its own thread, passing `child_end` (if valid) as fd 3; our copy of it is
// closed as soon as the child has exec'd, so that its death reaches the other end as
// end-of-file. `started` (may be empty) gets the child's pid then, or -1 if it never started.
void launch(ProcessSpec spec, UniqueFd child_end, CancelToken* cancel, std::thread* thread,
            Result<ProcessResult>* result, std::function<void(int)> started = {}) {
  auto end = std::make_shared<UniqueFd>(std::move(child_end));
  if (end->valid()) spec.pass_fds = {end->get()};
  auto told = std::make_shared<bool>(false);
  spec.on_started = [end, started, told](int pid) {
    end->reset();
    *told = true;
    if (started) started(pid);
  };
  *thread = std::thread([spec = std::move(spec), end, cancel, result, started, told]() mutable {
    *result = run_process(spec, cancel);
    end->reset();  // also when the child never started
    if (!*told && started) started(-1);
  });
}

// The Triton signatures of recent jobs that the judge keeps (kforge_verifier/launchers.py):
// the judge writes the file, each new worker gets its text and builds their launchers ahead,
// before any candidate exists. Its own validation there decides what is built.
std::filesystem::path launchers_file(const VerifierOptions& o) {
  return o.work_root / "triton-launchers.json";
}

// The judge's own Triton cache (launchers.py, seed()): Triton's driver utilities, the warm-up
// kernel and the launchers of recent signatures, built by the judge. Copied into each new
// worker's cache, so a worker finds them built. Where workers run as another user than the
// judge (slot uids, worker_as), a worker can change its copy, never the judge's; where they
// share the agent's uid nothing separates jobs anyway (docs/security.md).
std::filesystem::path triton_seed(const VerifierOptions& o) {
  return o.work_root / "triton-seed";
}

std::string worker_launchers(const VerifierOptions& o) {
  constexpr uintmax_t kMaxBytes = 48u << 10;  // the judge keeps at most 8 records of 4 KiB
  std::error_code ec;
  const auto path = launchers_file(o);
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec || size > kMaxBytes) return "";
  auto text = read_file(path);
  return text.ok() ? std::move(text.value()) : "";
}

ProcessSpec base_spec(const VerifierOptions& o, const std::string& script) {
  ProcessSpec spec;
  spec.argv = {o.python, (o.harness_dir / script).string(), "--fd", "3"};
  spec.env_allow = o.env_allow;
  spec.env = o.env;
  spec.env["PYTHONPATH"] = o.harness_dir.string();
  spec.env["PYTHONDONTWRITEBYTECODE"] = "1";
  // The experimental switches of docs/harness.md, set in the agent's environment.
  for (const char* name : {"KFORGE_VERIFIER_CUDA_IPC", "KFORGE_ZYGOTE_TRITON"}) {
    if (const char* value = std::getenv(name)) spec.env[name] = value;
  }
  spec.output_cap = o.output_cap;
  return spec;
}

}  // namespace

void Verifier::Proc::start(ProcessSpec spec, UniqueFd child_end) {
  auto told = std::make_shared<std::promise<int>>();
  std::future<int> started = told->get_future();
  launch(std::move(spec), std::move(child_end), &cancel, &thread, &result,
         [told](int p) { told->set_value(p); });
  pid = started.get();
}

Status Verifier::ensure_judge() {
  if (judge_ && judge_->thread.joinable() && judge_->sock.valid()) return Status();
  KF_RETURN_IF_ERROR(launch_judge());
  return await_judge();
}

Status Verifier::launch_judge() {
  stop_judge();
  auto pair = seqpacket_pair();
  if (!pair.ok()) return pair.status();
  auto proc = std::make_unique<Proc>();
  proc->sock = std::move(pair->first);
  ProcessSpec spec = base_spec(options_, "kforge_judge.py");
  spec.run_as = options_.judge_as;
  spec.limits = options_.judge_limits;
  spec.cwd = options_.work_root;
  spec.env["HOME"] = options_.work_root.string();
  spec.env["KFORGE_JUDGE_PRELOAD"] = options_.preload;
  spec.env["KFORGE_JUDGE_DEVICE"] = options_.device;
  // the device memory the next warm workers take during a job (judge.DEVICE_SLACK)
  spec.env["KFORGE_JUDGE_WARM_WORKERS"] = std::to_string(options_.warm_workers);
  spec.env["KFORGE_JUDGE_LAUNCHERS_FILE"] = launchers_file(options_).string();
  spec.env["TRITON_CACHE_DIR"] = triton_seed(options_).string();
  launch(std::move(spec), std::move(pair->second), &proc->cancel, &proc->thread, &proc->result);
  judge_ = std::move(proc);
  return Status();
}

Status Verifier::await_judge(CancelToken* cancel) {
  nlohmann::json ready;
  Wait w = recv_message(judge_->sock.get(), std::chrono::steady_clock::now() + kJudgeReadyWait,
                        cancel, &ready);
  if (w == Wait::cancelled) {
    stop_judge();
    return start_cancelled();
  }
  if (w != Wait::message || !ready.contains("ready")) {
    const auto& r = judge_->kill();
    std::string why =
        r.ok() ? "exit status " + std::to_string(r->exit_code) + ", stderr: " + r->stderr_data
               : r.status().message();
    judge_.reset();
    return io_error("the verification judge did not start (" + why + ")");
  }
  std::lock_guard lock(mu_);
  ++stats_.judges;
  return Status();
}

void Verifier::stop_judge() {
  if (!judge_) return;
  judge_->sock.reset();  // end-of-file: the judge's loop returns
  judge_->kill();
  judge_.reset();
}

Result<std::unique_ptr<Verifier::Proc>> Verifier::spawn_worker(const ResourceLimits& limits) {
  auto pair = seqpacket_pair();
  if (!pair.ok()) return pair.status();
  auto proc = std::make_unique<Proc>();
  proc->sock = std::move(pair->first);
  ProcessSpec spec = base_spec(options_, "kforge_worker.py");
  uid_t uid = ::getuid();
  gid_t gid = ::getgid();
  if (options_.uids) {
    auto lease = options_.uids->acquire();
    if (!lease.ok()) return lease.status();
    proc->uid = std::move(lease.value());
    uid = gid = proc->uid.uid();
  } else if (options_.worker_as) {
    uid = options_.worker_as->uid;
    gid = options_.worker_as->gid;
  }
  auto dir = JobDir::create(options_.work_root, uid, gid, options_.box ? options_.disk_mb : 0);
  if (!dir.ok()) return dir.status();
  proc->dir = std::move(dir.value());
  const std::filesystem::path& home = proc->dir->path();
  if (options_.device == "cuda") {
    std::error_code ec;  // none yet (the judge builds it as it starts): the worker builds its own
    std::filesystem::copy(triton_seed(options_), home / ".triton",
                          std::filesystem::copy_options::recursive, ec);
  }
  KF_RETURN_IF_ERROR(proc->dir->hand_over());
  if (options_.uids) {
    spec.run_as = UserIds{uid, gid, home.string()};
  } else {
    spec.run_as = options_.worker_as;
  }
  if (options_.box) {
    spec.box = *options_.box;
    spec.box->writable.push_back(home);
    spec.box->readable.push_back(options_.harness_dir);
  }
  spec.limits = limits;
  spec.cwd = home;
  spec.env["HOME"] = home.string();
  spec.env["TMPDIR"] = home.string();
  spec.env["TRITON_CACHE_DIR"] = (home / ".triton").string();  // the worker's own
  if (auto signatures = worker_launchers(options_); !signatures.empty()) {
    spec.env["KFORGE_WORKER_LAUNCHERS"] = std::move(signatures);
  }
  spec.env["KFORGE_WORKER_PRELOAD"] = options_.preload;
  spec.env["KFORGE_WORKER_DEVICE"] = options_.device;
  if (limits == options_.worker_limits &&
      zygote_ready(std::chrono::steady_clock::now() + std::chrono::milliseconds(1))) {
    auto forked = fork_worker(std::move(proc), spec, std::move(pair->second));
    if (forked.ok()) return forked;
    spdlog::warn(
        "verifier: the zygote could not make a worker ({}); workers start cold for a minute",
        forked.status().message());
    drop_zygote();
    return spawn_worker(limits);
  }
  proc->start(std::move(spec), std::move(pair->second));  // -1: its socket reads closed
  std::lock_guard lock(mu_);
  ++stats_.spawned;
  return proc;
}

// The box is run_process's, around a holder that only waits; the zygote's child enters it
// and becomes the worker (kforge_verifier/zygote.py). Killing the proc kills the box, the
// holder and the worker with everything it started, as for a cold worker.
Result<std::unique_ptr<Verifier::Proc>> Verifier::fork_worker(std::unique_ptr<Proc> proc,
                                                              ProcessSpec spec,
                                                              UniqueFd child_end) {
  const uint64_t id = next_worker_id_++;
  nlohmann::json request = {{"op", "spawn"},
                            {"id", id},
                            {"device", options_.device},
                            {"preload", options_.preload},
                            {"cwd", spec.cwd.string()},
                            {"pid_ns", spec.box && spec.box->pid_ns},
                            {"no_new_privs", spec.box.has_value()},
                            {"uid", spec.run_as ? spec.run_as->uid : ::getuid()},
                            {"gid", spec.run_as ? spec.run_as->gid : ::getgid()}};
  auto env = child_environment(spec);  // the worker's, as run_process would give it
  if (!env.ok()) return env.status();
  request["env"] = *env;
  nlohmann::json rlimits = nlohmann::json::array();
  for (const RlimitSetting& r : rlimits_for(spec.limits))
    rlimits.push_back({r.resource, r.soft, r.hard});
  request["rlimits"] = rlimits;
  if (spec.box && spec.box->syscall_filter) request["syscall_filter"] = syscall_filter_json();

  spec.argv = {"sleep", "infinity"};  // the holder: it keeps the box until we kill it
  spec.limits = ResourceLimits{};
  proc->start(std::move(spec), UniqueFd());
  request["holder"] = proc->pid;
  if (proc->pid <= 0) {
    const auto& r = proc->kill();
    return io_error("the worker's box did not start: " + r.status().message());
  }
  if (Status st = send_message(zygote_->sock.get(), request, {child_end.get()}); !st.ok())
    return st;
  child_end.reset();
  nlohmann::json reply =
      zygote_message(id, std::chrono::steady_clock::now() + std::chrono::seconds(30));
  if (reply.is_null() || !reply.contains("spawned")) {
    proc->kill();
    return io_error(reply.is_null() ? std::string("the zygote did not answer")
                                    : reply.value("message", std::string("the zygote failed")));
  }
  proc->forked_id = id;
  std::lock_guard lock(mu_);
  ++stats_.spawned;
  ++stats_.forked;
  return proc;
}

void Verifier::launch_zygote() {
  zygote_launched_ = std::chrono::steady_clock::now();
  auto pair = seqpacket_pair();
  if (!pair.ok()) return;
  auto proc = std::make_unique<Proc>();
  proc->sock = std::move(pair->first);
  ProcessSpec spec = base_spec(options_, "kforge_zygote.py");
  spec.cwd = options_.work_root;
  spec.env["HOME"] = options_.work_root.string();
  spec.env["KFORGE_ZYGOTE_PRELOAD"] = options_.preload;
  spec.env["KFORGE_ZYGOTE_DEVICE"] = options_.device;
  launch(std::move(spec), std::move(pair->second), &proc->cancel, &proc->thread, &proc->result);
  zygote_ = std::move(proc);
  zygote_up_ = false;
}

// Whether workers can be forked now, waiting for a zygote still importing until `wait` (a
// spawn waits a millisecond, the start the judge's start-up); a dead one is relaunched at
// most once a minute.
bool Verifier::zygote_ready(Deadline wait, CancelToken* cancel) {
  if (!options_.zygote) return false;
  if (!zygote_) {
    if (std::chrono::steady_clock::now() - zygote_launched_ < std::chrono::seconds(60))
      return false;
    launch_zygote();
    if (!zygote_) return false;
  }
  if (!zygote_up_) {
    nlohmann::json msg;
    Wait w = recv_message(zygote_->sock.get(), wait, cancel, &msg);
    if (w == Wait::message && msg.contains("ready")) {
      zygote_up_ = true;
    } else if (w != Wait::timed_out && w != Wait::cancelled) {
      drop_zygote();
    }
  }
  std::lock_guard lock(mu_);
  stats_.zygote = zygote_up_;
  return zygote_up_;
}

nlohmann::json Verifier::zygote_message(uint64_t id, Deadline deadline) {
  for (;;) {
    if (auto it = zygote_inbox_.find(id); it != zygote_inbox_.end()) {
      nlohmann::json msg = std::move(it->second);
      zygote_inbox_.erase(it);
      return msg;
    }
    if (!zygote_) return nullptr;
    nlohmann::json msg;
    Wait w = recv_message(zygote_->sock.get(), deadline, nullptr, &msg);
    if (w == Wait::timed_out) return nullptr;
    if (w != Wait::message) {
      drop_zygote();
      return nullptr;
    }
    for (const char* key : {"spawned", "spawn_error", "exited"}) {
      if (msg.contains(key) && msg[key].is_number_unsigned()) {
        uint64_t about = msg[key].get<uint64_t>();
        if (about == id) return msg;
        zygote_inbox_[about] = std::move(msg);
        break;
      }
    }
    // Reports nobody will ask for (a worker dropped unused) must not pile up.
    while (zygote_inbox_.size() > 64) zygote_inbox_.erase(zygote_inbox_.begin());
  }
}

void Verifier::drop_zygote() {
  if (!zygote_) return;
  zygote_->sock.reset();  // end-of-file: its loop returns; its workers live on in their boxes
  zygote_->kill();
  zygote_.reset();
  zygote_up_ = false;
  zygote_inbox_.clear();
  std::lock_guard lock(mu_);
  stats_.zygote = false;
}

// How the worker ended, for the judge. It is killed first, its box with it; then its exit
// status and the tail of its output come from run_process (a cold worker) or from the zygote
// (a forked one; the box's OOM and process-cap flags are run_process's either way).
nlohmann::json Verifier::worker_exit(Proc& worker) {
  const auto& r = worker.kill();
  if (!r.ok()) return nlohmann::json::object();
  int exit_code = r->exit_code, sig = r->signal;
  std::string out = r->stderr_data;
  if (worker.forked_id != 0) {
    nlohmann::json report = zygote_message(
        worker.forked_id, std::chrono::steady_clock::now() + std::chrono::seconds(5));
    bool ok = report.is_object();
    exit_code = ok ? report.value("exit_code", -1) : -1;
    sig = ok ? report.value("signal", 0) : SIGKILL;
    out = ok ? report.value("stderr", std::string()) : std::string();
    worker.forked_id = 0;
  }
  // SIGKILL from our own kill is not how the candidate ended; any other signal is
  bool ours = r->cancelled && sig == SIGKILL;
  nlohmann::json exit = {{"exit_code", exit_code},
                         {"signal", ours ? 0 : sig},
                         {"killed", r->cancelled},
                         {"oom", r->memory_exceeded},
                         {"pids_exceeded", r->pids_exceeded},
                         {"stderr", utf8_tail(out, 4000)}};
  if (sig != 0 && !ours) exit["signal_name"] = signal_name(sig);
  return exit;
}

void Verifier::refill() {
  while (warm_.size() < options_.warm_workers) {
    auto w = spawn_worker(options_.worker_limits);
    if (!w.ok()) {
      spdlog::warn("verifier: cannot start a candidate worker: {}", w.status().message());
      break;
    }
    warm_.push_back(std::move(w.value()));
  }
  std::lock_guard lock(mu_);
  stats_.warm = warm_.size();
}

Status Verifier::take_worker(std::unique_ptr<Proc>* out,
                             const std::optional<ResourceLimits>& limits) {
  const ResourceLimits& want = limits ? *limits : options_.worker_limits;
  if (want == options_.worker_limits && !warm_.empty()) {
    *out = std::move(warm_.front());
    warm_.pop_front();
    return Status();
  }
  auto w = spawn_worker(want);
  if (!w.ok()) return w.status();
  *out = std::move(w.value());
  return Status();
}

nlohmann::json Verifier::verify(const std::filesystem::path& job_dir,
                                std::chrono::milliseconds timeout, CancelToken* cancel,
                                const std::optional<ResourceLimits>& limits) {
  std::lock_guard job_lock(job_mu_);
  try {
    return run_verify(job_dir, timeout, cancel, limits);
  } catch (const std::exception& e) {
    // Whatever threw (a message of the judge or the zygote unlike what we expect), the job
    // ends as an infra_error and the agent lives on; the judge may be mid-job: a fresh one
    // serves the next. The job's workers died with run_verify's frame.
    spdlog::error("verifier: the job failed: {}", e.what());
    stop_judge();
    {
      std::lock_guard lock(mu_);
      stats_.busy = 0;
    }
    return verifier_error("infra_error", std::string("verifier: ") + e.what());
  }
}

// The worker's CPU meter for the judge (kforge_verifier/timing.py, CpuMeter), added to `msg`:
// its box's cpu.stat, opened here ("cpu": "cgroup", the descriptor returned), or its pid
// ("cpu_pid") for a worker without a box, in the judge's pid namespace. Neither where the
// worker is in a box without a cgroup: the judge then charges no CPU (docs/harness.md).
UniqueFd Verifier::cpu_meter(const Proc& worker, nlohmann::json* msg) const {
  const int pid = worker.pid;
  if (pid <= 0) return UniqueFd();
  if (options_.box) {
    if (!options_.box->cgroups) return UniqueFd();
    auto fd = options_.box->cgroups->open_cpu_stat(pid);
    if (!fd.ok()) {
      spdlog::warn("verifier: no CPU meter for a worker: {}", fd.status().message());
      return UniqueFd();
    }
    (*msg)["cpu"] = "cgroup";
    return std::move(fd.value());
  }
  if (worker.forked_id == 0) (*msg)["cpu_pid"] = pid;  // a forked worker's pid is not `pid`
  return UniqueFd();
}

nlohmann::json Verifier::run_verify(const std::filesystem::path& job_dir,
                                    std::chrono::milliseconds timeout, CancelToken* cancel,
                                    const std::optional<ResourceLimits>& limits) {
  if (Status st = ensure_judge(); !st.ok()) return verifier_error("infra_error", st.message());
  // The agent's own share of the job's wall time (worker_pool.agent_ms): taking a worker,
  // killing the candidate's box (its exit included), and making the next workers.
  using Clock = std::chrono::steady_clock;
  auto ms_since = [](Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  double take_ms = 0, kill_ms = 0, refill_ms = 0;
  auto t_take = Clock::now();
  std::unique_ptr<Proc> worker;
  if (Status st = take_worker(&worker, limits); !st.ok())
    return verifier_error("infra_error", st.message());
  take_ms = ms_since(t_take);
  {
    std::lock_guard lock(mu_);
    stats_.busy = 1;
  }

  const bool forked = worker->forked_id != 0;
  std::unique_ptr<Proc> ref_worker;  // the one the judge times the reference in, if it asks
  // The next jobs' workers are made while this job runs, but only once the judge says the
  // reference is timed (or needs no timing): a worker warming up (its imports, its device
  // context) would slow the reference down on a busy host, and every speedup with it.
  bool refill_due = options_.refill;
  auto refill_once = [&] {
    auto t0 = Clock::now();
    if (refill_due) refill();
    refill_due = false;
    refill_ms += ms_since(t0);
  };
  auto finish = [&](nlohmann::json doc) {
    auto t_kill = Clock::now();
    worker->kill();
    if (ref_worker) ref_worker->kill();
    kill_ms += ms_since(t_kill);
    refill_once();  // the judge never said so (the job ended first)
    std::lock_guard lock(mu_);
    stats_.busy = 0;
    // The pool as this job found it: whether its worker was forked, and the device's totals.
    doc["worker_pool"] = {
        {"forked", forked},
        {"warm", stats_.warm},
        {"spawned", stats_.spawned},
        {"forked_total", stats_.forked},
        {"zygote", stats_.zygote},
        {"agent_ms", {{"take", take_ms}, {"kill", kill_ms}, {"refill", refill_ms}}}};
    return doc;
  };
  nlohmann::json request = {
      {"op", "verify"}, {"job_dir", job_dir.string()}, {"timeout_ms", timeout.count()}};
  UniqueFd meter = cpu_meter(*worker, &request);
  if (Status st = send_message(judge_->sock.get(), request, {worker->sock.get(), meter.get()});
      !st.ok()) {
    stop_judge();
    return finish(verifier_error("infra_error", st.message()));
  }
  worker->sock.reset();  // the judge holds the worker's socket now
  Deadline deadline = std::chrono::steady_clock::now() + timeout + kJudgeGrace;
  for (;;) {
    nlohmann::json msg;
    Wait w = recv_message(judge_->sock.get(), deadline, cancel, &msg);
    if (w == Wait::cancelled) {
      stop_judge();  // it may be deep in the reference: a fresh one serves the next job
      return finish(verifier_error("infra_error", "the job was cancelled"));
    }
    if (w == Wait::malformed) {
      stop_judge();  // what it waits for now is unknown: a fresh one serves the next job
      return finish(
          verifier_error("infra_error", "the judge sent a message that is not a JSON object"));
    }
    if (w != Wait::message) {
      stop_judge();
      return finish(verifier_error(
          "infra_error", w == Wait::timed_out
                             ? "the judge gave no verdict within the job's timeout (the reference "
                               "may hang or be too slow for it)"
                             : "the verification judge died (the reference crashed it, or it ran "
                               "out of memory)"));
    }
    if (msg.contains("release_worker")) {
      // The candidate's whole box dies before the judge decides anything more.
      auto t_kill = Clock::now();
      nlohmann::json exit = worker_exit(*worker);
      kill_ms += ms_since(t_kill);
      if (Status st = send_message(judge_->sock.get(), {{"worker_exit", exit}}); !st.ok()) {
        stop_judge();
        return finish(verifier_error("infra_error", st.message()));
      }
      continue;
    }
    if (msg.contains("reference_worker") && !ref_worker) {
      // A second fresh worker, to time the reference through the same crossing as the
      // candidate (kforge_verifier/judge.py). It never runs a candidate; it dies with the job.
      Status st = take_worker(&ref_worker);
      if (st.ok()) {
        nlohmann::json reply = {{"reference_worker", 1}};
        UniqueFd ref_meter = cpu_meter(*ref_worker, &reply);
        st = send_message(judge_->sock.get(), reply, {ref_worker->sock.get(), ref_meter.get()});
        ref_worker->sock.reset();
      } else {
        st = send_message(judge_->sock.get(), {{"reference_worker", 0}, {"why", st.message()}});
      }
      if (!st.ok()) {
        stop_judge();
        return finish(verifier_error("infra_error", st.message()));
      }
      continue;
    }
    if (msg.contains("reference_timed")) {
      // The reference's worker dies before the judge measures the device's memory from the
      // candidate's load on: its memory freed later would count for the candidate.
      // The judge waits for our word only where we gave it that worker.
      if (ref_worker) {
        auto t_kill = Clock::now();
        ref_worker->kill();
        kill_ms += ms_since(t_kill);
        if (Status st = send_message(judge_->sock.get(), {{"reference_timed", 1}}); !st.ok()) {
          stop_judge();
          return finish(verifier_error("infra_error", st.message()));
        }
      }
      refill_once();
      continue;
    }
    if (msg.contains("result") && msg["result"].is_object())
      return finish(std::move(msg["result"]));
    stop_judge();
    return finish(verifier_error("infra_error", "the judge sent an unexpected message"));
  }
}

}  // namespace kforge
