// Small text helpers shared by messages and generated files.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kforge {

// "a, b, c" (or with another separator).
std::string join(const std::vector<std::string>& items, std::string_view sep = ", ");

}  // namespace kforge
