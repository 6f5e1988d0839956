#include "agent/outbox.h"

#include <algorithm>

#include "common/fs.h"
#include "common/sqlite.h"

namespace kforge {

// The connection and the statements it runs, each prepared once.
struct Outbox::Impl {
  sqlite::Db d;
  sqlite::Prepared put, remove, all;  // declared after d: finalized before d closes
};

Result<std::unique_ptr<Outbox>> Outbox::open(const std::filesystem::path& path) {
  // 0600 before SQLite opens it: its -wal and -shm files take the database file's mode.
  KF_RETURN_IF_ERROR(ensure_private_file(path));
  auto impl = std::make_unique<Impl>();
  sqlite::Db& d = impl->d;
  KF_RETURN_IF_ERROR(d.open(path.string(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
  Result<bool> wal = d.use_wal();
  if (!wal.ok()) return wal.status();
  KF_RETURN_IF_ERROR(
      d.exec("CREATE TABLE IF NOT EXISTS outbox (job_id INTEGER NOT NULL, epoch INTEGER NOT NULL, "
             "data BLOB NOT NULL, PRIMARY KEY (job_id, epoch))",
             "create the outbox table"));
  KF_RETURN_IF_ERROR(d.prepare(
      "INSERT OR REPLACE INTO outbox (job_id, epoch, data) VALUES (?1, ?2, ?3)", &impl->put.s));
  KF_RETURN_IF_ERROR(
      d.prepare("DELETE FROM outbox WHERE job_id = ?1 AND epoch = ?2", &impl->remove.s));
  KF_RETURN_IF_ERROR(
      d.prepare("SELECT job_id, epoch, data FROM outbox ORDER BY rowid", &impl->all.s));
  std::unique_ptr<Outbox> box(new Outbox(std::move(impl)));
  sqlite::Stmt q(box->impl_->all.s);
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    box->refs_.push_back({static_cast<uint64_t>(q.i64(0)), static_cast<uint64_t>(q.i64(1))});
  }
  if (rc != SQLITE_DONE) return d.error(rc, "read the outbox");
  return box;
}

Outbox::Outbox(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Outbox::~Outbox() = default;

Status Outbox::put(const proto::JobResult& result) {
  std::string data = proto::encode(result);
  sqlite::Stmt q(impl_->put.s);
  q.bind(1, static_cast<int64_t>(result.job.job_id))
      .bind(2, static_cast<int64_t>(result.job.epoch))
      .blob(3, data);
  if (int rc = q.step(); rc != SQLITE_DONE) return impl_->d.error(rc, "put");
  if (!contains(result.job)) refs_.push_back(result.job);
  return Status();
}

Status Outbox::remove(const proto::JobRef& ref) {
  sqlite::Stmt q(impl_->remove.s);
  q.bind(1, static_cast<int64_t>(ref.job_id)).bind(2, static_cast<int64_t>(ref.epoch));
  if (int rc = q.step(); rc != SQLITE_DONE) return impl_->d.error(rc, "remove");
  refs_.erase(std::remove(refs_.begin(), refs_.end(), ref), refs_.end());
  return Status();
}

bool Outbox::contains(const proto::JobRef& ref) const {
  return std::find(refs_.begin(), refs_.end(), ref) != refs_.end();
}

std::vector<proto::JobRef> Outbox::refs() const {
  return refs_;
}

Result<std::vector<proto::JobResult>> Outbox::all() const {
  std::vector<proto::JobResult> out;
  sqlite::Stmt q(impl_->all.s);
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    auto frame = proto::decode(q.bytes(2));
    if (!frame.ok())
      return io_error("outbox: stored result does not decode: " + frame.status().message());
    if (auto* r = std::get_if<proto::JobResult>(&frame->message)) out.push_back(*r);
  }
  if (rc != SQLITE_DONE) return impl_->d.error(rc, "read the outbox");
  return out;
}

}  // namespace kforge
