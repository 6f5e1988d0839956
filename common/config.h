// kforge configuration: one TOML file turned into plain structs, once, at startup.
//
// A file may hold the tables [coordinator], [agent], [llm.*], [cli] and [log]; each component reads
// its own table and ignores the others. Every key is optional; a missing key keeps the default
// written here. The top-level [log] is the default for [coordinator.log] and [agent.log]: a
// component log table overrides only the keys it names. docs/configuration.md lists every key.
//
// Errors name the file, line, column and key and say what was expected, e.g.
//   kforge.toml:4:16: coordinator.heartbeat_ms: expected a positive integer, got string "fast"
// Unknown keys are errors (a typo must not silently fall back to a default).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/vocabulary.h"

namespace kforge {

struct LogConfig {
  std::string level = "info";  // trace | debug | info | warn | error | off
  std::string file;            // also append to this file; empty: console (stderr) only
  bool json = false;           // one JSON object per line instead of text
  uint64_t max_file_mb = 100;  // rotate `file` when it reaches this size; 0: never rotate
  uint32_t max_files = 5;      // rotated files kept beside `file` (name.1.log ... name.N.log)
};

struct CoordinatorConfig {
  std::string listen = "tcp://127.0.0.1:7700";  // ZeroMQ ROUTER endpoint agents connect to
  std::string data_dir = "kforge-data";         // holds kforge.db
  std::string http_listen = "127.0.0.1:7780";   // host:port of the operator API ("" = none)
  // File holding the operator API's token; "" = <data_dir>/api.token, created (0600) at the
  // first start. Every API request needs it, on every address (schema/api.md).
  std::string api_token_file;
  std::vector<std::string>
      api_hosts;  // Host names operators reach the API by, besides loopback and its address
  bool metrics_public = false;     // serve /metrics without the token (for a scraper without one)
  uint32_t api_max_body_mb = 256;  // largest request body (a campaign submission)
  uint32_t api_max_connections = 1024;  // open API connections; more are answered 503
  uint32_t api_threads = 16;     // threads answering API requests (idle connections need none)
  uint32_t heartbeat_ms = 1000;  // expected interval between agent heartbeats
  uint32_t liveness = 3;         // agent is lost after heartbeat_ms*liveness of silence
  // Agents' heartbeats per second the coordinator asks for at most: a fleet larger than
  // max_heartbeats_per_s x heartbeat_ms / 1000 agents is told a multiple of heartbeat_ms
  // (0: always heartbeat_ms).
  uint32_t max_heartbeats_per_s = 5000;
  uint32_t restart_grace_ms = 5000;  // after start, wait this long for agents before re-queuing
  uint32_t precision_jobs_per_device = 1;  // >1 lets several precision-only jobs share a device
  uint32_t verify_timeout_s = 300;  // wall-clock limit of each verify job the Conductor submits
  uint32_t disk_reserve_mb =
      64;  // kept free in data_dir, given back when the disk is full (0: none)
  // CURVE on the agent link: this coordinator's secret key file (kforge keygen) and the
  // allow-list of agent keys (agent id = public key, re-read when it changes). Both or
  // neither; neither: plain TCP, unauthenticated (a warning at start).
  std::string secret_key_file;
  std::string agent_keys_file;
  LogConfig log;  // defaults to the top-level [log]
};

// Resource limits applied to each job's process tree (setrlimit); 0 means no limit.
struct AgentLimits {
  uint64_t address_space_mb = 0;  // RLIMIT_AS in MiB
  uint64_t cpu_s = 0;             // RLIMIT_CPU in seconds of CPU time
  uint64_t open_files = 1024;     // RLIMIT_NOFILE
  uint64_t processes = 0;         // RLIMIT_NPROC
  uint64_t file_size_mb = 1024;   // RLIMIT_FSIZE in MiB
  // Enforced by the job's cgroup (common/sandbox.h); 0 means no limit.
  uint64_t memory_mb = 0;  // memory.max (v1: memory.limit_in_bytes), page cache and tmpfs included
  uint64_t pids = 4096;    // pids.max: processes and threads of one job
  uint32_t cpu_percent = 0;  // cpu.max quota in % of one CPU (200 = two CPUs)
  uint64_t io_mbps = 0;      // io.max (v1 blkio.throttle): MiB/s read and written per disk
};

struct AgentConfig {
  std::string coordinator = "tcp://127.0.0.1:7700";  // coordinator endpoint to connect to
  std::string state_dir = "kforge-agent";            // agent id, outbox, job work directories
  std::string id;  // agent id (the allow-list's name for it); empty: the state directory's
  // CURVE: this agent's secret key file and the coordinator's public key (z85). Both or
  // neither; neither: plain TCP, unauthenticated (a warning at start).
  std::string secret_key_file;
  std::string coordinator_public_key;
  std::string host;          // name reported to the coordinator; empty: gethostname()
  uint32_t cpu_devices = 1;  // CPU device slots offered (0: none)
  // Accelerators offered: "cuda:0", "ascend:1" or a GPU UUID ("GPU-..."); empty: all found.
  std::vector<std::string> devices;
  std::string cpu_arch = "x86_64";          // architecture reported for CPU devices
  std::string python = "/usr/bin/python3";  // interpreter that runs job harnesses
  std::string harness_dir;                  // kforge_harness.py's directory; empty: found
  std::string work_dir;                     // job work dirs; empty: <tmp>/kforge-jobs-<agent id>
  // Containment (docs/security.md "Jobs"): each job runs as its own uid from this range, one
  // per concurrently running job ("": as the agent's uid, only with allow_uncontained).
  std::string job_uids = "60000-60063";
  bool allow_uncontained = false;      // run jobs even where the host lacks part of the box
  bool contain = true;                 // false: no box at all (logged; for tests whose jobs must
                                       // write outside their directory or report host pids)
  uint64_t job_disk_mb = 1024;         // each job's work dir, /tmp and /dev/shm: tmpfs of this size
  std::vector<std::string> hide_dirs;  // also hidden from jobs (the state dir always is)
  std::string nvidia_smi = "nvidia-smi";  // NVIDIA GPU discovery tool (name or path)
  std::string npu_smi = "npu-smi";        // Ascend NPU discovery tool (name or path)
  uint32_t job_timeout_s = 600;           // wall-clock limit of one job; it is killed after this
  uint32_t output_cap_kb = 1024;          // stdout/stderr kept per job; the rest is cut
  bool warm_start = true;     // each device's Verifier started with the agent, not by its first job
  uint32_t warm_workers = 2;  // candidate workers kept warming ahead of the jobs, per device
  // Environment variables passed through to jobs; all others are dropped.
  std::vector<std::string> env_allow = {"PATH",
                                        "HOME",
                                        "LANG",
                                        "LC_ALL",
                                        "TMPDIR",
                                        "USER",
                                        "LD_LIBRARY_PATH",
                                        "CUDA_HOME",
                                        "ASCEND_HOME_PATH",
                                        "TRITON_CACHE_DIR"};
  AgentLimits limits;  // per-job resource limits
  LogConfig log;       // defaults to the top-level [log]
};

// One LLM role's endpoint ([llm.designer], [llm.coder], [llm.conductor]); docs/llm.md.
struct LlmRoleConfig {
  std::string provider;  // openai | replay | record; empty: the role is not configured
  std::string base_url;  // e.g. http://127.0.0.1:8000/v1
  std::string model;
  std::string api_key_env;   // env var holding the API key ("" = none)
  std::string api_key_file;  // or a file holding it, not readable by others (relative: to
                             // the config file); never in any process's environment
  double temperature = 0.2;
  uint32_t max_tokens = 4096;
  uint32_t timeout_s = 120;              // per attempt
  uint32_t concurrency = 4;              // requests in flight to this endpoint
  uint32_t max_retries = 5;              // on 429, 5xx, timeouts
  double price_prompt_per_mtok = 0;      // USD per million prompt tokens
  double price_completion_per_mtok = 0;  // USD per million completion tokens
  std::string recording;                 // replay/record: JSONL file (relative: to the config file)
  uint32_t replay_latency_ms = 0;        // replay only: simulated answer time per call (0: at once)
};

struct LlmConfig {
  LlmRoleConfig designer;
  LlmRoleConfig coder;
  LlmRoleConfig conductor;  // optional: without it the Conductor decides by rules

