// tests/support/: what every test shares -- temporary directories and deadline waits (this
// file), row and spec builders (fixtures.h), an in-process cluster (cluster.h), the
// Conductor's loop turned by hand (fake_loop.h), child processes (child.h), a raw protocol
// peer (raw_peer.h) and a fake LLM server (fake_llm.h).
//
// Shared test support: temporary directories and waiting on events with a deadline.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>

#include "common/protocol.h"

namespace kforge::test {

// A fresh directory under the system temp dir, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Polls `pred` until it is true or `deadline` passes; returns the last value of `pred`.
// This waits on an observable event; it is not a sleep standing in for synchronisation.
bool wait_until(const std::function<bool()>& pred,
                std::chrono::milliseconds deadline = std::chrono::seconds(20));

// Writes `content` to `path`, creating parent directories.
void write_file(const std::filesystem::path& path, const std::string& content);
// The whole file, or "" when it cannot be read (common/fs.h's read_file, for assertions).
std::string read_file(const std::filesystem::path& path);

// A result as an exec job that exited 0 after printing `out` would report it.
inline proto::JobResult output_result(std::string out) {
  proto::JobResult r;
  r.exit_code = 0;
  r.stdout_data = std::move(out);
  return r;
}

// Where the build put the executables, and the source tree.
std::filesystem::path binary_dir();
std::filesystem::path source_dir();

}  // namespace kforge::test
