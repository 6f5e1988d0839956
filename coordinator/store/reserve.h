// Space kept back for the store: a file of fixed size in the data directory, its blocks
// allocated (posix_fallocate), that the coordinator deletes when a write fails for lack of
// space and allocates again once the disk has room for it twice over.
//
// Deleting it gives SQLite room to checkpoint the WAL into the database (which may grow the
// database file by up to the WAL's size), to create the WAL index of a read-only connection,
// and to roll back, while the alarm is raised (docs/operations.md, "Disk full").
#pragma once

#include <cstdint>
#include <filesystem>

#include "common/status.h"

namespace kforge {

class SpaceReserve {
 public:
  // `bytes` 0: no reserve (held() is always true, hold and release do nothing).
  SpaceReserve(std::filesystem::path file, uint64_t bytes)
      : file_(std::move(file)), bytes_(bytes) {}

  uint64_t bytes() const { return bytes_; }
  const std::filesystem::path& file() const { return file_; }
  // True when the file exists with all its blocks.
  bool held() const;
  // Allocates the file (0600). no_space when the disk has no room for it (nothing is left
  // behind then).
  Status hold();
  // Deletes the file, giving its space back.
  void release();
  // True when the file system has room for the reserve and as much again for the store:
  // the condition for taking it back after an alarm (hysteresis, so that a disk hovering at
  // full does not raise and clear the alarm turn after turn).
  bool room_to_hold() const;

 private:
  std::filesystem::path file_;
  uint64_t bytes_;
};

}  // namespace kforge
