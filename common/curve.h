// CURVE keys for the agent link (ZeroMQ CURVE, RFC 26): key pairs, secret key files and the
// coordinator's allow-list of agent keys. schema/protocol.md (Security) is the contract.
//
// Keys travel as Z85 text, 40 characters for 32 bytes: the form ZeroMQ's socket options take
// and operators copy between hosts.
//
// A secret key file (kforge keygen writes it, mode 0600):
//   # kforge CURVE secret key (z85); public key: <z85 public key>
//   <z85 secret key>
// Blank lines and lines starting with '#' are ignored; exactly one key line remains. The file
// must not be readable by other users (group-readable is fine: root:kforge 0640).
//
// The allow-list (coordinator.agent_keys_file) is TOML: agent id = public key, or a list of
// public keys while a key is being rotated. A key belongs to one agent id only.
//   gpu1 = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
//   gpu2 = ["<old key>", "<new key>"]
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace kforge {

inline constexpr size_t kZ85KeyChars = 40;

// True when this libzmq was built with CURVE (zmq_has("curve")).
bool curve_available();

struct CurveKeyPair {
  std::string public_key;  // z85
  std::string secret_key;  // z85
};

// A fresh key pair (zmq_curve_keypair).
[[nodiscard]] Result<CurveKeyPair> make_curve_keypair();
// The public key that belongs to a z85 secret key (zmq_curve_public).
[[nodiscard]] Result<std::string> curve_public_key(const std::string& secret_key);
// 40 characters of the Z85 alphabet.
bool is_z85_key(std::string_view text);
// 32 raw key bytes as z85 (the form a ZAP request carries them in).
std::string z85_of_key_bytes(std::string_view bytes);

// The text of a secret key file for `keys`.
std::string secret_key_file_text(const CurveKeyPair& keys);
// Writes a secret key file, mode 0600 whatever the umask. Refuses to replace an existing
// file unless `overwrite`.
[[nodiscard]] Status write_secret_key_file(const std::filesystem::path& path,
                                           const CurveKeyPair& keys, bool overwrite);
// Reads a secret key file and derives its public key. invalid_argument naming the file when
// it is malformed or readable by other users.
[[nodiscard]] Result<CurveKeyPair> read_secret_key_file(const std::filesystem::path& path);

// The coordinator's allow-list: which public key may speak for which agent id.
class AgentKeys {
 public:
  // Parses the TOML allow-list; errors name file:line:column and the agent id.
  [[nodiscard]] static Result<AgentKeys> parse(std::string_view toml_text,
                                               const std::string& source_name);
  [[nodiscard]] static Result<AgentKeys> load(const std::filesystem::path& path);

  // Binds `public_key` to `agent_id`. invalid_argument for a malformed key or one bound to
  // another agent id already.
  [[nodiscard]] Status add(const std::string& agent_id, const std::string& public_key);
  // The agent id bound to `public_key`, or nullptr when the key is not on the list.
  const std::string* agent_of(const std::string& public_key) const;
  size_t size() const { return agent_by_key_.size(); }
  bool empty() const { return agent_by_key_.empty(); }
  // The list as TOML, in the format parse() reads.
  std::string to_toml() const;
  bool operator==(const AgentKeys&) const = default;

 private:
  std::map<std::string, std::string> agent_by_key_;  // z85 public key -> agent id
};

}  // namespace kforge
