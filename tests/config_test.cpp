#include "common/config.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

#include "tests/support/support.h"

using namespace kforge;

namespace {

// The error message of a config that must fail to parse.
std::string error_of(const std::string& text) {
  Result<Config> config = parse_config(text, "kforge.toml");
  REQUIRE_FALSE(config.ok());
  CHECK(config.status().code() == Code::invalid_argument);
  return config.status().message();
}

}  // namespace

TEST_CASE("empty file gives the defaults") {
  Result<Config> config = parse_config("", "kforge.toml");
  REQUIRE(config.ok());
  CHECK(config->coordinator.listen == "tcp://127.0.0.1:7700");
  CHECK(config->coordinator.heartbeat_ms == 1000);
  CHECK(config->coordinator.verify_timeout_s == 300);
  CHECK(config->coordinator.liveness == 3);
  CHECK(config->coordinator.log.level == "info");
  CHECK(config->agent.coordinator == "tcp://127.0.0.1:7700");
  CHECK(config->agent.env_allow.size() == 10);
  CHECK(config->agent.limits.open_files == 1024);
  CHECK(config->log.file.empty());
  CHECK_FALSE(config->log.json);
}

TEST_CASE("values are read from every table") {
  Result<Config> config = parse_config(R"(
[log]
level = "debug"
file = "/var/log/kforge.log"

[coordinator]
listen = "tcp://0.0.0.0:7701"
heartbeat_ms = 250
precision_jobs_per_device = 4
verify_timeout_s = 45

[coordinator.log]
json = true

[agent]
coordinator = "ipc:///run/kforge.sock"
cpu_devices = 0
env_allow = ["PATH", "CUDA_VISIBLE_DEVICES"]

[agent.limits]
cpu_s = 3600
address_space_mb = 65536
)",
                                       "kforge.toml");
  REQUIRE(config.ok());
  CHECK(config->coordinator.listen == "tcp://0.0.0.0:7701");
  CHECK(config->coordinator.heartbeat_ms == 250);
  CHECK(config->coordinator.precision_jobs_per_device == 4);
  CHECK(config->coordinator.verify_timeout_s == 45);
  CHECK(config->agent.coordinator == "ipc:///run/kforge.sock");
  CHECK(config->agent.cpu_devices == 0);
  CHECK(config->agent.env_allow == std::vector<std::string>{"PATH", "CUDA_VISIBLE_DEVICES"});
  CHECK(config->agent.limits.cpu_s == 3600);
  CHECK(config->agent.limits.address_space_mb == 65536);
  CHECK(config->agent.limits.open_files == 1024);
  CHECK(config->log.level == "debug");
}

TEST_CASE("component log tables start from the top-level log") {
  Result<Config> config = parse_config(R"(
[coordinator.log]
json = true
[log]
level = "warn"
file = "kforge.log"
)",
                                       "kforge.toml");
  REQUIRE(config.ok());
  CHECK(config->coordinator.log.json);
  CHECK(config->coordinator.log.level == "warn");
  CHECK(config->coordinator.log.file == "kforge.log");
  CHECK_FALSE(config->agent.log.json);
  CHECK(config->agent.log.level == "warn");
}

TEST_CASE("type error names line, column and key") {
  CHECK(error_of("# kforge\n"
                 "[coordinator]\n"
                 "listen = \"tcp://127.0.0.1:7700\"\n"
                 "heartbeat_ms = \"fast\"\n") ==
        "kforge.toml:4:16: coordinator.heartbeat_ms: expected a positive integer, "
        "got string \"fast\"");
}

TEST_CASE("syntax error names its line") {
  std::string message = error_of(
      "[agent]\n"
      "host = \"a\"\n"
      "python = \"/usr/bin/python3\n"
      "cpu_devices = 2\n");
  CHECK(message.starts_with("kforge.toml:3:"));
  CHECK(message.find("invalid TOML") != std::string::npos);
}

TEST_CASE("unknown key is reported with a suggestion") {
  CHECK(error_of("[coordinator]\n"
                 "listen = \"tcp://127.0.0.1:7700\"\n"
                 "liveness = 3\n"
                 "\n"
                 "# silence before an agent is lost\n"
                 "\n"
                 "hartbeat_ms = 500\n") ==
        "kforge.toml:7:1: unknown key 'coordinator.hartbeat_ms' (did you mean 'heartbeat_ms'?)");
}

