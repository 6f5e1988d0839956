#include "common/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <concepts>
#include <cstdlib>
#include <functional>
#include <limits>
#include <sstream>

#include "common/curve.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/protocol.h"
#include "common/text.h"
#include "common/toml_report.h"

namespace kforge {
namespace {

using Reader = TomlProblems;

std::string join_key(const std::string& prefix, std::string_view name) {
  return prefix.empty() ? std::string(name) : prefix + "." + std::string(name);
}

// ---------------------------------------------------------------------------------------------
// Field binding. Each struct has one table of fields, fields_of<S>(); a field pairs a TOML key
// with the code that reads it into the struct, validation included. read_table walks it.

template <typename S>
struct Field {
  std::string_view name;
  // Reads `node` (found under `key`, the full dotted name) into `out`, or records a problem.
  std::function<void(Reader&, const toml::node& node, const std::string& key, S& out)> read;
};

template <typename S>
using Fields = std::vector<Field<S>>;

// Specialised below for each struct that is read from a table.
template <typename S>
const Fields<S>& fields_of();

// Validation rules a field may carry.
struct NoRule {};
struct IntRule {
  int64_t min = 0;  // smallest accepted value; the largest is what the field's type holds
};
struct TextRule {
  const char* expected;                // "expected ..." when a value is rejected
  bool (*accept)(std::string_view s);  // true when `s` is acceptable
};

inline constexpr IntRule positive{1};
inline constexpr TextRule non_empty{"a non-empty string",
                                    [](std::string_view s) { return !s.empty(); }};
inline constexpr TextRule endpoint{
    "an endpoint starting with tcp://, ipc:// or inproc://", [](std::string_view s) {
      return s.starts_with("tcp://") || s.starts_with("ipc://") || s.starts_with("inproc://");
    }};
inline constexpr TextRule host_port{
    "host:port (or \"\" for none)", [](std::string_view s) {
      if (s.empty()) return true;
      size_t colon = s.rfind(':');
      if (colon == std::string_view::npos || colon == 0) {
        return false;
      }
      std::string_view port = s.substr(colon + 1);
      return !port.empty() && port.size() <= 5 &&
             std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    }};
inline constexpr TextRule z85_key{"a CURVE public key (40 characters of Z85)",
                                  [](std::string_view s) { return is_z85_key(s); }};
inline constexpr TextRule agent_id{"an agent id (1 to 128 printable characters, no '/')",
                                   [](std::string_view s) { return proto::valid_agent_id(s); }};
inline constexpr TextRule log_level{"one of trace, debug, info, warn, error, off",
                                    [](std::string_view s) { return parse_log_level(s).ok(); }};

template <typename S>
void read_table(Reader& r, const toml::table& table, const std::string& prefix, S& out);

// A string, checked by `rule` when there is one.
void read_string(Reader& r, const toml::node& node, const std::string& key, std::string& out,
                 const TextRule* rule) {
  const auto* s = node.as_string();
  if (s == nullptr) return r.fail_value(node, key, rule ? rule->expected : "a string");
  if (rule && !rule->accept(s->get())) return r.fail_value(node, key, rule->expected);
  out = s->get();
}

void read_value(Reader& r, const toml::node& node, const std::string& key, std::string& out,
                NoRule) {
  read_string(r, node, key, out, nullptr);
}

void read_value(Reader& r, const toml::node& node, const std::string& key, std::string& out,
                const TextRule& rule) {
  read_string(r, node, key, out, &rule);
}

void read_value(Reader& r, const toml::node& node, const std::string& key, bool& out, NoRule) {
  const auto* b = node.as_boolean();
  if (b == nullptr) return r.fail_value(node, key, "true or false");
  out = b->get();
}

template <typename I>
requires std::unsigned_integral<I> &&
    (!std::same_as<I, bool>)void read_value(Reader& r, const toml::node& node,
                                            const std::string& key, I& out, IntRule rule) {
  const std::string expected = rule.min == 0   ? "a non-negative integer"
                               : rule.min == 1 ? "a positive integer"
                                               : "an integer >= " + std::to_string(rule.min);
  const auto* i = node.as_integer();
  if (i == nullptr || i->get() < rule.min) return r.fail_value(node, key, expected);
  // TOML integers are int64; a uint64 field holds every non-negative one.
  constexpr uint64_t max = std::numeric_limits<I>::max();
  if (static_cast<uint64_t>(i->get()) > max) {
    return r.fail_value(
        node, key,
        "an integer between " + std::to_string(rule.min) + " and " + std::to_string(max));
  }
  out = static_cast<I>(i->get());
}

template <typename I>
requires std::unsigned_integral<I> &&
    (!std::same_as<I, bool>)void read_value(Reader& r, const toml::node& node,
                                            const std::string& key, I& out, NoRule) {
  read_value(r, node, key, out, IntRule{});
}

void read_value(Reader& r, const toml::node& node, const std::string& key, double& out, NoRule) {
  if (const auto* f = node.as_floating_point(); f != nullptr && f->get() >= 0) {
    out = f->get();
  } else if (const auto* i = node.as_integer(); i != nullptr && i->get() >= 0) {
    out = static_cast<double>(i->get());
  } else {
    r.fail_value(node, key, "a non-negative number");
  }
}

void read_value(Reader& r, const toml::node& node, const std::string& key,
                std::vector<std::string>& out, NoRule) {
  const auto* a = node.as_array();
  if (a == nullptr) return r.fail_value(node, key, "an array of strings");
  std::vector<std::string> values;
  bool ok = true;
  for (size_t i = 0; i < a->size(); ++i) {
    const toml::node& item = *a->get(i);
    if (const auto* s = item.as_string(); s != nullptr && !s->get().empty()) {
      values.push_back(s->get());
    } else {
      r.fail_value(item, key + "[" + std::to_string(i) + "]", "a non-empty string");
      ok = false;
    }
  }
  if (ok) out = std::move(values);
}

// A nested struct: the node must be a table, read with the struct's own fields.
template <typename T>
void read_value(Reader& r, const toml::node& node, const std::string& key, T& out, NoRule) {
  const toml::table* t = node.as_table();
  if (t == nullptr) return r.fail_value(node, key, "a table");
  read_table(r, *t, key, out);
}

// field("name", &S::member[, rule]): reads the TOML key "name" into S::member.
template <typename S, typename T, typename Rule = NoRule>
Field<S> field(std::string_view name, T S::*member, Rule rule = {}) {
  return {name, [member, rule](Reader& r, const toml::node& node, const std::string& key, S& out) {
            read_value(r, node, key, out.*member, rule);
          }};
}

template <typename S>
void read_table(Reader& r, const toml::table& table, const std::string& prefix, S& out) {
  const Fields<S>& fields = fields_of<S>();
  // Unknown keys first, so that a typo is reported even when every value is well typed.
  for (const auto& entry : table) {
    const toml::key& k = entry.first;  // clang 14 cannot capture a structured binding
    auto known = [&](const Field<S>& f) { return f.name == k.str(); };
    if (std::any_of(fields.begin(), fields.end(), known)) continue;
    std::vector<std::string_view> names;
    for (const Field<S>& f : fields) names.push_back(f.name);
    r.fail_unknown_key(k, prefix.empty() ? "" : prefix + ".", names);
  }
  // Then the known keys, in the order the field table lists them.
  for (const Field<S>& f : fields) {
    if (const toml::node* node = table.get(f.name)) f.read(r, *node, join_key(prefix, f.name), out);
  }
}

// ---------------------------------------------------------------------------------------------
// The field tables: one line per key. A struct must be specialised before a table uses it.

template <>
const Fields<LogConfig>& fields_of<LogConfig>() {
  static const Fields<LogConfig> fields = {
      field("level", &LogConfig::level, log_level),
      field("file", &LogConfig::file),
      field("json", &LogConfig::json),
      field("max_file_mb", &LogConfig::max_file_mb),
      field("max_files", &LogConfig::max_files, positive),
  };
  return fields;
}

template <>
const Fields<CoordinatorConfig>& fields_of<CoordinatorConfig>() {
  using C = CoordinatorConfig;
  static const Fields<C> fields = {
      field("listen", &C::listen, endpoint),
      field("data_dir", &C::data_dir, non_empty),
      field("http_listen", &C::http_listen, host_port),
      field("api_token_file", &C::api_token_file),
      field("api_hosts", &C::api_hosts),
      field("metrics_public", &C::metrics_public),
      field("api_max_body_mb", &C::api_max_body_mb, positive),
      field("api_max_connections", &C::api_max_connections, positive),
      field("api_threads", &C::api_threads, positive),
      field("heartbeat_ms", &C::heartbeat_ms, positive),
      field("liveness", &C::liveness, positive),
      field("max_heartbeats_per_s", &C::max_heartbeats_per_s),
      field("restart_grace_ms", &C::restart_grace_ms),
      field("precision_jobs_per_device", &C::precision_jobs_per_device, positive),
      field("verify_timeout_s", &C::verify_timeout_s, positive),
      field("disk_reserve_mb", &C::disk_reserve_mb),
      field("secret_key_file", &C::secret_key_file, non_empty),
      field("agent_keys_file", &C::agent_keys_file, non_empty),
      field("log", &C::log),
  };
  return fields;
}

template <>
const Fields<AgentLimits>& fields_of<AgentLimits>() {
  using L = AgentLimits;
  static const Fields<L> fields = {
      field("address_space_mb", &L::address_space_mb),
      field("cpu_s", &L::cpu_s),
      field("open_files", &L::open_files),
      field("processes", &L::processes),
      field("file_size_mb", &L::file_size_mb),
      field("memory_mb", &L::memory_mb),
      field("pids", &L::pids),
      field("cpu_percent", &L::cpu_percent),
      field("io_mbps", &L::io_mbps),
  };
  return fields;
}

template <>
const Fields<AgentConfig>& fields_of<AgentConfig>() {
  using A = AgentConfig;
  static const Fields<A> fields = {
      field("coordinator", &A::coordinator, endpoint),
      field("state_dir", &A::state_dir, non_empty),
      field("id", &A::id, agent_id),
      field("secret_key_file", &A::secret_key_file, non_empty),
      field("coordinator_public_key", &A::coordinator_public_key, z85_key),
      field("host", &A::host),
      field("cpu_devices", &A::cpu_devices),
      field("devices", &A::devices),
      field("cpu_arch", &A::cpu_arch, non_empty),
      field("python", &A::python, non_empty),
      field("harness_dir", &A::harness_dir),
      {"run_as",
       [](Reader& r, const toml::node& node, const std::string& key, A&) {
         r.fail(node.source(),
                key +
                    ": was replaced by agent.job_uids (a uid per running job); to run jobs as the "
                    "agent's own user set job_uids = \"\" and allow_uncontained = true, or contain "
                    "= false "
                    "for no box at all (docs/security.md)");
       }},
      field("job_uids", &A::job_uids),
      field("allow_uncontained", &A::allow_uncontained),
      field("contain", &A::contain),
      field("job_disk_mb", &A::job_disk_mb, positive),
      field("hide_dirs", &A::hide_dirs),
      field("work_dir", &A::work_dir),
      field("nvidia_smi", &A::nvidia_smi, non_empty),
      field("npu_smi", &A::npu_smi, non_empty),
      field("job_timeout_s", &A::job_timeout_s, positive),
      field("output_cap_kb", &A::output_cap_kb, positive),
      field("warm_start", &A::warm_start),
      field("warm_workers", &A::warm_workers, positive),
      field("env_allow", &A::env_allow),
      field("limits", &A::limits),
      field("log", &A::log),
  };
  return fields;
}

template <>
const Fields<LlmRoleConfig>& fields_of<LlmRoleConfig>() {
  using L = LlmRoleConfig;
  static const Fields<L> fields = {
      field("provider", &L::provider, non_empty),
      field("base_url", &L::base_url),
      field("model", &L::model),
      field("api_key_env", &L::api_key_env),
      field("api_key_file", &L::api_key_file),
      field("temperature", &L::temperature),
      field("max_tokens", &L::max_tokens, positive),
      field("timeout_s", &L::timeout_s, positive),
      field("concurrency", &L::concurrency, positive),
      field("max_retries", &L::max_retries),
      field("price_prompt_per_mtok", &L::price_prompt_per_mtok),
      field("price_completion_per_mtok", &L::price_completion_per_mtok),
      field("recording", &L::recording),
      // After "provider" (the table is read in this order), which it depends on.
      {"replay_latency_ms",
       [](Reader& r, const toml::node& node, const std::string& key, L& out) {
         read_value(r, node, key, out.replay_latency_ms, NoRule{});
         if (out.provider != "replay") {
           r.fail(node.source(),
                  key + ": only valid with provider = \"replay\", not " +
                      (out.provider.empty() ? "without a provider"
                                            : "with provider = " + toml_quote(out.provider)));
         }
       }},
  };
  return fields;
}

// [llm.ROLE]: one table per LlmRole, in its order.
template <>
const Fields<LlmConfig>& fields_of<LlmConfig>() {
  static const Fields<LlmConfig> fields = [] {
    Fields<LlmConfig> out;
    for (LlmRole role : all_of<LlmRole>()) {
      out.push_back({to_string(role),
                     [role](Reader& r, const toml::node& node, const std::string& key,
                            LlmConfig& llm) { read_value(r, node, key, llm.of(role), NoRule{}); }});
    }
    return out;
  }();
  return fields;
}

template <>
const Fields<CliConfig>& fields_of<CliConfig>() {
  static const Fields<CliConfig> fields = {
      field("coordinator", &CliConfig::coordinator),
      field("token_file", &CliConfig::token_file),
  };
  return fields;
}

template <>
const Fields<Config>& fields_of<Config>() {
  static const Fields<Config> fields = {
      // First, so that the component tables below start from it and override what they name.
      {"log",
       [](Reader& r, const toml::node& node, const std::string& key, Config& out) {
         read_value(r, node, key, out.log, NoRule{});
         out.coordinator.log = out.log;
         out.agent.log = out.log;
       }},
      field("coordinator", &Config::coordinator),
      field("agent", &Config::agent),
      field("llm", &Config::llm),
      field("cli", &Config::cli),
  };
  return fields;
}

// The node of root[table][key], or null.
const toml::node* node_at(const toml::table& root, std::initializer_list<std::string_view> path) {
  const toml::node* n = &root;
  for (std::string_view k : path) {
    const toml::table* t = n->as_table();
    n = t == nullptr ? nullptr : t->get(k);
    if (n == nullptr) return nullptr;
  }
  return n;
}

// [llm.*]: what each role's provider needs, reported at the key concerned, every role in the
// same pass (the LLM client, when it starts, would stop at the first). `host` adds what
// depends on this host (ConfigChecks::host).
void check_llm_roles(Reader& r, const toml::table& root, const Config& config, bool host,
                     const std::filesystem::path& base_dir) {
  for (LlmRole llm_role : all_of<LlmRole>()) {
    const std::string_view name = to_string(llm_role);
    const LlmRoleConfig* role = &config.llm.of(llm_role);
    const toml::node* table = node_at(root, {"llm", name});
    if (table == nullptr || !table->is_table()) continue;
    const std::string key = "llm." + std::string(name);
    // Where `k` is written, else the role's table.
    auto at = [&](std::string_view k) {
      const toml::node* n = node_at(root, {"llm", name, k});
      return n != nullptr ? n->source() : table->source();
    };
    const std::string& p = role->provider;
    const auto& providers = llm_providers();
    if (!node_at(root, {"llm", name, "provider"})) {
      r.fail(table->source(), key + ": provider is missing; expected one of " + join(providers) +
                                  " (or remove the table)");
      continue;
    }
    if (p.empty()) continue;  // reported by its field
    if (std::find(providers.begin(), providers.end(), p) == providers.end()) {
      r.fail(at("provider"),
             key + ".provider: expected one of " + join(providers) + ", got " + toml_quote(p));
      continue;
    }
    if (p != "openai" && role->recording.empty()) {
      r.fail(at("provider"),
             key + ": provider " + toml_quote(p) + " needs recording = \"FILE.jsonl\"");
    }
    if (!role->api_key_env.empty() && !role->api_key_file.empty()) {
      r.fail(at("api_key_file"), key + ": set api_key_env or api_key_file, not both");
    }
    if (p != "replay") {
      if (role->model.empty())
        r.fail(at("model"), key + ": provider " + toml_quote(p) + " needs model = \"...\"");
      const std::string& url = role->base_url;
      if (!url.empty() && !url.starts_with("http://") && !url.starts_with("https://")) {
        r.fail(at("base_url"),
               key + ".base_url: expected a URL starting with http:// or https://, got " +
                   toml_quote(url));
      }
    }
    if (!host) continue;
    auto resolve = [&](const std::string& path) {
      std::filesystem::path f = path;
      return f.is_absolute() ? f : base_dir / f;
    };
    if (p != "replay" && llm_base_url(*role).empty()) {
      r.fail(table->source(),
             key + ": provider " + toml_quote(p) +
                 " needs base_url = \"http://HOST:PORT/v1\" (or $OPENAI_BASE_URL set)");
    }
    if (const std::string env = p == "replay" ? "" : role->api_key_env; !env.empty()) {
      const char* value = std::getenv(env.c_str());
      if (value == nullptr || *value == '\0') {
        r.fail(at("api_key_env"), key + ".api_key_env: names $" + env + ", which is not set here");
      }
    }
    if (p != "replay" && !role->api_key_file.empty()) {
      if (auto secret = read_secret_file(resolve(role->api_key_file), "api_key_file");
          !secret.ok()) {
        r.fail(at("api_key_file"), key + ".api_key_file: " + secret.status().message());
      }
    }
    if (p == "replay" && !role->recording.empty()) {
      const std::filesystem::path rec = resolve(role->recording);
      std::error_code ec;
      std::string why = !std::filesystem::exists(rec, ec) ? "does not exist" : not_a_file(rec);
      if (!why.empty()) {
        r.fail(at("recording"), key + ".recording: " + rec.lexically_normal().string() + " " + why);
      }
    }
    // An LLM key must not reach a job through the agent's allow-list of variables.
    const std::string env = llm_key_env(*role);
    const auto& allow = config.agent.env_allow;
    if (!env.empty() && std::find(allow.begin(), allow.end(), env) != allow.end()) {
      const toml::node* list = node_at(root, {"agent", "env_allow"});
      std::string text = "agent.env_allow names " + env + ", the API key of " + key +
                         ": every job would get it; remove it from the list";
      list ? r.fail(list->source(), text) : r.fail_at(1, 1, text);
    }
  }
}

// The member of LlmConfig that holds `role`'s table.
LlmRoleConfig LlmConfig::*member_of(LlmRole role) {
  switch (role) {
    case LlmRole::designer: return &LlmConfig::designer;
    case LlmRole::coder: return &LlmConfig::coder;
    case LlmRole::conductor: return &LlmConfig::conductor;
  }
  return &LlmConfig::conductor;  // not reached: every LlmRole is listed
}

}  // namespace

LlmRoleConfig& LlmConfig::of(LlmRole role) {
  return this->*member_of(role);
}

const LlmRoleConfig& LlmConfig::of(LlmRole role) const {
  return this->*member_of(role);
}

const std::vector<std::string>& llm_providers() {
  static const std::vector<std::string> all = {"openai", "replay", "record"};
  return all;
}

std::string llm_base_url(const LlmRoleConfig& role) {
  if (role.provider == "replay" || !role.base_url.empty()) return role.base_url;
  const char* base = std::getenv("OPENAI_BASE_URL");
  return base == nullptr ? "" : base;
}

std::string llm_key_env(const LlmRoleConfig& role) {
  if (role.provider == "replay" || !role.api_key_env.empty()) return role.api_key_env;
  const char* key = std::getenv("OPENAI_API_KEY");
  return role.api_key_file.empty() && key != nullptr && *key != '\0' ? "OPENAI_API_KEY" : "";
}

Result<Config> parse_config(std::string_view toml_text, const std::string& source_name,
                            ConfigChecks checks, const std::filesystem::path& base_dir) {
  auto parsed = parse_toml(toml_text, source_name);
  if (!parsed.ok()) return parsed.status();
  const toml::table& root = *parsed;
  Reader reader(source_name);
  Config config;
  read_table(reader, root, "", config);
  // CURVE settings come in pairs: half of one would silently leave the link unauthenticated.
  auto pair = [&](const char* table, const char* a, bool has_a, const char* b, bool has_b) {
    if (has_a == has_b) return;
    const toml::node* t = root.get(table);
    const toml::node* at = t && t->as_table() ? t->as_table()->get(has_a ? a : b) : nullptr;
    std::string text = std::string(table) + "." + (has_a ? a : b) + ": needs " + table + "." +
                       (has_a ? b : a) + " too (CURVE on the agent link takes both)";
    if (at) {
      reader.fail(at->source(), text);
    } else {
      reader.fail_at(1, 1, text);
    }
  };
  pair("coordinator", "secret_key_file", !config.coordinator.secret_key_file.empty(),
       "agent_keys_file", !config.coordinator.agent_keys_file.empty());
  pair("agent", "secret_key_file", !config.agent.secret_key_file.empty(), "coordinator_public_key",
       !config.agent.coordinator_public_key.empty());
  check_llm_roles(reader, root, config, checks == ConfigChecks::host, base_dir);
  KF_RETURN_IF_ERROR(reader.status());
  return config;
}

Result<Config> load_config(const std::filesystem::path& path, ConfigChecks checks) {
  Result<std::string> text = read_named_file(path, "config file");
  if (!text.ok()) return text.status();
  return parse_config(*text, path.string(), checks, std::filesystem::absolute(path).parent_path());
}

}  // namespace kforge
