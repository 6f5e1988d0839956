// Command-line flags for kforge's executables, parsed by CLI11 from a table of FlagSpecs:
// `--name value` or `--name=value`, and boolean switches. Unknown flags and missing values are
// errors that say what to do; the help lists the table.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace kforge {

struct FlagSpec {
  std::string name;                // without the leading dashes; "help" is CLI11's -h,--help
  bool takes_value;                // false: a switch
  std::string help;                // one line
  std::string default_value = {};  // the value of an absent flag ("": none); help shows it
};

struct ParsedFlags {
  std::map<std::string, std::string> values;  // switches map to "true"
  std::vector<std::string> positional;
  bool has(const std::string& name) const { return values.count(name) > 0; }
  std::optional<std::string> get(const std::string& name) const;
};

// Parses argv[first..argc). `program` names the command in error messages. A flag given twice
// takes its last value.
Result<ParsedFlags> parse_flags(int argc, char** argv, int first,
                                const std::vector<FlagSpec>& specs, const std::string& program);

// The help: `heading` (e.g. "usage: kforge-agent [options]"), then a line per flag.
std::string flags_help(const std::vector<FlagSpec>& specs, const std::string& heading);

// Parses an unsigned integer flag value; the error names the flag.
Result<uint64_t> parse_uint_flag(const std::string& name, const std::string& value);

}  // namespace kforge
