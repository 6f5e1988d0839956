#include "agent/devices.h"

#include <spdlog/spdlog.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <utility>

#include "common/fs.h"
#include "common/process.h"
#include "common/sandbox.h"
#include "common/text.h"

namespace kforge {
namespace {

constexpr std::chrono::milliseconds kToolTimeout{10'000};
constexpr std::chrono::milliseconds kProbeTimeout{60'000};

// Printed lines of a parsed tool output are quoted in errors up to this length.
constexpr size_t kQuoteLimit = 160;

std::string_view trim(std::string_view s) {
  size_t b = 0;
  while (b < s.size() && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  size_t e = s.size();
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

// Splits on '\n'; a trailing '\r' (CRLF) stays on the line and is removed by trim().
std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) {
      if (start < text.size()) lines.push_back(text.substr(start));
      break;
    }
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

// Splits on `sep` and trims every piece; "a, b," gives {"a", "b", ""}.
std::vector<std::string_view> split_trimmed(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    if (pos == std::string_view::npos) {
      out.push_back(trim(s.substr(start)));
      return out;
    }
    out.push_back(trim(s.substr(start, pos - start)));
    start = pos + 1;
  }
}

std::vector<std::string_view> split_words(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    size_t b = i;
    while (i < s.size() && !std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    if (i > b) out.push_back(s.substr(b, i - b));
  }
  return out;
}

template <typename T>
std::optional<T> parse_uint(std::string_view s) {
  T value{};
  if (s.empty()) return std::nullopt;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return value;
}

bool is_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c));
  });
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string without_spaces(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (!std::isspace(static_cast<unsigned char>(c))) out.push_back(c);
  }
  return out;
}

std::string quote(std::string_view line) {
  if (line.size() > kQuoteLimit) return "'" + std::string(line.substr(0, kQuoteLimit)) + "...'";
  return "'" + std::string(line) + "'";
}

Status line_error(const char* what, size_t line_no, std::string_view line, const std::string& why) {
  return invalid_argument(std::string(what) + " line " + std::to_string(line_no) + ": " + why +
                          ": " + quote(line));
}

void sort_by_index(std::vector<HostDevice>& devices) {
  std::stable_sort(devices.begin(), devices.end(), [](const HostDevice& a, const HostDevice& b) {
    return a.info.index < b.info.index;
  });
}

// "1-2 letters, 1-4 digits, at most one letter": h100, a100, v100, l40s, l4, t4, a10g, gh200.
bool is_model_token(std::string_view t) {
  size_t i = 0;
  while (i < t.size() && std::isalpha(static_cast<unsigned char>(t[i]))) ++i;
  if (i < 1 || i > 2) return false;
  size_t d = i;
  while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) ++i;
  if (i - d < 1 || i - d > 4) return false;
  if (i < t.size() && std::isalpha(static_cast<unsigned char>(t[i]))) ++i;
  return i == t.size();
}

// Every "used / total" pair in a table cell, in order ("0    / 0", "32060/ 32768").
// nullopt when a '/' is not between two numbers.
std::optional<std::vector<std::pair<uint64_t, uint64_t>>> memory_pairs(std::string_view cell) {
  std::vector<std::pair<uint64_t, uint64_t>> pairs;
  for (size_t slash = cell.find('/'); slash != std::string_view::npos;
       slash = cell.find('/', slash + 1)) {
    size_t e = slash;
    while (e > 0 && cell[e - 1] == ' ') --e;
    size_t b = e;
    while (b > 0 && std::isdigit(static_cast<unsigned char>(cell[b - 1]))) --b;
    size_t rb = slash + 1;
    while (rb < cell.size() && cell[rb] == ' ') ++rb;
    size_t re = rb;
    while (re < cell.size() && std::isdigit(static_cast<unsigned char>(cell[re]))) ++re;
    auto used = parse_uint<uint64_t>(cell.substr(b, e - b));
    auto total = parse_uint<uint64_t>(cell.substr(rb, re - rb));
    if (!used || !total) return std::nullopt;
    pairs.emplace_back(*used, *total);
  }
  return pairs;
}

