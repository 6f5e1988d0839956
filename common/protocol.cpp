// Encoding and decoding of the wire protocol (schema/protocol.md).
//
// Each struct's wire layout is written once, in its Schema<T>::fields(): one call
// f(key, member, options) per field, in wire order. The Writer and the Reader both walk
// that one description, so encode and decode cannot drift apart.
#include "common/protocol.h"

#include <cstdio>
#include <limits>
#include <msgpack.hpp>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

namespace kforge::proto {

bool valid_agent_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (c <= 0x20 || c >= 0x7f || c == '/') return false;
  }
  return true;
}

const char* msg_type_name(MsgType t) {
  switch (t) {
    case MsgType::unknown: return "unknown";
    case MsgType::hello: return "hello";
    case MsgType::welcome: return "welcome";
    case MsgType::refused: return "refused";
    case MsgType::heartbeat: return "heartbeat";
    case MsgType::assign: return "assign";
    case MsgType::result: return "result";
    case MsgType::result_ack: return "result_ack";
    case MsgType::cancel: return "cancel";
    case MsgType::bye: return "bye";
  }
  return "unknown";
}

namespace {

// Field options, or-ed together.
enum FieldOpt : unsigned {
  kOptional = 0,        // missing on the wire: the member keeps its struct default
  kRequired = 1u << 0,  // missing on the wire: the frame is rejected
  kBytes = 1u << 1,     // arbitrary bytes: encoded as bin (map fields: the values)
};

// Schema<T>: the wire description of T. `described` is true for structs encoded as maps;
// message structs also name their MsgType.
template <class T>
struct Schema {
  static constexpr bool described = false;
};

template <class T>
concept Described = Schema<T>::described;

template <>
struct Schema<JobRef> {
  static constexpr bool described = true;
  // A job reference is what every handler keys on: both parts are always required.
  template <class S, class F>
  static void fields(S& s, F&& f) {
    f("job_id", s.job_id, kRequired);
    f("epoch", s.epoch, kRequired);
  }
};

template <>
struct Schema<DeviceInfo> {
  static constexpr bool described = true;
  template <class S, class F>
  static void fields(S& s, F&& f) {
    f("index", s.index, kOptional);
    f("backend", s.backend, kOptional);
    f("arch", s.arch, kOptional);
    f("name", s.name, kOptional);
    f("memory_mb", s.memory_mb, kOptional);
  }
};

template <>
struct Schema<Hello> {
  static constexpr bool described = true;
  static constexpr MsgType type = MsgType::hello;
  template <class S, class F>
  static void fields(S& s, F&& f) {
    f("agent_id", s.agent_id, kRequired);
    f("incarnation", s.incarnation, kOptional);
    f("host", s.host, kOptional);
    f("devices", s.devices, kOptional);
    f("capabilities", s.capabilities, kOptional);
    f("running", s.running, kOptional);
    f("outbox", s.outbox, kOptional);
  }
};

template <>
struct Schema<Welcome> {
  static constexpr bool described = true;
  static constexpr MsgType type = MsgType::welcome;
  template <class S, class F>
  static void fields(S& s, F&& f) {
    f("coordinator_incarnation", s.coordinator_incarnation, kOptional);
    f("heartbeat_ms", s.heartbeat_ms, kOptional);
    f("liveness", s.liveness, kOptional);
  }
};

template <>
struct Schema<Refused> {
  static constexpr bool described = true;
  static constexpr MsgType type = MsgType::refused;
  template <class S, class F>
  static void fields(S& s, F&& f) {
    f("reason", s.reason, kOptional);
    f("coordinator_version", s.coordinator_version, kOptional);
    f("code", s.code, kOptional);
  }
};

template <>
struct Schema<VerifierPool> {
  static constexpr bool described = true;
  template <class S, class F>
  static void fields(S& s, F&& f) {
    f("backend", s.backend, kOptional);
    f("device_index", s.device_index, kOptional);
    f("warm", s.warm, kOptional);
    f("busy", s.busy, kOptional);
    f("spawned", s.spawned, kOptional);
    f("forked", s.forked, kOptional);
    f("zygote", s.zygote, kOptional);
  }
};

template <>
struct Schema<Heartbeat> {
  static constexpr bool described = true;
  static constexpr MsgType type = MsgType::heartbeat;
  template <class S, class F>
  static void fields(S& s, F&& f) {
    f("running", s.running, kOptional);
    f("outbox", s.outbox, kOptional);
    f("pools", s.pools, kOptional);
    f("heartbeat_ms", s.heartbeat_ms, kOptional);
  }
};

template <>
struct Schema<Limits> {
  static constexpr bool described = true;
  template <class S, class F>
  static void fields(S& s, F&& f) {
    f("address_space_mb", s.address_space_mb, kOptional);
    f("cpu_s", s.cpu_s, kOptional);
    f("open_files", s.open_files, kOptional);
    f("processes", s.processes, kOptional);
    f("file_size_mb", s.file_size_mb, kOptional);
  }
};

template <>
struct Schema<Assign> {
  static constexpr bool described = true;
  static constexpr MsgType type = MsgType::assign;
  template <class S, class F>
  static void fields(S& s, F&& f) {
    f("job", s.job, kRequired);
    f("device_index", s.device_index, kOptional);
    f("backend", s.backend, kOptional);
    f("kind", s.kind, kOptional);
    f("argv", s.argv, kOptional);
    f("env", s.env, kOptional);
    f("files", s.files, kBytes);
    f("timeout_ms", s.timeout_ms, kOptional);
    f("limits", s.limits, kOptional);
  }
};

template <>
struct Schema<TimingStats> {
  static constexpr bool described = true;
  template <class S, class F>
  static void fields(S& s, F&& f) {
    f("median_us", s.median_us, kOptional);
    f("min_us", s.min_us, kOptional);
    f("max_us", s.max_us, kOptional);
    f("mean_us", s.mean_us, kOptional);
    f("runs", s.runs, kOptional);
  }
};

template <>
struct Schema<Profile> {
  static constexpr bool described = true;
  template <class S, class F>
  static void fields(S& s, F&& f) {
    f("candidate", s.candidate, kOptional);
    f("reference", s.reference, kOptional);
    f("speedup", s.speedup, kOptional);
    f("suspicious", s.suspicious, kOptional);
    f("method", s.method, kOptional);
    f("warmup", s.warmup, kOptional);
    f("more", s.more, kOptional);
  }
};

template <>
struct Schema<Checks> {
  static constexpr bool described = true;
  template <class S, class F>
  static void fields(S& s, F&& f) {
    f("mismatches", s.mismatches, kOptional);
    f("total", s.total, kOptional);
    f("max_abs_error", s.max_abs_error, kOptional);
    f("max_rel_error", s.max_rel_error, kOptional);
    f("more", s.more, kOptional);
  }
};

template <>
struct Schema<VerifyResult> {
  static constexpr bool described = true;
  template <class S, class F>
  static void fields(S& s, F&& f) {
    f("verdict", s.verdict, kRequired);
    f("message", s.message, kOptional);
    f("input_error", s.input_error, kOptional);
    f("stage", s.stage, kOptional);
    f("trials", s.trials, kOptional);
    f("checks", s.checks, kOptional);
    f("profile", s.profile, kOptional);
    f("details", s.details, kOptional);
  }
};

template <>
struct Schema<JobResult> {
  static constexpr bool described = true;
  static constexpr MsgType type = MsgType::result;
  template <class S, class F>
  static void fields(S& s, F&& f) {
    f("job", s.job, kRequired);
    f("agent_id", s.agent_id, kOptional);
    f("exit_code", s.exit_code, kOptional);
    f("signal", s.signal, kOptional);
    f("timed_out", s.timed_out, kOptional);
    f("cancelled", s.cancelled, kOptional);
    f("infra_error", s.infra_error, kOptional);
    f("stdout_data", s.stdout_data, kBytes);
    f("stderr_data", s.stderr_data, kBytes);
    f("output_truncated", s.output_truncated, kOptional);
    f("result_json", s.result_json, kOptional);
    f("verify", s.verify, kOptional);
    f("started_ms", s.started_ms, kOptional);
    f("finished_ms", s.finished_ms, kOptional);
  }
};

template <>
struct Schema<ResultAck> {
  static constexpr bool described = true;
  static constexpr MsgType type = MsgType::result_ack;
  template <class S, class F>
  static void fields(S& s, F&& f) {
    f("job", s.job, kRequired);
    f("recorded", s.recorded, kOptional);
  }
};

template <>
struct Schema<Cancel> {
  static constexpr bool described = true;
  static constexpr MsgType type = MsgType::cancel;
  template <class S, class F>
  static void fields(S& s, F&& f) {
    f("job", s.job, kRequired);
    f("reason", s.reason, kOptional);
  }
};

template <>
struct Schema<Bye> {
  static constexpr bool described = true;
  static constexpr MsgType type = MsgType::bye;
  template <class S, class F>
  static void fields(S& s, F&& f) {
    f("reason", s.reason, kOptional);
  }
};

// Every variant alternative names a distinct type number, 1..size, so that the table is
// total and no number is claimed twice.
template <size_t... I>
constexpr bool message_types_are_distinct(std::index_sequence<I...>) {
  constexpr uint32_t types[] = {
      static_cast<uint32_t>(Schema<std::variant_alternative_t<I, Message>>::type)...};
  for (size_t a = 0; a < sizeof...(I); ++a) {
    if (types[a] == 0) return false;
    for (size_t b = a + 1; b < sizeof...(I); ++b) {
      if (types[a] == types[b]) return false;
    }
  }
  return true;
}
static_assert(message_types_are_distinct(std::make_index_sequence<std::variant_size_v<Message>>()),
              "every Message alternative needs its own nonzero MsgType");

// ---------------------------------------------------------------------------------------
// Encoding

// A msgpack output stream appending to a string.
struct StringSink {
  std::string out;
  void write(const char* p, size_t n) { out.append(p, n); }
};

// Whether a field goes on the wire: every field but an empty optional.
template <class T>
bool present(const T&) {
  return true;
}
template <class T>
bool present(const std::optional<T>& v) {
  return v.has_value();
}

class Writer {
 public:
  explicit Writer(StringSink& sink) : pk_(sink) {}

