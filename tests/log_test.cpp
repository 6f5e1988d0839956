#include "common/log.h"

#include <doctest/doctest.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/support.h"

using namespace kforge;

namespace {

// Puts a console-only logger back after each test, so that no test writes into another's
// (deleted) temporary directory.
struct LogFixture {
  test::TempDir dir;
  ~LogFixture() { (void)init_logging(LogConfig{}, "test"); }

  // Flushes the default logger and returns the file's lines.
  std::vector<std::string> lines_of(const std::filesystem::path& path) {
    spdlog::default_logger()->flush();
    std::istringstream in(test::read_file(path));
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }
};

}  // namespace

TEST_CASE("log level names parse") {
  CHECK(*parse_log_level("trace") == spdlog::level::trace);
  CHECK(*parse_log_level("warn") == spdlog::level::warn);
  CHECK(*parse_log_level("error") == spdlog::level::err);
  CHECK(*parse_log_level("off") == spdlog::level::off);
  Result<spdlog::level::level_enum> bad = parse_log_level("loud");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == Code::invalid_argument);
  CHECK(bad.status().message().find("'loud'") != std::string::npos);
}

TEST_CASE_FIXTURE(LogFixture, "invalid level is rejected") {
  LogConfig cfg;
  cfg.level = "loud";
  CHECK_FALSE(init_logging(cfg, "coordinator").ok());
}

TEST_CASE_FIXTURE(LogFixture, "log file gets lines at and above the level only") {
  LogConfig cfg;
  cfg.level = "warn";
  cfg.file = (dir / "logs" / "nested" / "coordinator.log").string();
  REQUIRE(init_logging(cfg, "coordinator").ok());
  spdlog::info("below the level");
  spdlog::warn("agent lost agent={}", "a1");
  spdlog::error("store failed");
  std::vector<std::string> lines = lines_of(cfg.file);
  REQUIRE(lines.size() == 2);
  std::regex text(
      R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z warn coordinator: agent lost agent=a1)");
  CHECK(std::regex_match(lines[0], text));
  CHECK(lines[1].ends_with(" error coordinator: store failed"));
}

