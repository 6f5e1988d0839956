#include "agent/devices.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/support/support.h"

using namespace kforge;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) {
  return test::read_file(test::source_dir() / "tests" / "fixtures" / name);
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
  return s;
}

std::string replace_once(std::string s, const std::string& from, const std::string& to) {
  size_t pos = s.find(from);
  REQUIRE(pos != std::string::npos);
  return s.replace(pos, from.size(), to);
}

// Writes an executable shell script standing in for a tool or an interpreter.
std::string write_script(const test::TempDir& dir, const std::string& name,
                         const std::string& body) {
  fs::path path = dir / name;
  test::write_file(path, "#!/bin/sh\n" + body);
  fs::permissions(path, fs::perms::owner_all);
  return path.string();
}

// What discovery finds on a host with eight H100s (h100x8.csv), two 310P3s (310p3x2.txt) and
// two CPU device slots.
std::vector<HostDevice> mixed_host() {
  auto gpus = parse_nvidia_smi_csv(fixture("nvidia-smi/h100x8.csv"));
  auto npus = parse_npu_smi_info(fixture("npu-smi/310p3x2.txt"));
  REQUIRE(gpus.ok());
  REQUIRE(npus.ok());
  std::vector<HostDevice> host = *gpus;
  host.insert(host.end(), npus->begin(), npus->end());
  for (uint32_t i = 0; i < 2; ++i) {
    host.push_back(HostDevice{proto::DeviceInfo{i, "cpu", "x86_64", "test cpu", 0}, ""});
  }
  return host;
}

// "cuda:2 cuda:5 cpu:0 cpu:1": the devices select_devices keeps on mixed_host().
std::string selected(const std::vector<std::string>& wanted) {
  auto kept = select_devices(mixed_host(), wanted);
  REQUIRE_MESSAGE(kept.ok(), kept.status().to_string());
  std::string names;
  for (const auto& d : *kept)
    names += (names.empty() ? "" : " ") + d.backend + ":" + std::to_string(d.index);
  return names;
}

// The error of a selection on `host` that must fail.
std::string selection_error(const std::vector<std::string>& wanted,
                            const std::vector<HostDevice>& host = mixed_host()) {
  auto kept = select_devices(host, wanted);
  REQUIRE_FALSE(kept.ok());
  CHECK(kept.status().code() == Code::invalid_argument);
  return kept.status().message();
}

}  // namespace

// ----- nvidia-smi -----

TEST_CASE("nvidia-smi: eight H100s") {
  auto devices = parse_nvidia_smi_csv(fixture("nvidia-smi/h100x8.csv"));
  REQUIRE(devices.ok());
  REQUIRE(devices->size() == 8);
  for (uint32_t i = 0; i < 8; ++i) {
    const auto& d = (*devices)[i].info;
    CHECK(d.index == i);
    CHECK(d.backend == "cuda");
    CHECK(d.arch == "h100");
    CHECK(d.name == "NVIDIA H100 80GB HBM3");
    CHECK(d.memory_mb == 81559);
  }
  CHECK((*devices)[0].uuid == "GPU-6513270e-269e-0d37-f2a7-4de452e6b438");
  CHECK((*devices)[7].uuid == "GPU-a170b338-3926-3059-f28c-105d1fb17c23");
}

TEST_CASE("nvidia-smi: one A100") {
  auto devices = parse_nvidia_smi_csv(fixture("nvidia-smi/a100x1.csv"));
  REQUIRE(devices.ok());
  REQUIRE(devices->size() == 1);
  CHECK((*devices)[0].info == proto::DeviceInfo{0, "cuda", "a100", "NVIDIA A100-SXM4-80GB", 81920});
}

