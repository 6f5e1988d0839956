// Owning file descriptors: UniqueFd for any descriptor, EventFd for a poll loop's wake-up.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "common/status.h"

namespace kforge {

// Owns a file descriptor; -1 when empty. Closing is the destructor's job.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }  // the caller owns it now
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// A counter another thread bumps to wake a poll loop (eventfd(2), non-blocking, close-on-exec):
// notify() makes fd() readable until the loop drains it. Empty (fd() -1) when default-made.
class EventFd {
 public:
  EventFd() = default;
  // A new eventfd; io_error naming `what` when the kernel gives none (out of descriptors).
  [[nodiscard]] static Result<EventFd> open(const std::string& what) {
    int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) return io_error(what + ": eventfd: " + std::strerror(errno));
    EventFd e;
    e.fd_ = UniqueFd(fd);
    return e;
  }

  int fd() const { return fd_.get(); }
  bool valid() const { return fd_.valid(); }
  // Thread-safe and async-signal-safe. The counter cannot overflow in practice (2^64 - 2
  // notifications between drains); a failed write would leave it readable anyway.
  void notify() const {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(fd_.get(), &one, sizeof one);
  }
  // Resets the counter: fd() is not readable until the next notify().
  void drain() const {
    uint64_t value;
    [[maybe_unused]] ssize_t n = ::read(fd_.get(), &value, sizeof value);
  }

 private:
  UniqueFd fd_;
};

}  // namespace kforge