  // The table of `role` ([llm.ROLE], ROLE its name).
  LlmRoleConfig& of(LlmRole role);
  const LlmRoleConfig& of(LlmRole role) const;
};

// What the `kforge` command line talks to ([cli]); --coordinator and --token-file override.
struct CliConfig {
  std::string coordinator;  // the operator API's URL, e.g. http://head-node:7780
  std::string token_file;   // file holding the API token (coordinator.api_token_file's twin)
};

struct Config {
  CoordinatorConfig coordinator;  // [coordinator]
  AgentConfig agent;              // [agent]
  LlmConfig llm;                  // [llm.designer], [llm.coder], [llm.conductor]
  CliConfig cli;                  // [cli]
  LogConfig log;                  // the top-level [log]; component log tables default to it
};

// What parse_config checks besides each key's type and range.
enum class ConfigChecks {
  // The file alone: also what each [llm.*] provider needs (recording, model, a base_url
  // that is http(s)://, not api_key_env and api_key_file both), with each key's line.
  file,
  // Also what depends on this host, for the process that will call the LLM (`kforge check`,
  // `kforge run`): each role's server ($OPENAI_BASE_URL counts), its api_key_env set, its
  // api_key_file and replay recording readable, and no key variable in agent.env_allow.
  // A daemon reading a config file shared with other hosts does not make these.
  host,
};

// Reads and validates a config file. not_found (naming the path) when it does not exist;
// invalid_argument with "file:line:column: key: ..." lines for a bad file, every problem
// found, in file order. Relative paths in it are relative to its directory.
Result<Config> load_config(const std::filesystem::path& path,
                           ConfigChecks checks = ConfigChecks::file);

// Parses TOML text; `source_name` stands for the file name in error messages, `base_dir`
// for its directory (ConfigChecks::host reads the files the [llm.*] roles name there).
Result<Config> parse_config(std::string_view toml_text, const std::string& source_name,
                            ConfigChecks checks = ConfigChecks::file,
                            const std::filesystem::path& base_dir = {});

// The LLM providers a role may name.
const std::vector<std::string>& llm_providers();

// The server and the API key variable an [llm.*] role uses: its own, else OpenAI's
// conventions fill in (docs/llm.md): $OPENAI_BASE_URL, and $OPENAI_API_KEY when the role
// names no key. A replayed role uses neither ("").
std::string llm_base_url(const LlmRoleConfig& role);
std::string llm_key_env(const LlmRoleConfig& role);

}  // namespace kforge