  void str(std::string_view s) {
    pk_.pack_str(static_cast<uint32_t>(s.size()));
    pk_.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
  }
  void bin(std::string_view s) {
    pk_.pack_bin(static_cast<uint32_t>(s.size()));
    pk_.pack_bin_body(s.data(), static_cast<uint32_t>(s.size()));
  }
  void uint(uint64_t v) { pk_.pack_uint64(v); }
  void map_header(size_t n) { pk_.pack_map(static_cast<uint32_t>(n)); }

  void put(uint32_t v, unsigned) { pk_.pack_uint32(v); }
  void put(uint64_t v, unsigned) { pk_.pack_uint64(v); }
  void put(int32_t v, unsigned) { pk_.pack_int32(v); }
  void put(int64_t v, unsigned) { pk_.pack_int64(v); }
  void put(bool v, unsigned) {
    if (v) {
      pk_.pack_true();
    } else {
      pk_.pack_false();
    }
  }
  void put(double v, unsigned) { pk_.pack_double(v); }
  void put(Verdict v, unsigned) { str(to_string(v)); }
  template <class T>
  void put(const std::optional<T>& v, unsigned opts) {
    put(*v, opts);  // REQUIRES: present(v); an absent optional is left out of its map
  }
  void put(const std::string& s, unsigned opts) {
    if (opts & kBytes) {
      bin(s);
    } else {
      str(s);
    }
  }
  template <class T>
  void put(const std::vector<T>& v, unsigned opts) {
    pk_.pack_array(static_cast<uint32_t>(v.size()));
    for (const T& e : v) put(e, opts);
  }
  // Keys are always str; kBytes applies to the values.
  void put(const std::map<std::string, std::string>& m, unsigned opts) {
    map_header(m.size());
    for (const auto& [k, v] : m) {
      str(k);
      put(v, opts);
    }
  }
  template <Described T>
  void put(const T& s, unsigned) {
    size_t n = 0;
    Schema<T>::fields(s, [&](const char*, const auto& member, unsigned) { n += present(member); });
    map_header(n);
    Schema<T>::fields(s, [&](const char* key, const auto& member, unsigned opts) {
      if (!present(member)) return;
      str(key);
      put(member, opts);
    });
  }