// ----- running the tools -----

// Runs a device tool; its stdout, or nullopt when it is missing or failed (logged).
std::optional<std::string> run_tool(const std::string& program, std::vector<std::string> args) {
  ProcessSpec spec;
  spec.argv.push_back(program);
  for (auto& a : args) spec.argv.push_back(std::move(a));
  spec.env_allow = {"PATH", "HOME", "LD_LIBRARY_PATH"};
  spec.timeout = kToolTimeout;
  spec.output_cap = 4u << 20;
  auto r = run_process(spec);
  if (!r.ok()) {
    spdlog::debug("device tool not available tool={} reason={}", program, r.status().message());
    return std::nullopt;
  }
  if (r->timed_out) {
    spdlog::warn("device tool timed out tool={} timeout_s={}", program,
                 std::chrono::duration_cast<std::chrono::seconds>(kToolTimeout).count());
    return std::nullopt;
  }
  if (r->exit_code != 0) {
    std::string said{trim(r->stderr_data.empty() ? r->stdout_data : r->stderr_data)};
    if (said.size() > kQuoteLimit) said = said.substr(0, kQuoteLimit) + "...";
    // nvidia-smi exits 6 with "No devices were found" on a host without GPUs.
    if (r->exit_code == 6 && said.find("No devices were found") != std::string::npos) {
      spdlog::debug("device tool found no devices tool={}", program);
    } else {
      spdlog::warn("device tool failed tool={} exit_code={} signal={} output={}", program,
                   r->exit_code, r->signal, said);
    }
    return std::nullopt;
  }
  return std::move(r->stdout_data);
}

// Reads <fixture_dir>/<file>; nullopt when it is missing (no such devices) or unreadable.
std::optional<std::string> read_fixture(const std::string& fixture_dir, const char* file) {
  auto path = std::filesystem::path(fixture_dir) / file;
  auto text = read_file(path);
  if (!text.ok()) {
    if (text.status().code() == Code::not_found) {
      spdlog::debug("device fixture absent path={}", path.string());
    } else {
      spdlog::warn("device fixture unreadable path={} reason={}", path.string(),
                   text.status().message());
    }
    return std::nullopt;
  }
  return std::move(*text);
}

void append_parsed(std::vector<HostDevice>& out, const std::string& source,
                   Result<std::vector<HostDevice>> parsed) {
  if (!parsed.ok()) {
    spdlog::warn("cannot parse device tool output source={} reason={}", source,
                 parsed.status().message());
    return;
  }
  for (auto& d : *parsed) out.push_back(std::move(d));
}

std::string host_cpu_arch() {
  struct utsname u {};
  if (::uname(&u) != 0) return "unknown";
  return u.machine;
}

// The first "model name" of /proc/cpuinfo (x86; most arm64 kernels print none).
std::string host_cpu_name(const std::string& arch) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::string_view l = line;
    if (l.substr(0, 10) == "model name") {
      size_t colon = l.find(':');
      if (colon != std::string_view::npos) {
        auto name = trim(l.substr(colon + 1));
        if (!name.empty()) return std::string(name);
      }
    }
  }
  return arch + " CPU";
}

// Imports each framework with fd 1 pointed at stderr, so that whatever an import prints
// cannot corrupt the one JSON line written to the real stdout at the end.
constexpr const char* kProbeScript = R"PY(
import importlib, json, os, platform, sys
out = {"python": platform.python_version()}
saved = os.dup(1)
os.dup2(2, 1)
try:
    for name in ("numpy", "torch", "triton", "mindspore", "torch_npu"):
        try:
            mod = importlib.import_module(name)
        except BaseException:
            continue
        out[name] = str(getattr(mod, "__version__", "unknown"))
        if name == "torch":
            try:
                out["torch.cuda"] = "true" if mod.cuda.is_available() else "false"
            except BaseException:
                out["torch.cuda"] = "false"
