// Storage fault injection for tests (LevelDB's FaultInjectionTestEnv in spirit): a SQLite VFS
// over the default one that makes writes under one directory fail the way a full disk makes
// them fail, so that the disk-full and failed-commit paths run in unit tests.
//
// install() registers the VFS as SQLite's default for the rest of the process: every
// database opened afterwards (the coordinator's writer, its checkpoint connection, the API's
// readers) goes through it and behaves exactly as before until a limit is set. Only writes
// are faulted (xWrite returns SQLITE_FULL, which is what SQLite's own VFS returns on ENOSPC);
// reads, syncs, locks and the WAL index (shared memory) pass through.
#pragma once

#include <cstdint>
#include <filesystem>

namespace kforge {

class StorageFaults {
 public:
  // The process's fault VFS, registered as SQLite's default on the first call. Open the
  // databases to fault after this call.
  static StorageFaults& install();

  // Files under `dir` (the database, its WAL and journal) accept `bytes` more bytes of
  // writes; every write after that, and the one that would pass the limit, fails with
  // SQLITE_FULL and writes nothing. 0: the disk is full now.
  void limit_writes(const std::filesystem::path& dir, uint64_t bytes);
  // Writes succeed again (space came back).
  void clear();
  // Writes refused since install().
  uint64_t refused_writes() const;

 private:
  StorageFaults() = default;
};

}  // namespace kforge
