// Time behind a small interface so tests can advance it instead of sleeping.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

namespace kforge {

using Millis = std::chrono::milliseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic milliseconds since an arbitrary origin; for deadlines and timeouts.
  virtual int64_t now_ms() const = 0;
  // Milliseconds since the Unix epoch; for timestamps stored or shown to people.
  virtual int64_t wall_ms() const = 0;
};

// The real clock.
class SystemClock final : public Clock {
 public:
  int64_t now_ms() const override;
  int64_t wall_ms() const override;
  // A process-wide instance.
  static SystemClock& instance();
};

// A clock that moves only when told to. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_ms = 1'000'000, int64_t wall_start_ms = 1'767'225'600'000)
      : now_(start_ms), wall_offset_(wall_start_ms - start_ms) {}
  int64_t now_ms() const override;
  int64_t wall_ms() const override;
  void advance(Millis by);

 private:
  mutable std::mutex mu_;
  int64_t now_;
  int64_t wall_offset_;
};

}  // namespace kforge
