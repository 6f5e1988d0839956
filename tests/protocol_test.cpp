// Wire protocol: round trips, the exact envelope, and rejection of every kind of bad frame.
#include "common/protocol.h"

#include <doctest/doctest.h>

#include <functional>
#include <msgpack.hpp>
#include <random>
#include <string>

using namespace kforge;
using namespace kforge::proto;

namespace {

// Bytes no text encoding would produce: NULs, invalid UTF-8, every byte value.
std::string nasty_bytes() {
  std::string s("a\0b\xff\xfe\xc0\x80\xed\xa0\x80", 10);
  for (int c = 0; c < 256; ++c) s.push_back(static_cast<char>(c));
  return s;
}

Hello sample_hello() {
  Hello h;
  h.agent_id = "agent-7";
  h.incarnation = "inc-2f9c";
  h.host = "gpu-host-03";
  h.devices = {{0, "cuda", "h100", "NVIDIA H100 80GB HBM3", 81559},
               {3, "cuda", "h100", "NVIDIA H100 80GB HBM3", 81559},
               {0, "cpu", "x86_64", "AMD EPYC", 0}};
  h.capabilities = {{"python", "3.11.2"}, {"torch", "2.3.0"}, {"triton", "2.3.0"}};
  h.running = {{11, 1}, {12, 4}};
  h.outbox = {{9, 2}};
  return h;
}

Welcome sample_welcome() {
  return Welcome{"coord-inc-1", 250, 5};
}

Refused sample_refused() {
  return Refused{"protocol version 2 is not supported", 7, 100};
}

Assign sample_assign() {
  Assign a;
  a.job = {42, 3};
  a.device_index = 5;
  a.backend = "cuda";
  a.kind = "verify";
  a.argv = {"python3", "-m", "kforge_harness", "--task", "task.json"};
  a.env = {{"KFORGE_MODE", "precision"}, {"OMP_NUM_THREADS", "4"}};
  a.files = {{"task.py", "class Model: pass\n"}, {"blob.bin", nasty_bytes()}};
  a.timeout_ms = 120'000;
  a.limits = {16384, 600, 1024, 256, 2048};
  return a;
}

JobResult sample_result() {
  JobResult r;
  r.job = {42, 3};
  r.agent_id = "agent-7";
  r.exit_code = 3;
  r.signal = 9;
  r.timed_out = true;
  r.cancelled = true;
  r.infra_error = "work directory vanished";
  r.stdout_data = nasty_bytes();
  r.stderr_data = std::string("Traceback\0\xff", 11);
  r.output_truncated = true;
  r.result_json = R"({"verdict":"passed"})";
  VerifyResult& v = r.verify.emplace();
  v.verdict = Verdict::precision_mismatch;
  v.message = "differs";
  v.trials = 2;
  v.checks = Checks{4, 10, 0.5, -1.5, R"({"dtype":"float32"})"};
  v.profile = Profile{{1.5, 1, 2, 1.5, 3}, {3, 2, 4, 3, 3}, 2, true, "judge_clock", 5, ""};
  v.details = R"({"versions":{}})";
  r.started_ms = 1'700'000'000'000;
  r.finished_ms = -5;
  return r;
}

ResultAck sample_ack() {
  return ResultAck{{42, 3}, true};
}

Cancel sample_cancel() {
  return Cancel{{42, 3}, "task cancelled by operator"};
}

Bye sample_bye() {
  return Bye{"SIGTERM"};
}

std::vector<Message> all_samples() {
  return {sample_hello(),
          sample_welcome(),
          sample_refused(),
          Heartbeat{{{1, 2}, {3, 4}}, {{5, 6}}, std::nullopt},
          Heartbeat{{}, {}, std::nullopt, 2000u},
          Heartbeat{{},
                    {},
                    std::vector<VerifierPool>{{"cuda", 3, 2, 1, 40, 38, true},
                                              {"cpu", 0, 0, 0, 0, 0, false}}},
          sample_assign(),
          sample_result(),
          sample_ack(),
          sample_cancel(),
          sample_bye()};
}

Message round_trip(const Message& m) {
  Result<Frame> f = decode(encode(m));
  REQUIRE_MESSAGE(f.ok(), f.status().to_string());
  CHECK(f->version == kProtocolVersion);
  CHECK(f->type == type_of(m));
  return f->message;
}

// Hand-crafted frames: {"v": v, "t": t, "b": <body written by `body`>}.
using Packer = msgpack::packer<msgpack::sbuffer>;

std::string craft(const std::function<void(Packer&)>& write) {
  msgpack::sbuffer buf;
  Packer pk(buf);
  write(pk);
  return std::string(buf.data(), buf.size());
}

std::string envelope(uint64_t v, uint64_t t, const std::function<void(Packer&)>& body) {
  return craft([&](Packer& pk) {
    pk.pack_map(3);
    pk.pack(std::string("v"));
    pk.pack(v);
    pk.pack(std::string("t"));
    pk.pack(t);
    pk.pack(std::string("b"));
    body(pk);
  });
}

void key(Packer& pk, const std::string& k) {
  pk.pack(k);
}

void job_ref(Packer& pk, uint64_t job_id, uint64_t epoch) {
  pk.pack_map(2);
  key(pk, "job_id");
  pk.pack(job_id);
  key(pk, "epoch");
  pk.pack(epoch);
}

std::string error_of(std::string_view bytes, const DecodeLimits& limits = {}) {
  Result<Frame> f = decode(bytes, limits);
  if (f.ok()) return "<decoded>";
  CHECK(f.status().code() == Code::invalid_argument);
  return f.status().message();
}

}  // namespace

