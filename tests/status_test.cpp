#include "common/status.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <filesystem>

#include "common/clock.h"
#include "common/fs.h"
#include "tests/support/support.h"

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

TEST_CASE(
    "atomic_write_file replaces the file whole, with its mode even over a leftover temp file") {
  test::TempDir dir;
  const std::filesystem::path file = dir.path() / "id";
  REQUIRE(atomic_write_file(file, "old").ok());
  std::filesystem::path leftover = file;  // a write that crashed before its rename
  leftover += ".tmp";
  REQUIRE(atomic_write_file(leftover, "partial").ok());
  REQUIRE(::chmod(leftover.c_str(), 0666) == 0);
  REQUIRE(atomic_write_file(file, "new\n", 0600).ok());
  CHECK(read_file(file).value() == "new\n");
  struct stat st {};
  REQUIRE(::stat(file.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK_FALSE(std::filesystem::exists(leftover));
}

TEST_CASE("atomic_write_file into a missing directory is an error naming the temp file") {
  test::TempDir dir;
  Status st = atomic_write_file(dir.path() / "missing" / "f", "x");
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find("cannot create") != std::string::npos);
  CHECK(st.message().find("f.tmp") != std::string::npos);
}

TEST_CASE("ensure_private_file creates the file 0600 and takes other users' access away") {
  test::TempDir dir;
  const std::filesystem::path file = dir.path() / "outbox.db";
  REQUIRE(ensure_private_file(file).ok());
  struct stat st {};
  REQUIRE(::stat(file.c_str(), &st) == 0);
  CHECK((st.st_mode & 077) == 0);
  REQUIRE(::chmod(file.c_str(), 0644) == 0);
  REQUIRE(ensure_private_file(file).ok());
  REQUIRE(::stat(file.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
}
