// The agent's outbox: finished results kept on disk until the coordinator acks them.
//
// A result enters the outbox before it is first sent, and leaves it only on a ResultAck, so
// a result survives a lost message, a coordinator restart and an agent restart
// (docs/architecture.md invariant 2). Stored in <state>/outbox.db (SQLite, WAL).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/protocol.h"
#include "common/status.h"

namespace kforge {

class Outbox {
 public:
  static Result<std::unique_ptr<Outbox>> open(const std::filesystem::path& path);
  ~Outbox();
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // Stores the result of an attempt (replacing an earlier copy of the same attempt).
  Status put(const proto::JobResult& result);
  Status remove(const proto::JobRef& ref);
  bool contains(const proto::JobRef& ref) const;
  std::vector<proto::JobRef> refs() const;
  // Every stored result, oldest first.
  Result<std::vector<proto::JobResult>> all() const;
  size_t size() const { return refs_.size(); }

 private:
  struct Impl;
  explicit Outbox(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::vector<proto::JobRef> refs_;  // mirror of the table, for Hello and heartbeats
};

}  // namespace kforge
