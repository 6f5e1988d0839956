// The plain fuzz driver: runs one target's LLVMFuzzerTestOneInput without libFuzzer, so that
// any compiler (the normal g++ build) can replay the corpus and run a short, deterministic
// mutation loop over it. ctest runs it briefly; long runs use libFuzzer (KFORGE_FUZZ=ON,
// scripts/fuzz.sh, docs/security.md "Fuzzing").
//
//   fuzz_wire [-runs=N] [-seed=S] [-max_len=L] DIR_OR_FILE...
//
// Every file named, or found in a named directory, is run once, in path order; then N
// mutated inputs (default 1000) are run, each one to four mutations of a corpus input,
// chosen by a PRNG seeded with S (default 1): the same arguments run the same inputs. A
// target reports a bug by crashing or aborting; the input that did it is then written to
// fuzz-crash-<target> in the working directory (the path is printed), to be added to the
// corpus once fixed.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/mutator.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

// The input being run, for the crash handler (which may only make async-signal-safe calls).
const std::string* g_current = nullptr;
char g_crash_path[256] = "fuzz-crash";

void on_crash(int sig) {
  if (g_current != nullptr) {
    int fd = ::open(g_crash_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      [[maybe_unused]] ssize_t n = ::write(fd, g_current->data(), g_current->size());
      ::close(fd);
    }
    const char msg[] = "\nfuzz driver: the failing input is in ";
    [[maybe_unused]] ssize_t n = ::write(2, msg, sizeof msg - 1);
    n = ::write(2, g_crash_path, std::strlen(g_crash_path));
    n = ::write(2, "\n", 1);
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void run_one(const std::string& input) {
  g_current = &input;
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  g_current = nullptr;
}

bool flag_value(std::string_view arg, std::string_view name, uint64_t& out) {
  if (!arg.starts_with(name)) return false;
  out = std::strtoull(std::string(arg.substr(name.size())).c_str(), nullptr, 10);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t runs = 1000, seed = 1, max_len = 64 << 10;
  std::vector<std::filesystem::path> files;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (flag_value(arg, "-runs=", runs) || flag_value(arg, "-seed=", seed) ||
        flag_value(arg, "-max_len=", max_len)) {
      continue;
    }
    if (arg.starts_with("-")) {
      std::fprintf(stderr, "%s: unknown flag %s (expected -runs=N, -seed=S, -max_len=L)\n", argv[0],
                   argv[i]);
      return 2;
    }
    std::error_code ec;
    if (std::filesystem::is_directory(argv[i], ec)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(argv[i])) {
        if (e.is_regular_file()) files.push_back(e.path());
      }
    } else if (std::filesystem::is_regular_file(argv[i], ec)) {
      files.emplace_back(argv[i]);
    } else {
      std::fprintf(stderr, "%s: %s: no such file or directory\n", argv[0], argv[i]);
      return 2;
    }
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> corpus;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (corpus.empty()) corpus.emplace_back();

  std::snprintf(g_crash_path, sizeof g_crash_path, "fuzz-crash-%s",
                std::filesystem::path(argv[0]).filename().c_str());
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) ::signal(sig, on_crash);

  for (const std::string& input : corpus) run_one(input);
  kforge::fuzz::Mutator mutator(seed);
  for (uint64_t i = 0; i < runs; ++i) {
    std::string input = mutator.mutated(corpus);
    if (input.size() > max_len) input.resize(max_len);
    run_one(input);
  }
  std::printf("%s: %zu corpus inputs, %llu mutated inputs (seed %llu): no failure\n",
              std::filesystem::path(argv[0]).filename().c_str(), files.size(),
              static_cast<unsigned long long>(runs), static_cast<unsigned long long>(seed));
  return 0;
}
