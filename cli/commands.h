// cli/: the `kforge` command line -- subcommands (this file, dispatched by cli.cpp), the API
// client for a coordinator or a data directory (client.h) and the all-in-one run (run.h).
//
// The kforge subcommands, one function each; cli.cpp dispatches to them.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/flags.h"

namespace kforge {

// Exit codes (docs/cli.md): 0 success (for verify: a verdict was reached, passed or not),
// 1 the command failed or its inputs are unusable, 2 usage error, 3 the coordinator could
// not be reached.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnreachable = 3;

// Prints "kforge: <message>" to stderr and returns `code`.
int cli_fail(const std::string& message, int code = kExitFailed);

int cmd_verify(const ParsedFlags& flags);
int cmd_check(const ParsedFlags& flags);
int cmd_run(const ParsedFlags& flags);
int cmd_submit(const ParsedFlags& flags);
int cmd_status(const ParsedFlags& flags);
int cmd_tasks(const ParsedFlags& flags);
int cmd_results(const ParsedFlags& flags);
int cmd_show(const ParsedFlags& flags);
int cmd_cancel(const ParsedFlags& flags);
int cmd_resume(const ParsedFlags& flags);
int cmd_agents(const ParsedFlags& flags);
int cmd_cluster(const ParsedFlags& flags);
int cmd_progress(const ParsedFlags& flags);
int cmd_alerts(const ParsedFlags& flags);
int set_drained(const ParsedFlags& flags, bool drained);
int cmd_export(const ParsedFlags& flags);
int cmd_jobs(const ParsedFlags& flags);
int cmd_report(const ParsedFlags& flags);
int cmd_import(const ParsedFlags& flags);
int cmd_keygen(const ParsedFlags& flags);

// Prints tasks (API Task objects) as a table, "json" or "csv".
void print_tasks(const nlohmann::json& tasks, const std::string& format);

// The same, a page at a time: the header (or "[") when made, each page's rows as they come,
// the end ("]") when destroyed. The output is print_tasks' for all the rows at once.
class TaskPrinter {
 public:
  explicit TaskPrinter(std::string format);
  ~TaskPrinter();
  TaskPrinter(const TaskPrinter&) = delete;
  TaskPrinter& operator=(const TaskPrinter&) = delete;
  void rows(const nlohmann::json& tasks);

 private:
  std::string format_;
  size_t rows_ = 0;
};
// Tasks asked of the coordinator per page by `kforge tasks` and `kforge results`.
inline constexpr uint64_t kTaskPage = 1000;

}  // namespace kforge