finally:
    sys.stdout.flush()
    os.dup2(saved, 1)
sys.stdout.write(json.dumps(out) + "\n")
sys.stdout.flush()
)PY";

}  // namespace

// ----- nvidia-smi -----

Result<std::vector<HostDevice>> parse_nvidia_smi_csv(std::string_view text) {
  constexpr const char* kWhat = "nvidia-smi csv";
  std::vector<HostDevice> devices;
  std::set<uint32_t> seen;
  size_t line_no = 0;
  for (std::string_view raw : split_lines(text)) {
    ++line_no;
    std::string_view line = trim(raw);
    if (line.empty()) continue;
    auto fields = split_trimmed(line, ',');
    if (fields.size() != 4) {
      return line_error(kWhat, line_no, line,
                        "expected 4 fields (index, name, memory.total, uuid), got " +
                            std::to_string(fields.size()));
    }
    auto index = parse_uint<uint32_t>(fields[0]);
    if (!index) return line_error(kWhat, line_no, line, "index is not a number");
    if (fields[1].empty()) return line_error(kWhat, line_no, line, "empty name");
    uint64_t memory_mb = 0;
    std::string_view mem = fields[2];
    if (mem != "[N/A]" && mem != "N/A") {
      if (mem.size() > 3 && mem.substr(mem.size() - 3) == "MiB")
        mem = trim(mem.substr(0, mem.size() - 3));
      auto parsed = parse_uint<uint64_t>(mem);
      if (!parsed) return line_error(kWhat, line_no, line, "memory.total is not a number of MiB");
      memory_mb = *parsed;
    }
    if (fields[3].empty()) return line_error(kWhat, line_no, line, "empty uuid");
    if (!seen.insert(*index).second) {
      return line_error(kWhat, line_no, line, "index " + std::to_string(*index) + " repeated");
    }
    HostDevice d;
    d.info.index = *index;
    d.info.backend = "cuda";
    d.info.arch = gpu_arch_from_name(fields[1]);
    d.info.name = std::string(fields[1]);
    d.info.memory_mb = memory_mb;
    d.uuid = std::string(fields[3]);
    devices.push_back(std::move(d));
  }
  sort_by_index(devices);
  return devices;
}

// ----- npu-smi -----

