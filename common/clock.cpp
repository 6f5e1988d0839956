#include "common/clock.h"

namespace kforge {

int64_t SystemClock::now_ms() const {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

int64_t SystemClock::wall_ms() const {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

SystemClock& SystemClock::instance() {
  static SystemClock clock;
  return clock;
}

int64_t ManualClock::now_ms() const {
  std::lock_guard lock(mu_);
  return now_;
}

int64_t ManualClock::wall_ms() const {
  std::lock_guard lock(mu_);
  return now_ + wall_offset_;
}

void ManualClock::advance(Millis by) {
  std::lock_guard lock(mu_);
  now_ += by.count();
}

}  // namespace kforge
