// The wire protocol between kforge-coordinator (ROUTER) and kforge-agent (DEALER).
//
// Every ZeroMQ message carries one frame (after the ROUTER's identity frame) holding a
// msgpack map {"v": version, "t": type, "b": body}. schema/protocol.md is the contract;
// this header is its C++ form. Message type numbers are frozen: a retired number is never
// reused (leave a comment where it was).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/status.h"
#include "common/verify_result.h"

namespace kforge::proto {

// Bumped only for changes an older peer cannot ignore (see schema/protocol.md, versioning).
inline constexpr uint32_t kProtocolVersion = 1;

enum class MsgType : uint32_t {
  unknown = 0,
  hello = 1,       // agent -> coordinator: register (or re-register) this agent process
  welcome = 2,     // coordinator -> agent: registration accepted
  refused = 3,     // coordinator -> agent: registration refused, with the reason
  heartbeat = 4,   // both ways: liveness (any message counts as one)
  assign = 5,      // coordinator -> agent: run this job attempt on this device
  result = 6,      // agent -> coordinator: a finished job attempt
  result_ack = 7,  // coordinator -> agent: result stored (or dropped as stale); clear outbox
  cancel = 8,      // coordinator -> agent: kill this job attempt
  bye = 9,         // agent -> coordinator: orderly shutdown
};

const char* msg_type_name(MsgType t);

// A job attempt: the lease epoch tells attempts of one job apart.
struct JobRef {
  uint64_t job_id = 0;
  uint64_t epoch = 0;
  bool operator==(const JobRef&) const = default;
};

struct DeviceInfo {
  uint32_t index = 0;      // per agent and backend, as the backend numbers it (cuda:3 -> 3)
  std::string backend;     // "cuda" | "ascend" | "cpu"
  std::string arch;        // "h100", "a100", "ascend910b4", "x86_64", ...
  std::string name;        // the tool's product name, for people
  uint64_t memory_mb = 0;  // 0 when unknown
  bool operator==(const DeviceInfo&) const = default;
};

struct Hello {
  std::string agent_id;     // stable across restarts (state directory)
  std::string incarnation;  // new for every agent process
  std::string host;
  std::vector<DeviceInfo> devices;
  std::map<std::string, std::string> capabilities;  // "python" -> "3.11.2", "torch" -> ...
  std::vector<JobRef> running;                      // attempts this process is running now
  std::vector<JobRef> outbox;                       // finished attempts whose results await an ack
  bool operator==(const Hello&) const = default;
};

struct Welcome {
  std::string coordinator_incarnation;  // new for every coordinator process
  uint32_t heartbeat_ms = 1000;         // send something at least this often
  uint32_t liveness = 3;                // missed intervals before the peer is lost
  bool operator==(const Welcome&) const = default;
};

// Why a Hello was refused (Refused.code). Numbers are frozen like the message types. Codes
// 0..99 are fatal: the agent stops (exit status 3, which systemd does not restart). Codes
// 100..199 are transient: the agent says Hello again later, with backoff. An agent treats a
// code it does not know by its range.
enum class RefusalCode : uint32_t {
  unspecified = 0,       // fatal; what a coordinator that predates codes sends
  protocol_version = 1,  // the coordinator speaks another protocol version
  not_authorized = 2,    // this connection's key may not register this agent id
  invalid_hello = 3,     // the Hello contradicts itself (a device listed twice, a bad id)
  superseded = 4,        // a newer process of this agent (holding its key) took over
  id_in_use = 100,       // transient: another live process holds this agent id (plain TCP)
};
inline bool refusal_is_transient(uint32_t code) {
  return code >= 100 && code < 200;
}

struct Refused {
  std::string reason;  // for the agent's log
  uint32_t coordinator_version = kProtocolVersion;
  uint32_t code = 0;  // RefusalCode; a fatal one stops the agent, a transient one delays it
  bool operator==(const Refused&) const = default;
};

// An agent id as the coordinator accepts it: 1 to 128 printable ASCII characters, no '/'
// (the routing id separates agent id and incarnation with '/').
bool valid_agent_id(std::string_view id);

// One device's Verifier as its agent sees it (agent/verifier/verifier.h Stats), for metrics.
struct VerifierPool {
  std::string backend;
  uint32_t device_index = 0;
  uint32_t warm = 0;     // workers started and waiting for a job
  uint32_t busy = 0;     // workers running a candidate
  uint64_t spawned = 0;  // workers started since the Verifier started
  uint64_t forked = 0;   // of which forked from the zygote
  bool zygote = false;   // the worker zygote is up
  bool operator==(const VerifierPool&) const = default;
};

// The longest heartbeat interval a coordinator asks of an agent (Heartbeat.heartbeat_ms).
inline constexpr uint32_t kMaxHeartbeatMs = 60'000;

struct Heartbeat {
  // Agent -> coordinator only (empty the other way): what the agent holds, so lost
  // assignments, cancels and acks are repaired without waiting for a reconnect.
  std::vector<JobRef> running;
  std::vector<JobRef> outbox;
  // Agent -> coordinator: the devices whose Verifier has started (absent: none, or an agent
  // from before this field; the coordinator's heartbeats never carry it).
  std::optional<std::vector<VerifierPool>> pools;
  // Coordinator -> agent: send at least this often from now on (absent: no change). A large
  // fleet is told a longer interval than the configured one (CoordinatorOptions).
  std::optional<uint32_t> heartbeat_ms;
  bool operator==(const Heartbeat&) const = default;
};

struct Limits {
  uint64_t address_space_mb = 0;  // RLIMIT_AS; 0 = agent default
  uint64_t cpu_s = 0;             // RLIMIT_CPU
  uint64_t open_files = 0;        // RLIMIT_NOFILE
  uint64_t processes = 0;         // RLIMIT_NPROC
  uint64_t file_size_mb = 0;      // RLIMIT_FSIZE
  bool operator==(const Limits&) const = default;
};

struct Assign {
  JobRef job;
  uint32_t device_index = 0;
  std::string backend;                       // of the device, to pick the visibility variable
  std::string kind;                          // "exec" (a plain command), "verify" (the harness)
  std::vector<std::string> argv;             // exec: the command; verify: harness arguments
  std::map<std::string, std::string> env;    // added to the scrubbed environment
  std::map<std::string, std::string> files;  // written into the work directory first
  uint64_t timeout_ms = 0;                   // wall clock; 0 = agent default
  Limits limits;
  bool operator==(const Assign&) const = default;
};

struct JobResult {
  JobRef job;
  std::string agent_id;
  int32_t exit_code = -1;   // when the process exited; -1 otherwise
  int32_t signal = 0;       // when killed by a signal
  bool timed_out = false;   // killed at the wall-clock timeout
  bool cancelled = false;   // killed on a Cancel
  std::string infra_error;  // non-empty when the agent could not run the job at all
  std::string stdout_data;
  std::string stderr_data;
  bool output_truncated = false;  // stdout or stderr hit the capture cap
  std::string result_json;        // exec jobs: the result.json the command wrote, if any.
                                  // Verify jobs of agents before `verify`: the verdict document
  std::optional<VerifyResult> verify;  // verify jobs: the judge's verdict, typed
  int64_t started_ms = 0;              // wall clock, ms since the Unix epoch
  int64_t finished_ms = 0;
  bool operator==(const JobResult&) const = default;
};

struct ResultAck {
  JobRef job;
  bool recorded = false;  // false: stale or duplicate, dropped (the agent clears it anyway)
  bool operator==(const ResultAck&) const = default;
};

struct Cancel {
  JobRef job;
  std::string reason;
  bool operator==(const Cancel&) const = default;
};

struct Bye {
  std::string reason;
  bool operator==(const Bye&) const = default;
};

using Message =
    std::variant<Hello, Welcome, Refused, Heartbeat, Assign, JobResult, ResultAck, Cancel, Bye>;

MsgType type_of(const Message& m);

// Limits applied while decoding one frame; anything beyond them is an error value.
struct DecodeLimits {
  size_t max_frame_bytes = 64u << 20;  // whole frame
  size_t max_depth = 8;                // nesting of maps/arrays
  size_t max_str = 32u << 20;          // bytes in one string
  size_t max_bin = 32u << 20;          // bytes in one binary
  size_t max_array = 100'000;          // elements in one array
  size_t max_map = 100'000;            // pairs in one map
};

struct Frame {
  uint32_t version = 0;
  MsgType type = MsgType::unknown;
  // The decoded body when version == kProtocolVersion. For another version the body is not
  // interpreted (its layout may differ): `message` is a default Heartbeat and the receiver
  // answers with Refused.
  Message message;
};

// Encodes a message with the current protocol version.
std::string encode(const Message& m);

// Decodes one frame. A malformed, truncated, oversized or over-deep frame, a field of the
// wrong type or an unknown message type yields an error naming what was wrong; this never
// throws and never crashes.
Result<Frame> decode(std::string_view bytes, const DecodeLimits& limits = {});

}  // namespace kforge::proto
