// Writes the wire target's seed corpus: one frame of every message type, encoded by the
// codec itself (common/protocol.h), filled as real peers fill them. Run it after a protocol
// change: make_wire_corpus tests/fuzz/corpus/wire (the frames are named seed-<type>[-n]).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "common/protocol.h"

using namespace kforge;
using namespace kforge::proto;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  std::vector<std::pair<std::string, Message>> seeds;
  Hello hello;
  hello.agent_id = "node-1";
  hello.incarnation = "3f2a9c";
  hello.host = "gpu-07";
  hello.devices = {{0, "cuda", "h100", "NVIDIA H100 80GB HBM3", 81559},
                   {1, "cuda", "h100", "NVIDIA H100 80GB HBM3", 81559}};
  hello.capabilities = {{"python", "3.11.2"}, {"torch", "2.3.0"}};
  hello.running = {{12, 1}};
  hello.outbox = {{9, 2}};
  seeds.emplace_back("hello", hello);
  seeds.emplace_back("welcome", Welcome{"c0ffee", 1000, 3});
  seeds.emplace_back("refused", Refused{"a device listed twice", kProtocolVersion,
                                        static_cast<uint32_t>(RefusalCode::invalid_hello)});
  seeds.emplace_back("heartbeat", Heartbeat{{{12, 1}}, {{9, 2}}});
  Assign assign;
  assign.job = {12, 1};
  assign.device_index = 1;
  assign.backend = "cuda";
  assign.kind = "verify";
  assign.argv = {"--task", "task.py", "--candidate", "candidate.py"};
  assign.env = {{"KFORGE_JOB", "12"}};
  assign.files = {{"task.py", "class Model: pass\n"}, {"candidate.py", std::string("\0\xff", 2)}};
  assign.timeout_ms = 60000;
  assign.limits = {8192, 600, 1024, 256, 1024};
  seeds.emplace_back("assign", assign);
  JobResult exec;
  exec.job = {12, 1};
  exec.agent_id = "node-1";
  exec.exit_code = 0;
  exec.stdout_data = "ok\n";
  exec.result_json = R"({"verdict":"passed","profile":{"speedup":2.5}})";
  exec.started_ms = 1700000000000;
  exec.finished_ms = 1700000001234;
  seeds.emplace_back("result-exec", exec);
  JobResult verify = exec;
  verify.result_json.clear();
  VerifyResult v;
  v.verdict = Verdict::passed;
  v.message = "ok";
  v.stage = "profile";
  v.trials = 3;
  v.checks = Checks{0, 4096, 1e-6, 2e-5, R"({"dtype":"float32"})"};
  v.profile =
      Profile{{10, 9, 12, 10.5, 100}, {25, 24, 30, 25.2, 100}, 2.5, false, "judge_clock", 10, "{}"};
  v.details = R"({"phases_ms":{"compile":120}})";
  verify.verify = v;
  seeds.emplace_back("result-verify", verify);
  JobResult failed;
  failed.job = {13, 4};
  failed.signal = 9;
  failed.timed_out = true;
  failed.infra_error = "out of memory";
  failed.output_truncated = true;
  seeds.emplace_back("result-failed", failed);
  seeds.emplace_back("result_ack", ResultAck{{12, 1}, true});
  seeds.emplace_back("cancel", Cancel{{12, 1}, "cancelled by operator"});
  seeds.emplace_back("bye", Bye{"shutting down"});

  std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  for (const auto& [name, message] : seeds) {
    std::ofstream(dir / ("seed-" + name), std::ios::binary) << encode(message);
  }
  std::printf("%zu frames written to %s\n", seeds.size(), dir.c_str());
  return 0;
}
