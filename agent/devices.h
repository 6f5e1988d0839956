// What an agent advertises: its devices (CUDA GPUs, Ascend NPUs, CPUs) and the Python
// capabilities (interpreter and framework versions) that jobs on this host can count on.
//
// Devices come from the vendors' tools, parsed from text:
//   nvidia-smi --query-gpu=index,name,memory.total,uuid --format=csv,noheader,nounits
//   npu-smi info
// Each parser takes the tool's whole stdout and returns every device it lists, or an error
// naming the line that did not fit the format. Device indices are the ones the runtime's
// visibility variable takes: nvidia-smi's index (in PCI bus order, so a job must run with
// CUDA_DEVICE_ORDER=PCI_BUS_ID for CUDA_VISIBLE_DEVICES to agree) and npu-smi's logical
// device id (ASCEND_RT_VISIBLE_DEVICES). select_devices then keeps the accelerators that
// agent.devices names, with those indices unchanged.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/protocol.h"
#include "common/status.h"

namespace kforge {

// A device as discovery found it: what the agent advertises, and what only the agent itself
// needs to know about it.
struct HostDevice {
  proto::DeviceInfo info;
  std::string uuid;  // cuda: the GPU's UUID as nvidia-smi prints it ("GPU-..."); else empty
  bool operator==(const HostDevice&) const = default;
};

// Parses `nvidia-smi --query-gpu=index,name,memory.total,uuid --format=csv,noheader,nounits`
// output: one "index, name, memory MiB, uuid" row per GPU. Blank lines, surrounding spaces
// and CRLF line ends are tolerated; memory "[N/A]" (unified-memory parts) gives 0. Empty
// text is zero GPUs. A row that does not fit, or a repeated index, is invalid_argument
// naming the line.
[[nodiscard]] Result<std::vector<HostDevice>> parse_nvidia_smi_csv(std::string_view text);

// Parses the table printed by Ascend's `npu-smi info` (910A/910B layouts, where a chip row
// holds only the chip id, and the 310P layout, where it holds "chip device"). Every NPU
// block is a name row ("| 0   910B4 | OK | power temp hugepages |") followed by its chip
// row ("| 0   | 0000:C1:00.0 | aicore mem hbm |"). The index is the chip row's Device column
// when the table has one, else the NPU id (one chip per NPU), else the chip's position
// (several chips per NPU, no Device column). memory_mb is the last non-zero "used / total"
// of the chip row: HBM where the table has an HBM column, else the device's DDR. The
// process table after the device table is ignored. No device table at all, or a row that
// does not fit, is invalid_argument naming the line.
[[nodiscard]] Result<std::vector<HostDevice>> parse_npu_smi_info(std::string_view text);

// Maps an nvidia-smi product name to kforge's arch name:
//   "NVIDIA H100 80GB HBM3" -> "h100"     "NVIDIA A100-SXM4-80GB" -> "a100"
//   "Tesla V100-SXM2-32GB"  -> "v100"     "NVIDIA L40S" -> "l40s"    "NVIDIA H200" -> "h200"
//   "NVIDIA GeForce RTX 4090" -> "rtx4090"  "NVIDIA RTX 6000 Ada Generation" -> "rtx6000ada"
// A name whose model token is not recognised maps to itself lowercased, spaces removed.
std::string gpu_arch_from_name(std::string_view name);

// Maps an npu-smi chip name to kforge's arch name: "910B4" -> "ascend910b4",
// "310P3" -> "ascend310p3", "910B3" -> "ascend910b3"; the first-generation 910 in all its
// spellings ("910", "910A", "910ProA", "910ProB", "910PremiumA", "Ascend910") ->
// "ascend910". Anything else: "ascend" + the name lowercased, spaces removed, a leading
// "Ascend" dropped ("910B4-1" -> "ascend910b4-1", as CANN's soc_version spells it).
std::string npu_arch_from_name(std::string_view name);

struct DiscoveryOptions {
  std::string nvidia_smi = "nvidia-smi";  // empty: skip CUDA
  std::string npu_smi = "npu-smi";        // empty: skip Ascend
  uint32_t cpu_devices = 1;               // CPU devices always advertised (0 allowed)
  std::string cpu_arch;                   // empty: from uname -m ("x86_64", "aarch64")
  std::string fixture_dir;  // for tests/simulation: read nvidia-smi.csv / npu-smi.txt from
                            // here instead of running the tools (a missing file: no devices)
};

// Runs the tools (through run_process, 10 s timeout each) and returns every device: cuda
// ones, then ascend ones, each in index order, then cpu 0..cpu_devices-1. A tool that is
// missing means no such devices (logged at debug); one that fails, times out or prints
// what the parser refuses means none either, logged at warn. Never fails as a whole: an
// agent with no accelerators still serves its CPUs.
std::vector<HostDevice> discover_devices(const DiscoveryOptions& options);

// The devices to advertise: the accelerators of `discovered` that `wanted` (agent.devices)
// names, in discovery order, and every CPU device (agent.cpu_devices governs those). Empty
// `wanted`: every discovered device. An entry is "backend:index" as KFORGE_DEVICE spells it
// ("cuda:3", "ascend:1") or a GPU UUID as nvidia-smi prints it ("GPU-..."). A malformed
// entry, a cpu one, one naming a device not discovered (the message lists those that were)
// or one naming a device an earlier entry named is invalid_argument: "agent.devices[i]: ...".
[[nodiscard]] Result<std::vector<proto::DeviceInfo>> select_devices(
    const std::vector<HostDevice>& discovered, const std::vector<std::string>& wanted);

// Runs `<python> -c <probe>` (through run_process: 60 s timeout, only PATH and HOME from
// this environment, cwd "/") and returns "python" -> its version, and for each of numpy,
// torch, triton, mindspore and torch_npu that imports, name -> __version__; with torch also
// "torch.cuda" -> "true"/"false" (torch.cuda.is_available()). A module that fails to import
// is simply absent. An interpreter that cannot be started, exits non-zero, times out or
// prints no JSON object is an error naming the interpreter path.
[[nodiscard]] Result<std::map<std::string, std::string>> probe_capabilities(
    const std::string& python);

}  // namespace kforge