TEST_CASE("unknown table is reported with a suggestion") {
  CHECK(error_of("[cordinator]\nliveness = 3\n") ==
        "kforge.toml:1:2: unknown key 'cordinator' (did you mean 'coordinator'?)");
}

TEST_CASE("an [llm.ROLE] table of no LLM role is reported at its name") {
  CHECK(error_of("[llm.codr]\nprovider = \"replay\"\n") ==
        "kforge.toml:1:6: unknown key 'llm.codr' (did you mean 'coder'?)");
  CHECK(error_of("[llm.critic]\nprovider = \"replay\"\n") ==
        "kforge.toml:1:6: unknown key 'llm.critic'");
}

TEST_CASE("unknown key without a close match has no suggestion") {
  CHECK(error_of("[agent.limits]\nzebra = 1\n") ==
        "kforge.toml:2:1: unknown key 'agent.limits.zebra'");
}

TEST_CASE("several errors are reported in file order") {
  std::string message = error_of("[agent]\ncpu_devices = -1\nbogus = 1\n");
  CHECK(message ==
        "kforge.toml:2:15: agent.cpu_devices: expected a non-negative integer, got integer -1\n"
        "kforge.toml:3:1: unknown key 'agent.bogus'");
}

TEST_CASE("invalid log level is rejected") {
  CHECK(error_of("[log]\nlevel = \"loud\"\n") ==
        "kforge.toml:2:9: log.level: expected one of trace, debug, info, warn, error, off, got "
        "string \"loud\"");
  CHECK(error_of("[agent.log]\nlevel = \"warning\"\n").find("agent.log.level") !=
        std::string::npos);
}

TEST_CASE("zero heartbeat and liveness are rejected") {
  CHECK(error_of("[coordinator]\nheartbeat_ms = 0\n")
            .find("coordinator.heartbeat_ms: expected "
                  "a positive integer, got integer 0") != std::string::npos);
  CHECK(error_of("[coordinator]\nliveness = 0\n").find("coordinator.liveness") !=
        std::string::npos);
}

TEST_CASE("integer out of range for a 32-bit field is rejected") {
  CHECK(error_of("[agent]\njob_timeout_s = 4294967296\n") ==
        "kforge.toml:2:17: agent.job_timeout_s: expected an integer between 1 and 4294967295, "
        "got integer 4294967296");
}

TEST_CASE("endpoint without a transport is rejected") {
  CHECK(error_of("[agent]\ncoordinator = \"127.0.0.1:7700\"\n") ==
        "kforge.toml:2:15: agent.coordinator: expected an endpoint starting with tcp://, ipc:// "
        "or inproc://, got string \"127.0.0.1:7700\"");
}

TEST_CASE("table given as a scalar is rejected") {
  CHECK(error_of("coordinator = 5\n") ==
        "kforge.toml:1:15: coordinator: expected a table, got integer 5");
}

TEST_CASE("bad array element names its index") {
  CHECK(error_of("[agent]\nenv_allow = [\"PATH\", 3]\n") ==
        "kforge.toml:2:22: agent.env_allow[1]: expected a non-empty string, got integer 3");
}

TEST_CASE("agent.devices is a list of strings, empty by default") {
  Result<Config> config =
      parse_config("[agent]\ndevices = [\"cuda:0\", \"GPU-8d116ece\"]\n", "kforge.toml");
  REQUIRE(config.ok());
  CHECK(config->agent.devices == std::vector<std::string>{"cuda:0", "GPU-8d116ece"});
  CHECK(parse_config("", "kforge.toml")->agent.devices.empty());
  CHECK(error_of("[agent]\n\ndevices = \"cuda:0\"\n") ==
        "kforge.toml:3:11: agent.devices: expected an array of strings, got string \"cuda:0\"");
  CHECK(error_of("[agent]\ndevices = [\"cuda:0\", 3]\n") ==
        "kforge.toml:2:22: agent.devices[1]: expected a non-empty string, got integer 3");
}

TEST_CASE("missing file is not_found naming the path") {
  test::TempDir dir;
  Result<Config> config = load_config(dir / "absent.toml");
  REQUIRE_FALSE(config.ok());
  CHECK(config.status().code() == Code::not_found);
  CHECK(config.status().message().find((dir / "absent.toml").string()) != std::string::npos);
}

