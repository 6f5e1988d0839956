// Which (backend, arch, impl_type, framework) combinations kforge accepts.
#pragma once

#include <string>

#include "common/status.h"

namespace kforge {

struct Target {
  std::string backend;    // cuda | ascend | cpu
  std::string arch;       // h100, a100, ascend910b4, ascend310p3, x86_64, ...
  std::string impl_type;  // triton | cuda_c | cpp | swft
  std::string framework;  // torch | numpy | mindspore
};

// ok, or invalid_argument saying what is wrong and listing what is valid, e.g.
// "impl_type 'swft' does not run on backend 'cuda'; valid on cuda: triton, cuda_c".
Status validate_target(const Target& target);

}  // namespace kforge