 private:
  msgpack::packer<StringSink> pk_;
};

// ---------------------------------------------------------------------------------------
// Decoding

const char* object_type_name(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL: return "nil";
    case msgpack::type::BOOLEAN: return "bool";
    case msgpack::type::POSITIVE_INTEGER: return "unsigned integer";
    case msgpack::type::NEGATIVE_INTEGER: return "negative integer";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return "float";
    case msgpack::type::STR: return "str";
    case msgpack::type::BIN: return "bin";
    case msgpack::type::ARRAY: return "array";
    case msgpack::type::MAP: return "map";
    case msgpack::type::EXT: return "ext";
  }
  return "unknown type";
}

bool is_bytes(const msgpack::object& o) {
  return o.type == msgpack::type::STR || o.type == msgpack::type::BIN;
}

// REQUIRES: is_bytes(o). str and bin share their layout in msgpack::object.
std::string_view bytes_of(const msgpack::object& o) {
  if (o.type == msgpack::type::STR) return {o.via.str.ptr, o.via.str.size};
  return {o.via.bin.ptr, o.via.bin.size};
}

bool key_is(const msgpack::object& key, std::string_view name) {
  return key.type == msgpack::type::STR && bytes_of(key) == name;
}

// A map key as it appears in an error message: printable ASCII, the rest escaped, cut short.
std::string printable(std::string_view s) {
  constexpr size_t kMax = 64;
  std::string out;
  for (size_t i = 0; i < s.size() && i < kMax; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > kMax) out += "...";
  return out;
}