TEST_CASE_FIXTURE(LogFixture, "json lines carry the escaped message") {
  LogConfig cfg;
  cfg.level = "debug";
  cfg.json = true;
  cfg.file = (dir / "agent.log").string();
  REQUIRE(init_logging(cfg, "agent").ok());
  spdlog::trace("not written");
  spdlog::debug("said \"hi\"\nthen\tleft \\ {}", 7);
  std::vector<std::string> lines = lines_of(cfg.file);
  REQUIRE(lines.size() == 1);
  nlohmann::json line = nlohmann::json::parse(lines[0]);
  CHECK(line["msg"] == "said \"hi\"\nthen\tleft \\ 7");
  CHECK(line["level"] == "debug");
  CHECK(line["component"] == "agent");
  CHECK(std::regex_match(line["ts"].get<std::string>(),
                         std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
  CHECK(lines[0].starts_with("{\"ts\":"));
}

TEST_CASE_FIXTURE(LogFixture, "log file whose directory cannot be created is an error") {
  test::write_file(dir / "blocker", "a file where a directory should be");
  LogConfig cfg;
  cfg.file = (dir / "blocker" / "sub" / "kforge.log").string();
  Status st = init_logging(cfg, "coordinator");
  REQUIRE_FALSE(st.ok());
  CHECK(st.code() == Code::io_error);
  CHECK(st.message().find(cfg.file) != std::string::npos);
}

TEST_CASE_FIXTURE(LogFixture, "log file that cannot be opened is an error") {
  LogConfig cfg;
  cfg.file = dir.path().string();  // a directory
  Status st = init_logging(cfg, "coordinator");
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find(cfg.file) != std::string::npos);
}

TEST_CASE_FIXTURE(LogFixture, "log file is rotated at max_file_mb and keeps max_files") {
  LogConfig cfg;
  cfg.file = (dir / "coordinator.log").string();
  cfg.max_file_mb = 1;
  cfg.max_files = 2;
  REQUIRE(init_logging(cfg, "coordinator").ok());
  const std::string filler(1000, 'x');
  for (int i = 0; i < 5000; ++i) spdlog::info("line {} {}", i, filler);  // ~5 MB
  spdlog::default_logger()->flush();
  CHECK(std::filesystem::file_size(dir / "coordinator.log") <= (1u << 20));
  CHECK(std::filesystem::exists(dir / "coordinator.1.log"));
  CHECK(std::filesystem::exists(dir / "coordinator.2.log"));
  CHECK_FALSE(std::filesystem::exists(dir / "coordinator.3.log"));
}

TEST_CASE("log throttle writes a burst per key, then counts") {
  ManualClock clock;
  LogThrottle throttle(clock, {.interval_ms = 10'000, .burst = 3, .max_keys = 8});
  int written = 0;
  for (int i = 0; i < 100; ++i) written += throttle.allow("peer-a") ? 1 : 0;
  CHECK(written == 3);
  CHECK(throttle.allow("peer-b"));  // keys are independent
  CHECK(throttle.suppressed() == 97);
  CHECK(throttle.keys() == 2);
}

TEST_CASE_FIXTURE(LogFixture, "log throttle reports what it suppressed once per window") {
  LogConfig cfg;
  cfg.file = (dir / "throttle.log").string();
  REQUIRE(init_logging(cfg, "coordinator").ok());
  ManualClock clock;
  LogThrottle throttle(clock, {.interval_ms = 10'000, .burst = 2, .max_keys = 8});
  for (int i = 0; i < 50; ++i) (void)throttle.allow("peer-a");
  throttle.report();  // the window is not over: nothing yet
  CHECK(lines_of(dir / "throttle.log").empty());
  clock.advance(std::chrono::seconds(10));
  throttle.report();
  throttle.report();  // once per window
  auto lines = lines_of(dir / "throttle.log");
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("48 more like this from peer-a in the last 10 s") != std::string::npos);
  // A new window lets a burst through again; a key quiet for a whole window is forgotten.
  CHECK(throttle.allow("peer-a"));
  clock.advance(std::chrono::seconds(10));
  throttle.report();
  CHECK(throttle.keys() == 1);
  clock.advance(std::chrono::seconds(10));
  throttle.report();
  CHECK(throttle.keys() == 0);
  CHECK(lines_of(dir / "throttle.log").size() == 1);
}

TEST_CASE("log throttle tracks at most max_keys peers, the rest share one key") {
  ManualClock clock;
  LogThrottle throttle(clock, {.interval_ms = 10'000, .burst = 1, .max_keys = 16});
  int written = 0;
  for (int i = 0; i < 10'000; ++i) written += throttle.allow("peer-" + std::to_string(i)) ? 1 : 0;
  CHECK(throttle.keys() == 17);
  CHECK(written == 17);  // one per tracked peer, one for all the others together
}

TEST_CASE_FIXTURE(LogFixture,
                  "log throttle caps the lines of all peers together, summaries included") {
  // Issue 16: 300 clients flooding malformed frames wrote 2 MB of log a minute, 5 lines and
  // a summary for each of 256 peers every 10 s.
  LogConfig cfg;
  cfg.file = (dir / "throttle.log").string();
  REQUIRE(init_logging(cfg, "coordinator").ok());
  ManualClock clock;
  LogThrottleOptions options{
      .interval_ms = 10'000, .burst = 5, .max_keys = 256, .max_lines = 25, .max_summaries = 10};
  LogThrottle throttle(clock, options);
  for (int window = 0; window < 3; ++window) {
    int written = 0;
    for (int i = 0; i < 300 * 20; ++i) {
      if (throttle.allow("flood-" + std::to_string(i % 300))) {
        spdlog::warn("malformed frame");
        written++;
      }
    }
    CHECK(written == 25);
    clock.advance(std::chrono::seconds(10));
    throttle.report();
  }
  auto lines = lines_of(dir / "throttle.log");
  CHECK(lines.size() <= 3 * (25 + 10 + 1));
  size_t others = 0;
  for (const auto& l : lines)
    others += l.find("other peers in the last 10 s") != std::string::npos ? 1 : 0;
  CHECK(others == 3);  // the peers beyond the 10 summaries, counted on one line a window
  CHECK(throttle.keys() <= 257);
}