TEST_CASE("nvidia-smi: mixed models keep their own arch and memory") {
  auto devices = parse_nvidia_smi_csv(fixture("nvidia-smi/mixed.csv"));
  REQUIRE(devices.ok());
  REQUIRE(devices->size() == 4);
  CHECK((*devices)[0].info ==
        proto::DeviceInfo{0, "cuda", "rtx4090", "NVIDIA GeForce RTX 4090", 24564});
  CHECK((*devices)[1].info == proto::DeviceInfo{1, "cuda", "l40s", "NVIDIA L40S", 46068});
  CHECK((*devices)[2].info == proto::DeviceInfo{2, "cuda", "v100", "Tesla V100-SXM2-32GB", 32768});
  CHECK((*devices)[3].info == proto::DeviceInfo{3, "cuda", "h200", "NVIDIA H200", 143771});
}

TEST_CASE("nvidia-smi: CRLF, blank lines and surrounding spaces are tolerated") {
  std::string text = fixture("nvidia-smi/h100x8.csv");
  auto plain = parse_nvidia_smi_csv(text);
  std::string messy = "\r\n  " + replace_all(text, "\n", "  \r\n\r\n   ") + "\r\n";
  auto tolerated = parse_nvidia_smi_csv(messy);
  REQUIRE(plain.ok());
  REQUIRE(tolerated.ok());
  CHECK(*tolerated == *plain);
}

TEST_CASE("nvidia-smi: a truncated row is an error naming its line") {
  auto devices = parse_nvidia_smi_csv(fixture("nvidia-smi/truncated.csv"));
  REQUIRE_FALSE(devices.ok());
  CHECK(devices.status().code() == Code::invalid_argument);
  CHECK(devices.status().message().find("line 2") != std::string::npos);
  CHECK(devices.status().message().find("expected 4 fields") != std::string::npos);
}

TEST_CASE("nvidia-smi: a header row is an error naming line 1") {
  auto devices = parse_nvidia_smi_csv(fixture("nvidia-smi/with-header.csv"));
  REQUIRE_FALSE(devices.ok());
  CHECK(devices.status().message().find("line 1") != std::string::npos);
  CHECK(devices.status().message().find("index is not a number") != std::string::npos);
}

TEST_CASE("nvidia-smi: bad memory and repeated index are errors") {
  auto bad_memory = parse_nvidia_smi_csv("0, NVIDIA L4, lots, GPU-1\n");
  REQUIRE_FALSE(bad_memory.ok());
  CHECK(bad_memory.status().message().find("memory.total") != std::string::npos);
  auto repeated = parse_nvidia_smi_csv("0, NVIDIA L4, 23034, GPU-1\n0, NVIDIA L4, 23034, GPU-2\n");
  REQUIRE_FALSE(repeated.ok());
  CHECK(repeated.status().message().find("line 2") != std::string::npos);
}

TEST_CASE("nvidia-smi: unknown memory is 0 and empty output is no GPUs") {
  auto devices =
      parse_nvidia_smi_csv("0, NVIDIA GB10, [N/A], GPU-5a1b2c3d-0000-1111-2222-333344445555\n");
  REQUIRE(devices.ok());
  REQUIRE(devices->size() == 1);
  CHECK((*devices)[0].info.memory_mb == 0);
  auto none = parse_nvidia_smi_csv("");
  REQUIRE(none.ok());
  CHECK(none->empty());
}

// ----- npu-smi -----

TEST_CASE("npu-smi: eight 910B4s, process table ignored") {
  auto devices = parse_npu_smi_info(fixture("npu-smi/910b4x8.txt"));
  REQUIRE(devices.ok());
  REQUIRE(devices->size() == 8);
  for (uint32_t i = 0; i < 8; ++i) {
    CHECK((*devices)[i].info ==
          proto::DeviceInfo{i, "ascend", "ascend910b4", "Ascend 910B4", 32768});
  }
}

