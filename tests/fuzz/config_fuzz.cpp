// The config parser (common/config.h): any text gives a Config or an error that names the
// file; it never throws or crashes.
#include <cstdint>
#include <string_view>

#include "common/config.h"
#include "tests/fuzz/fuzz.h"

using namespace kforge;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = parse_config(text, "fuzz.toml");
  if (!config.ok() && config.status().message().find("fuzz.toml") == std::string::npos) {
    fuzz::fuzz_fail("a config error that does not name the file: " + config.status().message());
  }
  return 0;
}