TEST_CASE("file errors carry the file's path") {
  test::TempDir dir;
  test::write_file(dir / "kforge.toml", "[log]\njson = \"yes\"\n");
  Result<Config> config = load_config(dir / "kforge.toml");
  REQUIRE_FALSE(config.ok());
  CHECK(config.status().message() == (dir / "kforge.toml").string() +
                                         ":2:8: log.json: expected true or false, got string "
                                         "\"yes\"");
}

TEST_CASE("example config in the tree is valid") {
  Result<Config> config = load_config(test::source_dir() / "examples" / "kforge.toml");
  INFO(config.status().to_string());
  CHECK(config.ok());
}

TEST_CASE("deployment examples are valid and say what docs/deploy.md says") {
  Result<Config> coordinator =
      load_config(test::source_dir() / "examples" / "deploy" / "coordinator.toml");
  REQUIRE_MESSAGE(coordinator.ok(), coordinator.status().to_string());
  CHECK(coordinator->coordinator.listen == "tcp://0.0.0.0:7700");
  CHECK(coordinator->coordinator.data_dir == "/var/lib/kforge/coordinator");
  CHECK(coordinator->coordinator.http_listen == "127.0.0.1:7780");
  CHECK(coordinator->coordinator.secret_key_file == "/etc/kforge/coordinator.key");
  CHECK(coordinator->coordinator.agent_keys_file == "/etc/kforge/agent-keys.toml");
  Result<Config> agent = load_config(test::source_dir() / "examples" / "deploy" / "agent.toml");
  REQUIRE_MESSAGE(agent.ok(), agent.status().to_string());
  CHECK(agent->agent.state_dir == "/var/lib/kforge/agent");
  CHECK(agent->agent.cpu_devices == 0);
  CHECK(agent->agent.id == "gpu1");
  CHECK(agent->agent.secret_key_file == "/etc/kforge/agent.key");
}

TEST_CASE("llm replay_latency_ms is read for replay, 0 by default") {
  Result<Config> config = parse_config(R"(
[llm.coder]
provider = "replay"
recording = "rec.jsonl"
replay_latency_ms = 20000
concurrency = 8
)",
                                       "kforge.toml");
  REQUIRE_MESSAGE(config.ok(), config.status().to_string());
  CHECK(config->llm.coder.replay_latency_ms == 20000);
  CHECK(config->llm.coder.concurrency == 8);
  CHECK(config->llm.designer.replay_latency_ms == 0);
}

TEST_CASE("llm replay_latency_ms with another provider names the key") {
  CHECK(error_of("[llm.coder]\n"
                 "provider = \"openai\"\n"
                 "base_url = \"http://127.0.0.1:8000/v1\"\n"
                 "replay_latency_ms = 1000\n"
                 "model = \"m\"\n") ==
        "kforge.toml:4:21: llm.coder.replay_latency_ms: only valid with provider = \"replay\", not "
        "with "
        "provider = \"openai\"");
  CHECK(error_of("[llm.designer]\nreplay_latency_ms = 5\n") ==
        "kforge.toml:1:1: llm.designer: provider is missing; expected one of openai, replay, "
        "record (or remove the "
        "table)\n"
        "kforge.toml:2:21: llm.designer.replay_latency_ms: only valid with provider = \"replay\", "
        "not "
        "without a provider");
  CHECK(error_of("[llm.coder]\nprovider = \"replay\"\nreplay_latency_ms = -1\nrecording = "
                 "\"r.jsonl\"\n") ==
        "kforge.toml:3:21: llm.coder.replay_latency_ms: expected a non-negative integer, got "
        "integer -1");
}

TEST_CASE("the operator API's keys: host names, public metrics, limits") {
  Result<Config> config = parse_config(
      "[coordinator]\napi_hosts = [\"head-node\", \"head-node.example\"]\nmetrics_public = true\n"
      "api_max_body_mb = 8\napi_max_connections = 64\napi_threads = 4\n",
      "kforge.toml");
  REQUIRE_MESSAGE(config.ok(), config.status().to_string());
  CHECK(config->coordinator.api_hosts ==
        std::vector<std::string>{"head-node", "head-node.example"});
  CHECK(config->coordinator.metrics_public);
  CHECK(config->coordinator.api_max_body_mb == 8);
  CHECK(config->coordinator.api_max_connections == 64);
  CHECK(config->coordinator.api_threads == 4);
  Result<Config> defaults = parse_config("", "kforge.toml");
  REQUIRE(defaults.ok());
  CHECK_FALSE(defaults->coordinator.metrics_public);
  CHECK(defaults->coordinator.api_max_body_mb == 256);
  Result<Config> zero = parse_config("[coordinator]\napi_threads = 0\n", "kforge.toml");
  REQUIRE_FALSE(zero.ok());
  CHECK(zero.status().message().find("coordinator.api_threads") != std::string::npos);
}