Result<std::vector<HostDevice>> parse_npu_smi_info(std::string_view text) {
  constexpr const char* kWhat = "npu-smi info";
  // What the chip row's first cell holds after the chip id (from the "Chip ..." header row).
  enum class ChipColumn { none, device, other };
  struct Chip {
    uint32_t npu_id = 0;
    std::optional<uint32_t> device_id;
    std::string name;
    uint64_t memory_mb = 0;
    size_t line_no = 0;
    std::string line;
  };
  struct NameRow {
    uint32_t npu_id = 0;
    std::string name;
    size_t line_no = 0;
    std::string line;
    int chips = 0;
  };

  bool in_table = false;
  ChipColumn chip_column = ChipColumn::none;
  std::optional<NameRow> pending;
  std::vector<Chip> chips;

  auto close_pending = [&]() -> Status {
    if (pending && pending->chips == 0) {
      return line_error(kWhat, pending->line_no, pending->line,
                        "NPU " + std::to_string(pending->npu_id) + " has no chip row");
    }
    return Status();
  };

  size_t line_no = 0;
  for (std::string_view raw : split_lines(text)) {
    ++line_no;
    std::string_view line = trim(raw);
    if (line.empty() || line.front() != '|') continue;  // separators, blank lines, other text
    std::string_view inner = line.substr(1);
    if (!inner.empty() && inner.back() == '|') inner.remove_suffix(1);
    auto cells = split_trimmed(inner, '|');
    auto words = split_words(cells[0]);

    if (!in_table) {
      // The device table starts after "| NPU   Name | Health | ... |".
      if (words.size() >= 2 && words[0] == "NPU" && words[1] == "Name") in_table = true;
      continue;
    }
    if (!words.empty() && words[0] == "Chip") {  // second header row
      if (std::find(words.begin(), words.end(), "Device") != words.end()) {
        chip_column = ChipColumn::device;
      } else if (words.size() > 1) {
        chip_column = ChipColumn::other;
      }
      continue;
    }
    if (!words.empty() && words[0] == "NPU") break;  // "| NPU  Chip | Process id | ..."
    if (words.empty()) return line_error(kWhat, line_no, line, "empty first cell");

    if (words.size() >= 2 && !is_digits(words[1])) {  // name row: "| 0     910B4 | OK | ..."
      auto npu_id = parse_uint<uint32_t>(words[0]);
      if (!npu_id) return line_error(kWhat, line_no, line, "NPU id is not a number");
      KF_RETURN_IF_ERROR(close_pending());
      std::string name(words[1]);
      for (size_t i = 2; i < words.size(); ++i) name += " " + std::string(words[i]);
      pending = NameRow{*npu_id, std::move(name), line_no, std::string(line), 0};
      continue;
    }

    // Chip row: "| 0 | 0000:C1:00.0 | 0  0 / 0  3339 / 32768 |" (310P: "| 0  1 | ...").
    if (!pending) return line_error(kWhat, line_no, line, "chip row without an NPU row before it");
    if (!std::all_of(words.begin(), words.end(), is_digits)) {
      return line_error(kWhat, line_no, line, "expected numbers in the chip cell");
    }
    if (chip_column == ChipColumn::device && words.size() != 2) {
      return line_error(kWhat, line_no, line, "expected 'chip device' in the chip cell");
    }
    if (cells.size() < 3) {
      return line_error(
          kWhat, line_no, line,
          "expected 3 cells (chip, bus id, usage), got " + std::to_string(cells.size()));
    }
    auto pairs = memory_pairs(cells[2]);
    if (!pairs) return line_error(kWhat, line_no, line, "cannot read 'used / total' memory");
    Chip chip;
    chip.npu_id = pending->npu_id;
    chip.name = pending->name;
    if (chip_column == ChipColumn::device) {
      chip.device_id = parse_uint<uint32_t>(words[1]);
      if (!chip.device_id) return line_error(kWhat, line_no, line, "device id out of range");
    }
    for (auto it = pairs->rbegin(); it != pairs->rend(); ++it) {
      if (it->second != 0) {
        chip.memory_mb = it->second;
        break;
      }
    }
    chip.line_no = line_no;
    chip.line = std::string(line);
    chips.push_back(std::move(chip));
    ++pending->chips;
  }
  if (!in_table) {
    return invalid_argument(std::string(kWhat) +
                            ": no device table (no '| NPU  Name |' header row)");
  }
  KF_RETURN_IF_ERROR(close_pending());

  // Index: the Device column; else the NPU id when every NPU has one chip; else the order.
  std::set<uint32_t> npu_ids;
  for (const auto& c : chips) npu_ids.insert(c.npu_id);
  bool one_chip_per_npu = npu_ids.size() == chips.size();

  std::vector<HostDevice> devices;
  std::set<uint32_t> seen;
  for (size_t i = 0; i < chips.size(); ++i) {
    const Chip& c = chips[i];
    proto::DeviceInfo d;
    d.index = c.device_id ? *c.device_id : (one_chip_per_npu ? c.npu_id : static_cast<uint32_t>(i));
    if (!seen.insert(d.index).second) {
      return line_error(kWhat, c.line_no, c.line,
                        "device " + std::to_string(d.index) + " repeated");
    }
    d.backend = "ascend";
    d.arch = npu_arch_from_name(c.name);
    d.name = to_lower(c.name).rfind("ascend", 0) == 0 ? c.name : "Ascend " + c.name;
    d.memory_mb = c.memory_mb;
    devices.push_back(HostDevice{std::move(d), ""});
  }
  sort_by_index(devices);
  return devices;
}