// Reads msgpack objects into structs. The first error is kept in status() and everything
// after it is skipped; the error names the field by its path ("b.devices[2].index").
class Reader {
 public:
  const Status& status() const { return status_; }
  bool failed() const { return !status_.ok(); }

  // Appends to the path for the scope's lifetime.
  class Scope {
   public:
    Scope(Reader& r, std::string_view suffix) : r_(r), len_(r.path_.size()) { r_.path_ += suffix; }
    ~Scope() { r_.path_.resize(len_); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Reader& r_;
    size_t len_;
  };
  Scope field(std::string_view key) {
    return Scope(*this, path_.empty() ? std::string(key) : "." + std::string(key));
  }

  void fail(const std::string& what) {
    if (status_.ok()) status_ = invalid_argument("field '" + path_ + "': " + what);
  }
  void fail_missing(std::string_view key) {
    if (status_.ok()) {
      status_ = invalid_argument("missing field '" + (path_.empty() ? "" : path_ + ".") +
                                 std::string(key) + "'");
    }
  }
  void fail_type(const char* expected, const msgpack::object& o) {
    fail(std::string("expected ") + expected + ", got " + object_type_name(o));
  }

  template <class U>
  requires std::is_unsigned_v<U> &&
      (!std::is_same_v<U, bool>)void get(const msgpack::object& o, U& v, unsigned) {
    if (o.type != msgpack::type::POSITIVE_INTEGER) return fail_type("unsigned integer", o);
    if (o.via.u64 > std::numeric_limits<U>::max()) {
      return fail("value " + std::to_string(o.via.u64) + " out of range for uint" +
                  std::to_string(8 * sizeof(U)));
    }
    v = static_cast<U>(o.via.u64);
  }
  template <class I>
  requires std::is_signed_v<I>
  void get(const msgpack::object& o, I& v, unsigned) {
    const std::string range = " out of range for int" + std::to_string(8 * sizeof(I));
    if (o.type == msgpack::type::POSITIVE_INTEGER) {
      if (o.via.u64 > static_cast<uint64_t>(std::numeric_limits<I>::max())) {
        return fail("value " + std::to_string(o.via.u64) + range);
      }
      v = static_cast<I>(o.via.u64);
    } else if (o.type == msgpack::type::NEGATIVE_INTEGER) {
      if (o.via.i64 < std::numeric_limits<I>::min()) {
        return fail("value " + std::to_string(o.via.i64) + range);
      }
      v = static_cast<I>(o.via.i64);
    } else {
      fail_type("integer", o);
    }
  }
  // Doubles accept any number: an encoder may write a whole number as an integer.
  void get(const msgpack::object& o, double& v, unsigned) {
    switch (o.type) {
      case msgpack::type::FLOAT32:
      case msgpack::type::FLOAT64: v = o.via.f64; return;
      case msgpack::type::POSITIVE_INTEGER: v = static_cast<double>(o.via.u64); return;
      case msgpack::type::NEGATIVE_INTEGER: v = static_cast<double>(o.via.i64); return;
      default: return fail_type("float", o);
    }
  }
  void get(const msgpack::object& o, Verdict& v, unsigned) {
    if (!is_bytes(o)) return fail_type("str", o);
    auto parsed = parse_enum<Verdict>(bytes_of(o));
    if (!parsed) return fail("unknown verdict '" + printable(bytes_of(o)) + "'");
    v = *parsed;
  }
  template <class T>
  void get(const msgpack::object& o, std::optional<T>& v, unsigned opts) {
    get(o, v.emplace(), opts);
  }
  void get(const msgpack::object& o, bool& v, unsigned) {
    if (o.type != msgpack::type::BOOLEAN) return fail_type("bool", o);
    v = o.via.boolean;
  }
  // Strings accept str and bin alike: bytes fields are sent as bin, and an older or other
  // encoder may have chosen differently.
  void get(const msgpack::object& o, std::string& v, unsigned) {
    if (!is_bytes(o)) return fail_type("str", o);
    v.assign(bytes_of(o));
  }
  template <class T>
  void get(const msgpack::object& o, std::vector<T>& v, unsigned opts) {
    if (o.type != msgpack::type::ARRAY) return fail_type("array", o);
    v.clear();
    v.resize(o.via.array.size);
    for (uint32_t i = 0; i < o.via.array.size && !failed(); ++i) {
      Scope s(*this, "[" + std::to_string(i) + "]");
      get(o.via.array.ptr[i], v[i], opts);
    }
  }
  void get(const msgpack::object& o, std::map<std::string, std::string>& m, unsigned opts) {
    if (o.type != msgpack::type::MAP) return fail_type("map", o);
    m.clear();
    for (uint32_t i = 0; i < o.via.map.size && !failed(); ++i) {
      const msgpack::object_kv& kv = o.via.map.ptr[i];
      if (!is_bytes(kv.key)) {
        Scope s(*this, "[" + std::to_string(i) + "]");
        return fail_type("str key", kv.key);
      }
      std::string_view key = bytes_of(kv.key);
      Scope s(*this, "[\"" + printable(key) + "\"]");
      std::string value;
      get(kv.val, value, opts);
      if (failed()) return;
      if (!m.emplace(std::string(key), std::move(value)).second) return fail("duplicate key");
    }
  }
  template <Described T>
  void get(const msgpack::object& o, T& s, unsigned) {
    if (o.type != msgpack::type::MAP) return fail_type("map", o);
    // Keys the struct does not know are skipped: a newer peer may send more fields.
    Schema<T>::fields(s, [&](const char* key, auto& member, unsigned opts) {
      if (failed()) return;
      const msgpack::object* found = find(o, key);
      if (failed()) return;
      if (found == nullptr) {
        if (opts & kRequired) fail_missing(key);
        return;
      }
      Scope sc = field(key);
      get(*found, member, opts);
    });
  }