TEST_CASE("npu-smi: two 310P3 cards index by the Device column") {
  auto devices = parse_npu_smi_info(fixture("npu-smi/310p3x2.txt"));
  REQUIRE(devices.ok());
  REQUIRE(devices->size() == 2);
  CHECK((*devices)[0].info == proto::DeviceInfo{0, "ascend", "ascend310p3", "Ascend 310P3", 21534});
  CHECK((*devices)[1].info == proto::DeviceInfo{1, "ascend", "ascend310p3", "Ascend 310P3", 21534});

  std::string text = replace_once(fixture("npu-smi/310p3x2.txt"), "| 0       1         |",
                                  "| 0       4         |");
  auto renumbered = parse_npu_smi_info(text);
  REQUIRE(renumbered.ok());
  REQUIRE(renumbered->size() == 2);
  CHECK((*renumbered)[1].info.index == 4);
}

TEST_CASE("npu-smi: several chips per NPU without a Device column are numbered in order") {
  const char* text =
      "| NPU   Name                | Health        | Power(W)    Temp(C)           "
      "Hugepages-Usage(page)|\n"
      "| Chip  Phy-ID              | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)   "
      "     |\n"
      "+===========================+===============+==============================================="
      "=====+\n"
      "| 0     Ascend910           | OK            | 170.1       36                0    / 0        "
      "     |\n"
      "| 0     0                   | 0000:9D:00.0  | 0           0    / 0          3400 / 65536    "
      "     |\n"
      "+-------------------------------------------------------------------------------------------"
      "-----+\n"
      "| 0     Ascend910           | OK            | -           36                0    / 0        "
      "     |\n"
      "| 1     1                   | 0000:9F:00.0  | 0           0    / 0          3100 / 65536    "
      "     |\n"
      "+===========================+===============+==============================================="
      "=====+\n"
      "| 1     Ascend910           | OK            | 181.0       35                0    / 0        "
      "     |\n"
      "| 0     2                   | 0000:99:00.0  | 0           0    / 0          3400 / 65536    "
      "     |\n"
      "+===========================+===============+==============================================="
      "=====+\n";
  auto devices = parse_npu_smi_info(text);
  REQUIRE(devices.ok());
  REQUIRE(devices->size() == 3);
  for (uint32_t i = 0; i < 3; ++i) {
    CHECK((*devices)[i].info == proto::DeviceInfo{i, "ascend", "ascend910", "Ascend910", 65536});
  }
}

TEST_CASE("npu-smi: CRLF and indentation are tolerated") {
  std::string text = fixture("npu-smi/910b4x8.txt");
  auto plain = parse_npu_smi_info(text);
  auto tolerated = parse_npu_smi_info(replace_all(text, "\n", " \r\n  "));
  REQUIRE(plain.ok());
  REQUIRE(tolerated.ok());
  CHECK(*tolerated == *plain);
}

TEST_CASE("npu-smi: unreadable memory is an error naming the line") {
  std::string text = replace_once(fixture("npu-smi/910b4x8.txt"), "3339 / 32768", "x / 32768");
  auto devices = parse_npu_smi_info(text);
  REQUIRE_FALSE(devices.ok());
  CHECK(devices.status().code() == Code::invalid_argument);
  CHECK(devices.status().message().find("npu-smi info line 11") != std::string::npos);
}

TEST_CASE("npu-smi: an NPU row without its chip row is an error naming the line") {
  std::string text = replace_once(fixture("npu-smi/910b4x8.txt"),
                                  "| 0                         | 0000:C1:00.0  | 3           0    "
                                  "/ 0          7145 / 32768         |\n",
                                  "");
  auto devices = parse_npu_smi_info(text);
  REQUIRE_FALSE(devices.ok());
  CHECK(devices.status().message().find("line 7") != std::string::npos);
  CHECK(devices.status().message().find("NPU 0 has no chip row") != std::string::npos);
}

TEST_CASE("npu-smi: text without the device table is an error") {
  auto devices = parse_npu_smi_info("dcmi module initialize failed. ret is -8005\n");
  REQUIRE_FALSE(devices.ok());
  CHECK(devices.status().message().find("no device table") != std::string::npos);
}

// ----- arch names -----

