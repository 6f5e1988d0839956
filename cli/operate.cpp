// The operator commands: status, tasks, show, results, submit, cancel, resume, agents,
// cluster, drain/undrain, jobs, export, report. Each asks the operator API (cli/client.h) and
// formats the answer.
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "cli/check.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "common/fs.h"
#include "common/text.h"
#include "coordinator/generation/prompts.h"
#include "coordinator/intake/campaign.h"
#include "coordinator/operator/report.h"

namespace kforge {
namespace {

using json = nlohmann::json;

Result<std::unique_ptr<ApiClient>> client_or_fail(const ParsedFlags& flags, int* code) {
  auto c = connect_api(flags);
  if (!c.ok())
    *code = cli_fail(c.status().message(),
                     c.status().code() == Code::invalid_argument ? kExitUsage : kExitFailed);
  return c;
}

int api_fail(const Status& st) {
  return cli_fail(st.message(), st.code() == Code::unavailable ? kExitUnreachable : kExitFailed);
}

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

std::string speedup_text(const json& t) {
  if (!t.contains("speedup") || !t["speedup"].is_number()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fx", t["speedup"].get<double>());
  return buf;
}

std::string ago(int64_t ms) {
  if (ms <= 0) return "never";
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  int64_t s = std::max<int64_t>((now - ms) / 1000, 0);
  if (s < 120) return std::to_string(s) + "s ago";
  if (s < 7200) return std::to_string(s / 60) + "m ago";
  return std::to_string(s / 3600) + "h ago";
}

std::string clock_time(int64_t ms) {
  return fmt::format("{:%H:%M:%S}", fmt::localtime(static_cast<std::time_t>(ms / 1000)));
}

// The output format a listing asks for: --format table|json|csv, or --json / --csv for short.
Result<std::string> output_format(const ParsedFlags& flags) {
  std::string format = flags.get("format").value_or("");
  for (const char* f : {"json", "csv"}) {
    if (!flags.has(f)) continue;
    if (!format.empty() && format != f)
      return invalid_argument("give one of --format, --json and --csv");
    format = f;
  }
  if (format.empty()) return std::string("table");
  if (format != "table" && format != "json" && format != "csv") {
    return invalid_argument("flag '--format': expected table, json or csv, got '" + format + "'");
  }
  return format;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// `rows` (JSON objects) as CSV: a header, then a line per row. A column is a field's path,
// "tasks/passed" for a nested one (its header "tasks_passed").
void print_csv(const json& rows, const std::vector<std::string>& columns) {
  std::string header;
  for (const std::string& c : columns) {
    std::string name = c;
    std::replace(name.begin(), name.end(), '/', '_');
    header += (header.empty() ? "" : ",") + name;
  }
  std::printf("%s\n", header.c_str());
  for (const json& row : rows) {
    std::string line;
    for (size_t i = 0; i < columns.size(); ++i) {
      json::json_pointer at("/" + columns[i]);
      std::string value = row.contains(at) ? str(json{{"v", row.at(at)}}, "v") : "";
      line += (i ? "," : "") + csv_field(value);
    }
    std::printf("%s\n", line.c_str());
  }
}

// A campaign id from the first positional argument (required when `required`).
Result<int64_t> campaign_arg(const ParsedFlags& flags, bool required, const char* command) {
  std::string text =
      flags.positional.empty() ? flags.get("campaign").value_or("") : flags.positional[0];
  if (text.empty()) {
    if (!required) return int64_t{0};
    return invalid_argument(std::string(command) +
                            ": give a campaign id; `kforge status` lists them");
  }
  auto id = parse_uint_flag("campaign", text);
  if (!id.ok() || *id == 0)
    return invalid_argument(std::string(command) + ": '" + text +
                            "' is not a campaign id (a positive integer)");
  return static_cast<int64_t>(*id);
}

// --- status ---------------------------------------------------------------------------------

std::string progress_bar(int64_t done, int64_t total, int width) {
  int filled =
      total > 0 ? static_cast<int>(static_cast<double>(done) / static_cast<double>(total) * width)
                : 0;
  return "[" + std::string(static_cast<size_t>(filled), '#') +
         std::string(static_cast<size_t>(width - filled), '.') + "]";
}

std::string campaign_line(const json& c, bool bar) {
  const json& t = c["tasks"];
  int64_t total = t.value("total", 0), passed = t.value("passed", 0), failed = t.value("failed", 0),
          cancelled = t.value("cancelled", 0), running = t.value("running", 0),
          pending = t.value("pending", 0);
  int64_t done = passed + failed + cancelled;
  char buf[512];
  std::snprintf(
      buf, sizeof buf,
      "%4lld %-24.24s %-9s %s %lld/%lld done: %lld passed, %lld failed%s; %lld running, %lld "
      "pending; LLM %lld calls, $%.4f",
      static_cast<long long>(c.value("id", 0)), str(c, "name").c_str(), str(c, "state").c_str(),
      bar ? progress_bar(done, total, 24).c_str() : "", static_cast<long long>(done),
      static_cast<long long>(total), static_cast<long long>(passed), static_cast<long long>(failed),
      cancelled ? (", " + std::to_string(cancelled) + " cancelled").c_str() : "",
      static_cast<long long>(running), static_cast<long long>(pending),
      static_cast<long long>(c["llm"].value("calls", 0)), c["llm"].value("cost_usd", 0.0));
  return buf;
}

Result<json> campaigns_to_show(ApiClient& api, int64_t id) {
  if (id > 0) {
    auto c = api.get("campaigns/" + std::to_string(id));
    if (!c.ok()) return c.status();
    return json::array({*c});
  }
  return api.get("campaigns");
}

}  // namespace

int cmd_status(const ParsedFlags& flags) {
  int code = 0;
  auto api = client_or_fail(flags, &code);
  if (!api.ok()) return code;
  auto id = campaign_arg(flags, false, "status");
  if (!id.ok()) return cli_fail(id.status().message(), kExitUsage);
  auto format = output_format(flags);
  if (!format.ok()) return cli_fail(format.status().message(), kExitUsage);
  const bool watch = flags.has("watch"), table = *format == "table";
  const bool tty = ::isatty(STDOUT_FILENO) && table;
  std::vector<std::string> last;
  size_t drawn = 0;  // lines drawn last time (terminal redraw)
  for (;;) {
    auto campaigns = campaigns_to_show(**api, *id);
    if (!campaigns.ok()) return api_fail(campaigns.status());
    if (*format == "json") {
      std::printf("%s\n", campaigns->dump(2).c_str());
      return kExitOk;
    }
    if (*format == "csv") {
      print_csv(*campaigns, {"id", "name", "state", "workflow", "tasks/total", "tasks/pending",
                             "tasks/running", "tasks/passed", "tasks/failed", "tasks/cancelled",
                             "llm/calls", "llm/cost_usd", "created_ms", "updated_ms"});
      return kExitOk;
    }
    std::vector<std::string> lines;
    bool running = false;
    for (const json& c : *campaigns) {
      lines.push_back(campaign_line(c, tty));
      running = running || str(c, "state") == "running";
    }
    if (lines.empty()) lines.push_back("no campaigns yet; `kforge submit CAMPAIGN.toml` adds one");
    if (tty && drawn > 0) std::printf("\x1b[%zuA", drawn);  // back to the first line drawn
    if (tty || lines != last) {
      for (const auto& l : lines) std::printf(tty ? "\x1b[2K%s\n" : "%s\n", l.c_str());
      drawn = lines.size();
      std::fflush(stdout);
    }
    last = lines;
    if (!watch || !running) return kExitOk;
    std::this_thread::sleep_for(std::chrono::seconds(1));  // display refresh
  }
}

// --- tasks, results -------------------------------------------------------------------------

namespace {

// Calls `each` with the pages of the tasks `query` (filters, no paging) matches, by id,
// kTaskPage at a time, as they come: each page asks for the ids after the last one seen
// (keyset), so a listing of a million tasks holds one page here and in the coordinator.
// `offset` applies to the first page; `limit` caps the tasks in all.
Status each_task_page(ApiClient& api, const std::string& query, std::optional<uint64_t> after,
                      std::optional<uint64_t> offset, std::optional<uint64_t> limit,
                      const std::function<Status(const json& page)>& each) {
  const char* sep = query.find('?') == std::string::npos ? "?" : "&";
  uint64_t seen = 0;
  for (;;) {
    uint64_t page = limit ? std::min<uint64_t>(kTaskPage, *limit - seen) : kTaskPage;
    std::string q = query + sep + "limit=" + std::to_string(page);
    if (after) q += "&after=" + std::to_string(*after);
    if (offset) q += "&offset=" + std::to_string(*offset);
    auto tasks = api.get(q);
    if (!tasks.ok()) return tasks.status();
    KF_RETURN_IF_ERROR(each(*tasks));
    seen += tasks->size();
    if (tasks->size() < page || (limit && seen >= *limit)) return Status();
    after = tasks->back().value("task", uint64_t{0});
    offset.reset();
  }
}

// The filters of a listing, without paging ("tasks?campaign=3&state=failed").
std::string tasks_query(const ParsedFlags& flags, int64_t campaign) {
  std::string q = "tasks?";
  if (campaign > 0) q += "campaign=" + std::to_string(campaign) + "&";
  for (const char* key : {"state", "op", "verdict"}) {
    if (auto v = flags.get(key)) q += std::string(key) + "=" + url_escape(*v) + "&";
  }
  q.pop_back();
  return q;
}

const char* const kTaskColumns[] = {
    "task",      "campaign",      "op_name",           "task_id",   "backend",
    "arch",      "impl_type",     "framework",         "task_type", "state",
    "verdict",   "steps",         "limit_steps",       "speedup",   "best_step",
    "llm_calls", "prompt_tokens", "completion_tokens", "cost_usd",  "reason"};

}  // namespace

TaskPrinter::TaskPrinter(std::string format) : format_(std::move(format)) {
  if (format_ == "json") {
    std::printf("[");
  } else if (format_ == "csv") {
    std::string header;
    for (const char* c : kTaskColumns) header += std::string(header.empty() ? "" : ",") + c;
    std::printf("%s\n", header.c_str());
  } else {
    fmt::print("{:<6} {:<20} {:<28} {:<9} {:<20} {:>7} {:>8} {:>9}\n", "TASK", "OP", "TASK_ID",
               "STATE", "VERDICT", "STEPS", "SPEEDUP", "COST_USD");
  }
}

void TaskPrinter::rows(const json& tasks) {
  for (const json& t : tasks) {
    if (format_ == "json") {
      // The same text as tasks.dump(2) of the whole array, one element at a time.
      std::string item = json::array({t}).dump(2);
      item = item.substr(1, item.size() - 3);  // without "[" and "\n]"
      std::printf("%s%s", rows_ ? "," : "", item.c_str());
    } else if (format_ == "csv") {
      std::string line;
      bool first = true;
      for (const char* c : kTaskColumns) {
        line += (first ? "" : ",") + csv_field(str(t, c));
        first = false;
      }
      std::printf("%s\n", line.c_str());
    } else {
      std::string steps = str(t, "steps") + "/" + str(t, "limit_steps");
      fmt::print("{:<6} {:<20.20} {:<28.28} {:<9} {:<20.20} {:>7} {:>8} {:>9.4f}\n",
                 t.value("task", int64_t{0}), str(t, "op_name"), str(t, "task_id"), str(t, "state"),
                 str(t, "verdict"), steps, speedup_text(t), t.value("cost_usd", 0.0));
    }
    rows_++;
  }
}

TaskPrinter::~TaskPrinter() {
  if (format_ == "json") std::printf(rows_ ? "\n]\n" : "]\n");
  std::fflush(stdout);
}

void print_tasks(const json& tasks, const std::string& format) {
  TaskPrinter printer(format);
  printer.rows(tasks);
}

namespace {

int list_tasks(const ParsedFlags& flags, bool campaign_positional) {
  int code = 0;
  auto api = client_or_fail(flags, &code);
  if (!api.ok()) return code;
  int64_t campaign = 0;
  if (campaign_positional || flags.has("campaign")) {
    auto id = campaign_arg(flags, false, campaign_positional ? "results" : "tasks");
    if (!id.ok()) return cli_fail(id.status().message(), kExitUsage);
    campaign = *id;
  }
  auto format = output_format(flags);
  if (!format.ok()) return cli_fail(format.status().message(), kExitUsage);
  std::optional<uint64_t> limit, offset, after;
  for (auto [name, value] : {std::pair{"limit", &limit}, {"offset", &offset}, {"after", &after}}) {
    if (auto v = flags.get(name)) {
      auto n = parse_uint_flag(name, *v);
      if (!n.ok()) return cli_fail(n.status().message(), kExitUsage);
      *value = *n;
    }
  }
  std::optional<TaskPrinter> printer;
  Status st = each_task_page(**api, tasks_query(flags, campaign), after, offset, limit,
                             [&](const json& page) {
                               if (!printer) printer.emplace(*format);
                               printer->rows(page);
                               return Status();
                             });
  if (!st.ok()) return api_fail(st);
  return kExitOk;
}

}  // namespace

int cmd_tasks(const ParsedFlags& flags) {
  return list_tasks(flags, false);
}
int cmd_results(const ParsedFlags& flags) {
  return list_tasks(flags, true);
}

// --- show -----------------------------------------------------------------------------------

namespace {

// The first `max_lines` lines of `text` (all with max_lines 0), indented.
std::string excerpt(const std::string& text, size_t max_lines, const std::string& indent) {
  std::string out;
  size_t lines = 0, i = 0;
  while (i < text.size()) {
    size_t j = text.find('\n', i);
    if (j == std::string::npos) j = text.size();
    if (max_lines && lines == max_lines) {
      size_t rest = 1;
      for (size_t k = j; k < text.size(); ++k) rest += text[k] == '\n';
      out += indent + "... (" + std::to_string(rest) + " more lines; --full shows everything)\n";
      break;
    }
    out += indent + text.substr(i, j - i) + "\n";
    ++lines;
    i = j + 1;
  }
  return out;
}

std::string verifier_summary(const std::string& output) {
  json doc = json::parse(output, nullptr, false);
  if (!doc.is_object()) return output;
  std::string out = str(doc, "message");
  if (doc.contains("profile") && doc["profile"].is_object()) {
    const json& p = doc["profile"];
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "\nprofile: candidate %.1f us, reference %.1f us (median of %lld runs, %s), "
                  "speedup %.2fx%s",
                  p.value("candidate", json::object()).value("median_us", 0.0),
                  p.value("reference", json::object()).value("median_us", 0.0),
                  static_cast<long long>(p.value("candidate", json::object()).value("runs", 0)),
                  p.value("method", std::string("?")).c_str(), p.value("speedup", 0.0),
                  p.value("suspicious", false) ? " SUSPICIOUS" : "");
    out += buf;
  }
  if (doc.contains("phases_ms") && doc["phases_ms"].is_object()) {
    // In the order they happen (first_call is part of precision); names the harness may add later
    // after them.
    static const std::vector<std::string> kOrder = {
        "imports",        "device_init", "worker_ready", "load_reference",
        "load_candidate", "first_call",  "precision",    "profile"};
    const json& ph = doc["phases_ms"];
    std::vector<std::string> keys;
    for (const auto& k : kOrder) {
      if (ph.contains(k)) keys.push_back(k);
    }
    for (const auto& [k, v] : ph.items()) {
      if (std::find(kOrder.begin(), kOrder.end(), k) == kOrder.end()) keys.push_back(k);
    }
    std::string phases;
    for (const auto& k : keys) {
      const json& v = ph[k];
      if (v.is_number())
        phases += (phases.empty() ? "" : ", ") + k + " " +
                  std::to_string(static_cast<int64_t>(v.get<double>())) + " ms";
    }
    out += "\nharness: " + phases;
  }
  return out;
}

}  // namespace

int cmd_show(const ParsedFlags& flags) {
  if (flags.positional.size() != 1)
    return cli_fail("show: give one task id; `kforge tasks` lists them", kExitUsage);
  auto id = parse_uint_flag("task", flags.positional[0]);
  if (!id.ok() || *id == 0)
    return cli_fail("show: '" + flags.positional[0] + "' is not a task id (a positive integer)",
                    kExitUsage);
  int code = 0;
  auto api = client_or_fail(flags, &code);
  if (!api.ok()) return code;
  auto t = (*api)->get("tasks/" + std::to_string(*id));
  if (!t.ok()) return api_fail(t.status());
  if (flags.has("json")) {
    std::printf("%s\n", t->dump(2).c_str());
    return kExitOk;
  }
  const bool full = flags.has("full");
  const json& task = *t;
  std::printf("task %lld: %s / %s  (campaign %lld)\n",
              static_cast<long long>(task.value("task", 0)), str(task, "op_name").c_str(),
              str(task, "task_id").c_str(), static_cast<long long>(task.value("campaign", 0)));
  std::printf("  target %s/%s/%s, framework %s, %s\n", str(task, "backend").c_str(),
              str(task, "arch").c_str(), str(task, "impl_type").c_str(),
              str(task, "framework").c_str(), str(task, "task_type").c_str());
  std::printf(
      "  state %s, verdict %s, steps %s/%s, speedup %s, LLM %s calls (%s+%s tokens, $%.4f)\n",
      str(task, "state").c_str(), str(task, "verdict").c_str(), str(task, "steps").c_str(),
      str(task, "limit_steps").c_str(), speedup_text(task).c_str(), str(task, "llm_calls").c_str(),
      str(task, "prompt_tokens").c_str(), str(task, "completion_tokens").c_str(),
      task.value("cost_usd", 0.0));
  if (!str(task, "reason").empty() && str(task, "reason") != "passed")
    std::printf("  reason: %s\n", str(task, "reason").c_str());
  if (!task["best_step"].is_null())
    std::printf("  the code that passed: step %s\n", str(task, "best_step").c_str());
  for (const json& s : task["trace"]) {
    std::string role = str(s, "role"), verdict = str(s, "verdict");
    std::printf("\n--- step %s  %s  %s%s%s\n", str(s, "seq").c_str(), role.c_str(),
                clock_time(s.value("created_ms", int64_t{0})).c_str(),
                verdict.empty() ? "" : ("  verdict " + verdict).c_str(),
                s.value("counted", true) ? "" : "  (not counted)");
    if (role == "verifier") {
      std::printf("%s", excerpt(verifier_summary(str(s, "output")), full ? 0 : 20, "  ").c_str());
      continue;
    }
    std::printf("  prompt:\n%s", excerpt(str(s, "input"), full ? 0 : 6, "    ").c_str());
    std::printf("  response:\n%s", excerpt(str(s, "output"), full ? 0 : 40, "    ").c_str());
  }
  if (!task["jobs"].empty()) {
    std::printf("\njobs:\n");
    for (const json& j : task["jobs"]) {
      std::printf("  job %s  %s  epoch %s  attempts %s  agent %s  device %s\n",
                  str(j, "id").c_str(), str(j, "state").c_str(), str(j, "epoch").c_str(),
                  str(j, "attempts").c_str(), str(j, "agent").c_str(), str(j, "device").c_str());
    }
  }
  return kExitOk;
}

// --- submit, cancel, resume -----------------------------------------------------------------

int cmd_submit(const ParsedFlags& flags) {
  if (flags.positional.size() != 1) return cli_fail("submit: give one campaign file", kExitUsage);
  const std::filesystem::path path = flags.positional[0];
  // Checked here (kforge check's check), so that problems name this host's paths; the
  // coordinator checks every task as it expands them.
  auto checked = check_inputs(path, flags.get("config"), CheckFor::submit);
  if (!checked.ok()) return check_failed(checked.status());
  const std::string* text = &checked->campaign_text;
  const CampaignPlan* plan = &checked->plan;
  int code = 0;
  auto api = client_or_fail(flags, &code);
  if (!api.ok()) return code;
  json files = json::object();
  for (const auto& [written, file] : plan->files()) files[written] = file;
  json body = {
      {"campaign", *text}, {"file_name", path.filename().string()}, {"files", std::move(files)}};

  // A campaign of more than one batch takes seconds to store: its progress, read from the
  // campaign listing (tasks.total counts the tasks stored so far) through a second client.
  std::mutex mu;
  std::condition_variable cv;
  bool answered = false;
  std::thread progress;
  if (plan->size() > kCampaignBatch) {
    progress = std::thread([&] {
      auto watcher = connect_api(flags);
      if (!watcher.ok()) return;
      int64_t shown = -1;
      std::unique_lock lock(mu);
      while (!cv.wait_for(lock, std::chrono::seconds(1), [&] { return answered; })) {
        lock.unlock();
        auto listed = (*watcher)->get("campaigns");
        lock.lock();
        if (!listed.ok() || !listed->is_array()) continue;
        for (const json& c : *listed) {
          if (str(c, "name") != plan->name() || str(c, "state") != "submitting") continue;
          int64_t stored = c.contains("tasks") ? c["tasks"].value("total", int64_t{0}) : 0;
          if (stored != shown) {
            std::fprintf(stderr, "campaign %s: stored %lld of %zu tasks\n", plan->name().c_str(),
                         static_cast<long long>(stored), plan->size());
            shown = stored;
          }
        }
      }
    });
  }
  auto answer = (*api)->post("campaigns", body);
  {
    std::lock_guard lock(mu);
    answered = true;
  }
  cv.notify_all();
  if (progress.joinable()) progress.join();
  if (!answer.ok()) return api_fail(answer.status());
  std::printf("campaign %s: %s (id %lld, %zu tasks)\n", plan->name().c_str(),
              answer->value("created", false) ? "submitted" : "already submitted",
              static_cast<long long>(answer->value("id", 0)), plan->size());
  return kExitOk;
}

namespace {

int campaign_or_task_action(const ParsedFlags& flags, const std::string& verb) {
  int code = 0;
  std::string path;
  if (auto task = flags.get("task")) {
    if (!flags.positional.empty())
      return cli_fail(verb + ": give a campaign id or --task N, not both", kExitUsage);
    auto id = parse_uint_flag("task", *task);
    if (!id.ok() || *id == 0)
      return cli_fail(verb + ": --task '" + *task + "' is not a task id", kExitUsage);
    path = "tasks/" + std::to_string(*id) + "/" + verb;
  } else {
    auto id = campaign_arg(flags, true, verb.c_str());
    if (!id.ok())
      return cli_fail(id.status().message() + " (or --task N for one task)", kExitUsage);
    path = "campaigns/" + std::to_string(*id) + "/" + verb;
  }
  auto api = client_or_fail(flags, &code);
  if (!api.ok()) return code;
  auto answer = (*api)->post(path, json::object());
  if (!answer.ok()) return api_fail(answer.status());
  if (answer->contains("tasks") && (*answer)["tasks"].is_object()) {
    std::printf("%s\n", campaign_line(*answer, false).c_str());
  } else {
    std::printf("task %lld: %s\n", static_cast<long long>(answer->value("task", 0)),
                str(*answer, "state").c_str());
  }
  return kExitOk;
}

}  // namespace

int cmd_cancel(const ParsedFlags& flags) {
  return campaign_or_task_action(flags, "cancel");
}
int cmd_resume(const ParsedFlags& flags) {
  return campaign_or_task_action(flags, "resume");
}

// --- agents, drain, undrain -----------------------------------------------------------------

int cmd_agents(const ParsedFlags& flags) {
  auto format = output_format(flags);
  if (!format.ok()) return cli_fail(format.status().message(), kExitUsage);
  int code = 0;
  auto api = client_or_fail(flags, &code);
  if (!api.ok()) return code;
  auto agents = (*api)->get("agents");
  if (!agents.ok()) return api_fail(agents.status());
  if (*format == "json") {
    std::printf("%s\n", agents->dump(2).c_str());
    return kExitOk;
  }
  if (*format == "csv") {
    print_csv(*agents, {"id", "host", "state", "drained", "drain_reason", "drained_ms",
                        "incarnation", "registered_ms", "last_seen_ms", "running_jobs"});
    return kExitOk;
  }
  constexpr std::string_view kAgentRow = "{:<34} {:<16.16} {:<6} {:<7} {:<5} {:<10} {:<24.24} {}\n";
  fmt::print(kAgentRow, "AGENT", "HOST", "STATE", "DRAINED", "LOAD", "HEARTBEAT", "REASON",
             "DEVICES");
  for (const json& a : *agents) {
    std::string devices;
    size_t busy = 0;
    for (const json& d : a["devices"]) {
      if (!devices.empty()) devices += " ";
      devices += str(d, "backend") + ":" + str(d, "index") + "(" + str(d, "arch") + ")";
      if (d.value("running_jobs", 0) > 0) {
        devices += "*";
        busy++;
      }
    }
    std::string load = std::to_string(busy) + "/" + std::to_string(a["devices"].size());
    std::string reason = str(a, "drain_reason");
    fmt::print(fmt::runtime(kAgentRow), str(a, "id"), str(a, "host"), str(a, "state"),
               a.value("drained", false) ? "yes" : "no", load,
               ago(a.value("last_seen_ms", int64_t{0})), reason.empty() ? "-" : reason, devices);
  }
  std::printf("(* a device running a job now)\n");
  return kExitOk;
}

int cmd_cluster(const ParsedFlags& flags) {
  auto format = output_format(flags);
  if (!format.ok()) return cli_fail(format.status().message(), kExitUsage);
  int code = 0;
  auto api = client_or_fail(flags, &code);
  if (!api.ok()) return code;
  auto c = (*api)->get("cluster");
  if (!c.ok()) return api_fail(c.status());
  if (*format == "json") {
    std::printf("%s\n", c->dump(2).c_str());
    return kExitOk;
  }
  if (*format == "csv") {  // a line per host, as sinfo -N
    print_csv((*c)["hosts"],
              {"host", "state", "drained", "drain_reason", "running_jobs", "devices/idle",
               "devices/busy", "devices/draining", "devices/drained", "devices/down"});
    return kExitOk;
  }
  auto n = [](const json& j, const char* key) {
    return static_cast<long long>(j.value(key, int64_t{0}));
  };
  constexpr std::string_view kHostRow =
      "{:<20.20} {:<8} {:>6} {:>5} {:>5} {:>6} {:>8} {:>5} {:>7}  {}\n";
  fmt::print(kHostRow, "HOST", "STATE", "AGENTS", "IDLE", "BUSY", "DRAIN", "DRAINED", "DOWN",
             "RUNNING", "REASON");
  for (const json& h : (*c)["hosts"]) {
    const json& d = h["devices"];
    std::string state = str(h, "state") + (h.value("drained", false) ? "*" : "");
    std::string reason = str(h, "drain_reason");
    fmt::print(fmt::runtime(kHostRow), str(h, "host"), state, h["agents"].size(), n(d, "idle"),
               n(d, "busy"), n(d, "draining"), n(d, "drained"), n(d, "down"), n(h, "running_jobs"),
               reason.empty() ? "-" : reason);
  }
  const json &d = (*c)["devices"], &a = (*c)["agents"], &t = (*c)["tasks"], &j = (*c)["jobs"],
             &tp = (*c)["throughput"];
  std::printf("(* drained)\n\n");
  std::printf("devices:    %lld: %lld idle, %lld busy, %lld draining, %lld drained, %lld down\n",
              n(d, "total"), n(d, "idle"), n(d, "busy"), n(d, "draining"), n(d, "drained"),
              n(d, "down"));
  std::printf("agents:     %lld live (%lld drained), %lld lost, %lld gone\n", n(a, "live"),
              n(a, "drained"), n(a, "lost"), n(a, "gone"));
  std::printf("jobs:       %lld running, %lld queued\n", n(j, "running"), n(j, "queued"));
  std::printf(
      "tasks:      %lld pending, %lld running, %lld passed, %lld failed, %lld cancelled; "
      "campaigns: %lld running of %lld\n",
      n(t, "pending"), n(t, "running"), n(t, "passed"), n(t, "failed"), n(t, "cancelled"),
      n((*c)["campaigns"], "running"), n((*c)["campaigns"], "total"));
  std::printf("throughput: %lld tasks/hour (tasks finished in the last %lld min)\n",
              n(tp, "tasks_per_hour"), n(tp, "window_s") / 60);
  return kExitOk;
}

// The overnight shift's view of one campaign (GET /campaigns/{id}/progress): how far, how
// fast, when it ends, what waits, whether it stalled.
int cmd_progress(const ParsedFlags& flags) {
  int code = 0;
  auto api = client_or_fail(flags, &code);
  if (!api.ok()) return code;
  auto id = campaign_arg(flags, true, "progress");
  if (!id.ok()) return cli_fail(id.status().message(), kExitUsage);
  auto p = (*api)->get("campaigns/" + std::to_string(*id) + "/progress?buckets=1");
  if (!p.ok()) return api_fail(p.status());
  if (flags.has("json")) {
    std::printf("%s\n", p->dump(2).c_str());
    return kExitOk;
  }
  auto n = [](const json& j, const char* key) {
    return static_cast<long long>(j.value(key, int64_t{0}));
  };
  const json &t = (*p)["tasks"], &q = (*p)["queue"];
  fmt::print("campaign {} ({}), {} elapsed\n", *id, str(*p, "state"),
             duration_str((*p).value("elapsed_ms", int64_t{0}) / 1000.0));
  fmt::print("tasks:  {} of {} finished ({} passed, {} failed), {} cancelled, {} remaining\n",
             n(t, "finished"), n(t, "total"), n(t, "passed"), n(t, "failed"), n(t, "cancelled"),
             n(t, "remaining"));
  const json& rate = (*p)["tasks_per_hour"];
  fmt::print("pace:   {} tasks/hour overall, {} finished in the last hour\n",
             rate.is_number() ? fmt::format("{:.1f}", rate.get<double>()) : "-",
             n((*p)["last_hour"], "tasks_finished"));
  const json& eta = (*p)["eta_ms"];
  fmt::print(
      "eta:    {}\n",
      eta.is_number() ? "about " + duration_str(eta.get<int64_t>() / 1000.0) + " from now" : "-");
  fmt::print("queue:  {} tasks pending, {} jobs queued, {} running\n", n(q, "pending_tasks"),
             n(q, "queued_jobs"), n(q, "running_jobs"));
  if ((*p).value("stalled", false)) {
    fmt::print("STALLED: nothing has moved since {} (kforge alerts)\n",
               clock_time(n(*p, "last_change_ms")));
  }
  return kExitOk;
}

// What needs the operator now (GET /alerts): lost agents, stalled campaigns, a full disk.
int cmd_alerts(const ParsedFlags& flags) {
  auto format = output_format(flags);
  if (!format.ok()) return cli_fail(format.status().message(), kExitUsage);
  int code = 0;
  auto api = client_or_fail(flags, &code);
  if (!api.ok()) return code;
  auto a = (*api)->get("alerts");
  if (!a.ok()) return api_fail(a.status());
  if (*format == "json") {
    std::printf("%s\n", a->dump(2).c_str());
    return kExitOk;
  }
  if (*format == "csv") {
    print_csv(*a, {"kind", "since_ms", "agent", "host", "campaign", "message"});
    return kExitOk;
  }
  if (a->empty()) std::printf("no alerts\n");
  for (const json& alert : *a) {
    const int64_t since = alert.value("since_ms", int64_t{0});
    fmt::print("{:<17} {}  {}\n", str(alert, "kind"), since > 0 ? clock_time(since) : "-",
               str(alert, "message"));
  }
  return kExitOk;
}

// A host name drains every agent of that host; otherwise it names one agent (an id, or a
// unique prefix of one).
int set_drained(const ParsedFlags& flags, bool drained) {
  const std::string verb = drained ? "drain" : "undrain";
  if (flags.positional.size() != 1) {
    return cli_fail(
        verb + ": give one host name or agent id (or a unique prefix); see `kforge agents`",
        kExitUsage);
  }
  const std::string& name = flags.positional[0];
  json body = json::object();
  if (auto reason = flags.get("reason")) body["reason"] = *reason;
  int code = 0;
  auto api = client_or_fail(flags, &code);
  if (!api.ok()) return code;
  json agents;
  auto by_host = (*api)->post("hosts/" + url_escape(name) + "/" + verb, body);
  if (by_host.ok()) {
    agents = *by_host;
  } else if (by_host.status().code() == Code::not_found) {
    auto by_agent = (*api)->post("agents/" + url_escape(name) + "/" + verb, body);
    if (!by_agent.ok() && by_agent.status().code() == Code::not_found) {
      return api_fail(Status(Code::not_found, verb + ": no host '" + name +
                                                  "' and no agent id starting with it; "
                                                  "`kforge agents` lists them"));
    }
    if (!by_agent.ok())
      return api_fail(Status(by_agent.status().code(), verb + ": " + by_agent.status().message()));
    agents = json::array({*by_agent});
  } else {
    return api_fail(Status(by_host.status().code(), verb + ": " + by_host.status().message()));
  }
  for (const json& a : agents) {
    std::string reason = str(a, "drain_reason");
    std::printf("agent %s %s%s\n", str(a, "id").c_str(),
                drained ? "drained: running jobs finish, no new ones" : "undrained",
                reason.empty() ? "" : ("; reason: " + reason).c_str());
  }
  return kExitOk;
}

int cmd_jobs(const ParsedFlags& flags) {
  auto format = output_format(flags);
  if (!format.ok()) return cli_fail(format.status().message(), kExitUsage);
  int code = 0;
  auto api = client_or_fail(flags, &code);
  if (!api.ok()) return code;
  std::string q = "jobs?";
  for (const char* key : {"state", "task", "limit", "after", "offset"}) {
    if (auto v = flags.get(key)) q += std::string(key) + "=" + url_escape(*v) + "&";
  }
  q.pop_back();
  auto jobs = (*api)->get(q);
  if (!jobs.ok()) return api_fail(jobs.status());
  if (*format == "json") {
    std::printf("%s\n", jobs->dump(2).c_str());
    return kExitOk;
  }
  if (*format == "csv") {
    print_csv(*jobs, {"id", "task", "kind", "state", "epoch", "attempts", "agent", "device",
                      "backend", "arch", "created_ms", "assigned_ms", "finished_ms", "outcome"});
    return kExitOk;
  }
  constexpr std::string_view kJobRow = "{:<8} {:<10} {:<6} {:<8} {:<18.16} {:<8} {}\n";
  fmt::print(kJobRow, "JOB", "STATE", "EPOCH", "ATTEMPTS", "AGENT", "DEVICE", "OUTCOME");
  for (const json& j : *jobs) {
    std::string agent = str(j, "agent"), device = str(j, "device");
    fmt::print(fmt::runtime(kJobRow), str(j, "id"), str(j, "state"), str(j, "epoch"),
               str(j, "attempts"), agent.empty() ? "-" : agent, device.empty() ? "-" : device,
               str(j, "outcome"));
  }
  return kExitOk;
}

// --- export ---------------------------------------------------------------------------------

namespace {

std::string safe_name(const std::string& s) {
  std::string out;
  for (char c : s)
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
            c == '=')
               ? c
               : '_';
  return out.empty() ? "_" : out;
}

}  // namespace

int cmd_export(const ParsedFlags& flags) {
  auto id = campaign_arg(flags, true, "export");
  if (!id.ok()) return cli_fail(id.status().message(), kExitUsage);
  auto out_flag = flags.get("out");
  if (!out_flag) return cli_fail("export: give --out DIR (a new or empty directory)", kExitUsage);
  std::filesystem::path out = *out_flag;
  std::error_code ec;
  if (std::filesystem::exists(out) && !std::filesystem::is_empty(out, ec) && !flags.has("force")) {
    return cli_fail("export: " + out.string() + " is not empty; pass --force to write into it");
  }
  int code = 0;
  auto api = client_or_fail(flags, &code);
  if (!api.ok()) return code;
  auto campaign = (*api)->get("campaigns/" + std::to_string(*id));
  if (!campaign.ok()) return api_fail(campaign.status());
  size_t files = 0, passed = 0;
  auto write = [&](const std::filesystem::path& p, const std::string& text) -> Status {
    KF_RETURN_IF_ERROR(ensure_dir(p.parent_path()));
    files++;
    return atomic_write_file(p, text);
  };
  if (Status st = ensure_dir(out); !st.ok()) return cli_fail(st.message());
  const std::filesystem::path summary_path = out / "summary.json",
                              partial = out / "summary.json.partial";
  std::ofstream summary(partial, std::ios::trunc);
  if (!summary) return cli_fail("export: cannot write " + partial.string());
  summary << "{\n  \"campaign\": " << campaign->dump() << ",\n  \"tasks\": [";
  size_t exported = 0;
  json kernel;  // the last exported task's winner file (relative to DIR), null without one
  // Each task's detail and files: one page of the listing in memory at a time.
  auto export_task = [&](const json& row) -> Status {
    auto t = (*api)->get("tasks/" + std::to_string(row.value("task", 0)));
    if (!t.ok()) return t.status();
    std::string op = safe_name(str(*t, "op_name")), tid = safe_name(str(*t, "task_id"));
    std::filesystem::path dir = out / op / tid;
    // AIKG's layout: I{task}_S{step}_{op}_{agent}_{prompt|result|error_log}.txt
    std::string prefix = "I" + std::to_string(t->value("task", 0)) + "_S";
    if (Status st = write(dir / "task_desc.py", str(*t, "task_desc")); !st.ok()) return st;
    for (const json& s : (*t)["trace"]) {
      char seq[16];
      std::snprintf(seq, sizeof seq, "%02lld", static_cast<long long>(s.value("seq", 0)));
      std::string base = prefix + seq + "_" + op + "_" + str(s, "role") + "_";
      if (str(s, "role") == "verifier") {
        std::string kind = str(s, "verdict") == "passed" ? "result" : "error_log";
        if (Status st =
                write(dir / (base + kind + ".txt"), verifier_summary(str(s, "output")) + "\n");
            !st.ok())
          return st;
        if (Status st = write(dir / (base + "result.json"), str(s, "output") + "\n"); !st.ok())
          return st;
        continue;
      }
      if (Status st = write(dir / (base + "prompt.txt"), str(s, "input")); !st.ok()) return st;
      if (Status st = write(dir / (base + "result.txt"), str(s, "output")); !st.ok()) return st;
    }
    // The winner: the code of the task's best passing candidate (the API's `code`, its
    // best_step's), whatever the task's state, not its last step's.
    kernel = nullptr;
    if (const auto winner = t->find("code");
        winner != t->end() && winner->is_string() && !winner->get<std::string>().empty()) {
      std::string name = "passed/" + op + "_" + tid + "_" + safe_name(str(*t, "impl_type")) + ".py";
      if (Status st = write(out / name, winner->get<std::string>()); !st.ok()) return st;
      kernel = name;
      passed++;
    }
    return Status();
  };
  Status st = each_task_page(**api, "tasks?campaign=" + std::to_string(*id), {}, {}, {},
                             [&](const json& page) {
                               for (json row : page) {
                                 KF_RETURN_IF_ERROR(export_task(row));
                                 row["kernel"] = kernel;
                                 summary << (exported++ ? ",\n    " : "\n    ") << row.dump();
                               }
                               return Status();
                             });
  if (!st.ok()) return api_fail(st);
  summary << (exported ? "\n  ]\n}\n" : "]\n}\n");
  summary.close();
  if (!summary) return cli_fail("export: cannot write " + partial.string());
  std::filesystem::rename(partial, summary_path, ec);
  if (ec) return cli_fail("export: cannot rename " + partial.string() + ": " + ec.message());
  files++;
  std::printf(
      "exported campaign %lld to %s: %zu tasks, %zu files, %zu winning kernels in passed/\n",
      static_cast<long long>(*id), out.string().c_str(), exported, files, passed);
  return kExitOk;
}

// --- report ---------------------------------------------------------------------------------

int cmd_report(const ParsedFlags& flags) {
  auto id = campaign_arg(flags, true, "report");
  if (!id.ok()) return cli_fail(id.status().message(), kExitUsage);
  int code = 0;
  auto api = client_or_fail(flags, &code);
  if (!api.ok()) return code;
  auto report = (*api)->get("campaigns/" + std::to_string(*id) + "/report");
  if (!report.ok()) return api_fail(report.status());
  if (flags.has("json")) std::printf("%s\n", report->dump(2).c_str());
  if (!flags.has("json") && !flags.get("out")) std::printf("%s", report_text(*report).c_str());
  if (auto out = flags.get("out")) {
    std::filesystem::path dir = *out;
    if (Status st = ensure_dir(dir); !st.ok()) return cli_fail(st.message());
    if (Status st = atomic_write_file(dir / "report.json", report->dump(2) + "\n"); !st.ok())
      return cli_fail(st.message());
    if (Status st = atomic_write_file(dir / "index.html", report_html(*report)); !st.ok())
      return cli_fail(st.message());
    if (!flags.has("json"))
      std::printf("report of campaign %lld: %s (and report.json)\n", static_cast<long long>(*id),
                  (dir / "index.html").string().c_str());
  }
  return kExitOk;
}

}  // namespace kforge
