#include "coordinator/store/reserve.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kforge {

bool SpaceReserve::held() const {
  if (bytes_ == 0) return true;
  struct stat st {};
  return ::stat(file_.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_blocks) * 512 >= bytes_;
}

Status SpaceReserve::hold() {
  if (held()) return Status();
  int fd = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    return Status(e == ENOSPC || e == EDQUOT ? Code::no_space : Code::io_error,
                  file_.string() + ": create the space reserve: " + std::strerror(e));
  }
  int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes_));
  if (rc == 0) rc = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  if (rc != 0) {
    ::unlink(file_.c_str());
    return Status(rc == ENOSPC || rc == EDQUOT ? Code::no_space : Code::io_error,
                  file_.string() + ": allocate " + std::to_string(bytes_) +
                      " bytes of reserve: " + std::strerror(rc));
  }
  return Status();
}

void SpaceReserve::release() {
  if (bytes_ != 0) ::unlink(file_.c_str());
}

bool SpaceReserve::room_to_hold() const {
  if (bytes_ == 0) return true;
  struct statvfs vfs {};
  if (::statvfs(file_.parent_path().c_str(), &vfs) != 0) return false;
  uint64_t free = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  return free >= 2 * bytes_;
}

}  // namespace kforge