// ----- names -----

std::string gpu_arch_from_name(std::string_view name) {
  std::string lower = to_lower(trim(name));
  std::vector<std::string> tokens;
  for (std::string_view word : split_words(lower)) {
    for (std::string_view piece : split_trimmed(word, '-')) {
      if (piece.empty() || piece == "nvidia" || piece == "tesla" || piece == "geforce" ||
          piece == "quadro") {
        continue;
      }
      tokens.emplace_back(piece);
    }
  }
  if (!tokens.empty()) {
    const std::string& t0 = tokens[0];
    if ((t0 == "rtx" || t0 == "gtx") && tokens.size() >= 2) {
      std::string arch = t0 + tokens[1];
      size_t next = 2;
      if (tokens[1] == "pro" && tokens.size() >= 3) arch += tokens[next++];
      for (size_t i = next; i < tokens.size(); ++i) {
        if (tokens[i] == "ti" || tokens[i] == "super" || tokens[i] == "ada") arch += tokens[i];
      }
      return arch;
    }
    if (is_model_token(t0)) return t0;
  }
  return without_spaces(lower);
}

std::string npu_arch_from_name(std::string_view name) {
  std::string s = without_spaces(to_lower(name));
  if (s.rfind("ascend", 0) == 0) s = s.substr(6);
  static const std::set<std::string> kFirstGeneration = {"910", "910a", "910proa", "910prob",
                                                         "910premiuma"};
  if (kFirstGeneration.count(s) != 0) return "ascend910";
  return "ascend" + s;
}

// ----- discovery -----

std::vector<HostDevice> discover_devices(const DiscoveryOptions& options) {
  std::vector<HostDevice> devices;
  const bool simulated = !options.fixture_dir.empty();

  if (!options.nvidia_smi.empty()) {
    std::optional<std::string> csv =
        simulated ? read_fixture(options.fixture_dir, "nvidia-smi.csv")
                  : run_tool(options.nvidia_smi, {"--query-gpu=index,name,memory.total,uuid",
                                                  "--format=csv,noheader,nounits"});
    if (csv)
      append_parsed(devices, simulated ? "nvidia-smi.csv" : options.nvidia_smi,
                    parse_nvidia_smi_csv(*csv));
  }
  if (!options.npu_smi.empty()) {
    std::optional<std::string> table = simulated ? read_fixture(options.fixture_dir, "npu-smi.txt")
                                                 : run_tool(options.npu_smi, {"info"});
    if (table)
      append_parsed(devices, simulated ? "npu-smi.txt" : options.npu_smi,
                    parse_npu_smi_info(*table));
  }

  std::string arch = options.cpu_arch.empty() ? host_cpu_arch() : options.cpu_arch;
  std::string cpu_name = options.cpu_devices > 0 ? host_cpu_name(arch) : std::string();
  uint64_t memory_mb = options.cpu_devices > 0 ? host_memory_mb() : 0;
  for (uint32_t i = 0; i < options.cpu_devices; ++i) {
    proto::DeviceInfo d;
    d.index = i;
    d.backend = "cpu";
    d.arch = arch;
    d.name = cpu_name;
    d.memory_mb = memory_mb;  // the host's, shared by every cpu device
    devices.push_back(HostDevice{std::move(d), ""});
  }
  return devices;
}

// ----- selection -----