TEST_CASE("every message type round-trips with every field set") {
  for (const Message& m : all_samples()) {
    CAPTURE(msg_type_name(type_of(m)));
    CHECK(round_trip(m) == m);
  }
}

TEST_CASE("the samples set every field away from its default") {
  // Guards the round-trip test: a field left at its default would pass even if dropped.
  CHECK_FALSE(sample_hello().devices[1] == DeviceInfo{});
  CHECK(sample_assign().limits.file_size_mb != Limits{}.file_size_mb);
  JobResult r = sample_result(), d;
  CHECK(r.exit_code != d.exit_code);
  CHECK(r.signal != d.signal);
  CHECK(r.started_ms != d.started_ms);
  CHECK(r.finished_ms != d.finished_ms);
  Welcome w = sample_welcome(), dw;
  CHECK(w.heartbeat_ms != dw.heartbeat_ms);
  CHECK(w.liveness != dw.liveness);
  CHECK(sample_refused().coordinator_version != Refused{}.coordinator_version);
  CHECK(sample_refused().code != Refused{}.code);
}

TEST_CASE("refusal codes: 100..199 are transient, the rest fatal, known or not") {
  CHECK_FALSE(refusal_is_transient(static_cast<uint32_t>(RefusalCode::unspecified)));
  CHECK_FALSE(refusal_is_transient(static_cast<uint32_t>(RefusalCode::protocol_version)));
  CHECK_FALSE(refusal_is_transient(static_cast<uint32_t>(RefusalCode::not_authorized)));
  CHECK_FALSE(refusal_is_transient(static_cast<uint32_t>(RefusalCode::invalid_hello)));
  CHECK_FALSE(refusal_is_transient(static_cast<uint32_t>(RefusalCode::superseded)));
  CHECK(refusal_is_transient(static_cast<uint32_t>(RefusalCode::id_in_use)));
  CHECK(refusal_is_transient(150));
  CHECK_FALSE(refusal_is_transient(42));
  CHECK_FALSE(refusal_is_transient(200));
}

TEST_CASE("agent ids: printable, no slash, at most 128 bytes") {
  CHECK(valid_agent_id("gpu1"));
  CHECK(valid_agent_id(std::string(32, 'a')));
  CHECK_FALSE(valid_agent_id(""));
  CHECK_FALSE(valid_agent_id("a/b"));
  CHECK_FALSE(valid_agent_id("a b"));
  CHECK_FALSE(valid_agent_id(std::string(129, 'a')));
  CHECK_FALSE(valid_agent_id(std::string("a\0b", 3)));
}