TEST_CASE("gpu arch names") {
  CHECK(gpu_arch_from_name("NVIDIA H100 80GB HBM3") == "h100");
  CHECK(gpu_arch_from_name("NVIDIA H100 PCIe") == "h100");
  CHECK(gpu_arch_from_name("NVIDIA A100-SXM4-80GB") == "a100");
  CHECK(gpu_arch_from_name("NVIDIA A100 80GB PCIe") == "a100");
  CHECK(gpu_arch_from_name("Tesla V100-SXM2-32GB") == "v100");
  CHECK(gpu_arch_from_name("NVIDIA L40S") == "l40s");
  CHECK(gpu_arch_from_name("NVIDIA L4") == "l4");
  CHECK(gpu_arch_from_name("Tesla T4") == "t4");
  CHECK(gpu_arch_from_name("NVIDIA H200") == "h200");
  CHECK(gpu_arch_from_name("NVIDIA H200 NVL") == "h200");
  CHECK(gpu_arch_from_name("NVIDIA GH200 480GB") == "gh200");
  CHECK(gpu_arch_from_name("NVIDIA B200") == "b200");
  CHECK(gpu_arch_from_name("NVIDIA GeForce RTX 4090") == "rtx4090");
  CHECK(gpu_arch_from_name("NVIDIA GeForce RTX 3080 Ti") == "rtx3080ti");
  CHECK(gpu_arch_from_name("NVIDIA RTX 6000 Ada Generation") == "rtx6000ada");
  CHECK(gpu_arch_from_name("Some Future GPU") == "somefuturegpu");
}

TEST_CASE("npu arch names") {
  CHECK(npu_arch_from_name("910B4") == "ascend910b4");
  CHECK(npu_arch_from_name("910B3") == "ascend910b3");
  CHECK(npu_arch_from_name("310P3") == "ascend310p3");
  CHECK(npu_arch_from_name("910A") == "ascend910");
  CHECK(npu_arch_from_name("910") == "ascend910");
  CHECK(npu_arch_from_name("910ProB") == "ascend910");
  CHECK(npu_arch_from_name("Ascend910") == "ascend910");
  CHECK(npu_arch_from_name("910B4-1") == "ascend910b4-1");
}

// ----- discovery -----

TEST_CASE("discover: fixture dir gives cuda devices then cpu") {
  test::TempDir dir;
  test::write_file(dir / "nvidia-smi.csv", fixture("nvidia-smi/h100x8.csv"));
  DiscoveryOptions options;
  options.fixture_dir = dir.path().string();
  options.cpu_arch = "x86_64";
  auto devices = discover_devices(options);
  REQUIRE(devices.size() == 9);
  for (uint32_t i = 0; i < 8; ++i) {
    CHECK(devices[i].info.backend == "cuda");
    CHECK(devices[i].info.index == i);
    CHECK(devices[i].info.arch == "h100");
  }
  CHECK(devices[8].info.backend == "cpu");
  CHECK(devices[8].info.index == 0);
  CHECK(devices[8].info.arch == "x86_64");
  CHECK_FALSE(devices[8].info.name.empty());
}

TEST_CASE("discover: cuda, then ascend, then cpu") {
  test::TempDir dir;
  test::write_file(dir / "nvidia-smi.csv", fixture("nvidia-smi/a100x1.csv"));
  test::write_file(dir / "npu-smi.txt", fixture("npu-smi/310p3x2.txt"));
  DiscoveryOptions options;
  options.fixture_dir = dir.path().string();
  auto devices = discover_devices(options);
  REQUIRE(devices.size() == 4);
  CHECK(devices[0].info.backend == "cuda");
  CHECK(devices[1].info.backend == "ascend");
  CHECK(devices[2].info.backend == "ascend");
  CHECK(devices[2].info.index == 1);
  CHECK(devices[3].info.backend == "cpu");
  CHECK_FALSE(devices[3].info.arch.empty());  // from uname -m
}