Result<std::vector<proto::DeviceInfo>> select_devices(const std::vector<HostDevice>& discovered,
                                                      const std::vector<std::string>& wanted) {
  // named[k]: the entry of `wanted` that names discovered[k], if any.
  std::vector<std::optional<size_t>> named(discovered.size());
  for (size_t i = 0; i < wanted.size(); ++i) {
    const std::string& entry = wanted[i];
    const std::string where = "agent.devices[" + std::to_string(i) + "]: ";
    const bool by_uuid = entry.starts_with("GPU-");
    const size_t colon = entry.find(':');
    const std::string backend = by_uuid ? "cuda" : entry.substr(0, colon);
    std::optional<uint32_t> index;
    if (!by_uuid && colon != std::string::npos) {
      index = parse_uint<uint32_t>(std::string_view(entry).substr(colon + 1));
    }
    if (backend == "cpu" && colon != std::string::npos) {
      return invalid_argument(where + entry +
                              ": CPU devices are set by agent.cpu_devices, not agent.devices");
    }
    if (!by_uuid && (!index || (backend != "cuda" && backend != "ascend"))) {
      return invalid_argument(where + "expected backend:index such as cuda:0 or ascend:1, " +
                              "or a GPU UUID, got \"" + entry + "\"");
    }

    auto it = std::find_if(discovered.begin(), discovered.end(), [&](const HostDevice& d) {
      return d.info.backend == backend && (by_uuid ? d.uuid == entry : d.info.index == *index);
    });
    if (it == discovered.end()) {
      std::vector<std::string> listed;
      for (const HostDevice& d : discovered) {
        if (d.info.backend != backend) continue;
        listed.push_back(by_uuid ? d.uuid : backend + ":" + std::to_string(d.info.index));
      }
      return invalid_argument(where + entry + " is not on this host; " +
                              (backend == "cuda" ? "nvidia-smi" : "npu-smi") + " lists " +
                              (listed.empty() ? "none" : join(listed)));
    }
    std::optional<size_t>& first = named[static_cast<size_t>(it - discovered.begin())];
    if (first) {
      std::string which =
          by_uuid ? entry + " (cuda:" + std::to_string(it->info.index) + ")" : entry;
      return invalid_argument(where + which + " is already named by agent.devices[" +
                              std::to_string(*first) + "]");
    }
    first = i;
  }

  std::vector<proto::DeviceInfo> kept;
  for (size_t k = 0; k < discovered.size(); ++k) {
    if (wanted.empty() || named[k] || discovered[k].info.backend == "cpu") {
      kept.push_back(discovered[k].info);
    }
  }
  return kept;
}

// ----- capabilities -----

Result<std::map<std::string, std::string>> probe_capabilities(const std::string& python) {
  const std::string who = "capability probe with '" + python + "'";
  ProcessSpec spec;
  spec.argv = {python, "-c", kProbeScript};
  spec.cwd = "/";  // no stray module in the working directory shadows a framework
  spec.env_allow = {"PATH", "HOME"};
  spec.timeout = kProbeTimeout;
  auto r = run_process(spec);
  if (!r.ok()) return Status(r.status().code(), who + " failed: " + r.status().message());
  if (r->timed_out) {
    return Status(Code::timeout,
                  who + " timed out after " +
                      std::to_string(
                          std::chrono::duration_cast<std::chrono::seconds>(kProbeTimeout).count()) +
                      " s");
  }
  if (r->exit_code != 0) {
    std::string said{trim(r->stderr_data)};
    size_t last = said.rfind('\n');
    if (last != std::string::npos) said = said.substr(last + 1);
    std::string how = r->signal != 0 ? "was killed by signal " + std::to_string(r->signal)
                                     : "exited with code " + std::to_string(r->exit_code);
    return io_error(who + " " + how + (said.empty() ? "" : ": " + quote(said)));
  }

  std::string_view json_line;
  for (std::string_view raw : split_lines(r->stdout_data)) {
    if (!trim(raw).empty()) json_line = trim(raw);
  }
  auto doc = nlohmann::json::parse(json_line, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return io_error(who + " printed no JSON object: " + quote(r->stdout_data));
  }
  std::map<std::string, std::string> caps;
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    if (it.value().is_string()) caps[it.key()] = it.value().get<std::string>();
  }
  if (caps.count("python") == 0) return io_error(who + " reported no python version");
  return caps;
}

}  // namespace kforge
