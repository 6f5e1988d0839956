#include "common/sqlite.h"

#include <utility>

namespace kforge::sqlite {

Code code_of(int rc) {
  switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY: return Code::already_exists;
    case SQLITE_CONSTRAINT_FOREIGNKEY: return Code::not_found;  // a referenced row does not exist
    default: break;
  }
  switch (rc) {
    // A write or sync that failed: the disk is full (SQLite reports ENOSPC as SQLITE_FULL) or
    // refuses writes. The coordinator raises its no-space alarm (docs/operations.md).
    case SQLITE_IOERR_WRITE:
    case SQLITE_IOERR_FSYNC:
    case SQLITE_IOERR_DIR_FSYNC:
    case SQLITE_IOERR_TRUNCATE:
    case SQLITE_IOERR_SHMSIZE: return Code::no_space;
    default: break;
  }
  switch (rc & 0xff) {
    case SQLITE_FULL: return Code::no_space;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE: return Code::invalid_argument;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return Code::unavailable;
    case SQLITE_READONLY: return Code::failed_precondition;
    case SQLITE_ERROR:
    case SQLITE_MISUSE:
    case SQLITE_INTERNAL: return Code::internal;
    default: return Code::io_error;  // other IOERR, CORRUPT, NOTADB, CANTOPEN, NOMEM, ...
  }
}

// ---- Db -------------------------------------------------------------------------------------

Db::~Db() {
  if (db == nullptr) return;
  if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  for (sqlite3_stmt* s : {begin, commit, rollback, savepoint, release, rollback_to}) {
    sqlite3_finalize(s);
  }
  sqlite3_close_v2(db);
}

Status Db::open(const std::string& file, int flags) {
  path = file;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    return Status(code_of(rc), path + ": open: " + msg);
  }
  sqlite3_extended_result_codes(db, 1);
  const std::pair<sqlite3_stmt**, const char*> statements[] = {
      {&begin, "BEGIN IMMEDIATE"},     {&commit, "COMMIT"},
      {&rollback, "ROLLBACK"},         {&savepoint, "SAVEPOINT kforge_op"},
      {&release, "RELEASE kforge_op"}, {&rollback_to, "ROLLBACK TO kforge_op"},
  };
  for (const auto& [out, sql] : statements) KF_RETURN_IF_ERROR(prepare(sql, out));
  return Status();
}

Status Db::error(int rc, std::string_view op) const {
  const char* msg = (db != nullptr && sqlite3_extended_errcode(db) == rc) ? sqlite3_errmsg(db)
                                                                          : sqlite3_errstr(rc);
  Status status(code_of(rc), path + ": " + std::string(op) + ": " + msg);
  if (in_batch && batch_error.ok() && status.code() == Code::no_space) batch_error = status;
  return status;
}

Status Db::run(sqlite3_stmt* s, std::string_view op) {
  Stmt stmt(s);
  int rc = stmt.finish();
  return rc == SQLITE_DONE ? Status() : error(rc, op);
}

Status Db::exec(const char* sql, std::string_view op) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return Status();
  std::string msg = path + ": " + std::string(op) + ": " + (err ? err : sqlite3_errstr(rc));
  sqlite3_free(err);
  return Status(code_of(rc), std::move(msg));
}

Result<std::string> Db::query_text(const char* sql, std::string_view op) {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &raw, nullptr);
  if (rc != SQLITE_OK) return error(rc, op);
  std::string value;
  {
    Stmt s(raw);
    rc = s.step();
    if (rc == SQLITE_ROW) {
      value = s.str(0);
      while ((rc = sqlite3_step(raw)) == SQLITE_ROW) {
      }
    }
  }
  Status status = rc == SQLITE_DONE ? Status() : error(rc, op);
  sqlite3_finalize(raw);
  if (!status.ok()) return status;
  return value;
}

Status Db::prepare(const char* sql, sqlite3_stmt** out) {
  int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, nullptr);
  return rc == SQLITE_OK ? Status() : error(rc, std::string("prepare '") + sql + "'");
}

Result<bool> Db::use_wal() {
  Result<std::string> mode = query_text("PRAGMA journal_mode = WAL", "set WAL mode");
  if (!mode.ok()) return mode.status();
  if (*mode != "wal" && *mode != "memory") {
    return io_error(path + ": set WAL mode: the database stays in journal mode '" + *mode + "'");
  }
  KF_RETURN_IF_ERROR(exec("PRAGMA synchronous = NORMAL", "set synchronous"));
  return *mode == "wal";
}

// ---- Tx -------------------------------------------------------------------------------------

Tx::Tx(Db& d, std::string_view op, bool multi) : d_(d), op_(op) {
  if (d_.fault && op_ != "atomically") {
    status_ = d_.fault(op_);
    if (!status_.ok()) {
      done_ = true;  // nothing begun, nothing to undo
      return;
    }
  }
  // Outside a batch a transaction may be open all the same: atomically()'s own.
  if (!d_.in_batch && sqlite3_get_autocommit(d_.db)) {
    status_ = d_.run(d_.begin, op_);
    if (status_.ok()) kind_ = Kind::transaction;
    return;
  }
  if (d_.in_batch && !d_.batch_error.ok()) {
    status_ = failed_precondition(d_.path + ": " + std::string(op_) +
                                  ": the batch was aborted by an earlier error (" +
                                  d_.batch_error.message() + "); roll it back");
    return;
  }
  if (multi) {
    status_ = d_.run(d_.savepoint, op_);
    if (status_.ok()) kind_ = Kind::savepoint;
  }
}

Status Tx::commit() {
  done_ = true;
  Status s;
  if (kind_ == Kind::transaction) {
    s = d_.run(d_.commit, op_);
  } else if (kind_ == Kind::savepoint) {
    s = d_.run(d_.release, op_);
  }
  if (!s.ok()) undo();
  return s;
}

void Tx::undo() {
  done_ = true;
  if (kind_ == Kind::transaction) {
    if (!sqlite3_get_autocommit(d_.db)) (void)d_.run(d_.rollback, op_);
  } else if (kind_ == Kind::savepoint && !sqlite3_get_autocommit(d_.db)) {
    (void)d_.run(d_.rollback_to, op_);
    (void)d_.run(d_.release, op_);
  }
  // Some errors (I/O, disk full) roll back the whole transaction: the batch is gone.
  if (d_.in_batch && d_.batch_error.ok() && sqlite3_get_autocommit(d_.db)) {
    d_.batch_error = io_error(d_.path + ": " + std::string(op_) + ": " + sqlite3_errmsg(d_.db));
  }
}

}  // namespace kforge::sqlite
