#include "common/status.h"

#include <doctest/doctest.h>

#include "common/clock.h"

using namespace kforge;

TEST_CASE("result holds a value or an error") {
  Result<int> good = 42;
  CHECK(good.ok());
  CHECK(*good == 42);
  Result<int> bad = invalid_argument("campaign.toml:3:1: key 'x': expected an integer");
  CHECK_FALSE(bad.ok());
  CHECK(bad.status().code() == Code::invalid_argument);
  CHECK(bad.status().to_string() ==
        "invalid_argument: campaign.toml:3:1: key 'x': expected an integer");
}

TEST_CASE("manual clock moves only when advanced") {
  ManualClock clock;
  int64_t t0 = clock.now_ms();
  int64_t w0 = clock.wall_ms();
  CHECK(clock.now_ms() == t0);
  clock.advance(Millis(1500));
  CHECK(clock.now_ms() == t0 + 1500);
  CHECK(clock.wall_ms() == w0 + 1500);
}
