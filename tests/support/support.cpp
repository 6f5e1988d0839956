#include "tests/support/support.h"

#include <stdlib.h>

#include <fstream>
#include <stdexcept>

#include "common/fs.h"

namespace kforge::test {

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "kforge-test-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds deadline) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

void write_file(const std::filesystem::path& path, const std::string& content) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << content;
}

std::string read_file(const std::filesystem::path& path) {
  return kforge::read_file(path).value_or("");
}

std::filesystem::path binary_dir() {
  return KFORGE_BINARY_DIR;
}
std::filesystem::path source_dir() {
  return KFORGE_SOURCE_DIR;
}

}  // namespace kforge::test
