#include "agent/verify.h"

#include <unistd.h>

#include <cstring>

#include "common/fs.h"

namespace kforge {

Result<std::filesystem::path> find_harness_dir(const std::string& configured) {
  auto valid = [](const std::filesystem::path& dir) {
    std::error_code ec;
    return std::filesystem::exists(dir / "kforge_judge.py", ec);
  };
  if (!configured.empty()) {
    if (valid(configured)) return std::filesystem::absolute(configured);
    return not_found("no kforge_judge.py in the configured harness directory " + configured);
  }
  if (const char* env = std::getenv("KFORGE_HARNESS_DIR"); env && *env) {
    if (valid(env)) return std::filesystem::absolute(env);
    return not_found(std::string("no kforge_judge.py in $KFORGE_HARNESS_DIR (") + env + ")");
  }
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto installed = exe.parent_path().parent_path() / "share" / "kforge" / "harness";
    if (valid(installed)) return installed;
  }
  std::filesystem::path source = KFORGE_HARNESS_SOURCE_DIR;
  if (valid(source)) return source;
  return not_found(
      "cannot find the verification harness (kforge_judge.py): set agent.harness_dir, "
      "--harness or $KFORGE_HARNESS_DIR");
}

Status hand_over(const std::filesystem::path& dir, const std::optional<UserIds>& user) {
  if (!user) return Status();
  std::error_code ec;
  auto chown_one = [&](const std::filesystem::path& p) -> Status {
    if (::lchown(p.c_str(), user->uid, user->gid) != 0) {
      return io_error("cannot give " + p.string() + " to uid " + std::to_string(user->uid) + ": " +
                      std::strerror(errno));
    }
    return Status();
  };
  KF_RETURN_IF_ERROR(chown_one(dir));
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    KF_RETURN_IF_ERROR(chown_one(it->path()));
  }
  if (ec) return io_error("cannot walk " + dir.string() + ": " + ec.message());
  return Status();
}

}  // namespace kforge