  // The value under `key` in map `o`, or nullptr. A key present twice is an error: two
  // readers could otherwise disagree about the value.
  // REQUIRES: o is a map.
  const msgpack::object* find(const msgpack::object& o, std::string_view key) {
    const msgpack::object* found = nullptr;
    for (uint32_t i = 0; i < o.via.map.size; ++i) {
      const msgpack::object_kv& kv = o.via.map.ptr[i];
      if (!key_is(kv.key, key)) continue;
      if (found != nullptr) {
        Scope sc = field(key);
        fail("duplicate key");
        return nullptr;
      }
      found = &kv.val;
    }
    return found;
  }

 private:
  Status status_;
  std::string path_;
};

// Decodes `body` as the Message alternative whose type is `t`; false when no alternative
// has that type.
template <size_t I = 0>
bool decode_body(MsgType t, const msgpack::object& body, Reader& r, Message& out) {
  if constexpr (I == std::variant_size_v<Message>) {
    return false;
  } else {
    using T = std::variant_alternative_t<I, Message>;
    if (Schema<T>::type != t) return decode_body<I + 1>(t, body, r, out);
    T value;
    Reader::Scope sc = r.field("b");
    r.get(body, value, kOptional);
    out = std::move(value);
    return true;
  }
}

Result<Frame> decode_envelope(const msgpack::object& root) {
  if (root.type != msgpack::type::MAP) {
    return invalid_argument(std::string("frame: expected map, got ") + object_type_name(root));
  }
  Reader r;
  Frame frame;

  const msgpack::object* v = r.find(root, "v");
  const msgpack::object* t = r.find(root, "t");
  const msgpack::object* b = r.find(root, "b");
  if (r.failed()) return r.status();
  if (v == nullptr) return invalid_argument("missing field 'v'");
  {
    Reader::Scope sc = r.field("v");
    r.get(*v, frame.version, kRequired);
  }
  if (r.failed()) return r.status();

  if (frame.version != kProtocolVersion) {
    // Another version's body may be laid out differently: report what it claims to be and
    // leave the rest alone, so the receiver can answer with Refused.
    if (t != nullptr && t->type == msgpack::type::POSITIVE_INTEGER &&
        t->via.u64 <= std::numeric_limits<uint32_t>::max()) {
      frame.type = static_cast<MsgType>(t->via.u64);
    }
    frame.message = Heartbeat{};
    return frame;
  }

  if (t == nullptr) return invalid_argument("missing field 't'");
  uint32_t type_number = 0;
  {
    Reader::Scope sc = r.field("t");
    r.get(*t, type_number, kRequired);
  }
  if (r.failed()) return r.status();
  frame.type = static_cast<MsgType>(type_number);
  if (b == nullptr) return invalid_argument("missing field 'b'");
  if (!decode_body(frame.type, *b, r, frame.message)) {
    return invalid_argument("unknown message type " +
                            std::to_string(static_cast<uint32_t>(frame.type)));
  }
  if (r.failed()) return r.status();
  return frame;
}

}  // namespace

