#include "common/targets.h"

#include <algorithm>
#include <vector>

#include "common/text.h"

namespace kforge {
namespace {

struct BackendRule {
  const char* backend;
  std::vector<std::string> impl_types;
  std::vector<std::string> known_archs;  // listed in messages; cuda and ascend accept others
};

const std::vector<BackendRule>& rules() {
  static const std::vector<BackendRule> all = {
      {"cuda", {"triton", "cuda_c"}, {"h100", "h200", "a100", "l40s", "v100", "rtx4090"}},
      {"ascend",
       {"triton", "swft"},
       {"ascend910b4", "ascend910b3", "ascend910b2", "ascend910b1", "ascend910", "ascend310p3"}},
      {"cpu", {"cpp"}, {"x86_64", "aarch64"}},
  };
  return all;
}

bool contains(const std::vector<std::string>& items, const std::string& x) {
  return std::find(items.begin(), items.end(), x) != items.end();
}

// Whether an arch name plausibly belongs to a backend. GPUs and NPUs keep appearing, so
// cuda and ascend accept names beyond the known list as long as they are of their family.
bool arch_belongs(const BackendRule& rule, const std::string& arch) {
  if (arch.empty()) return false;
  std::string backend = rule.backend;
  if (backend == "cpu") return contains(rule.known_archs, arch);
  bool npu = arch.rfind("ascend", 0) == 0;
  bool cpu = arch == "x86_64" || arch == "aarch64";
  return backend == "ascend" ? npu : (!npu && !cpu);
}

}  // namespace

Status validate_target(const Target& t) {
  const BackendRule* rule = nullptr;
  for (const auto& r : rules()) {
    if (t.backend == r.backend) rule = &r;
  }
  if (rule == nullptr) {
    return invalid_argument("backend '" + t.backend + "' is not one of cuda, ascend, cpu");
  }
  if (!arch_belongs(*rule, t.arch)) {
    return invalid_argument("arch '" + t.arch + "' does not belong to backend '" + t.backend +
                            "'; known " + t.backend + " archs: " + join(rule->known_archs));
  }
  if (!contains(rule->impl_types, t.impl_type)) {
    return invalid_argument("impl_type '" + t.impl_type + "' does not run on backend '" +
                            t.backend + "'; valid on " + t.backend + ": " + join(rule->impl_types));
  }
  static const std::vector<std::string> frameworks = {"torch", "numpy", "mindspore"};
  if (!contains(frameworks, t.framework)) {
    return invalid_argument("framework '" + t.framework + "' is not one of " + join(frameworks));
  }
  return Status();
}

}  // namespace kforge
