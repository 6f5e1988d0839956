#include "agent/state_dir.h"

#include "common/fs.h"

namespace kforge {

Result<std::string> load_or_create_agent_id(const std::filesystem::path& state_dir,
                                            const std::string& wanted) {
  KF_RETURN_IF_ERROR(
      ensure_private_dir(state_dir));  // 0700: the outbox holds results not yet acked
  auto path = state_dir / "agent_id";
  auto existing = read_file(path);
  if (existing.ok()) {
    std::string id = *existing;
    while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
    if (id.empty()) return invalid_argument(path.string() + ": empty agent id");
    if (!wanted.empty() && id != wanted) {
      return invalid_argument(path.string() + ": this state directory belongs to agent " + id +
                              ", not " + wanted +
                              " (agent.id); use another state_dir or agent.id = \"" + id + "\"");
    }
    return id;
  }
  if (existing.status().code() != Code::not_found) return existing.status();
  std::string id = wanted.empty() ? random_hex_id() : wanted;
  KF_RETURN_IF_ERROR(atomic_write_file(path, id + "\n", 0600));
  return id;
}

}  // namespace kforge
