// Small text helpers shared by messages and generated files.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace kforge {

// "a, b, c" (or with another separator).
std::string join(const std::vector<std::string>& items, std::string_view sep = ", ");

// A span of time for people: "42.0 s", "12 min 40 s", "3 h 05 min", "2 d 04 h" (reports,
// `kforge progress`).
std::string duration_str(double seconds);

// JSON from others (request bodies, verdict documents, model output) is parsed only when it
// nests at most this deep: nlohmann's copy and dump recurse once per level, and a document
// of a hundred thousand '[' overflows the stack.
inline constexpr int kMaxJsonDepth = 64;

// invalid_argument "JSON nested deeper than N levels" when `text` nests arrays and objects
// deeper than `max_depth`, found by a scan (strings skipped), before any parse; OK otherwise,
// whether or not the text is valid JSON.
Status check_json_depth(std::string_view text, int max_depth = kMaxJsonDepth);

}  // namespace kforge
