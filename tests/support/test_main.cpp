// The test executables' main: doctest, with kforge's logging quiet unless KFORGE_TEST_LOG
// names a level (e.g. KFORGE_TEST_LOG=debug ./build/tests/cluster_test).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

int main(int argc, char** argv) {
  const char* level = std::getenv("KFORGE_TEST_LOG");
  spdlog::set_level(level ? spdlog::level::from_str(level) : spdlog::level::err);
  doctest::Context context(argc, argv);
  return context.run();
}
