// Logging setup: spdlog's default logger, configured from a LogConfig.
//
// Code logs through spdlog's free functions (spdlog::info(...)). Text lines look like
//   2026-11-25T13:00:00.123Z info coordinator: agent registered agent=3f2a...
// and with json = true each line is one object
//   {"ts":"2026-11-25T13:00:00.123Z","level":"info","component":"coordinator","msg":"..."}
// Timestamps are UTC with milliseconds. Lines at error and above are flushed at once, the
// rest at least once a second (a flood of warnings must not cost a write(2) each). With
// cfg.file set the file is rotated at cfg.max_file_mb, keeping cfg.max_files old ones.
//
// Warnings a remote peer can cause at will (malformed frames, refused hellos) go through a
// LogThrottle, so that clients cannot fill the disk: a few lines per peer and interval, then
// one "N more like this" line, and a cap on the lines of all peers together.
#pragma once

#include <spdlog/common.h>

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/clock.h"
#include "common/config.h"
#include "common/status.h"

namespace kforge {

// The accepted values of LogConfig::level, least to most severe.
inline constexpr std::array<std::string_view, 6> log_level_names = {"trace", "debug", "info",
                                                                    "warn",  "error", "off"};

// Maps a name from log_level_names to spdlog's level; invalid_argument otherwise.
Result<spdlog::level::level_enum> parse_log_level(std::string_view name);

// Replaces spdlog's default logger with one named `component` writing to stderr (coloured
// when it is a terminal) and, when cfg.file is set, appending to that file (parent
// directories are created). On error the previous default logger stays in place.
Status init_logging(const LogConfig& cfg, const std::string& component);

struct LogThrottleOptions {
  int64_t interval_ms = 10'000;  // each key's window, and the window of the totals below
  uint32_t burst = 5;            // lines per key and window written as they come
  size_t max_keys = 256;         // keys tracked at once; beyond them one shared key counts all
  uint32_t max_lines = 25;       // lines per window over all keys; beyond them, counted
  uint32_t max_summaries = 10;   // "N more like this from KEY" lines per window; beyond, one line
};

// Rate limit for log lines keyed by their source (a peer's routing id, an agent id):
// allow() lets `burst` lines per key through in each window, and max_lines over all keys,
// and counts the rest; report() writes "N more like this from KEY" once per window for each
// key that had some (for max_summaries keys a window; the others' counts share one "N more
// like this from K other peers" line), and forgets keys that were quiet for a whole window.
// At most max_lines + max_summaries + 1 lines a window, however many peers flood (300
// flooding clients wrote 2 MB a minute with a cap per peer only). Memory is bounded by
// max_keys: the keys of a flood from many peers (a routing id per connection) share one
// overflow key. Not thread-safe: one per thread (the coordinator's loop owns one).
class LogThrottle {
 public:
  explicit LogThrottle(Clock& clock, LogThrottleOptions options = {})
      : clock_(clock), options_(options) {}

  // True when a line for `key` may be written now; false counts it as suppressed.
  [[nodiscard]] bool allow(std::string_view key);
  // For every key whose window ended: writes "<N> more like this from <key> in the last
  // <s> s" at `level` if lines were suppressed, then starts a new window or forgets the
  // key; when the totals' window ended, writes the other peers' line and starts the next.
  // Call it often (every loop turn is fine: it is cheap when nothing is due).
  void report(spdlog::level::level_enum level = spdlog::level::warn);

  size_t keys() const { return keys_.size(); }               // for tests: bounded by max_keys + 1
  uint64_t suppressed() const { return suppressed_total_; }  // since construction

  // The key shared by sources beyond max_keys.
  static constexpr std::string_view kOverflowKey = "(other peers)";

 private:
  struct Window {
    int64_t start_ms = 0;
    uint32_t written = 0;
    uint64_t suppressed = 0;
  };
  Clock& clock_;
  LogThrottleOptions options_;
  std::unordered_map<std::string, Window> keys_;
  int64_t next_report_ms_ = 0;
  uint64_t suppressed_total_ = 0;
  // The window over all keys: lines and summaries written in it, and the counts of the
  // keys whose summaries did not fit.
  int64_t totals_start_ms_ = -1;
  uint32_t lines_ = 0;
  uint32_t summaries_ = 0;
  uint64_t other_suppressed_ = 0;
  uint64_t other_keys_ = 0;
};

}  // namespace kforge