TEST_CASE("type numbers and names are frozen") {
  CHECK(type_of(Hello{}) == MsgType::hello);
  CHECK(type_of(Welcome{}) == MsgType::welcome);
  CHECK(type_of(Refused{}) == MsgType::refused);
  CHECK(type_of(Heartbeat{}) == MsgType::heartbeat);
  CHECK(type_of(Assign{}) == MsgType::assign);
  CHECK(type_of(JobResult{}) == MsgType::result);
  CHECK(type_of(ResultAck{}) == MsgType::result_ack);
  CHECK(type_of(Cancel{}) == MsgType::cancel);
  CHECK(type_of(Bye{}) == MsgType::bye);
  CHECK(static_cast<uint32_t>(MsgType::hello) == 1);
  CHECK(static_cast<uint32_t>(MsgType::bye) == 9);
  CHECK(std::string(msg_type_name(MsgType::result_ack)) == "result_ack");
  CHECK(std::string(msg_type_name(static_cast<MsgType>(42))) == "unknown");
}

TEST_CASE("heartbeat envelope is the documented bytes") {
  // {"v": 1, "t": 4, "b": {"running": [], "outbox": []}}
  const std::string expected("\x83\xa1v\x01\xa1t\x04\xa1\x62\x82\xa7running\x90\xa6outbox\x90", 27);
  CHECK(encode(Heartbeat{}) == expected);
}

TEST_CASE("arbitrary bytes in output survive and travel as bin") {
  JobResult r = sample_result();
  std::string bytes = encode(r);
  JobResult back = std::get<JobResult>(decode(bytes)->message);
  CHECK(back.stdout_data == nasty_bytes());
  CHECK(back.stderr_data == std::string("Traceback\0\xff", 11));

  msgpack::object_handle oh = msgpack::unpack(bytes.data(), bytes.size());
  const msgpack::object& root = oh.get();
  REQUIRE(root.type == msgpack::type::MAP);
  const msgpack::object& body = root.via.map.ptr[2].val;
  REQUIRE(body.type == msgpack::type::MAP);
  bool saw_stdout = false;
  for (uint32_t i = 0; i < body.via.map.size; ++i) {
    const msgpack::object_kv& kv = body.via.map.ptr[i];
    std::string k(kv.key.via.str.ptr, kv.key.via.str.size);
    if (k == "stdout_data" || k == "stderr_data") {
      CHECK(kv.val.type == msgpack::type::BIN);
      saw_stdout = true;
    }
    if (k == "agent_id" || k == "result_json") CHECK(kv.val.type == msgpack::type::STR);
  }
  CHECK(saw_stdout);
}

TEST_CASE("bytes fields accept str and string fields accept bin") {
  std::string frame = envelope(1, 6, [](Packer& pk) {
    pk.pack_map(3);
    key(pk, "job");
    job_ref(pk, 1, 1);
    key(pk, "stdout_data");
    pk.pack(std::string("plain text"));
    key(pk, "agent_id");
    pk.pack_bin(3);
    pk.pack_bin_body("a-1", 3);
  });
  Result<Frame> f = decode(frame);
  REQUIRE_MESSAGE(f.ok(), f.status().to_string());
  const auto& r = std::get<JobResult>(f->message);
  CHECK(r.stdout_data == "plain text");
  CHECK(r.agent_id == "a-1");
}

TEST_CASE("every prefix of a valid frame is rejected as truncated") {
  for (const Message& m : all_samples()) {
    std::string bytes = encode(m);
    for (size_t n = 0; n < bytes.size(); ++n) {
      Result<Frame> f = decode(std::string_view(bytes).substr(0, n));
      REQUIRE_FALSE(f.ok());
      CHECK(f.status().message() == "frame truncated");
    }
  }
}

TEST_CASE("trailing bytes after the message are rejected") {
  std::string bytes = encode(Heartbeat{}) + std::string("\x00", 1);
  CHECK(error_of(bytes) == "frame has 1 bytes after the message");
}

