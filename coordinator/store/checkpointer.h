// The store's WAL checkpoints, on a thread of their own with a connection of their own.
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "common/sqlite.h"
#include "common/status.h"

namespace kforge {

// WAL checkpoints, off the writer's thread.
//
// SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL past 1000 pages:
// that commit copies the WAL back into the database and fsyncs both files (with
// synchronous=NORMAL these are the only fsyncs), holding the coordinator's loop for 10-60 ms
// every few hundred turns under load. Instead a thread with a connection of its own runs
// PASSIVE checkpoints, which neither block the writer nor wait for it, and then syncs the
// database file. A checkpoint running beside the writer never catches up with it while it
// keeps committing, and the WAL restarts from its beginning only once it has been copied
// completely; so when the WAL reaches kRestartPages the writer asks for one more
// checkpoint at once, and after it finishes copies the few pages committed meanwhile itself
// (under a millisecond: both files are almost clean by then). With pauses in the load the
// WAL restarts by itself. Durability is unchanged: the same checkpoints with the same fsyncs
// (and one more of the database file after each).
class Checkpointer {
 public:
  static constexpr int kCheckpointPages = 1000;  // SQLite's default wal_autocheckpoint
  static constexpr int kRestartPages = 10 * kCheckpointPages;    // ~40 MiB of 4 KiB pages
  static constexpr std::chrono::milliseconds kMinInterval{100};  // between checkpoints

  // Opens the second connection and takes over `writer`'s WAL hook, which replaces
  // SQLite's automatic checkpoint. REQUIRES: `writer` outlives the Checkpointer.
  static Result<std::unique_ptr<Checkpointer>> start(sqlite::Db& writer);

  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

 private:
  explicit Checkpointer(sqlite3* writer) : writer_(writer) {}

  // The writer's WAL hook: runs on the writer's thread after each commit, with the number
  // of pages in the WAL.
  static int on_commit(void* arg, sqlite3* db, const char* name, int wal_pages);
  void request(bool now);
  void loop();

  sqlite3* writer_;
  sqlite3* db_ = nullptr;
  bool restart_requested_ = false;      // writer's thread only
  std::atomic<bool> caught_up_{false};  // a requested checkpoint has finished
  std::mutex mu_;
  std::condition_variable cv_;
  bool pending_ = false;  // a checkpoint is wanted
  bool now_ = false;      // ... at once
  bool stop_ = false;
  std::chrono::steady_clock::time_point last_;
  std::thread thread_;
};

}  // namespace kforge
