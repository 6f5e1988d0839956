#include "common/curve.h"

#include <sys/stat.h>
#include <toml++/toml.h>
#include <zmq.h>

#include <algorithm>
#include <cstdio>

#include "common/fs.h"
#include "common/protocol.h"
#include "common/toml_report.h"

namespace kforge {
namespace {

constexpr std::string_view kZ85Alphabet =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return std::string(s);
}

}  // namespace

bool curve_available() {
  return zmq_has("curve") != 0;
}

Result<CurveKeyPair> make_curve_keypair() {
  char pub[kZ85KeyChars + 1] = {};
  char sec[kZ85KeyChars + 1] = {};
  if (zmq_curve_keypair(pub, sec) != 0) {
    return failed_precondition(std::string("cannot make a CURVE key pair: ") +
                               zmq_strerror(zmq_errno()) + " (libzmq without CURVE support?)");
  }
  return CurveKeyPair{pub, sec};
}

Result<std::string> curve_public_key(const std::string& secret_key) {
  if (!is_z85_key(secret_key)) return invalid_argument("a CURVE key is 40 characters of Z85");
  char pub[kZ85KeyChars + 1] = {};
  if (zmq_curve_public(pub, secret_key.c_str()) != 0) {
    return failed_precondition(std::string("cannot derive a CURVE public key: ") +
                               zmq_strerror(zmq_errno()));
  }
  return std::string(pub);
}

bool is_z85_key(std::string_view text) {
  return text.size() == kZ85KeyChars && std::all_of(text.begin(), text.end(), [](char c) {
           return kZ85Alphabet.find(c) != std::string_view::npos;
         });
}

std::string z85_of_key_bytes(std::string_view bytes) {
  if (bytes.size() != 32) return "";
  char out[kZ85KeyChars + 1] = {};
  if (zmq_z85_encode(out, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()) == nullptr)
    return "";
  return out;
}

std::string secret_key_file_text(const CurveKeyPair& keys) {
  return "# kforge CURVE secret key (z85); public key: " + keys.public_key +
         "\n# keep it private: readable by the daemon's user only\n" + keys.secret_key + "\n";
}

Status write_secret_key_file(const std::filesystem::path& path, const CurveKeyPair& keys,
                             bool overwrite) {
  std::error_code ec;
  if (!overwrite && std::filesystem::exists(path, ec)) {
    return failed_precondition(path.string() +
                               " exists; refusing to replace a key (--force replaces it)");
  }
  return atomic_write_file(path, secret_key_file_text(keys), 0600);
}

Result<CurveKeyPair> read_secret_key_file(const std::filesystem::path& path) {
  auto text = read_named_file(path, "secret key file");
  if (!text.ok()) return text.status();
  KF_RETURN_IF_ERROR(check_secret_file_mode(path, "secret key file"));
  std::string key;
  size_t line_no = 0, start = 0;
  while (start <= text->size()) {
    size_t end = text->find('\n', start);
    if (end == std::string::npos) end = text->size();
    line_no++;
    std::string line = trim(std::string_view(*text).substr(start, end - start));
    start = end + 1;
    if (line.empty() || line[0] == '#') continue;
    if (!key.empty()) {
      return invalid_argument(path.string() + ":" + std::to_string(line_no) +
                              ": a secret key file holds one key line");
    }
    if (!is_z85_key(line)) {
      return invalid_argument(path.string() + ":" + std::to_string(line_no) +
                              ": expected a CURVE secret key (40 characters of Z85)");
    }
    key = line;
  }
  if (key.empty()) return invalid_argument(path.string() + ": no key in the secret key file");
  auto pub = curve_public_key(key);
  if (!pub.ok()) return Status(pub.status().code(), path.string() + ": " + pub.status().message());
  return CurveKeyPair{*pub, key};
}

Status AgentKeys::add(const std::string& agent_id, const std::string& public_key) {
  if (!proto::valid_agent_id(agent_id)) {
    return invalid_argument("agent id " + toml_quote(agent_id) +
                            " is not valid (1 to 128 printable characters, no '/')");
  }
  if (!is_z85_key(public_key))
    return invalid_argument("expected a CURVE public key (40 characters of Z85)");
  auto [it, inserted] = agent_by_key_.emplace(public_key, agent_id);
  if (!inserted && it->second != agent_id) {
    return invalid_argument("the key is bound to agent " + toml_quote(it->second) + " already");
  }
  return Status();
}

const std::string* AgentKeys::agent_of(const std::string& public_key) const {
  auto it = agent_by_key_.find(public_key);
  return it == agent_by_key_.end() ? nullptr : &it->second;
}

std::string AgentKeys::to_toml() const {
  std::map<std::string, std::vector<std::string>> by_agent;
  for (const auto& [key, agent] : agent_by_key_) by_agent[agent].push_back(key);
  std::string out;
  for (const auto& [agent, keys] : by_agent) {
    out += toml_quote(agent) + " = ";
    if (keys.size() == 1) {
      out += toml_quote(keys[0]);
    } else {
      out += "[";
      for (size_t i = 0; i < keys.size(); ++i) out += (i ? ", " : "") + toml_quote(keys[i]);
      out += "]";
    }
    out += "\n";
  }
  return out;
}

Result<AgentKeys> AgentKeys::parse(std::string_view toml_text, const std::string& source_name) {
  auto parsed = parse_toml(toml_text, source_name);
  if (!parsed.ok()) return parsed.status();
  const toml::table& root = *parsed;
  TomlProblems problems(source_name);
  AgentKeys keys;
  auto add_one = [&](const std::string& agent, const toml::node& node, const std::string& key) {
    const auto* s = node.as_string();
    if (s == nullptr || !is_z85_key(s->get())) {
      return problems.fail_value(node, key, "a CURVE public key (40 characters of Z85)");
    }
    if (Status st = keys.add(agent, s->get()); !st.ok())
      problems.fail(node.source(), key + ": " + st.message());
  };
  for (const auto& [k, v] : root) {
    std::string agent(k.str());
    if (!proto::valid_agent_id(agent)) {
      problems.fail(
          k.source(),
          toml_quote(agent) + ": not a valid agent id (1 to 128 printable characters, no '/')");
      continue;
    }
    if (const auto* list = v.as_array()) {
      if (list->empty()) problems.fail_value(v, agent, "a public key or a non-empty list of them");
      for (size_t i = 0; i < list->size(); ++i)
        add_one(agent, *list->get(i), agent + "[" + std::to_string(i) + "]");
    } else {
      add_one(agent, v, agent);
    }
  }
  KF_RETURN_IF_ERROR(problems.status());
  return keys;
}

Result<AgentKeys> AgentKeys::load(const std::filesystem::path& path) {
  auto text = read_named_file(path, "agent keys file");
  if (!text.ok()) return text.status();
  return parse(*text, path.string());
}

}  // namespace kforge
