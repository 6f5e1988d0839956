#include "common/log.h"

#include <fmt/chrono.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/fs.h"

namespace kforge {
namespace {

// Our level names: spdlog's own say "warning" where the config says "warn".
std::string_view level_name(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace: return "trace";
    case spdlog::level::debug: return "debug";
    case spdlog::level::info: return "info";
    case spdlog::level::warn: return "warn";
    case spdlog::level::err: return "error";
    case spdlog::level::critical: return "critical";
    case spdlog::level::off: return "off";
    case spdlog::level::n_levels: break;
  }
  return "unknown";
}

void append(spdlog::memory_buf_t& dest, std::string_view text) {
  dest.append(text.data(), text.data() + text.size());
}

// The %* flag of the text pattern: the level under our name.
class LevelFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    append(dest, level_name(msg.level));
  }
  std::unique_ptr<spdlog::custom_flag_formatter> clone() const override {
    return std::make_unique<LevelFlag>();
  }
};

// ISO-8601 UTC with milliseconds: 2026-11-25T13:00:00.123Z.
std::string iso_utc_ms(spdlog::log_clock::time_point tp) {
  auto since_epoch = tp.time_since_epoch();
  auto secs = std::chrono::floor<std::chrono::seconds>(since_epoch);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - secs).count();
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z",
                     fmt::gmtime(static_cast<std::time_t>(secs.count())), ms);
}

// One JSON object per line: {"ts", "level", "component", "msg"}. Invalid UTF-8 in a message
// (compiler output, say) is replaced rather than thrown on.
class JsonFormatter : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    nlohmann::ordered_json line;
    line["ts"] = iso_utc_ms(msg.time);
    line["level"] = level_name(msg.level);
    line["component"] = std::string_view(msg.logger_name.data(), msg.logger_name.size());
    line["msg"] = std::string_view(msg.payload.data(), msg.payload.size());
    append(dest, line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    append(dest, "\n");
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

std::unique_ptr<spdlog::formatter> make_formatter(bool json) {
  if (json) return std::make_unique<JsonFormatter>();
  auto text = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  text->add_flag<LevelFlag>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%*%$ %n: %v");
  return text;
}

}  // namespace

Result<spdlog::level::level_enum> parse_log_level(std::string_view name) {
  static constexpr std::array<spdlog::level::level_enum, log_level_names.size()> levels = {
      spdlog::level::trace, spdlog::level::debug, spdlog::level::info,
      spdlog::level::warn,  spdlog::level::err,   spdlog::level::off};
  std::string expected;
  for (size_t i = 0; i < log_level_names.size(); ++i) {
    if (name == log_level_names[i]) return levels[i];
    expected += (i == 0 ? "" : ", ") + std::string(log_level_names[i]);
  }
  return invalid_argument("unknown log level '" + std::string(name) + "' (expected one of " +
                          expected + ")");
}

Status init_logging(const LogConfig& cfg, const std::string& component) {
  Result<spdlog::level::level_enum> level = parse_log_level(cfg.level);
  if (!level.ok()) return level.status();

  std::vector<spdlog::sink_ptr> sinks;
  sinks.push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  if (!cfg.file.empty()) {
    std::filesystem::path path(cfg.file);
    if (path.has_parent_path()) {
      Status made = ensure_dir(path.parent_path());
      if (!made.ok()) return io_error("cannot open log file " + cfg.file + ": " + made.message());
    }
    // spdlog reports a failed open by throwing; this is the edge where that becomes a Status.
    try {
      if (cfg.max_file_mb == 0) {
        sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(cfg.file));
      } else {
        sinks.push_back(std::make_shared<spdlog::sinks::rotating_file_sink_mt>(
            cfg.file, static_cast<size_t>(cfg.max_file_mb) << 20,
            std::max<uint32_t>(cfg.max_files, 1)));
      }
    } catch (const spdlog::spdlog_ex& e) {
      return io_error("cannot open log file " + cfg.file + ": " + e.what());
    }
  }

  auto logger = std::make_shared<spdlog::logger>(component, sinks.begin(), sinks.end());
  logger->set_formatter(make_formatter(cfg.json));
  logger->set_level(*level);
  // Not warn: a flood of warnings would cost a write(2) per line (issue 16, F5).
  logger->flush_on(spdlog::level::err);
  spdlog::set_default_logger(std::move(logger));
  spdlog::flush_every(std::chrono::seconds(1));
  return Status();
}

bool LogThrottle::allow(std::string_view key) {
  auto it = keys_.find(std::string(key));
  if (it == keys_.end()) {
    if (keys_.size() >= options_.max_keys) {
      it = keys_.try_emplace(std::string(kOverflowKey), Window{clock_.now_ms(), 0, 0}).first;
    } else {
      it = keys_.emplace(std::string(key), Window{clock_.now_ms(), 0, 0}).first;
    }
  }
  Window& w = it->second;
  if (totals_start_ms_ < 0) totals_start_ms_ = clock_.now_ms();
  if (w.written < options_.burst && lines_ < options_.max_lines) {
    w.written++;
    lines_++;
    return true;
  }
  w.suppressed++;
  suppressed_total_++;
  return false;
}

void LogThrottle::report(spdlog::level::level_enum level) {
  int64_t now = clock_.now_ms();
  if (now < next_report_ms_ || (keys_.empty() && totals_start_ms_ < 0)) return;
  next_report_ms_ = now + std::max<int64_t>(options_.interval_ms / 10, 1);
  for (auto it = keys_.begin(); it != keys_.end();) {
    Window& w = it->second;
    if (now - w.start_ms < options_.interval_ms) {
      ++it;
      continue;
    }
    if (w.suppressed > 0 && summaries_ < options_.max_summaries) {
      summaries_++;
      spdlog::log(level, "{} more like this from {} in the last {} s", w.suppressed, it->first,
                  (now - w.start_ms) / 1000);
    } else if (w.suppressed > 0) {
      other_suppressed_ += w.suppressed;
      other_keys_++;
    }
    if (w.written == 0 && w.suppressed == 0) {
      it = keys_.erase(it);  // quiet for a whole window
      continue;
    }
    w = Window{now, 0, 0};
    ++it;
  }
  if (totals_start_ms_ >= 0 && now - totals_start_ms_ >= options_.interval_ms) {
    if (other_keys_ > 0) {
      spdlog::log(level, "{} more like this from {} other peers in the last {} s",
                  other_suppressed_, other_keys_, (now - totals_start_ms_) / 1000);
    }
    totals_start_ms_ = keys_.empty() ? -1 : now;
    lines_ = summaries_ = 0;
    other_suppressed_ = other_keys_ = 0;
  }
}

}  // namespace kforge
