#include "agent/outbox.h"

#include <sqlite3.h>

#include <algorithm>

#include "common/fs.h"

namespace kforge {
namespace {

// A prepared statement, finalized on scope exit.
struct Stmt {
  sqlite3_stmt* s = nullptr;
  Stmt(sqlite3* db, const char* sql) { sqlite3_prepare_v2(db, sql, -1, &s, nullptr); }
  ~Stmt() { sqlite3_finalize(s); }
};

Status db_error(sqlite3* db, const std::string& what) {
  return io_error("outbox: " + what + ": " + sqlite3_errmsg(db));
}

}  // namespace

Result<std::unique_ptr<Outbox>> Outbox::open(const std::filesystem::path& path) {
  // 0600 before SQLite opens it: its -wal and -shm files take the database file's mode.
  KF_RETURN_IF_ERROR(ensure_private_file(path));
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
    Status st = io_error("cannot open outbox " + path.string() + ": " + sqlite3_errmsg(db));
    sqlite3_close(db);
    return st;
  }
  std::unique_ptr<Outbox> box(new Outbox(db));
  KF_RETURN_IF_ERROR(box->exec("PRAGMA journal_mode=WAL"));
  KF_RETURN_IF_ERROR(box->exec("PRAGMA synchronous=NORMAL"));
  KF_RETURN_IF_ERROR(
      box->exec("CREATE TABLE IF NOT EXISTS outbox (job_id INTEGER NOT NULL, epoch INTEGER NOT NULL, "
                "data BLOB NOT NULL, PRIMARY KEY (job_id, epoch))"));
  Stmt q(db, "SELECT job_id, epoch FROM outbox ORDER BY rowid");
  while (sqlite3_step(q.s) == SQLITE_ROW) {
    box->refs_.push_back({static_cast<uint64_t>(sqlite3_column_int64(q.s, 0)),
                          static_cast<uint64_t>(sqlite3_column_int64(q.s, 1))});
  }
  return box;
}

Outbox::Outbox(sqlite3* db) : db_(db) {}
Outbox::~Outbox() { sqlite3_close(db_); }

Status Outbox::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return io_error(std::string("outbox: ") + sql + ": " + msg);
  }
  return Status();
}

Status Outbox::put(const proto::JobResult& result) {
  std::string data = proto::encode(result);
  Stmt q(db_, "INSERT OR REPLACE INTO outbox (job_id, epoch, data) VALUES (?, ?, ?)");
  sqlite3_bind_int64(q.s, 1, static_cast<int64_t>(result.job.job_id));
  sqlite3_bind_int64(q.s, 2, static_cast<int64_t>(result.job.epoch));
  sqlite3_bind_blob(q.s, 3, data.data(), static_cast<int>(data.size()), SQLITE_TRANSIENT);
  if (sqlite3_step(q.s) != SQLITE_DONE) return db_error(db_, "put");
  if (!contains(result.job)) refs_.push_back(result.job);
  return Status();
}

Status Outbox::remove(const proto::JobRef& ref) {
  Stmt q(db_, "DELETE FROM outbox WHERE job_id = ? AND epoch = ?");
  sqlite3_bind_int64(q.s, 1, static_cast<int64_t>(ref.job_id));
  sqlite3_bind_int64(q.s, 2, static_cast<int64_t>(ref.epoch));
  if (sqlite3_step(q.s) != SQLITE_DONE) return db_error(db_, "remove");
  refs_.erase(std::remove(refs_.begin(), refs_.end(), ref), refs_.end());
  return Status();
}

bool Outbox::contains(const proto::JobRef& ref) const {
  return std::find(refs_.begin(), refs_.end(), ref) != refs_.end();
}

std::vector<proto::JobRef> Outbox::refs() const { return refs_; }

Result<std::vector<proto::JobResult>> Outbox::all() const {
  std::vector<proto::JobResult> out;
  Stmt q(db_, "SELECT data FROM outbox ORDER BY rowid");
  while (sqlite3_step(q.s) == SQLITE_ROW) {
    std::string data(static_cast<const char*>(sqlite3_column_blob(q.s, 0)),
                     static_cast<size_t>(sqlite3_column_bytes(q.s, 0)));
    auto frame = proto::decode(data);
    if (!frame.ok()) return io_error("outbox: stored result does not decode: " + frame.status().message());
    if (auto* r = std::get_if<proto::JobResult>(&frame->message)) out.push_back(*r);
  }
  return out;
}

}  // namespace kforge