TEST_CASE("a field of the wrong type is named by its path") {
  std::string frame = envelope(1, 1, [](Packer& pk) {
    pk.pack_map(2);
    key(pk, "agent_id");
    pk.pack(std::string("a"));
    key(pk, "devices");
    pk.pack_array(3);
    pk.pack_map(0);
    pk.pack_map(1);
    key(pk, "index");
    pk.pack(1);
    pk.pack_map(1);
    key(pk, "index");
    pk.pack(std::string("two"));
  });
  CHECK(error_of(frame) == "field 'b.devices[2].index': expected unsigned integer, got str");

  std::string negative = envelope(1, 7, [](Packer& pk) {
    pk.pack_map(1);
    key(pk, "job");
    pk.pack_map(2);
    key(pk, "job_id");
    pk.pack(-1);
    key(pk, "epoch");
    pk.pack(1);
  });
  CHECK(error_of(negative) ==
        "field 'b.job.job_id': expected unsigned integer, got negative integer");

  std::string wide = envelope(1, 2, [](Packer& pk) {
    pk.pack_map(1);
    key(pk, "liveness");
    pk.pack(uint64_t{1} << 40);
  });
  CHECK(error_of(wide) == "field 'b.liveness': value 1099511627776 out of range for uint32");

  std::string not_bool = envelope(1, 7, [](Packer& pk) {
    pk.pack_map(2);
    key(pk, "job");
    job_ref(pk, 1, 1);
    key(pk, "recorded");
    pk.pack(1);
  });
  CHECK(error_of(not_bool) == "field 'b.recorded': expected bool, got unsigned integer");

  std::string env_value = envelope(1, 5, [](Packer& pk) {
    pk.pack_map(2);
    key(pk, "job");
    job_ref(pk, 1, 1);
    key(pk, "env");
    pk.pack_map(1);
    key(pk, "PATH");
    pk.pack_array(0);
  });
  CHECK(error_of(env_value) == "field 'b.env[\"PATH\"]': expected str, got array");

  std::string body_not_map = envelope(1, 4, [](Packer& pk) { pk.pack_array(0); });
  CHECK(error_of(body_not_map) == "field 'b': expected map, got array");

  std::string type_not_int = craft([](Packer& pk) {
    pk.pack_map(3);
    key(pk, "v");
    pk.pack(1);
    key(pk, "t");
    pk.pack(std::string("hello"));
    key(pk, "b");
    pk.pack_map(0);
  });
  CHECK(error_of(type_not_int) == "field 't': expected unsigned integer, got str");

  CHECK(error_of(craft([](Packer& pk) { pk.pack_array(0); })) == "frame: expected map, got array");
}

TEST_CASE("signed fields take negative and positive values within range") {
  std::string frame = envelope(1, 6, [](Packer& pk) {
    pk.pack_map(3);
    key(pk, "job");
    job_ref(pk, 1, 1);
    key(pk, "exit_code");
    pk.pack(int64_t{-2147483648LL});
    key(pk, "signal");
    pk.pack(int64_t{2147483648LL});
  });
  CHECK(error_of(frame) == "field 'b.signal': value 2147483648 out of range for int32");
}

TEST_CASE("huge declared lengths in a tiny frame are rejected") {
  // {"v": 1, "t": 1, "b": <container declaring 2^32-1 entries, with none present>}
  const std::string head("\x83\xa1v\x01\xa1t\x01\xa1\x62", 9);
  const std::string array32("\xdd\xff\xff\xff\xff", 5);
  const std::string map32("\xdf\xff\xff\xff\xff", 5);
  const std::string str32("\xdb\xff\xff\xff\xff", 5);
  const std::string bin32("\xc6\xff\xff\xff\xff", 5);
  CHECK(error_of(head + array32) == "frame has an array longer than the limit of 100000 elements");
  CHECK(error_of(head + map32) == "frame has a map larger than the limit of 100000 pairs");
  CHECK_FALSE(decode(head + str32).ok());
  CHECK_FALSE(decode(head + bin32).ok());
  // The same lengths as the very first byte.
  CHECK_FALSE(decode(array32).ok());
  CHECK_FALSE(decode(map32).ok());
  CHECK_FALSE(decode(str32).ok());

  // Below msgpack's own ceiling but above ours, with the bytes present.
  DecodeLimits small;
  small.max_str = 8;
  small.max_array = 2;
  Hello h = sample_hello();
  CHECK(error_of(encode(h), small) == "frame has a str longer than the limit of 8 bytes");
  small.max_str = 1000;
  CHECK(error_of(encode(h), small) == "frame has an array longer than the limit of 2 elements");
  small.max_bin = 100;
  CHECK(error_of(encode(sample_result()), small) ==
        "frame has a bin longer than the limit of 100 bytes");
}