TEST_CASE(
    "what each [llm.*] provider needs is checked for every role at once, at each key's line") {
  CHECK(
      error_of("[llm.designer]\n"                 // 1
               "provider = \"opnai\"\n"           // 2
               "[llm.coder]\n"                    // 3
               "provider = \"openai\"\n"          // 4
               "base_url = \"localhost:8000\"\n"  // 5
               "api_key_env = \"K\"\n"            // 6
               "api_key_file = \"k.txt\"\n"       // 7
               "[llm.conductor]\n"                // 8
               "provider = \"record\"\n"          // 9
               "model = \"m\"\n") ==
      "kforge.toml:2:12: llm.designer.provider: expected one of openai, replay, record, got "
      "\"opnai\"\n"
      "kforge.toml:3:1: llm.coder: provider \"openai\" needs model = \"...\"\n"
      "kforge.toml:5:12: llm.coder.base_url: expected a URL starting with http:// or https://, got "
      "\"localhost:8000\"\n"
      "kforge.toml:7:16: llm.coder: set api_key_env or api_key_file, not both\n"
      "kforge.toml:9:12: llm.conductor: provider \"record\" needs recording = \"FILE.jsonl\"");
}

TEST_CASE(
    "ConfigChecks::host adds what this host must provide: the server, the key, the recording") {
  test::TempDir dir;
  test::write_file(dir / "open.key", "sk-1\n");
  std::filesystem::permissions(dir / "open.key", std::filesystem::perms::all);
  const std::string text =
      "[llm.designer]\n"                               // 1
      "provider = \"replay\"\n"                        // 2
      "recording = \"gone.jsonl\"\n"                   // 3
      "[llm.coder]\n"                                  // 4
      "provider = \"openai\"\n"                        // 5
      "model = \"m\"\n"                                // 6
      "api_key_file = \"open.key\"\n"                  // 7
      "[llm.conductor]\n"                              // 8
      "provider = \"openai\"\n"                        // 9
      "base_url = \"http://127.0.0.1:9/v1\"\n"         // 10
      "model = \"m\"\n"                                // 11
      "api_key_env = \"KFORGE_CONFIG_TEST_UNSET\"\n";  // 12
  ::unsetenv("OPENAI_BASE_URL");
  ::unsetenv("KFORGE_CONFIG_TEST_UNSET");
  CHECK(parse_config(text, "kforge.toml").ok());  // the file alone is sound
  Result<Config> host = parse_config(text, "kforge.toml", ConfigChecks::host, dir.path());
  REQUIRE_FALSE(host.ok());
  const std::string e = host.status().message();
  CHECK_MESSAGE(e.find("kforge.toml:3:13: llm.designer.recording: " +
                       (dir / "gone.jsonl").string() + " does not exist") != std::string::npos,
                e);
  CHECK_MESSAGE(e.find("kforge.toml:4:1: llm.coder: provider \"openai\" needs base_url = "
                       "\"http://HOST:PORT/v1\" (or "
                       "$OPENAI_BASE_URL set)") != std::string::npos,
                e);
  CHECK_MESSAGE(e.find("kforge.toml:7:16: llm.coder.api_key_file: ") != std::string::npos, e);
  CHECK_MESSAGE(
      e.find(
          "kforge.toml:12:15: llm.conductor.api_key_env: names $KFORGE_CONFIG_TEST_UNSET, which is "
          "not set here") != std::string::npos,
      e);
  // OpenAI's variable fills a missing base_url, as the LLM client would.
  ::setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1", 1);
  Result<Config> with_url = parse_config(text, "kforge.toml", ConfigChecks::host, dir.path());
  ::unsetenv("OPENAI_BASE_URL");
  REQUIRE_FALSE(with_url.ok());
  CHECK(with_url.status().message().find("needs base_url") == std::string::npos);
}
