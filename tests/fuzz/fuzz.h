// What the fuzz targets (tests/fuzz/*_fuzz.cpp) share. Each target defines libFuzzer's
// entry point, LLVMFuzzerTestOneInput, and is linked either with libFuzzer (KFORGE_FUZZ=ON,
// clang) or with the plain driver (driver.cpp). A target reports a bug by crashing or by
// calling fuzz_fail; sanitizers report the rest (leaks, undefined behaviour, overflows).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

namespace kforge::fuzz {

// A property the input broke: says which, and aborts (the driver keeps the input).
[[noreturn]] inline void fuzz_fail(const std::string& what) {
  std::fprintf(stderr, "fuzz: property broken: %s\n", what.c_str());
  std::abort();
}

}  // namespace kforge::fuzz
