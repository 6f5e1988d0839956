#include "common/flags.h"

#include <charconv>

namespace kforge {

std::optional<std::string> ParsedFlags::get(const std::string& name) const {
  auto it = values.find(name);
  if (it == values.end()) return std::nullopt;
  return it->second;
}

Result<ParsedFlags> parse_flags(int argc, char** argv, int first, const std::vector<FlagSpec>& specs,
                                const std::string& program) {
  ParsedFlags out;
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0 || arg == "--") {
      out.positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const FlagSpec* spec = nullptr;
    for (const auto& s : specs) {
      if (s.name == name) spec = &s;
    }
    if (spec == nullptr) {
      return invalid_argument(program + ": unknown flag '--" + name + "'; run `" + program +
                              " --help` for the list");
    }
    if (spec->takes_value && !value) {
      if (i + 1 >= argc) return invalid_argument(program + ": flag '--" + name + "' needs a value");
      value = argv[++i];
    }
    if (!spec->takes_value && value) {
      return invalid_argument(program + ": flag '--" + name + "' takes no value");
    }
    out.values[name] = value.value_or("true");
  }
  for (const auto& s : specs) {
    if (!s.default_value.empty()) out.values.emplace(s.name, s.default_value);
  }
  return out;
}

std::string flags_help(const std::vector<FlagSpec>& specs) {
  std::string out;
  for (const auto& s : specs) {
    std::string left = "  --" + s.name + (s.takes_value ? " VALUE" : "");
    if (left.size() < 28) left.resize(28, ' ');
    out += left + " " + s.help + (s.default_value.empty() ? "" : " (default " + s.default_value + ")") + "\n";
  }
  return out;
}

Result<uint64_t> parse_uint_flag(const std::string& name, const std::string& value) {
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || ptr != value.data() + value.size()) {
    return invalid_argument("flag '--" + name + "': expected a non-negative integer, got '" + value + "'");
  }
  return v;
}

}  // namespace kforge
