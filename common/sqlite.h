// SQLite plumbing shared by the coordinator's store and the agent's outbox.
//
// - Db: one open connection, its path for messages, and the error mapping (SQLite result
//   code -> kforge Code). Optionally holds a batch: a transaction left open across many
//   operations (group commit) that is committed whole or not at all.
// - Stmt: one use of a prepared statement; resets it when it goes out of scope.
// - Prepared: a statement prepared once and finalized with its owner.
// - Tx: the transaction around one mutation, aware of an open batch.
//
// None of these is thread-safe: a Db and everything using it belong to one thread at a time.
// The store's WAL checkpoints run beside them (coordinator/store/checkpointer.h).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace kforge::sqlite {

// The kforge Code for a SQLite (extended) result code: constraint violations are
// already_exists / not_found / invalid_argument, a failed write or sync is no_space, BUSY
// is unavailable, and so on.
Code code_of(int rc);

// One use of a cached statement: binds, steps, reads columns; resets and clears the
// bindings when it goes out of scope (bound strings are SQLITE_STATIC, so they must outlive
// the Stmt). A bind error is reported by the next step().
class Stmt {
 public:
  explicit Stmt(sqlite3_stmt* s) : s_(s) {}
  ~Stmt() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, int64_t v) { return note(sqlite3_bind_int64(s_, i, v)); }
  Stmt& bind(int i, int v) { return note(sqlite3_bind_int64(s_, i, v)); }
  Stmt& bind(int i, bool v) { return note(sqlite3_bind_int(s_, i, v ? 1 : 0)); }
  Stmt& bind(int i, double v) { return note(sqlite3_bind_double(s_, i, v)); }
  Stmt& bind(int i, const std::optional<int64_t>& v) {
    return v ? bind(i, *v) : note(sqlite3_bind_null(s_, i));
  }
  Stmt& text(int i, const std::string& v) {
    return note(sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8));
  }
  Stmt& text(int i, const char* v) { return note(sqlite3_bind_text(s_, i, v, -1, SQLITE_STATIC)); }
  // For a temporary: SQLite keeps its own copy.
  Stmt& text_copy(int i, const std::string& v) {
    return note(sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  // v.data() is never null, so an empty string binds an empty BLOB, not NULL.
  Stmt& blob(int i, const std::string& v) {
    return note(sqlite3_bind_blob64(s_, i, v.data(), v.size(), SQLITE_STATIC));
  }

  // SQLITE_ROW, SQLITE_DONE or an error code.
  int step() { return bind_rc_ != SQLITE_OK ? bind_rc_ : sqlite3_step(s_); }
  // Steps past the remaining rows (RETURNING statements finish their work this way).
  int finish() {
    int rc = step();
    while (rc == SQLITE_ROW) rc = sqlite3_step(s_);
    return rc;
  }

  int64_t i64(int c) const { return sqlite3_column_int64(s_, c); }
  int i32(int c) const { return sqlite3_column_int(s_, c); }
  bool flag(int c) const { return sqlite3_column_int(s_, c) != 0; }
  double f64(int c) const { return sqlite3_column_double(s_, c); }
  bool is_null(int c) const { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
  std::optional<int64_t> opt_i64(int c) const {
    return is_null(c) ? std::nullopt : std::optional<int64_t>(i64(c));
  }
  std::string str(int c) const {
    const unsigned char* p = sqlite3_column_text(s_, c);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<size_t>(sqlite3_column_bytes(s_, c)))
             : std::string();
  }
  std::string bytes(int c) const {
    const void* p = sqlite3_column_blob(s_, c);
    return p ? std::string(static_cast<const char*>(p),
                           static_cast<size_t>(sqlite3_column_bytes(s_, c)))
             : std::string();
  }

 private:
  Stmt& note(int rc) {
    if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
    return *this;
  }
  sqlite3_stmt* s_;
  int bind_rc_ = SQLITE_OK;
};

// A prepared statement, finalized on scope exit (null until prepared).
struct Prepared {
  sqlite3_stmt* s = nullptr;
  Prepared() = default;
  ~Prepared() { sqlite3_finalize(s); }
  Prepared(const Prepared&) = delete;
  Prepared& operator=(const Prepared&) = delete;
};

// Makes named operations fail in tests: called with an operation's name before it writes.
using FaultHook = std::function<Status(std::string_view op)>;

// An open database connection.
struct Db {
  sqlite3* db = nullptr;
  std::string path;  // for messages
  bool in_batch = false;
  // Not ok once an error inside the batch took its transaction with it, or a write was
  // refused for lack of space (even when SQLite undid only that statement: a batch is
  // committed whole or not at all); the batch's owner reports it at commit.
  mutable Status batch_error;
  FaultHook fault;  // tests: makes named operations fail (see Tx)
  // Cached by open(), for Tx and the batch.
  sqlite3_stmt* begin = nullptr;  // BEGIN IMMEDIATE
  sqlite3_stmt* commit = nullptr;
  sqlite3_stmt* rollback = nullptr;
  sqlite3_stmt* savepoint = nullptr;  // SAVEPOINT kforge_op
  sqlite3_stmt* release = nullptr;
  sqlite3_stmt* rollback_to = nullptr;

  Db() = default;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  // Rolls back an open transaction and closes the connection. REQUIRES: the owner's own
  // cached statements are finalized.
  ~Db();

  // Opens `path` with sqlite3_open_v2 `flags` (SQLITE_OPEN_NOMUTEX added), with extended
  // result codes, and prepares the transaction statements. REQUIRES: not open.
  Status open(const std::string& file, int flags);

  // "<path>: <op>: <sqlite message>", with a Code derived from the SQLite result code.
  Status error(int rc, std::string_view op) const;
  // Runs a cached statement that returns no rows.
  Status run(sqlite3_stmt* s, std::string_view op);
  // Runs SQL text once (open and migrations only).
  Status exec(const char* sql, std::string_view op);
  // The single value of a one-row query (PRAGMAs at open time).
  Result<std::string> query_text(const char* sql, std::string_view op);
  // Prepares `sql` into `out`, kept for the connection's lifetime (SQLITE_PREPARE_PERSISTENT).
  Status prepare(const char* sql, sqlite3_stmt** out);
  // Switches to WAL mode with synchronous = NORMAL. Returns false for an in-memory database
  // (journal mode "memory", no WAL); an error if the file stays in another journal mode.
  Result<bool> use_wal();
};

// The transaction around one mutation. Outside a batch: BEGIN IMMEDIATE ... COMMIT. Inside
// a batch (or atomically()'s transaction outside one): nothing for a single statement
// (SQLite makes each statement atomic), a savepoint for an operation of several statements
// (`multi`). Rolls back unless committed. With a fault hook set, the hook may refuse the
// operation `op` before anything begins (except "atomically", which only groups others).
class Tx {
 public:
  Tx(Db& d, std::string_view op, bool multi);
  ~Tx() {
    if (!done_) undo();
  }
  Tx(const Tx&) = delete;
  Tx& operator=(const Tx&) = delete;

  const Status& status() const { return status_; }
  Status commit();

 private:
  enum class Kind { none, transaction, savepoint };
  void undo();

  Db& d_;
  std::string_view op_;
  Status status_;
  Kind kind_ = Kind::none;
  bool done_ = false;
};

}  // namespace kforge::sqlite
