#include "coordinator/store/fault_vfs.h"

#include <sqlite3.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <string>

namespace kforge {
namespace {

struct Faults {
  std::mutex mu;
  std::string dir;  // faulted files start with this path; "" = none
  std::atomic<bool> limited{false};
  std::atomic<uint64_t> budget{0};  // bytes still accepted while limited
  std::atomic<uint64_t> refused{0};
};

Faults& faults() {
  static Faults f;
  return f;
}

sqlite3_vfs* g_base = nullptr;
sqlite3_vfs g_vfs;

// A file of the fault VFS: this header, then the base VFS's file.
struct FaultFile {
  sqlite3_file base;
  sqlite3_file* real;
  const char* name;  // valid until xClose (SQLite's promise); null for temporary files
};

sqlite3_file* real(sqlite3_file* f) {
  return reinterpret_cast<FaultFile*>(f)->real;
}

// True when a write of `amount` bytes to `f` may go ahead.
bool take(sqlite3_file* f, int amount) {
  auto* file = reinterpret_cast<FaultFile*>(f);
  Faults& fl = faults();
  if (!fl.limited || file->name == nullptr) return true;
  {
    std::lock_guard lock(fl.mu);
    if (std::strncmp(file->name, fl.dir.c_str(), fl.dir.size()) != 0) return true;
  }
  uint64_t want = static_cast<uint64_t>(amount);
  uint64_t left = fl.budget.load();
  while (left >= want) {
    if (fl.budget.compare_exchange_weak(left, left - want)) return true;
  }
  fl.refused++;
  return false;
}

int x_close(sqlite3_file* f) {
  sqlite3_file* r = real(f);
  int rc = r->pMethods ? r->pMethods->xClose(r) : SQLITE_OK;
  f->pMethods = nullptr;
  return rc;
}
int x_read(sqlite3_file* f, void* buf, int n, sqlite3_int64 off) {
  return real(f)->pMethods->xRead(real(f), buf, n, off);
}
int x_write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 off) {
  if (!take(f, n)) return SQLITE_FULL;
  return real(f)->pMethods->xWrite(real(f), buf, n, off);
}
int x_truncate(sqlite3_file* f, sqlite3_int64 size) {
  return real(f)->pMethods->xTruncate(real(f), size);
}
int x_sync(sqlite3_file* f, int flags) {
  return real(f)->pMethods->xSync(real(f), flags);
}
int x_file_size(sqlite3_file* f, sqlite3_int64* size) {
  return real(f)->pMethods->xFileSize(real(f), size);
}
int x_lock(sqlite3_file* f, int lock) {
  return real(f)->pMethods->xLock(real(f), lock);
}
int x_unlock(sqlite3_file* f, int lock) {
  return real(f)->pMethods->xUnlock(real(f), lock);
}
int x_check_reserved(sqlite3_file* f, int* out) {
  return real(f)->pMethods->xCheckReservedLock(real(f), out);
}
int x_file_control(sqlite3_file* f, int op, void* arg) {
  // The checkpointer asks for the file to sync it: hand out the base VFS's, which works alone.
  if (op == SQLITE_FCNTL_FILE_POINTER) {
    *static_cast<sqlite3_file**>(arg) = f;
    return SQLITE_OK;
  }
  return real(f)->pMethods->xFileControl(real(f), op, arg);
}
int x_sector_size(sqlite3_file* f) {
  return real(f)->pMethods->xSectorSize(real(f));
}
int x_device_characteristics(sqlite3_file* f) {
  return real(f)->pMethods->xDeviceCharacteristics(real(f));
}
int x_shm_map(sqlite3_file* f, int region, int size, int extend, void volatile** out) {
  return real(f)->pMethods->xShmMap(real(f), region, size, extend, out);
}
int x_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  return real(f)->pMethods->xShmLock(real(f), offset, n, flags);
}
void x_shm_barrier(sqlite3_file* f) {
  real(f)->pMethods->xShmBarrier(real(f));
}
int x_shm_unmap(sqlite3_file* f, int del) {
  return real(f)->pMethods->xShmUnmap(real(f), del);
}
int x_fetch(sqlite3_file* f, sqlite3_int64 off, int n, void** out) {
  return real(f)->pMethods->xFetch(real(f), off, n, out);
}
int x_unfetch(sqlite3_file* f, sqlite3_int64 off, void* p) {
  return real(f)->pMethods->xUnfetch(real(f), off, p);
}

// Version 3 methods, each forwarding to the base file's (whose methods are version 3 on Unix).
const sqlite3_io_methods kMethods = {3,
                                     x_close,
                                     x_read,
                                     x_write,
                                     x_truncate,
                                     x_sync,
                                     x_file_size,
                                     x_lock,
                                     x_unlock,
                                     x_check_reserved,
                                     x_file_control,
                                     x_sector_size,
                                     x_device_characteristics,
                                     x_shm_map,
                                     x_shm_lock,
                                     x_shm_barrier,
                                     x_shm_unmap,
                                     x_fetch,
                                     x_unfetch};

int x_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  auto* file = reinterpret_cast<FaultFile*>(f);
  file->real = reinterpret_cast<sqlite3_file*>(file + 1);
  file->name = name;
  int rc = g_base->xOpen(g_base, name, file->real, flags, out_flags);
  f->pMethods = file->real->pMethods ? &kMethods : nullptr;
  return rc;
}

}  // namespace

StorageFaults& StorageFaults::install() {
  static StorageFaults* instance = [] {
    g_base = sqlite3_vfs_find(nullptr);
    g_vfs = *g_base;
    g_vfs.zName = "kforge-faults";
    g_vfs.szOsFile = static_cast<int>(sizeof(FaultFile)) + g_base->szOsFile;
    g_vfs.xOpen = x_open;
    g_vfs.pNext = nullptr;
    sqlite3_vfs_register(&g_vfs, /*makeDflt=*/1);
    return new StorageFaults();
  }();
  return *instance;
}

void StorageFaults::limit_writes(const std::filesystem::path& dir, uint64_t bytes) {
  Faults& fl = faults();
  std::lock_guard lock(fl.mu);
  fl.dir = std::filesystem::absolute(dir).lexically_normal().string();
  fl.budget = bytes;
  fl.limited = true;
}

void StorageFaults::clear() {
  faults().limited = false;
}

uint64_t StorageFaults::refused_writes() const {
  return faults().refused;
}

}  // namespace kforge