TEST_CASE("discover: cpu device count is configurable") {
  test::TempDir dir;  // empty: no accelerators
  DiscoveryOptions options;
  options.fixture_dir = dir.path().string();
  options.cpu_arch = "aarch64";
  options.cpu_devices = 0;
  CHECK(discover_devices(options).empty());
  options.cpu_devices = 4;
  auto devices = discover_devices(options);
  REQUIRE(devices.size() == 4);
  for (uint32_t i = 0; i < 4; ++i) {
    CHECK(devices[i].info.backend == "cpu");
    CHECK(devices[i].info.index == i);
    CHECK(devices[i].info.arch == "aarch64");
  }
}

TEST_CASE("discover: a malformed fixture means no such devices") {
  test::TempDir dir;
  test::write_file(dir / "nvidia-smi.csv", fixture("nvidia-smi/truncated.csv"));
  DiscoveryOptions options;
  options.fixture_dir = dir.path().string();
  auto devices = discover_devices(options);
  REQUIRE(devices.size() == 1);
  CHECK(devices[0].info.backend == "cpu");
}

TEST_CASE("discover: runs the tools, and missing or failing tools mean no devices") {
  test::TempDir dir;
  DiscoveryOptions options;
  options.nvidia_smi = write_script(
      dir, "nvidia-smi",
      "test \"$1\" = --query-gpu=index,name,memory.total,uuid || exit 2\n"
      "test \"$2\" = --format=csv,noheader,nounits || exit 2\n"
      "cat '" +
          (test::source_dir() / "tests/fixtures/nvidia-smi/mixed.csv").string() + "'\n");
  options.npu_smi = write_script(
      dir, "npu-smi",
      "test \"$1\" = info || exit 2\n"
      "cat '" +
          (test::source_dir() / "tests/fixtures/npu-smi/910b4x8.txt").string() + "'\n");
  auto devices = discover_devices(options);
  REQUIRE(devices.size() == 4 + 8 + 1);
  CHECK(devices[0].info.arch == "rtx4090");
  CHECK(devices[4].info.arch == "ascend910b4");
  CHECK(devices[12].info.backend == "cpu");

  options.nvidia_smi = (dir / "no-such-nvidia-smi").string();
  options.npu_smi =
      write_script(dir, "broken-npu-smi", "echo 'dcmi module initialize failed' >&2\nexit 1\n");
  devices = discover_devices(options);
  REQUIRE(devices.size() == 1);
  CHECK(devices[0].info.backend == "cpu");

  options.nvidia_smi.clear();  // skipped altogether
  options.npu_smi.clear();
  CHECK(discover_devices(options).size() == 1);
}

// ----- selection -----

TEST_CASE("select: no entries keep every device") {
  CHECK(selected({}) ==
        "cuda:0 cuda:1 cuda:2 cuda:3 cuda:4 cuda:5 cuda:6 cuda:7 ascend:0 ascend:1 cpu:0 cpu:1");
}

TEST_CASE(
    "select: named accelerators keep their indices, in discovery order, and every CPU stays") {
  CHECK(selected({"ascend:1", "cuda:5", "cuda:2"}) == "cuda:2 cuda:5 ascend:1 cpu:0 cpu:1");
  auto kept = select_devices(mixed_host(), {"cuda:5"});
  REQUIRE(kept.ok());
  CHECK((*kept)[0] == proto::DeviceInfo{5, "cuda", "h100", "NVIDIA H100 80GB HBM3", 81559});
}

TEST_CASE("select: a GPU UUID names that GPU") {
  CHECK(selected({"GPU-8d116ece-1738-f7d9-3d9c-172411e20b8f", "cuda:0"}) ==
        "cuda:0 cuda:5 cpu:0 cpu:1");
}