MsgType type_of(const Message& m) {
  return std::visit([](const auto& msg) { return Schema<std::decay_t<decltype(msg)>>::type; }, m);
}

std::string encode(const Message& m) {
  StringSink sink;
  Writer w(sink);
  w.map_header(3);
  w.str("v");
  w.uint(kProtocolVersion);
  w.str("t");
  w.uint(static_cast<uint32_t>(type_of(m)));
  w.str("b");
  std::visit([&](const auto& msg) { w.put(msg, kOptional); }, m);
  return std::move(sink.out);
}

Result<Frame> decode(std::string_view bytes, const DecodeLimits& limits) {
  if (bytes.size() > limits.max_frame_bytes) {
    return invalid_argument("frame of " + std::to_string(bytes.size()) + " bytes exceeds limit " +
                            std::to_string(limits.max_frame_bytes));
  }
  if (bytes.empty()) return invalid_argument("frame truncated");
  // Ext is not used by the protocol; an ext value in an unknown field gets the bin limit.
  const msgpack::unpack_limit unpack_limit(limits.max_array, limits.max_map, limits.max_str,
                                           limits.max_bin, limits.max_bin, limits.max_depth);
  // str/bin/ext objects point into `bytes`, which outlives the object tree below.
  auto reference_all = [](msgpack::type::object_type, size_t, void*) { return true; };
  try {
    size_t off = 0;
    msgpack::object_handle oh =
        msgpack::unpack(bytes.data(), bytes.size(), off, reference_all, nullptr, unpack_limit);
    if (off != bytes.size()) {
      return invalid_argument("frame has " + std::to_string(bytes.size() - off) +
                              " bytes after the message");
    }
    return decode_envelope(oh.get());
  } catch (const msgpack::insufficient_bytes&) {
    return invalid_argument("frame truncated");
  } catch (const msgpack::depth_size_overflow&) {
    return invalid_argument("frame nests deeper than the limit of " +
                            std::to_string(limits.max_depth));
  } catch (const msgpack::array_size_overflow&) {
    return invalid_argument("frame has an array longer than the limit of " +
                            std::to_string(limits.max_array) + " elements");
  } catch (const msgpack::map_size_overflow&) {
    return invalid_argument("frame has a map larger than the limit of " +
                            std::to_string(limits.max_map) + " pairs");
  } catch (const msgpack::str_size_overflow&) {
    return invalid_argument("frame has a str longer than the limit of " +
                            std::to_string(limits.max_str) + " bytes");
  } catch (const msgpack::bin_size_overflow&) {
    return invalid_argument("frame has a bin longer than the limit of " +
                            std::to_string(limits.max_bin) + " bytes");
  } catch (const msgpack::ext_size_overflow&) {
    return invalid_argument("frame has an ext longer than the limit of " +
                            std::to_string(limits.max_bin) + " bytes");
  } catch (const msgpack::size_overflow& e) {
    return invalid_argument(std::string("frame exceeds a decoding limit: ") + e.what());
  } catch (const msgpack::parse_error&) {
    return invalid_argument("frame is not valid msgpack");
  } catch (const msgpack::unpack_error& e) {
    return invalid_argument(std::string("frame is not valid msgpack: ") + e.what());
  } catch (const msgpack::type_error&) {
    return invalid_argument("frame has a value of an unexpected type");
  } catch (const std::bad_alloc&) {
    return invalid_argument("frame of " + std::to_string(bytes.size()) +
                            " bytes needs more memory than is available");
  } catch (const std::exception& e) {
    return invalid_argument(std::string("frame rejected: ") + e.what());
  }
}

}  // namespace kforge::proto
