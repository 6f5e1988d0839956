#include "common/flags.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>

namespace kforge {
namespace {

// CLI11's help with kforge's heading in place of its "Usage:" line.
class HeadingFormatter : public CLI::Formatter {
 public:
  explicit HeadingFormatter(std::string heading) : heading_(std::move(heading)) {}
  std::string make_usage(const CLI::App*, std::string) const override { return heading_ + "\n"; }

 private:
  std::string heading_;
};

// One CLI11 option per spec; positional arguments land in `positional`, unknown flags in
// app.remaining() (reported by parse_flags, naming the flag).
void add_specs(CLI::App& app, const std::vector<FlagSpec>& specs,
               std::vector<std::string>& positional) {
  app.allow_extras();
  app.set_help_flag();
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  for (const auto& s : specs) {
    std::string help =
        s.help + (s.default_value.empty() ? "" : " (default " + s.default_value + ")");
    if (s.name == "help") {
      app.set_help_flag("-h,--help", help);
    } else if (s.takes_value) {
      app.add_option("--" + s.name)->description(help)->type_name("VALUE");
    } else {
      app.add_flag("--" + s.name)->description(help)->disable_flag_override();
    }
  }
  app.add_option("arguments", positional)->group("");  // hidden: the usage line names them
}

}  // namespace

std::optional<std::string> ParsedFlags::get(const std::string& name) const {
  auto it = values.find(name);
  if (it == values.end()) return std::nullopt;
  return it->second;
}

Result<ParsedFlags> parse_flags(int argc, char** argv, int first,
                                const std::vector<FlagSpec>& specs, const std::string& program) {
  ParsedFlags out;
  CLI::App app;
  add_specs(app, specs, out.positional);
  const std::string hint = "; run `" + program + " --help` for the list";
  std::vector<std::string> args(argv + first, argv + argc);
  std::reverse(args.begin(), args.end());  // CLI11 takes them last first
  try {
    app.parse(args);
  } catch (const CLI::CallForHelp&) {
    out.values["help"] = "true";
    return out;
  } catch (const CLI::ParseError& e) {
    // CLI11 says "--timeout: 1 required VALUE missing"; say what the value is for.
    std::string message = e.what();
    for (const auto& s : specs) {
      if (message.rfind("--" + s.name + ": ", 0) == 0 && s.takes_value) {
        return invalid_argument(program + ": flag '--" + s.name + "' needs a value" +
                                (s.help.empty() ? "" : ": " + s.help));
      }
      if (message.rfind(s.name + " was given a disallowed flag override", 0) == 0) {
        return invalid_argument(program + ": flag '--" + s.name + "' takes no value");
      }
    }
    return invalid_argument(program + ": " + message + hint);
  }
  for (const std::string& extra : app.remaining()) {
    if (extra.size() > 1 && extra[0] == '-') {
      return invalid_argument(program + ": unknown flag '" + extra.substr(0, extra.find('=')) +
                              "'" + hint);
    }
  }
  for (const auto& s : specs) {
    if (s.name == "help") continue;
    const CLI::Option* opt = app.get_option("--" + s.name);
    if (opt->count() > 0) {
      out.values[s.name] = s.takes_value ? opt->results().back() : "true";
    } else if (!s.default_value.empty()) {
      out.values[s.name] = s.default_value;
    }
  }
  return out;
}

std::string flags_help(const std::vector<FlagSpec>& specs, const std::string& heading) {
  std::vector<std::string> positional;
  CLI::App app;
  add_specs(app, specs, positional);
  app.formatter(std::make_shared<HeadingFormatter>(heading));
  std::string help = app.help();
  while (help.size() > 1 && help.ends_with("\n\n")) help.pop_back();
  return help;
}

Result<uint64_t> parse_uint_flag(const std::string& name, const std::string& value) {
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || ptr != value.data() + value.size()) {
    return invalid_argument("flag '--" + name + "': expected a non-negative integer, got '" +
                            value + "'");
  }
  return v;
}

}  // namespace kforge