TEST_CASE("select: a malformed entry is an error naming its position") {
  CHECK(selection_error({"cuda:0", "gpu0"}) ==
        "agent.devices[1]: expected backend:index such as cuda:0 or ascend:1, or a GPU UUID, got "
        "\"gpu0\"");
  for (const char* bad :
       {"", "cuda", "cuda:", "cuda:-1", "cuda:1x", "npu:0", "CUDA:0", " cuda:0"}) {
    CHECK_MESSAGE(selection_error({bad}).find("agent.devices[0]: expected backend:index") == 0,
                  bad);
  }
}

TEST_CASE("select: a cpu entry says that agent.cpu_devices sets the CPU devices") {
  CHECK(selection_error({"cpu:0"}) ==
        "agent.devices[0]: cpu:0: CPU devices are set by agent.cpu_devices, not agent.devices");
}

TEST_CASE("select: a device that is not on this host is an error listing those that are") {
  CHECK(selection_error({"cuda:0", "cuda:9"}) ==
        "agent.devices[1]: cuda:9 is not on this host; nvidia-smi lists cuda:0, cuda:1, cuda:2, "
        "cuda:3, cuda:4, cuda:5, cuda:6, cuda:7");
  CHECK(selection_error({"ascend:2"}) ==
        "agent.devices[0]: ascend:2 is not on this host; npu-smi lists ascend:0, ascend:1");
  std::string uuid = selection_error({"GPU-00000000-0000-0000-0000-000000000000"});
  CHECK(
      uuid.starts_with("agent.devices[0]: GPU-00000000-0000-0000-0000-000000000000 is not on this "
                       "host; nvidia-smi lists GPU-6513270e-269e-0d37-f2a7-4de452e6b438, "));
  CHECK(selection_error({"cuda:0"}, {}) ==
        "agent.devices[0]: cuda:0 is not on this host; nvidia-smi lists none");
}

TEST_CASE("select: a device named twice is an error naming the first entry") {
  CHECK(selection_error({"cuda:3", "cuda:1", "cuda:3"}) ==
        "agent.devices[2]: cuda:3 is already named by agent.devices[0]");
  CHECK(selection_error({"cuda:5", "GPU-8d116ece-1738-f7d9-3d9c-172411e20b8f"}) ==
        "agent.devices[1]: GPU-8d116ece-1738-f7d9-3d9c-172411e20b8f (cuda:5) is already named by "
        "agent.devices[0]");
}

// ----- capabilities -----

TEST_CASE("probe: the system python reports its version and numpy") {
  auto caps = probe_capabilities("/usr/bin/python3");
  REQUIRE_MESSAGE(caps.ok(), caps.status().to_string());
  REQUIRE(caps->count("python") == 1);
  CHECK(caps->at("python").find('.') != std::string::npos);
  CHECK(caps->count("numpy") == 1);
  if (caps->count("torch") == 1) {
    REQUIRE(caps->count("torch.cuda") == 1);
    CHECK((caps->at("torch.cuda") == "true" || caps->at("torch.cuda") == "false"));
  }
}

TEST_CASE("probe: a nonexistent interpreter is an error naming it") {
  auto caps = probe_capabilities("/nonexistent/bin/python3");
  REQUIRE_FALSE(caps.ok());
  CHECK(caps.status().message().find("/nonexistent/bin/python3") != std::string::npos);
}

TEST_CASE("probe: an interpreter that fails or prints no JSON is an error naming it") {
  test::TempDir dir;
  std::string failing = write_script(dir, "failing-python", "echo 'boom' >&2\nexit 3\n");
  auto caps = probe_capabilities(failing);
  REQUIRE_FALSE(caps.ok());
  CHECK(caps.status().message().find(failing) != std::string::npos);
  CHECK(caps.status().message().find("exited with code 3") != std::string::npos);

  std::string chatty = write_script(dir, "chatty-python", "echo 'hello'\n");
  caps = probe_capabilities(chatty);
  REQUIRE_FALSE(caps.ok());
  CHECK(caps.status().message().find(chatty) != std::string::npos);
  CHECK(caps.status().message().find("no JSON object") != std::string::npos);
}
