// kforge keygen: CURVE key pairs for the agent link (docs/deploy.md, "Keys").
//
//   kforge keygen --out /etc/kforge/agent.key [--agent-id gpu1] [--force]
//     writes the secret key file (mode 0600) and prints the public key on stdout: the bare
//     z85 key, or with --agent-id the allow-list line  gpu1 = "<public key>"
//   kforge keygen --public /etc/kforge/coordinator.key
//     prints the public key of an existing secret key file
#include <cstdio>

#include "cli/commands.h"
#include "common/curve.h"
#include "common/protocol.h"
#include "common/toml_report.h"

namespace kforge {

int cmd_keygen(const ParsedFlags& flags) {
  if (!flags.positional.empty())
    return cli_fail("keygen: unexpected argument '" + flags.positional[0] + "'", kExitUsage);
  auto agent_id = flags.get("agent-id");
  if (agent_id && !proto::valid_agent_id(*agent_id)) {
    return cli_fail("keygen: --agent-id '" + *agent_id +
                        "' is not a valid agent id (1 to 128 printable characters, no '/')",
                    kExitUsage);
  }
  auto allow_list_line = [&](const std::string& public_key) {
    std::string line =
        agent_id ? toml_quote(*agent_id) + " = " + toml_quote(public_key) : public_key;
    std::printf("%s\n", line.c_str());
  };
  if (auto path = flags.get("public")) {
    if (flags.has("out")) return cli_fail("keygen: give --out or --public, not both", kExitUsage);
    auto keys = read_secret_key_file(*path);
    if (!keys.ok()) return cli_fail(keys.status().message());
    allow_list_line(keys->public_key);
    return kExitOk;
  }
  auto out = flags.get("out");
  if (!out)
    return cli_fail("keygen: give --out FILE for the secret key (or --public FILE)", kExitUsage);
  if (!curve_available()) return cli_fail("keygen: this libzmq has no CURVE support");
  auto keys = make_curve_keypair();
  if (!keys.ok()) return cli_fail(keys.status().message());
  if (Status st = write_secret_key_file(*out, *keys, flags.has("force")); !st.ok())
    return cli_fail(st.message());
  std::fprintf(stderr, "kforge: secret key written to %s (mode 0600); its public key:\n",
               out->c_str());
  allow_list_line(keys->public_key);
  return kExitOk;
}

}  // namespace kforge
