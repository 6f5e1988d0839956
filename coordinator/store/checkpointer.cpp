#include "coordinator/store/checkpointer.h"

namespace kforge {

Result<std::unique_ptr<Checkpointer>> Checkpointer::start(sqlite::Db& writer) {
  std::unique_ptr<Checkpointer> c(new Checkpointer(writer.db));
  int rc = sqlite3_open_v2(writer.path.c_str(), &c->db_,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc == SQLITE_OK) {
    rc = sqlite3_exec(c->db_, "PRAGMA synchronous = NORMAL", nullptr, nullptr, nullptr);
  }
  if (rc != SQLITE_OK) return writer.error(rc, "open the checkpoint connection");
  c->thread_ = std::thread([p = c.get()] { p->loop(); });
  sqlite3_wal_hook(writer.db, &Checkpointer::on_commit, c.get());
  return c;
}

Checkpointer::~Checkpointer() {
  sqlite3_wal_hook(writer_, nullptr, nullptr);
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  sqlite3_close_v2(db_);
}

int Checkpointer::on_commit(void* arg, sqlite3* db, const char* name, int wal_pages) {
  auto* self = static_cast<Checkpointer*>(arg);
  if (wal_pages < kRestartPages) {
    self->restart_requested_ = false;
    if (wal_pages >= kCheckpointPages) self->request(false);
  } else if (!self->restart_requested_) {
    self->restart_requested_ = true;
    self->caught_up_ = false;
    self->request(true);
  } else if (self->caught_up_.exchange(false)) {
    // A failure (SQLITE_BUSY: another process checkpointing) asks again next commit.
    (void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    self->restart_requested_ = false;
  }
  return SQLITE_OK;
}

void Checkpointer::request(bool now) {
  {
    std::lock_guard lock(mu_);
    if (pending_ && (now_ || !now)) return;
    pending_ = true;
    now_ = now_ || now;
  }
  cv_.notify_one();
}

void Checkpointer::loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return pending_ || stop_; });
    // Each checkpoint costs fsyncs however little it copies: at most one per kMinInterval
    // unless the writer waits for one.
    cv_.wait_until(lock, last_ + kMinInterval, [this] { return stop_ || now_; });
    if (stop_) return;
    bool now = now_;
    pending_ = now_ = false;
    lock.unlock();
    // An error (I/O) leaves the WAL as it is for the next attempt; the writer reports
    // lasting I/O errors itself.
    if (sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr) ==
        SQLITE_OK) {
      // Keep the database file clean, so that the checkpoint that completes the WAL (the
      // writer's, above) has little left to sync.
      sqlite3_file* file = nullptr;
      if (sqlite3_file_control(db_, "main", SQLITE_FCNTL_FILE_POINTER, &file) == SQLITE_OK &&
          file != nullptr && file->pMethods != nullptr) {
        (void)file->pMethods->xSync(file, SQLITE_SYNC_NORMAL);
      }
    }
    last_ = std::chrono::steady_clock::now();
    if (now) caught_up_ = true;
    lock.lock();
  }
}

}  // namespace kforge