TEST_CASE("nesting beyond max_depth is rejected") {
  auto nested = [](size_t depth) {
    return envelope(1, 1, [depth](Packer& pk) {
      pk.pack_map(2);
      key(pk, "agent_id");
      pk.pack(std::string("a"));
      key(pk, "future_field");  // unknown fields are skipped, but still parsed within limits
      for (size_t i = 0; i < depth; ++i) pk.pack_array(1);
      pk.pack(1);
    });
  };
  // The envelope and body are two levels: six more fit under the default of 8.
  CHECK(decode(nested(6)).ok());
  CHECK(error_of(nested(7)) == "frame nests deeper than the limit of 8");
  // Deep enough to overflow a recursive parser's stack.
  std::string deep(200'000, '\x91');
  deep.push_back('\x01');
  CHECK(error_of(deep) == "frame nests deeper than the limit of 8");
}

TEST_CASE("a frame over max_frame_bytes is rejected before parsing") {
  JobResult r = sample_result();
  r.stdout_data.assign(5000, 'x');
  std::string bytes = encode(r);
  DecodeLimits limits;
  limits.max_frame_bytes = 4096;
  CHECK(error_of(bytes, limits) ==
        "frame of " + std::to_string(bytes.size()) + " bytes exceeds limit 4096");
  limits.max_frame_bytes = bytes.size();
  CHECK(decode(bytes, limits).ok());
}

TEST_CASE("an unknown type number is rejected") {
  CHECK(error_of(envelope(1, 42, [](Packer& pk) { pk.pack_map(0); })) == "unknown message type 42");
  CHECK(error_of(envelope(1, 0, [](Packer& pk) { pk.pack_map(0); })) == "unknown message type 0");
}

TEST_CASE("missing required fields are rejected, missing optional ones take defaults") {
  CHECK(error_of(craft([](Packer& pk) { pk.pack_map(0); })) == "missing field 'v'");
  CHECK(error_of(craft([](Packer& pk) {
          pk.pack_map(1);
          key(pk, "v");
          pk.pack(1);
        })) == "missing field 't'");
  CHECK(error_of(craft([](Packer& pk) {
          pk.pack_map(2);
          key(pk, "v");
          pk.pack(1);
          key(pk, "t");
          pk.pack(4);
        })) == "missing field 'b'");
  CHECK(error_of(envelope(1, 1, [](Packer& pk) { pk.pack_map(0); })) ==
        "missing field 'b.agent_id'");
  for (uint64_t t : {5, 6, 7, 8}) {
    CAPTURE(t);
    CHECK(error_of(envelope(1, t, [](Packer& pk) { pk.pack_map(0); })) == "missing field 'b.job'");
    CHECK(error_of(envelope(1, t, [](Packer& pk) {
            pk.pack_map(1);
            key(pk, "job");
            pk.pack_map(1);
            key(pk, "job_id");
            pk.pack(3);
          })) == "missing field 'b.job.epoch'");
  }
  std::string outbox_entry = envelope(1, 1, [](Packer& pk) {
    pk.pack_map(2);
    key(pk, "agent_id");
    pk.pack(std::string("a"));
    key(pk, "outbox");
    pk.pack_array(1);
    pk.pack_map(1);
    key(pk, "epoch");
    pk.pack(3);
  });
  CHECK(error_of(outbox_entry) == "missing field 'b.outbox[0].job_id'");

  Result<Frame> w = decode(envelope(1, 2, [](Packer& pk) { pk.pack_map(0); }));
  REQUIRE(w.ok());
  CHECK(std::get<Welcome>(w->message) == Welcome{});
  Result<Frame> r = decode(envelope(1, 6, [](Packer& pk) {
    pk.pack_map(1);
    key(pk, "job");
    job_ref(pk, 8, 2);
  }));
  REQUIRE(r.ok());
  JobResult expected;
  expected.job = {8, 2};
  CHECK(std::get<JobResult>(r->message) == expected);
}

TEST_CASE("unknown fields are ignored") {
  std::string frame = craft([](Packer& pk) {
    pk.pack_map(4);
    key(pk, "v");
    pk.pack(1);
    key(pk, "t");
    pk.pack(9);
    key(pk, "trace_id");
    pk.pack(std::string("abc"));
    key(pk, "b");
    pk.pack_map(3);
    key(pk, "reason");
    pk.pack(std::string("bye"));
    key(pk, "new_field");
    pk.pack_array(2);
    pk.pack(1.5);
    pk.pack_nil();
    pk.pack(7);  // a non-str key
    pk.pack(std::string("x"));
  });
  Result<Frame> f = decode(frame);
  REQUIRE_MESSAGE(f.ok(), f.status().to_string());
  CHECK(std::get<Bye>(f->message) == Bye{"bye"});
}

TEST_CASE("duplicate keys are rejected") {
  std::string frame = envelope(1, 9, [](Packer& pk) {
    pk.pack_map(2);
    key(pk, "reason");
    pk.pack(std::string("a"));
    key(pk, "reason");
    pk.pack(std::string("b"));
  });
  CHECK(error_of(frame) == "field 'b.reason': duplicate key");
  std::string env = envelope(1, 5, [](Packer& pk) {
    pk.pack_map(2);
    key(pk, "job");
    job_ref(pk, 1, 1);
    key(pk, "env");
    pk.pack_map(2);
    key(pk, "A");
    pk.pack(std::string("1"));
    key(pk, "A");
    pk.pack(std::string("2"));
  });
  CHECK(error_of(env) == "field 'b.env[\"A\"]': duplicate key");
}

TEST_CASE("another protocol version yields a frame with that version, body uninterpreted") {
  std::string frame = envelope(2, 1, [](Packer& pk) {
    pk.pack_map(1);
    key(pk, "agent_id");
    pk.pack(12345);  // the wrong type in version 1, but not ours to judge
  });
  Result<Frame> f = decode(frame);
  REQUIRE_MESSAGE(f.ok(), f.status().to_string());
  CHECK(f->version == 2);
  CHECK(f->type == MsgType::hello);
  CHECK(std::holds_alternative<Heartbeat>(f->message));

  Result<Frame> no_type = decode(craft([](Packer& pk) {
    pk.pack_map(1);
    key(pk, "v");
    pk.pack(0);
  }));
  REQUIRE(no_type.ok());
  CHECK(no_type->version == 0);
  CHECK(no_type->type == MsgType::unknown);

  CHECK(error_of(craft([](Packer& pk) {
          pk.pack_map(1);
          key(pk, "v");
          pk.pack(std::string("1"));
        })) == "field 'v': expected unsigned integer, got str");
}

TEST_CASE("random garbage and mutated frames never throw or crash") {
  std::mt19937_64 rng(20240611);
  auto byte = [&] { return static_cast<char>(rng() & 0xff); };
  std::vector<std::string> valid;
  for (const Message& m : all_samples()) valid.push_back(encode(m));

  // Whatever decodes must re-encode to an equal message.
  auto check = [&](const std::string& bytes) {
    Result<Frame> f = decode(bytes);
    if (f.ok() && f->version == kProtocolVersion) {
      Result<Frame> again = decode(encode(f->message));
      REQUIRE(again.ok());
      CHECK(again->message == f->message);
    }
  };

  for (int i = 0; i < 3000; ++i) {
    std::string bytes(rng() % 96, '\0');
    for (char& c : bytes) c = byte();
    // Half of them start like a real envelope so that the parser gets past the first byte.
    if (i % 2 == 0) bytes = std::string("\x83\xa1v\x01\xa1t", 6) + bytes;
    check(bytes);
  }
  for (int i = 0; i < 4000; ++i) {
    std::string bytes = valid[rng() % valid.size()];
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !bytes.empty(); ++e) {
      size_t at = rng() % bytes.size();
      switch (rng() % 5) {
        case 0: bytes[at] = byte(); break;                                             // replace
        case 1: bytes[at] = static_cast<char>(bytes[at] ^ (1 << (rng() % 8))); break;  // flip
        case 2: bytes.insert(bytes.begin() + static_cast<long>(at), byte()); break;    // insert
        case 3: bytes.erase(at, 1 + rng() % 8); break;                                 // delete
        case 4: bytes.resize(at); break;                                               // truncate
      }
    }
    check(bytes);
  }
}
