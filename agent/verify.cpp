#include "agent/verify.h"

#include <signal.h>
#include <unistd.h>

#include <cstring>

#include "common/fs.h"

namespace kforge {
namespace {

constexpr size_t kMessageTail = 4000;  // bytes of stderr quoted in a message

std::string tail(const std::string& text, size_t n = kMessageTail) {
  return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

nlohmann::json verdict(const std::string& v, const std::string& message, const std::string& stage) {
  return {{"verdict", v}, {"message", message}, {"stage", stage}};
}

}  // namespace

Result<std::filesystem::path> find_harness_dir(const std::string& configured) {
  auto valid = [](const std::filesystem::path& dir) {
    std::error_code ec;
    return std::filesystem::exists(dir / "kforge_harness.py", ec);
  };
  if (!configured.empty()) {
    if (valid(configured)) return std::filesystem::absolute(configured);
    return not_found("no kforge_harness.py in the configured harness directory " + configured);
  }
  if (const char* env = std::getenv("KFORGE_HARNESS_DIR"); env && *env) {
    if (valid(env)) return std::filesystem::absolute(env);
    return not_found(std::string("no kforge_harness.py in $KFORGE_HARNESS_DIR (") + env + ")");
  }
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto installed = exe.parent_path().parent_path() / "share" / "kforge" / "harness";
    if (valid(installed)) return installed;
  }
  std::filesystem::path source = KFORGE_HARNESS_SOURCE_DIR;
  if (valid(source)) return source;
  return not_found("cannot find the verification harness (kforge_harness.py): set agent.harness_dir, "
                   "--harness or $KFORGE_HARNESS_DIR");
}

ProcessSpec harness_process(const std::string& python, const std::filesystem::path& harness_dir,
                            const std::filesystem::path& job_dir, const std::string& token) {
  ProcessSpec spec;
  spec.argv = {python, (harness_dir / "kforge_harness.py").string(), "--job-dir", job_dir.string()};
  spec.cwd = job_dir;
  spec.stdin_data = token + "\n";
  // Caches and home inside the job directory: nothing leaks between jobs or users.
  spec.env["HOME"] = job_dir.string();
  spec.env["PYTHONDONTWRITEBYTECODE"] = "1";
  spec.env["PYTHONPATH"] = harness_dir.string();
  return spec;
}

nlohmann::json finalize_verdict(const ProcessResult& process, const std::filesystem::path& job_dir,
                                const std::string& token) {
  std::string stage = "start";
  if (auto s = read_file(job_dir / "stage"); s.ok()) {
    stage = *s;
    while (!stage.empty() && (stage.back() == '\n' || stage.back() == ' ')) stage.pop_back();
  }
  const std::string& err = process.stderr_data;

  nlohmann::json doc;
  bool have_doc = false;
  if (auto text = read_file(job_dir / "result.json"); text.ok()) {
    doc = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    have_doc = doc.is_object() && doc.contains("verdict") && doc["verdict"].is_string();
  }
  if (have_doc) {
    if (!doc.contains("token") || doc["token"] != token) {
      return verdict("rejected",
                     "result.json was not written by the harness (its token is missing or wrong): "
                     "the candidate must not write the harness's result",
                     stage);
    }
    doc.erase("token");
    if (process.timed_out || process.signal != 0) {
      // The verdict was reached; the process died afterwards (e.g. at interpreter exit).
      doc["note"] = process.timed_out ? "the harness was killed at the timeout after its verdict"
                                      : "the harness died of " + signal_name(process.signal) +
                                            " after its verdict";
    }
    return doc;
  }

  if (process.cancelled) return verdict("infra_error", "the job was cancelled", stage);
  if (process.memory_exceeded) {
    return verdict("resource_exceeded",
                   "resource_exceeded: memory (the job's cgroup limit; the kernel killed it) during " + stage +
                       "; stderr:\n" + tail(err),
                   stage);
  }
  if (process.pids_exceeded && process.exit_code != 0) {
    return verdict("resource_exceeded",
                   "resource_exceeded: processes (the job's cgroup limit) during " + stage + "; stderr:\n" + tail(err),
                   stage);
  }
  if (process.timed_out) {
    return verdict("timeout",
                   "killed at the wall-clock limit of " + std::to_string(process.wall_ms / 1000) +
                       " s during " + stage + "; stderr:\n" + tail(err),
                   stage);
  }
  bool reference_only = stage == "start" || stage == "load_reference";
  if (process.signal != 0) {
    int sig = process.signal;
    std::string what = signal_name(sig);
    if (reference_only) {
      return verdict("infra_error", "the harness died of " + what + " before the candidate was loaded; stderr:\n" + tail(err), stage);
    }
    if (sig == SIGXCPU || sig == SIGXFSZ ||
        (sig == SIGABRT && err.find("bad_alloc") != std::string::npos)) {
      return verdict("resource_exceeded",
                     "killed by " + what + " (" +
                         (sig == SIGXCPU ? "CPU time limit" : sig == SIGXFSZ ? "file size limit" : "out of memory") +
                         ") during " + stage + "; stderr:\n" + tail(err),
                     stage);
    }
    return verdict("crashed", "the candidate crashed the process with " + what + " during " + stage +
                                  "; stderr:\n" + tail(err),
                   stage);
  }
  if (err.find("MemoryError") != std::string::npos || err.find("Cannot allocate memory") != std::string::npos) {
    return verdict("resource_exceeded", "out of memory during " + stage + "; stderr:\n" + tail(err), stage);
  }
  return verdict("infra_error",
                 "the harness exited with status " + std::to_string(process.exit_code) +
                     " without a verdict during " + stage + "; stderr:\n" + tail(err),
                 stage);
}

Status hand_over(const std::filesystem::path& dir, const std::optional<UserIds>& user) {
  if (!user) return Status();
  std::error_code ec;
  auto chown_one = [&](const std::filesystem::path& p) -> Status {
    if (::lchown(p.c_str(), user->uid, user->gid) != 0) {
      return io_error("cannot give " + p.string() + " to uid " + std::to_string(user->uid) + ": " +
                      std::strerror(errno));
    }
    return Status();
  };
  KF_RETURN_IF_ERROR(chown_one(dir));
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    KF_RETURN_IF_ERROR(chown_one(it->path()));
  }
  if (ec) return io_error("cannot walk " + dir.string() + ": " + ec.message());
  return Status();
}

}  // namespace kforge
